"""ControlNet models on disk, read without torch (issue 17): where a name points, whether a folder is a
diffusers ControlNet, which model family it steers, and whether it fits a given model.

A ControlNet is a diffusers folder (``config.json`` naming ``ControlNetModel``, ``SD3ControlNetModel`` or
``FluxControlNetModel``, and its weights as ``diffusion_pytorch_model[.fp16].safetensors``). A name that is not a
path is looked up in ``<models>/controlnet/NAME``. Its family is read from its config: a UNet ControlNet's
cross-attention width (768 SD 1.x, 1024 SD 2.x, 2048 SDXL) and SDXL's time embedding; the transformer ones by
their class. Before its weights load, it is checked against the model's UNet config (the same width, blocks and
added embedding), its transformer config (the same family, and the widths the ControlNet's outputs are added
at) or, for a single-file model, its family; a ControlNet for another family is refused in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from desktop_app.errors import ModelError, printable
from desktop_app.models import families, model_files, model_folder

# the diffusers ControlNet classes the app runs, and the family each steers ("unet": the UNet's own, by width)
CLASSES = {"ControlNetModel": "unet", "SD3ControlNetModel": "sd3", "FluxControlNetModel": "flux"}
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")
# the UNet config keys a ControlNet must share with the model it steers (its residuals are added to the blocks)
_SHARED_KEYS = ("cross_attention_dim", "block_out_channels", "addition_embed_type")
_SAME_FAMILY = {"sd2-v": "sd2"}  # SD 2.x's v-prediction models take SD 2.x ControlNets
# the transformer config keys a ControlNet must share with the model it steers, where the ControlNet sets them
# (heads x head width: the hidden states its outputs are added to; the text and pooled widths it reads; SD3.5's
# official ControlNets set no text width: they read none)
_TRANSFORMER_KEYS = ("num_attention_heads", "attention_head_dim", "joint_attention_dim", "pooled_projection_dim",
                     "in_channels")
# the families ControlNets run on (families.CONTROLNETS), for the line that refuses the others
CONTROL_FAMILIES_LINE = "ControlNets run on Stable Diffusion 1.x, 2.x, SDXL, SD3 and Flux.1 models here"


@dataclass(frozen=True)
class ControlNetInfo:
    path: Path
    config: dict
    weights: Path  # the safetensors file that loads (fp16 when that is the only one)
    family: str  # "sd1", "sd2", "sdxl", "embedded", "sd3", "flux"; "unknown" for a width of no known family

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def variant(self) -> str | None:
        return "fp16" if ".fp16." in self.weights.name else None


def controlnets_dir() -> Path:
    """Where ControlNet folders named by their folder's name are found: the models folder's ``controlnet``."""
    from desktop_app import paths

    return paths.models_dir() / "controlnet"


def resolve_controlnet(name_or_path: str) -> Path:
    """The ControlNet folder ``name_or_path`` means: an existing path, or a folder in ``controlnets_dir()``.
    ModelError (one line) when there is none."""
    text = str(name_or_path).strip()
    path = Path(text).expanduser()
    if path.exists():
        return path
    if text and "/" not in text and "\\" not in text and text not in (".", ".."):
        found = controlnets_dir() / text
        if found.exists():
            return found
    raise ModelError(f"ControlNet {printable(text, 200)} not found: no such folder, and no folder by that name in "
                     f"{printable(controlnets_dir(), 200)}")


def read_controlnet(name_or_path: str) -> ControlNetInfo:
    """The ControlNet at ``name_or_path`` with its config, weights file and family; ModelError naming what is
    wrong (not a folder, no config.json, another kind of model, no .safetensors weights, a damaged header)."""
    path = resolve_controlnet(name_or_path)
    shown = printable(path, 200)
    if path.is_file():
        raise ModelError(f"ControlNet {shown} is one file; this version runs diffusers ControlNet folders (a "
                         "config.json beside diffusion_pytorch_model.safetensors)")
    config_path = path / "config.json"
    if not path.is_dir() or not config_path.is_file():
        raise ModelError(f"{shown} is not a ControlNet folder: it has no config.json")
    config = model_folder.read_json_file(config_path, "config")
    kind = config.get("_class_name") if isinstance(config, dict) else None
    if kind not in CLASSES:
        what = f"a {printable(kind, 60)}" if isinstance(kind, str) else "no model class"
        raise ModelError(f"{shown} is not a ControlNet: its config.json names {what}, not one of "
                         f"{', '.join(CLASSES)}")
    weights = next((path / name for name in WEIGHTS if (path / name).is_file()), None)
    if weights is None:
        raise ModelError(f"ControlNet {shown} has no weights: diffusion_pytorch_model.safetensors is missing "
                         "(only .safetensors weights are loaded)")
    model_files.read_header(weights)  # a disguised pickle, a truncated or damaged file: refused now
    if config.get("num_mode") is not None:  # Flux's union ControlNets need a mode per image
        raise ModelError(f"ControlNet {shown} is a union ControlNet (one of {config['num_mode']} modes per "
                         "image); this version runs ControlNets of one kind (canny, depth ...)")
    return ControlNetInfo(path, config, weights, family_of(config))


def family_of(config: dict) -> str:
    """The family a ControlNet config steers."""
    kind = CLASSES.get(config.get("_class_name"), "unet")
    if kind != "unet":
        return kind
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    width = config.get("cross_attention_dim")
    return families.CONTEXT_FAMILIES.get(width, "unknown") if isinstance(width, int) else "unknown"


def family_name(key: str) -> str:
    declared = families.FAMILIES.get(key)
    return declared.name if declared is not None else ("a model of no known family" if key == "unknown" else key)


def check_pairing(control: ControlNetInfo, model_family: str, unet_config: dict | None, model_label: str) -> None:
    """ModelError (one line) when ``control`` cannot steer the model of ``model_family`` whose UNet (or
    transformer) config is ``unet_config`` (None: a single file whose config is not at hand)."""
    family = _SAME_FAMILY.get(model_family, model_family)
    transformer = control.family in ("sd3", "flux")
    if transformer or unet_config is None or "cross_attention_dim" not in unet_config:
        fits = control.family == family
    else:
        fits = all(_same(control.config.get(key), unet_config.get(key)) for key in _SHARED_KEYS)
    if not fits:
        raise ModelError(f"ControlNet {printable(control.name, 120)} is for {family_name(control.family)}; the "
                         f"model {printable(model_label, 120)} is {family_name(family)}: use a ControlNet made "
                         "for its family")
    if transformer and unet_config is not None:
        differ = [key for key in _TRANSFORMER_KEYS if control.config.get(key) is not None
                  and not _same(control.config.get(key), unet_config.get(key))]
        if differ:
            shown = ", ".join(f"{key} {control.config.get(key)} (the model's {unet_config.get(key)})"
                              for key in differ)
            raise ModelError(f"ControlNet {printable(control.name, 120)} is for another size of "
                             f"{family_name(family)} than the model {printable(model_label, 120)}: {shown}")


def model_denoiser(model_path: str) -> tuple[str, dict | None]:
    """(family, UNet or transformer config or None) of the model at ``model_path``, torch-free: model_unet's,
    or a diffusers folder's ``transformer/config.json``."""
    family, config = model_unet(model_path)
    folder = model_folder.check_folder(model_path)
    transformer = folder / "transformer" / "config.json"
    if config is None and folder.is_dir() and transformer.is_file():
        config = model_folder.read_json_file(transformer, "config")
    return family, config if isinstance(config, dict) else None


def model_unet(model_path: str) -> tuple[str, dict | None]:
    """(family, UNet config or None) of the model at ``model_path`` (a resolved path or "default"), torch-free:
    a folder's ``unet/config.json``; a single file's family from its header."""
    folder = model_folder.check_folder(model_path)
    if folder.is_file():
        return model_files.inspect(folder).family or "unknown", None
    index = model_folder.read_index(folder)
    family, _ = families.folder_family(folder, index)
    unet = folder / "unet" / "config.json"
    config = model_folder.read_json_file(unet, "config") if unet.is_file() else None
    return family, config if isinstance(config, dict) else None


def check_controls(controls, model_path: str, model_label: str) -> list[ControlNetInfo]:
    """Each request ControlChoice's ControlNet read and checked against the model at ``model_path``, before
    torch or any weights load (the command line calls this; the engine checks the loaded UNet again)."""
    family, denoiser = model_denoiser(model_path)
    found = []
    for control in controls:
        info = read_controlnet(control.model)
        check_pairing(info, family, denoiser, model_label)
        found.append(info)
    return found


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b
