"""The composition root: build (wire everything), serve, and the command line."""
