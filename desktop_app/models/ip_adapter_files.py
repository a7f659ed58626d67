"""IP-Adapters on disk, read without torch (issue 17): where a name points, which weights file and image encoder
it means, which model family it is for, and whether it fits a given model.

An IP-Adapter is two parts, laid out as the h94/IP-Adapter repository lays them out:
- its weights: one ``ip-adapter*.safetensors`` file holding ``image_proj.*`` (the image projection) and
  ``ip_adapter.*`` (a key and value projection per cross-attention layer of the UNet);
- its image encoder: a transformers CLIPVisionModelWithProjection folder named ``image_encoder`` (config.json
  and model.safetensors), beside the weights file or in a folder next to the file's folder (h94's
  ``models/image_encoder`` serves its ``sdxl_models/*_vit-h`` adapters); the first one whose width fits is used.
A user names the file, or a folder holding one such file, or a name looked up in ``<models>/ip-adapter/``.
Only .safetensors weights load (h94 ships a .safetensors beside each .bin). The family is read from the widths:
the cross-attention width the adapter writes into (768 SD 1.x, 2048 SDXL) is checked against the model's UNet
before any weights load, and the embedding width it reads against its image encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from desktop_app.errors import ModelError, printable
from desktop_app.models import families, model_files, model_folder

ENCODER = "image_encoder"
ENCODER_WEIGHTS = ("model.safetensors", "model.fp16.safetensors")
_SAME_FAMILY = {"sd2-v": "sd2"}


@dataclass(frozen=True)
class AdapterInfo:
    weights: Path  # the adapter's .safetensors file
    encoder: Path  # its image encoder's folder
    family: str  # by the cross-attention width: "sd1", "sdxl", ...; "unknown" for a width of no known family
    width: int  # the cross-attention width it writes into
    kind: str  # "plain" (the CLIP image embedding, 4 tokens), "plus" (the encoder's hidden states), "full"
    image_width: int  # the width it reads from the image encoder
    layers: int  # its cross-attention layers (each a key and a value projection)
    hidden_sizes: frozenset  # the widths of those layers (the UNet blocks' channels)

    @property
    def name(self) -> str:
        return self.weights.stem

    @property
    def hidden_states(self) -> bool:
        """True when it reads the encoder's last-but-one hidden states (plus, full), not the image embedding."""
        return self.kind != "plain"


def adapters_dir() -> Path:
    """Where IP-Adapters named by name are found: the models folder's ``ip-adapter``."""
    from desktop_app import paths

    return paths.models_dir() / "ip-adapter"


def resolve_adapter(name_or_path: str) -> Path:
    """The file or folder ``name_or_path`` means: an existing path, or a file or folder in ``adapters_dir()``
    (NAME or NAME.safetensors). ModelError (one line) when there is none."""
    text = str(name_or_path).strip()
    path = Path(text).expanduser()
    if text and path.exists():
        return path
    if text and "/" not in text and "\\" not in text and text not in (".", ".."):
        for candidate in (adapters_dir() / text, adapters_dir() / f"{text}.safetensors"):
            if candidate.exists():
                return candidate
    raise ModelError(f"IP-Adapter {printable(text, 200)} not found: no such file or folder, and none by that name "
                     f"in {printable(adapters_dir(), 200)}")


def weights_file(path: Path) -> Path:
    """The adapter's weights file: ``path`` itself, or the one ``ip-adapter*.safetensors`` in the folder."""
    shown = printable(path, 200)
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            raise ModelError(f"IP-Adapter {shown} is not a .safetensors file; only .safetensors weights are "
                             "loaded (h94/IP-Adapter has an ip-adapter*.safetensors beside each .bin)")
        return path
    if not path.is_dir():
        raise ModelError(f"IP-Adapter {shown} is neither a file nor a folder")
    found = sorted(p for p in path.glob("*.safetensors") if p.name.lower().startswith("ip-adapter")
                   and p.is_file())
    if not found:
        pickled = sorted(p.name for p in path.glob("ip-adapter*.bin"))
        more = f" (only {', '.join(pickled[:3])}: .bin weights are not loaded)" if pickled else ""
        raise ModelError(f"IP-Adapter folder {shown} holds no ip-adapter*.safetensors file{more}")
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:4]) + (" ..." if len(found) > 4 else "")
        raise ModelError(f"IP-Adapter folder {shown} holds {len(found)} adapters ({names}): name the file")
    return found[0]


