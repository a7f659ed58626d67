"""Image prompts (issue 17): an IP-Adapter lets an image steer the picture beside the text, on Stable Diffusion
1.x and SDXL UNets, and on Flux.1's transformer (XLabs' adapters: image_prompt_flux.py builds their modules, which
are installed and taken off as the UNet's are; the image's CLIP embedding goes to the pipelines as
``ip_adapter_image_embeds``, with a black image's as ``negative_ip_adapter_image_embeds`` so that the pipeline
never encodes one itself. Flux.1 is guidance-distilled and the studio runs no true-CFG pass: the adapter steers
the one pass each step takes).

The adapter's weights become, as in diffusers' ``load_ip_adapter``, an image projection (the UNet's
``encoder_hid_proj``) and an IPAdapterAttnProcessor2_0 per cross-attention layer holding its key and value
projections; they are built here from the weights file, checked against the loaded UNet (its cross-attention
width and layers: an adapter for another family is refused in one line before its weights load), and installed
on the UNet, which every pipeline made from the loaded one shares (image to image, inpainting, ControlNet, the
hires pass). Its image encoder (CLIPVisionModelWithProjection) is kept here, not in the pipeline: the image is
encoded once per run, as diffusers' ``encode_image`` does (the projected embedding, or the last-but-one hidden
states for a "plus" adapter; a zero embedding, or the hidden states of a black image, for the unconditional half
of classifier-free guidance), and given to the pipelines as ``ip_adapter_image_embeds``. The weight is diffusers'
``set_ip_adapter_scale``; at 0 the processors skip the image and the picture is the plain one.

The adapter and its encoder stay loaded for the UNet (until the model is unloaded, or a request names another);
a request without an image prompt gives the UNet its own processors back. The processors are installed again
before each denoise call, as attention slicing (an out-of-memory fallback, and on MPS) replaces them.
"""

from __future__ import annotations

import hashlib
import io
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from desktop_app.engine import image_prompt_flux
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import ModelError, RequestError, one_line, printable
from desktop_app.models import ip_adapter_files
from desktop_app.models.model_hash import model_hash

# the diffusers text-to-image pipelines whose UNet takes an IP-Adapter here (and their image jobs' pipelines)
PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
             "StableDiffusionXLPipeline")
_held: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # UNet -> Adapter loaded for it


@dataclass
class Adapter:
    """One IP-Adapter built for one UNet (or Flux transformer): its processors by attention name, its image
    projection, the processors they replace, its image encoder, and the files' identity."""

    key: tuple
    info: ip_adapter_files.AdapterInfo
    processors: dict  # cross-attention processor name -> IPAdapterAttnProcessor2_0
    projection: object  # diffusers' MultiIPAdapterImageProjection
    encoder: object  # transformers' CLIPVisionModelWithProjection
    image_size: int
    replaced: dict = field(default_factory=dict)  # the processors the adapter's took the place of
    hid_type: str | None = None  # the UNet's encoder_hid_dim_type before the adapter's

    def install(self, unet) -> None:
        """The adapter's processors and projection on ``unet`` (again, when attention slicing replaced them)."""
        current = unet.attn_processors
        installed = getattr(unet, "encoder_hid_proj", None) is self.projection
        if installed and all(current[name] is proc for name, proc in self.processors.items()):
            return
        self.replaced.update({name: current[name] for name in self.processors
                              if current[name] is not self.processors[name]})
        unet.set_attn_processor({**current, **self.processors})
        typed = "encoder_hid_dim_type" in unet.config  # a UNet's; Flux's transformer has none
        if not installed and typed:
            self.hid_type = unet.config.encoder_hid_dim_type
        unet.encoder_hid_proj = self.projection
        if typed:
            unet.config.encoder_hid_dim_type = "ip_image_proj"  # as diffusers' _load_ip_adapter_weights sets it

    def remove(self, unet) -> None:
        """``unet`` as it was: its own processors (those the adapter's replaced), no image projection."""
        current = unet.attn_processors
        if any(current[name] is proc for name, proc in self.processors.items()):
            restored = {name: (self.replaced.get(name, proc) if current[name] is proc else current[name])
                        for name, proc in current.items()}
            unet.set_attn_processor(restored)
        if getattr(unet, "encoder_hid_proj", None) is self.projection:
            unet.encoder_hid_proj = None
            if "encoder_hid_dim_type" in unet.config:
                unet.config.encoder_hid_dim_type = self.hid_type

    def set_weight(self, weight: float) -> None:
        for proc in self.processors.values():
            proc.scale = [float(weight)] * len(proc.scale)


