"""Torch-free knowledge of model files: what a file or folder is (family from the tensors or model_index.json,
hostile-content checks), the library, downloads, bundled configs, and ``resolve``. Imports nothing here: the
window starts before any of it is needed. See docs/ARCHITECTURE.md."""