def read_adapter(name_or_path: str) -> AdapterInfo:
    """The IP-Adapter at ``name_or_path``: its weights file read (the header only) and an image encoder that fits
    it found. ModelError naming what is wrong (no such file, not an IP-Adapter, a damaged file, a FaceID adapter,
    no image encoder, or none of its width)."""
    weights = weights_file(resolve_adapter(name_or_path))
    header = model_files.read_header(weights)  # a disguised pickle, a truncated or damaged file: refused now
    shapes = {name: entry.get("shape") for name, entry in header.items() if isinstance(entry, dict)}
    kind, width, image_width = _projection(weights, shapes)
    keys = [shapes.get(f"ip_adapter.{1 + 2 * k}.to_k_ip.weight") for k in range(len(shapes))]
    keys = keys[:next((k for k, shape in enumerate(keys) if shape is None), len(keys))]
    if not keys or any(len(shape) != 2 or shape[1] != width for shape in keys):
        raise ModelError(f"{printable(weights.name, 120)} is not an IP-Adapter this version loads: its ip_adapter "
                         "key and value projections are missing or of another width than its image projection")
    family = families.CONTEXT_FAMILIES.get(width, "unknown")
    encoder = find_encoder(weights, kind, image_width)
    return AdapterInfo(weights, encoder, family, width, kind, image_width, len(keys),
                       frozenset(shape[0] for shape in keys))


def _projection(weights: Path, shapes: dict) -> tuple[str, int, int]:
    """(kind, cross-attention width, image embedding width) from the image projection's shapes."""
    shown = printable(weights.name, 120)
    if not any(name.startswith("image_proj.") for name in shapes) or \
            not any(name.startswith("ip_adapter.") for name in shapes):
        raise ModelError(f"{shown} is not an IP-Adapter: it has no image_proj.* and ip_adapter.* weights")
    # the kinds in the order diffusers' _convert_ip_adapter_image_proj_to_diffusers tells them apart
    proj, full = shapes.get("image_proj.proj.weight"), shapes.get("image_proj.proj.3.weight")
    latents, proj_in, proj_out = (shapes.get(f"image_proj.{name}") for name in
                                  ("latents", "proj_in.weight", "proj_out.weight"))
    if proj is not None:
        if _matrix(proj) and proj[0] % 4 == 0:
            return "plain", proj[0] // 4, proj[1]
    elif full is not None:
        if _matrix(shapes.get("image_proj.proj.0.weight")) and len(full) == 1:
            return "full", full[0], shapes["image_proj.proj.0.weight"][0]
    elif "image_proj.perceiver_resampler.proj_in.weight" in shapes or "image_proj.norm.weight" in shapes:
        raise ModelError(f"{shown} is a FaceID IP-Adapter, which needs face embeddings (insightface) this version "
                         "does not make: use an IP-Adapter that reads a CLIP image encoder")
    elif latents is not None and _matrix(proj_in) and _matrix(proj_out):
        return "plus", proj_out[0], proj_in[1]
    raise ModelError(f"{shown} is not an IP-Adapter this version loads: its image projection is of no known kind")


def _matrix(shape) -> bool:
    return isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) for n in shape)