@dataclass
class ImagePromptJob:
    """One run's image prompt: the adapter (installed on the UNet) and the image's embeddings for the call."""

    adapter: Adapter
    unet: object
    embeds: object  # the tensor diffusers takes in ``ip_adapter_image_embeds`` (unconditional half first)
    record: dict  # the recipe's: name, hash, encoder, image_sha256, weight
    negative: object = None  # Flux.1's ``negative_ip_adapter_image_embeds`` (a black image's); None on a UNet

    def describe(self) -> str:
        """The denoise stage's addition, e.g. "image prompt ip-adapter_sd15 (weight 0.6)"."""
        return f"image prompt {self.record['name']} (weight {self.record['weight']:g})"

    def arguments(self) -> dict:
        """What every call of the base model's pipelines takes (with the text embeddings)."""
        if self.negative is not None:
            return {"ip_adapter_image_embeds": [self.embeds], "negative_ip_adapter_image_embeds": [self.negative]}
        return {"ip_adapter_image_embeds": [self.embeds]}

    def install(self) -> None:
        self.adapter.install(self.unet)


def make_image_prompt(request: GenerationRequest, model, emit_load=None) -> ImagePromptJob | None:
    """The image prompt of ``request`` on the loaded ``model`` (engine/loader.LoadedModel), or None when it has
    none (then a UNet left with an adapter by an earlier run gets its own processors back). ``emit_load(detail)``
    tells which adapter loads. RequestError for a model whose pipeline takes none; ModelError for an adapter
    that is not one, or is for another family."""
    pipe = model.pipe
    flux = type(pipe).__name__ in image_prompt_flux.PIPELINES
    unet = getattr(pipe, "transformer" if flux else "unet", None)  # the denoiser the adapter goes on
    held = _held.get(unet) if unet is not None else None
    if not request.image_prompt:
        if held is not None:
            held.remove(unet)
        return None
    if unet is None or not (flux or type(pipe).__name__ in PIPELINES):
        family = ip_adapter_files.family_name(model.family)
        kind = f"{family} ({type(pipe).__name__})" if model.family == ip_adapter_files.FLUX_FAMILY else family
        raise RequestError("image_prompt", f"image prompts (IP-Adapter) run on {ip_adapter_files.RUN_ON} "
                                           f"models here; the model {model.display_name} is {kind}")
    info = ip_adapter_files.read_adapter(request.ip_adapter)
    family = ip_adapter_files.FLUX_FAMILY if flux else model.family
    ip_adapter_files.check_pairing(info, family, dict(unet.config), model.display_name)
    adapter = _adapter(info, unet, model, emit_load)
    adapter.set_weight(request.image_prompt_weight)
    adapter.install(unet)
    image, sha256 = read_image(request.image_prompt)
    negative = None
    if flux:
        embeds, negative = image_prompt_flux.embeds(adapter.encoder, _processor(adapter.image_size), image,
                                                    adapter.image_size, model)
    else:
        guided = request.guidance_scale > 1 and unet.config.get("time_cond_proj_dim") is None  # as pipelines say
        embeds = encode(adapter, image, guided, model)
    record = {"name": info.name, "hash": model_hash(info.weights) or None, "encoder": info.encoder.name
              if info.encoder.parent == info.weights.parent else f"{info.encoder.parent.name}/{info.encoder.name}",
              "image_sha256": sha256, "weight": request.image_prompt_weight}
    return ImagePromptJob(adapter, unet, embeds, record, negative)


def read_image(path: str):
    """The RGB image at ``path`` (turned as its EXIF orientation says; transparent parts on white) and the file's
    sha256. RequestError naming "image_prompt" when it cannot be read."""
    from PIL import Image, ImageOps

    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError("image_prompt", f"{printable(path)} cannot be read as an image "
                                           f"({one_line(exc, 120)})") from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return image.convert("RGB"), hashlib.sha256(data).hexdigest()


def encode(adapter: Adapter, image, guided: bool, model):
    """``image``'s embedding for the adapter, as diffusers' ``encode_image`` and
    ``prepare_ip_adapter_image_embeds`` make it: (1 or 2 with guidance, 1 image, ...) on the model's device."""
    import torch

    encoder = adapter.encoder
    size = adapter.image_size
    pixels = _processor(size)(image, return_tensors="pt").pixel_values
    where = _encoder_device(encoder)
    if where != model.device and where.type == "cpu" and model.device.type != "cpu":
        encoder.to(model.device)  # an offloaded model: the encoder comes for the encode, and goes back after
    pixels = pixels.to(device=model.device, dtype=next(encoder.parameters()).dtype)
    try:
        with torch.inference_mode():
            if adapter.info.hidden_states:
                positive = encoder(pixels, output_hidden_states=True).hidden_states[-2]
                negative = encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
            else:
                positive = encoder(pixels).image_embeds
                negative = torch.zeros_like(positive)
    finally:
        if where != _encoder_device(encoder):
            encoder.to(where)
    positive, negative = positive[None].to(model.dtype), negative[None].to(model.dtype)
    return torch.cat([negative, positive]) if guided else positive


def _processor(size: int):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size=size, crop_size=size)


def _adapter(info, unet, model, emit_load) -> Adapter:
    """The adapter built for ``unet`` (the one held when the files are the same)."""
    stat = info.weights.stat()
    key = (str(info.weights.resolve()), stat.st_size, stat.st_mtime_ns, str(info.encoder.resolve()),
           str(model.device), str(model.dtype))
    held = _held.get(unet)
    if held is not None:
        if held.key == key:
            return held
        held.remove(unet)  # another adapter: the old one goes first
        del _held[unet]
    if emit_load is not None:
        emit_load(f"IP-Adapter {info.name} ({ip_adapter_files.family_name(info.family)}), image encoder "
                  f"{info.encoder.name}")
    adapter = build_flux(info, unet, model) if info.family == ip_adapter_files.FLUX_FAMILY else \
        build(info, unet, model)
    adapter.key = key
    _held[unet] = adapter
    return adapter


