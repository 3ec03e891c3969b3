"""The Gradio app. Holds no tensor math: it calls analysis/ and dde/."""
