"""IP-Adapters on disk, read without torch (issue 17): where a name points, which weights file and image encoder
it means, which model family it is for, and whether it fits a given model.

An IP-Adapter is two parts, laid out as the h94/IP-Adapter repository lays them out:
- its weights: one ``ip-adapter*.safetensors`` file holding ``image_proj.*`` (the image projection) and
  ``ip_adapter.*`` (a key and value projection per cross-attention layer of the UNet); or, for Flux.1, XLabs'
  layout (XLabs-AI/flux-ip-adapter's ``ip_adapter.safetensors``, what diffusers' FluxIPAdapterMixin loads):
  ``ip_adapter_proj_model.*`` (the projection of the CLIP image embedding into 4 tokens of the T5 width) and
  ``double_blocks.N.processor.ip_adapter_double_stream_{k,v}_proj.*`` (a key and value projection per double
  block of the transformer);
- its image encoder: a transformers CLIPVisionModelWithProjection folder named ``image_encoder`` (config.json
  and model.safetensors), beside the weights file or in a folder next to the file's folder (h94's
  ``models/image_encoder`` serves its ``sdxl_models/*_vit-h`` adapters); the first one whose width fits is used.
A user names the file, or a folder holding one such file, or a name looked up in ``<models>/ip-adapter/``.
Only .safetensors weights load (h94 ships a .safetensors beside each .bin). The family is read from the widths:
the cross-attention width the adapter writes into (768 SD 1.x, 2048 SDXL) is checked against the model's UNet
before any weights load, and the embedding width it reads against its image encoder; a Flux.1 adapter's T5 width,
inner width and double blocks against the model's transformer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from desktop_app.errors import ModelError, printable
from desktop_app.models import families, model_files, model_folder

ENCODER = "image_encoder"
ENCODER_WEIGHTS = ("model.safetensors", "model.fp16.safetensors")
_SAME_FAMILY = {"sd2-v": "sd2"}
FLUX_FAMILY = "flux"
IMAGE_PROMPT_FAMILIES = ("sd1", "sdxl", FLUX_FAMILY)  # the families whose models take an image prompt here
RUN_ON = "Stable Diffusion 1.x, SDXL and Flux.1"
_XLABS_PROJ, _XLABS_BLOCK = "ip_adapter_proj_model.", "double_blocks.{}.processor.ip_adapter_double_stream_{}_proj"


@dataclass(frozen=True)
class AdapterInfo:
    weights: Path  # the adapter's .safetensors file
    encoder: Path  # its image encoder's folder
    family: str  # by the cross-attention width: "sd1", "sdxl", ...; "unknown" for a width of no known family
    width: int  # the cross-attention width it writes into
    kind: str  # "plain" (the CLIP image embedding, 4 tokens), "plus" (the encoder's hidden states), "full"
    image_width: int  # the width it reads from the image encoder
    layers: int  # its cross-attention layers (each a key and a value projection)
    hidden_sizes: frozenset  # the widths of those layers (the UNet blocks' channels; Flux: its inner width)
    tokens: int = 4  # the image tokens its projection makes (XLabs' Flux adapter: 4, or 16)

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


def is_adapter_name(name: str) -> bool:
    """A weights file name a folder's adapter goes by: ``ip-adapter*`` (h94) or ``ip_adapter*`` (XLabs)."""
    return name.lower().replace("_", "-").startswith("ip-adapter") and name.lower().endswith(".safetensors")


def weights_file(path: Path) -> Path:
    """The adapter's weights file: ``path`` itself, or the one ``ip-adapter*.safetensors`` (or XLabs'
    ``ip_adapter.safetensors``) in the folder."""
    shown = printable(path, 200)
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            raise ModelError(f"IP-Adapter {shown} is not a .safetensors file; only .safetensors weights are "
                             "loaded (h94/IP-Adapter has an ip-adapter*.safetensors beside each .bin)")
        return path
    if not path.is_dir():
        raise ModelError(f"IP-Adapter {shown} is neither a file nor a folder")
    found = sorted(p for p in path.glob("*.safetensors") if is_adapter_name(p.name) and p.is_file())
    if not found:
        pickled = sorted(p.name for p in path.glob("ip-adapter*.bin"))
        more = f" (only {', '.join(pickled[:3])}: .bin weights are not loaded)" if pickled else ""
        raise ModelError(f"IP-Adapter folder {shown} holds no ip-adapter*.safetensors (nor XLabs' "
                         f"ip_adapter.safetensors) file{more}")
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
    if any(name.startswith(_XLABS_PROJ) for name in shapes):
        return _read_flux(weights, shapes)
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


