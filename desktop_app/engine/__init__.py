"""The engine: plain Python on torch and diffusers. It never imports Qt.

Import the heavy modules (``generate``, ``loader``) explicitly; importing this package
alone stays cheap so that the window can show before torch loads.
"""
