"""The window: Qt widgets and view state. Nothing here imports torch: the engine loads in the worker."""
