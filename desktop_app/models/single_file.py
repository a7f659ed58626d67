"""Single-file checkpoints (original Stable Diffusion layout) loaded offline with the configs in resources/configs.

diffusers' ``from_single_file`` fetches the model's diffusers configs and tokenizer from the hub unless it is
given a local config folder (diffusers issues #7209, #8752, #7902): each family's folder ships in
``resources/configs/<family>/`` (model_index.json, scheduler/, unet/, vae/, text_encoder*/, tokenizer*/), so
nothing is fetched. The family comes from the tensors (``model_files.inspect``), never from the file name. The
SDXL refiner (``sdxl-refiner``) loads as a StableDiffusionXLImg2ImgPipeline, for refiner.py. Torch-free: what a
file is and which config it takes; ``engine/loader.py`` loads it (``load_single_file``).

SD 2.x comes in two flavours the tensors cannot tell apart: 768 v-prediction (SD 2.0-v/2.1, the usual SD 2
checkpoint) and 512 epsilon (2.x-base). ``model_files`` reports "sd2-v" when the file carries the ``v_pred``
marker A1111/ComfyUI write; a plain "sd2" gets the 768 v-prediction config too, as diffusers itself assumes
(its default SD 2 config is stabilityai/stable-diffusion-2-1). ``prediction_type="epsilon"`` (loader option)
picks the 512 epsilon config instead; ``"v"`` also serves v-prediction fine-tunes of SD 1.x and SDXL.

The transformer families (Flux, SD3, Flux.2, Chroma, Z-Image, Qwen-Image, Sana, PixArt: models/families.py)
come as single transformer files: ``bundled_transformer_config(variant)`` is the folder holding the published
transformer config of the variant ``model_files.inspect`` reports (``FileInfo.variant``), for
``from_single_file(config=...)``. Their whole-pipeline configs are not bundled: such a file runs with the text
encoders, tokenizers and VAE of a diffusers folder of its family (models/components.py), and ``bundled_config``
refuses them; ``file_defaults`` gives the family's (and variant's) published defaults.

Where the loader is not told, the prediction type is remembered (``remembered_prediction_type``): the one
stored with the file's library entry (``desktop-app models add FILE --prediction-type epsilon``), else the
AUTOMATIC1111 convention users already follow, a ``FILE.yaml`` beside the checkpoint whose
``model.params.parameterization`` is ``"v"`` (no parameterization there means epsilon).
"""

from __future__ import annotations

from pathlib import Path

from desktop_app.errors import ModelError
from desktop_app.models import families
from desktop_app.models.model_files import PREDICTION_TYPES, normalize_prediction_type  # noqa: F401 - re-exported
from desktop_app.resources import resources_dir

FAMILY_CONFIGS = {"sd1": "sd1", "sd2": "sd2", "sd2-v": "sd2-v", "sdxl": "sdxl", "sdxl-refiner": "sdxl-refiner"}
FAMILY_NAMES = {"sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x (512, epsilon)",
                "sd2-v": "Stable Diffusion 2.x (768, v-prediction)", "sdxl": "Stable Diffusion XL",
                "sdxl-refiner": "the Stable Diffusion XL refiner"}
PIPELINE_CLASSES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")
MAX_SIDECAR = 1024 * 1024  # an A1111 .yaml is a few KB


def configs_dir() -> Path:
    return resources_dir() / "configs"


def bundled_config(family: str) -> Path:
    """The bundled diffusers config folder for ``family`` ("sd1", "sd2", "sd2-v", "sdxl", "sdxl-refiner")."""
    if family not in FAMILY_CONFIGS:
        supported = ", ".join(FAMILY_NAMES.values())
        known = families.get(family)
        what = f"{known.name} (recognised)" if known else f"the {family!r} family"
        raise ModelError(f"Single-file checkpoints of {what} are not supported by this version; this app loads "
                         f"single files of {supported}. Use a diffusers folder for other models.")
    folder = configs_dir() / FAMILY_CONFIGS[family]
    if not (folder / "model_index.json").is_file():
        raise ModelError(f"The bundled config for {family} is missing ({folder}). Reinstall the app.")
    return folder