def find_encoder(weights: Path, kind: str, image_width: int) -> Path:
    """The first image encoder folder that fits: ``image_encoder/`` beside ``weights``, then in the folders next
    to its folder. ModelError saying what was found, or that there is none."""
    here = weights.parent
    candidates = [here / ENCODER]
    try:
        candidates += sorted(p / ENCODER for p in here.parent.iterdir() if p.is_dir() and p != here)
    except OSError:
        pass
    found = [path for path in candidates if (path / "config.json").is_file()]
    if not found:
        raise ModelError(f"IP-Adapter {printable(weights.name, 120)} has no image encoder: put its "
                         f"CLIPVisionModelWithProjection folder as {ENCODER}/ beside it (config.json and "
                         "model.safetensors, as in h94/IP-Adapter)")
    widths = []
    for path in found:
        width = encoder_width(path, kind)
        if width == image_width:
            return path
        widths.append(f"{printable(path, 160)} gives {width}")
    raise ModelError(f"IP-Adapter {printable(weights.name, 120)} reads {image_width}-wide image embeddings; "
                     f"{'; '.join(widths)}: use the image encoder it was made with")


def encoder_width(folder: Path, kind: str) -> int:
    """The width of what the CLIP vision encoder at ``folder`` gives an IP-Adapter of ``kind``: its projected
    image embedding (plain) or its hidden states (plus, full). ModelError when it is not one, or has no
    .safetensors weights."""
    shown = printable(folder, 160)
    config = model_folder.read_json_file(folder / "config.json", "config")
    if not isinstance(config, dict):
        raise ModelError(f"{shown}/config.json is not a JSON object")
    vision = config.get("vision_config") if isinstance(config.get("vision_config"), dict) else config
    architectures = config.get("architectures") or []
    known = "CLIPVisionModelWithProjection" in architectures or config.get("model_type") in ("clip_vision_model",
                                                                                             "clip")
    width = vision.get("hidden_size") if kind != "plain" else config.get("projection_dim",
                                                                         vision.get("projection_dim"))
    if not known or not isinstance(width, int):
        raise ModelError(f"{shown} is not a CLIP image encoder (CLIPVisionModelWithProjection) an IP-Adapter "
                         "reads")
    weights = next((folder / name for name in ENCODER_WEIGHTS if (folder / name).is_file()), None)
    if weights is None:
        raise ModelError(f"image encoder {shown} has no model.safetensors (only .safetensors weights are loaded)")
    model_files.read_header(weights)
    return width


def family_name(key: str) -> str:
    declared = families.FAMILIES.get(key)
    return declared.name if declared is not None else ("a model of no known family" if key == "unknown" else key)


def check_pairing(adapter: AdapterInfo, model_family: str, unet_config: dict | None, model_label: str) -> None:
    """ModelError (one line) when ``adapter`` cannot run on the model of ``model_family`` whose UNet config is
    ``unet_config`` (None: a single file, compared by family): a model with no UNet (the transformer families),
    or one of another cross-attention width."""
    family = _SAME_FAMILY.get(model_family, model_family)
    label = printable(model_label, 120)
    if family not in families.SD_FAMILIES and unet_config is None:
        raise ModelError(f"image prompts (IP-Adapter) run on Stable Diffusion 1.x and SDXL models here; the model "
                         f"{label} is {family_name(family)}")
    if unet_config is not None:
        width, channels = unet_config.get("cross_attention_dim"), unet_config.get("block_out_channels") or ()
        fits = width == adapter.width and adapter.hidden_sizes <= set(channels)
    else:
        fits = adapter.family == family
    if not fits:
        raise ModelError(f"IP-Adapter {printable(adapter.name, 120)} is for {family_name(adapter.family)} "
                         f"({adapter.width} wide); the model {label} is {family_name(family)}: use an IP-Adapter "
                         "made for its family")


def check_image_prompt(adapter: str, model_path: str, model_label: str) -> AdapterInfo:
    """The request's IP-Adapter read and checked against the model at ``model_path``, before torch or any
    weights load (the command line calls this; the engine checks the loaded UNet again)."""
    from desktop_app.models.controlnet_folder import model_unet

    family, unet = model_unet(model_path)
    info = read_adapter(adapter)
    check_pairing(info, family, unet, model_label)
    return info