def _read_flux(weights: Path, shapes: dict) -> AdapterInfo:
    """An XLabs-layout Flux.1 adapter: its projection's widths and tokens, and a key and value projection (with
    their biases) of one shape for each double block 0, 1, ... ."""
    shown = printable(weights.name, 120)
    proj, norm = shapes.get(f"{_XLABS_PROJ}proj.weight"), shapes.get(f"{_XLABS_PROJ}norm.weight")
    width = norm[0] if isinstance(norm, list) and len(norm) == 1 and isinstance(norm[0], int) else None
    if not _matrix(proj) or not width or proj[0] not in (4 * width, 16 * width) or \
            shapes.get(f"{_XLABS_PROJ}proj.bias") != [proj[0]]:
        raise ModelError(f"{shown} is not a Flux IP-Adapter this version loads: its ip_adapter_proj_model is of "
                         "no known kind (a linear projection into 4 or 16 tokens and a norm, as XLabs' has)")
    blocks = []
    while any(name.startswith(f"double_blocks.{len(blocks)}.") for name in shapes):
        k = len(blocks)
        key, value = (shapes.get(f"{_XLABS_BLOCK.format(k, part)}.weight") for part in ("k", "v"))
        biases = [shapes.get(f"{_XLABS_BLOCK.format(k, part)}.bias") for part in ("k", "v")]
        if not _matrix(key) or key != value or key[1] != width or biases != [[key[0]]] * 2:
            raise ModelError(f"{shown} is not a Flux IP-Adapter this version loads: double block {k} has no key "
                             f"and value projections from the {width}-wide image tokens")
        blocks.append(key[0])
    if not blocks:
        raise ModelError(f"{shown} is not a Flux IP-Adapter: it has ip_adapter_proj_model.* but no "
                         "double_blocks.N.processor.ip_adapter_double_stream_k_proj/v_proj weights")
    encoder = find_encoder(weights, "plain", proj[1])
    return AdapterInfo(weights, encoder, FLUX_FAMILY, width, "plain", proj[1], len(blocks), frozenset(blocks),
                       tokens=proj[0] // width)


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


def check_pairing(adapter: AdapterInfo, model_family: str, config: dict | None, model_label: str) -> None:
    """ModelError (one line) when ``adapter`` cannot run on the model of ``model_family`` whose UNet (or Flux
    transformer) config is ``config`` (None: a single file, compared by family): a family that takes no image
    prompt here, an adapter for another family, or one of another width (or, on Flux.1, of another inner width or
    number of double blocks)."""
    family = _SAME_FAMILY.get(model_family, model_family)
    label = printable(model_label, 120)
    unet = config is not None and "cross_attention_dim" in config
    if family not in families.SD_FAMILIES and family != FLUX_FAMILY and not unet:
        raise ModelError(f"image prompts (IP-Adapter) run on {RUN_ON} models here; the model {label} is "
                         f"{family_name(family)}")
    if adapter.family == FLUX_FAMILY or family == FLUX_FAMILY:
        fits = adapter.family == family
    elif unet:
        width, channels = config.get("cross_attention_dim"), config.get("block_out_channels") or ()
        fits = width == adapter.width and adapter.hidden_sizes <= set(channels)
    else:
        fits = adapter.family == family
    if not fits:
        raise ModelError(f"IP-Adapter {printable(adapter.name, 120)} is for {family_name(adapter.family)} "
                         f"({adapter.width} wide); the model {label} is {family_name(family)}: use an IP-Adapter "
                         "made for its family")
    if family == FLUX_FAMILY and config is not None:
        _check_flux_widths(adapter, config, label)


def _check_flux_widths(adapter: AdapterInfo, config: dict, label: str) -> None:
    """A Flux.1 adapter against the transformer's config: its T5 width, inner width and double blocks."""
    heads, head = config.get("num_attention_heads"), config.get("attention_head_dim")
    inner = heads * head if isinstance(heads, int) and isinstance(head, int) else None
    wanted = {"T5 width": (adapter.width, config.get("joint_attention_dim")),
              "inner width": (sorted(adapter.hidden_sizes)[0] if len(adapter.hidden_sizes) == 1 else None, inner),
              "double blocks": (adapter.layers, config.get("num_layers"))}
    differ = [f"{what} {ours} (the model's {theirs})" for what, (ours, theirs) in wanted.items()
              if theirs is not None and ours != theirs]
    if differ:
        raise ModelError(f"IP-Adapter {printable(adapter.name, 120)} is for another size of Flux.1 than the model "
                         f"{label}: {', '.join(differ)}")


def check_image_prompt(adapter: str, model_path: str, model_label: str) -> AdapterInfo:
    """The request's IP-Adapter read and checked against the model at ``model_path``, before torch or any
    weights load (the command line calls this; the engine checks the loaded UNet or transformer again)."""
    from desktop_app.models.controlnet_folder import model_denoiser

    family, denoiser = model_denoiser(model_path)
    info = read_adapter(adapter)
    check_pairing(info, family, denoiser, model_label)
    return info
