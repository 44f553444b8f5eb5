"""Applications over finished runs: the browser explorer (Gradio, the ``[explore]`` extra).

The top layer: apps use the engines and everything below them; nothing in the package imports an app.
"""