def build(info, unet, model) -> Adapter:
    """The adapter's processors and projection from its weights file, checked against ``unet``, on the UNet's
    device (the model's, when the UNet is offloaded layer by layer) and dtype; its image encoder loaded."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import MultiIPAdapterImageProjection
    from safetensors.torch import load_file

    state = load_file(str(info.weights))
    names = [name for name in unet.attn_processors if not name.endswith("attn1.processor")
             and "motion_modules" not in name and not name.startswith("encoder_hid_proj.")]
    shown = printable(info.name, 120)
    if len(names) != info.layers:
        raise ModelError(f"IP-Adapter {shown} has {info.layers} cross-attention layers; the model "
                         f"{printable(model.display_name, 120)} has {len(names)}: use an IP-Adapter made for it")
    device, dtype = _module_device(unet, model), model.dtype
    processors = {}
    for k, name in enumerate(names):
        attn = unet.get_submodule(name.removesuffix(".processor"))
        key, value = (state[f"ip_adapter.{1 + 2 * k}.to_{part}_ip.weight"] for part in ("k", "v"))
        wanted = (attn.to_k.out_features, attn.to_k.in_features)
        if tuple(key.shape) != wanted or tuple(value.shape) != (attn.to_v.out_features, attn.to_v.in_features):
            raise ModelError(f"IP-Adapter {shown} does not fit the model {printable(model.display_name, 120)}: "
                             f"its layer {k + 1} is {tuple(key.shape)}, the UNet's {wanted}")
        proc = IPAdapterAttnProcessor2_0(hidden_size=wanted[0], cross_attention_dim=wanted[1], scale=1.0,
                                         num_tokens=[_tokens(info, state)])
        proc.load_state_dict({"to_k_ip.0.weight": key, "to_v_ip.0.weight": value})
        processors[name] = proc.to(device=device, dtype=dtype)
    projection_state = {name.removeprefix("image_proj."): tensor for name, tensor in state.items()
                        if name.startswith("image_proj.")}
    try:
        projection = unet._convert_ip_adapter_image_proj_to_diffusers(projection_state, low_cpu_mem_usage=False)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ModelError(f"IP-Adapter {shown} is damaged or of a kind this version does not load "
                         f"({one_line(exc, 160)})") from None
    projection = MultiIPAdapterImageProjection([projection]).to(device=device, dtype=dtype)
    del state
    encoder = _load_encoder(info, model, device)
    return Adapter((), info, processors, projection, encoder, int(encoder.config.image_size))


def build_flux(info, transformer, model) -> Adapter:
    """A Flux.1 adapter's processors and projection (image_prompt_flux.py), checked against ``transformer``, and
    its image encoder loaded."""
    device = _module_device(transformer, model)
    processors, projection = image_prompt_flux.build(info, transformer, model, device, model.dtype)
    encoder = _load_encoder(info, model, device)
    return Adapter((), info, processors, projection, encoder, int(encoder.config.image_size))


def _load_encoder(info, model, device):
    """The adapter's CLIPVisionModelWithProjection, in the model's dtype: on the model's device, or on the CPU
    between runs when the denoiser waits there (``device`` is not the model's)."""
    import torch
    from transformers import CLIPVisionModelWithProjection

    from desktop_app.engine.loader import _quiet_loading

    try:
        with _quiet_loading():  # no progress bar: the "load" stage says what loads
            encoder = CLIPVisionModelWithProjection.from_pretrained(
                str(info.encoder), local_files_only=True, use_safetensors=True, dtype=model.dtype)
    except (OSError, ValueError) as exc:
        raise ModelError(f"the image encoder {printable(info.encoder, 160)} cannot be loaded "
                         f"({one_line(exc, 160)})") from None
    offloaded = device != model.device  # the UNet waits on the CPU: so does the encoder, between runs
    return encoder.to(torch.device("cpu") if offloaded else model.device).eval()


def _tokens(info, state) -> int:
    if info.kind == "plain":
        return 4
    if info.kind == "full":
        return 257  # 256 CLIP tokens and the class token, as diffusers counts them
    return int(state["image_proj.latents"].shape[1])


def _encoder_device(encoder):
    return next(encoder.parameters()).device


def _module_device(unet, model):
    """Where the adapter's modules live: with the UNet's weights, unless the UNet is offloaded layer by layer
    (group, sequential offload: its hooks would not move modules added later), then on the model's device."""
    from desktop_app.engine import memory
    from desktop_app.engine.memory_plan import MODEL_OFFLOAD

    plan = memory.plan_of(model.pipe) or ""
    if memory.offloaded(model.pipe) and not plan.startswith(MODEL_OFFLOAD):
        return model.device
    return next(unet.parameters()).device
