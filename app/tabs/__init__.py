"""One module per tab: ``build(runtime) -> dict`` lays out the tab and wires its own handlers.

Tabs talk to each other only through the runtime; what a tab needs refreshed when another one
changes something (a finished fine-tune adds a model) it declares as ``refresh``: a function of no
arguments and the components it updates, called when the tab is selected."""