def bundled_transformer_config(variant: str) -> Path:
    """The bundled config folder of a transformer family's published variant (``FileInfo.variant``, e.g.
    "flux-dev", "sd3.5-large", "flux2-klein-4b"): its ``transformer/config.json`` is the published config. For
    diffusers' ``<Transformer class>.from_single_file(path, config=str(folder), local_files_only=True)``."""
    owner = next((f for f in families.FAMILIES.values() if f.variant(variant)), None)
    if owner is None:
        known = ", ".join(v.key for f in families.FAMILIES.values() for v in f.variants)
        raise ModelError(f"No bundled transformer config for {variant!r}: the app has {known}.")
    config = families.transformer_config_file(variant)
    if not config.is_file():
        raise ModelError(f"The bundled transformer config of {owner.variant(variant).name} is missing ({config}). "
                         "Reinstall the app.")
    return config.parent.parent


def sidecar_prediction_type(path: Path) -> str | None:
    """The prediction type an A1111-style ``<file>.yaml`` beside the checkpoint gives, or None without one."""
    sidecar = next((p for p in (path.with_suffix(".yaml"), path.with_suffix(".yml")) if p.is_file()), None)
    if sidecar is None:
        return None
    import yaml

    from desktop_app.errors import printable
    from desktop_app.models.model_folder import open_regular

    try:
        with open_regular(sidecar, "config") as handle:  # is_file above; checked again on the open file
            text = handle.read(MAX_SIDECAR + 1)
        if len(text) > MAX_SIDECAR:
            raise ValueError(f"more than {MAX_SIDECAR:,} bytes, far more than a config holds")
        config = yaml.safe_load(text.decode("utf-8"))
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise ModelError(f"The config {printable(sidecar.name)} beside {printable(path.name)} is damaged (nested "
                         "too deeply). Fix or remove it.") from None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        problem = printable(" ".join(str(exc).split()), 160)
        raise ModelError(f"The config {sidecar.name} beside {path.name} cannot be read ({problem}). Fix or "
                         "remove it: it tells the app whether the checkpoint predicts v or noise.") from None
    model = config.get("model") if isinstance(config, dict) else None
    params = model.get("params") if isinstance(model, dict) else None
    value = params.get("parameterization", "eps") if isinstance(params, dict) else "eps"
    try:
        return normalize_prediction_type(str(value))
    except ModelError:
        raise ModelError(f"{sidecar.name} beside {path.name} gives parameterization {value!r}; the app knows "
                         "v and eps.") from None


def remembered_prediction_type(path: Path) -> tuple[str | None, str]:
    """(prediction type, where it came from) for a checkpoint the loader was not told about: its library
    entry's, else its A1111-style .yaml's; (None, "") when neither says."""
    from desktop_app.models.model_library import stored_prediction_type

    stored = stored_prediction_type(path)
    if stored:
        return normalize_prediction_type(stored), "the model library"
    sidecar = sidecar_prediction_type(path)
    if sidecar:
        return sidecar, f"{path.stem}.yaml"
    return None, ""


def detect_family(path: Path) -> str:
    """The family from the tensors; raises ModelError (from model_files) for unsafe or damaged files."""
    from desktop_app.models import model_files

    info = model_files.inspect(path)
    if info.kind != model_files.CHECKPOINT:
        raise ModelError(f"{path.name} is not a model checkpoint: {info.details}")
    return info.family


def choose_config(family: str, prediction_type: str | None) -> str:
    """The bundled config for a family, with the user's prediction type choosing between SD 2 flavours."""
    if family in ("sd2", "sd2-v"):
        return "sd2" if prediction_type == "epsilon" else "sd2-v"
    return family


def file_defaults(path: str | Path) -> dict:
    """The generation defaults (width, height) of the bundled config a file would load with; {} when the file
    cannot be read (the loader reports that properly later). Torch-free."""
    from desktop_app.models.model_folder import defaults, read_index

    from desktop_app.models import model_files

    path = Path(path).expanduser()
    try:
        info = model_files.inspect(path)
        if info.kind == model_files.CHECKPOINT and info.family in families.SINGLE_FILES:  # a transformer file
            return families.FAMILIES[info.family].defaults(info.variant)
        remembered, _ = remembered_prediction_type(path)
        return defaults(read_index(bundled_config(choose_config(detect_family(path), remembered))))
    except ModelError:
        return {}
