"""The embedded miniature world: procedural scenes, their captions, the judge, and the tiny
text-to-image model that the repo trains and ships (see toy-world docs in the README)."""
