"""Which family a LoRA was made for, read from its safetensors header (key names and shapes; the checks read no
tensor), and whether it fits the loaded model. Run before diffusers loads the file, so that an SD LoRA on a Flux.1
model (or the reverse) is refused in one line naming both families, and a LoRA for a wider transformer never
reaches Flux's loader (which widens the model's own layers to the LoRA's shapes, for Flux Control LoRAs, and
leaves them so).

Key layouts known here: diffusers/peft (``transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight``),
kohya (``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight``), ComfyUI and BFL's
(``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight``), SD3's makers' (``joint_blocks.0.x_block...``),
and the SD UNet layouts. diffusers' own loaders convert them; this module only reads the names.

Sana's, Z-Image's, Qwen-Image's and FLUX.2's LoRAs are known by the layers only each has (Sana: ``attn1``/``attn2``
and its convolutional feed-forward; Z-Image: ``layers.N.attention`` and its refiners; Qwen-Image: ``img_mod``,
``img_mlp``; FLUX.2: ``to_qkv_mlp_proj``, its single blocks' ``attn.to_out``, ``ff.linear_in``). Where names are
shared, the families that have them all take the LoRA and the widths decide: diffusers' joint attention
(``transformer_blocks.N.attn.add_q_proj``: Flux.1, SD3, Qwen-Image, FLUX.2 alike; 3072 wide in Flux.1, Qwen-Image
and FLUX.2 [klein] 4B), and BFL's ``double_blocks``/``single_blocks`` (Flux.1 and FLUX.2, told apart by their MLP
widths where the LoRA has MLP layers). Sana's attention names are PixArt-Sigma's too (PixArt takes no LoRAs).
"""

from __future__ import annotations

import re
from pathlib import Path

from desktop_app.errors import ModelError

# LoRA families this module tells apart beyond models.model_files' answer, by the layer names only each has (in
# this order: Flux.1's makers' layout has ".img_mod." and ".img_mlp." too, as Qwen-Image's blocks; FLUX.2's
# single blocks' attention has a "to_out", Flux.1's none; Sana's feed-forward is a convolution, in either layout)
_MARKS = (("flux2", ("to_qkv_mlp_proj", "double_stream_modulation", "single_stream_modulation",
                     re.compile(r"ff(?:_context)?[._]linear_(?:in|out)[._]"),
                     re.compile(r"single_transformer_blocks[._]\d+[._]attn[._]to_out"))),
          ("flux", ("double_blocks", "single_blocks", "single_transformer_blocks")),
          ("sd3", ("joint_blocks", "context_block", "x_block")),
          ("qwen-image", (".img_mod.", ".txt_mod.", ".img_mlp.", ".txt_mlp.")),
          ("z-image", ("noise_refiner", "context_refiner", ".attention.to_", "_attention_to_")),
          ("sana", ("conv_inverted", "conv_depth", "conv_point", "inverted_conv", "depth_conv", "point_conv")))
# diffusers' names of Sana's (and PixArt-Sigma's) self- and cross-attention: an SD UNet has them too, under its
# down/mid/up blocks, which lora_family looks for first
# the families whose transformers have the joint attention's diffusers names (transformer_blocks.N.attn.add_q_proj)
_JOINT = ("flux", "chroma", "sd3", "qwen-image", "flux2-klein", "flux2")
_SANA_ATTENTION = re.compile(r"(?:^|[._])transformer_blocks[._]\d+[._]attn[12][._]")
_UNET_MARKS = ("down_blocks", "up_blocks", "mid_block", "input_blocks", "output_blocks", "middle_block")
SD_FAMILIES = ("sd1", "sd2", "sd2-v", "sdxl", "sdxl-refiner", "embedded", "sd")
_OWN_NAMES = {"sd": "Stable Diffusion (a UNet)", "sd2-v": "SD 2.x", "unknown": "an unknown family",
              "flux2": "FLUX.2", "transformer": "a diffusion transformer (SD3 or Flux.1 layer names)"}
# the model's family -> the LoRA families it takes (Chroma is Flux.1 [schnell]'s blocks: Flux LoRAs apply)
TAKES = {"flux": ("flux",), "chroma": ("flux",), "sd3": ("sd3",), "sana-sprint": ("sana",),
         "flux2-klein": ("flux2",), "flux2": ("flux2",)}
# a makers'-layout (BFL, kohya) Flux LoRA's MLP widths over the hidden width: Flux.1's MLP is 4 wide, FLUX.2's a
# 3-wide SwiGLU (its up-projection 6): the single blocks' linear1 gives 3 + 4 = 7 or 3 + 6 = 9, linear2 reads
# 1 + 4 = 5 or 1 + 3 = 4; the double blocks' img_mlp.0 gives 4 or 6 and img_mlp.2 reads 4 or 3
_GENERATION = ((re.compile(r"single_blocks[._]\d+[._]linear1\.lora_(?:up|B)\.weight$"), 0,
                {7: "flux", 9: "flux2"}),
               (re.compile(r"single_blocks[._]\d+[._]linear2\.lora_(?:down|A)\.weight$"), 1,
                {5: "flux", 4: "flux2"}),
               (re.compile(r"(?:img|txt)_mlp[._]0\.lora_(?:up|B)\.weight$"), 0, {4: "flux", 6: "flux2"}),
               (re.compile(r"(?:img|txt)_mlp[._]2\.lora_(?:down|A)\.weight$"), 1, {4: "flux", 3: "flux2"}))
_MAKERS_HIDDEN = re.compile(r"(?:img_attn[._]qkv|txt_attn[._]qkv|single_blocks[._]\d+[._]linear1)\.lora_(?:down|A)"
                            r"\.weight$")
# a LoRA's down-projection into the transformer's hidden width, in the makers' layouts (kohya, ComfyUI, SD3)
_HIDDEN_DOWN = re.compile(r"(?:img_attn[._]qkv|txt_attn[._]qkv|single_blocks[._]\d+[._]linear1|"
                          r"x_block[._]attn[._]qkv|context_block[._]attn[._]qkv)\.lora_(?:down|A)\.weight$")
_DIFFUSERS_KEY = re.compile(r"^(?:transformer\.)?(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


_FAMILIES = tuple(family for family, _ in _MARKS)


def family_name(key: str) -> str:
    from desktop_app.models.model_files import FAMILY_NAMES

    return _OWN_NAMES.get(key) or FAMILY_NAMES.get(key, key)


def read_header(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, from the safetensors header alone (in name order, as safetensors lists them),
    read once while the file is unchanged (models/header_cache.py)."""
    from desktop_app.models.model_files import read_header as read_entries

    header = read_entries(path)
    return {key: list(header[key]["shape"]) for key in sorted(header)}


def lora_family(shapes: dict[str, list[int]], given: str = "unknown") -> str:
    """The family the LoRA's key names say: "flux", "sd3" (or another of _MARKS), an SD family (``given`` when
    models.model_files named one from the cross-attention width, else "sd"), "transformer" (diffusers'
    ``transformer_blocks`` names, which Flux.1 and SD3 share, at a width neither publishes alone: the model's
    shapes decide), or ``given``."""
    keys = list(shapes)
    joined = " ".join(keys)
    marked = _marked(joined)
    if marked:
        return _flux_generation(shapes) or "flux" if marked == "flux" else marked
    if given in SD_FAMILIES:
        return given
    if any(mark in joined for mark in _UNET_MARKS) or any(k.startswith("unet.") for k in keys):
        return "sd"
    if _SANA_ATTENTION.search(joined):
        return "sana"
    if any(k.startswith("transformer.") or "transformer_blocks." in k for k in keys):
        return _published_family(shapes)
    return "unknown" if given in _FAMILIES else given


def _marked(joined: str) -> str | None:
    for family, marks in _MARKS:
        if any(mark.search(joined) if isinstance(mark, re.Pattern) else mark in joined for mark in marks):
            return family
    return None


def _flux_generation(shapes: dict[str, list[int]]) -> str | None:
    """"flux" or "flux2" for a LoRA in Flux's makers' layout (the same names in both) when its MLP widths, or its
    hidden width, are one generation's alone; None when they do not say (attention layers alone, at 3072 wide:
    Flux.1's and FLUX.2 [klein] 4B's width, or at a width of no published model)."""
    from desktop_app.models.families import FAMILIES

    hidden = next((shape[1] for key, shape in shapes.items() if _MAKERS_HIDDEN.search(key) and len(shape) == 2), 0)
    if not hidden:
        return None
    for pattern, dim, ratios in _GENERATION:
        for key, shape in shapes.items():
            times, rest = divmod(shape[dim], hidden) if pattern.search(key) and len(shape) == 2 else (0, 1)
            if not rest and times in ratios:
                return ratios[times]
    widths = {key: {v.width for v in FAMILIES[key].variants} for key in ("flux", "flux2-klein", "flux2")}
    return "flux2" if hidden in (widths["flux2-klein"] | widths["flux2"]) - widths["flux"] else None


def _could_be(shapes: dict[str, list[int]], lora: str) -> set[str]:
    """The families a LoRA may be for beside ``lora`` when its names are shared: Flux's makers' layout (Flux.1 and
    FLUX.2) where the widths do not tell, and the joint attention's diffusers names (Flux.1, SD3, Qwen-Image,
    FLUX.2: transformer_blocks.N.attn.to_q, .add_q_proj ...) at a width published models of several have."""
    from desktop_app.models.lora_width import joint_attention_families

    joined = " ".join(shapes)
    marked = _marked(joined)
    if marked == "flux":  # the makers' layout (diffusers' names of Flux.1's single blocks are its alone)
        makers = any(_MAKERS_HIDDEN.search(key) for key in shapes)
        return {lora, "flux2"} if makers and _flux_generation(shapes) is None else {lora}
    if marked is None and lora in ("flux", "sd3"):
        return {lora} | joint_attention_families(shapes)
    return {lora}


def _published_family(shapes: dict[str, list[int]]) -> str:
    """"flux" or "sd3" when the joint attention's width is one that only that family's published models have
    (3072: Flux.1; 1536, 2432: SD3 Medium, SD3.5 Large: models/lora_width.py, which the library uses too), else
    "transformer"."""
    from desktop_app.models.lora_width import joint_attention_family

    found = joint_attention_family(shapes)
    return "transformer" if found == "unknown" else found


def check_family(name: str, path: Path, given: str, model) -> str:
    """ModelError, in one line naming both families, when the LoRA at ``path`` was made for another family than
    ``model``'s; for a transformer model, also when its layers are of another width. Returns the LoRA's family."""
    shapes = read_header(path)
    lora = lora_family(shapes, given)
    transformer = getattr(model.pipe, "transformer", None)
    if transformer is None:  # a UNet model: the SD width check (lora.check_fits) follows
        if lora in _FAMILIES or lora == "transformer":
            raise _family_error(name, lora, model)
        return lora
    takes = {*TAKES.get(model.family, (model.family,)), model.family}
    if lora in SD_FAMILIES or (lora in _FAMILIES and not takes & _could_be(shapes, lora)) or (
            lora == "transformer" and model.family not in _JOINT):
        raise _family_error(name, lora, model)
    _check_widths(name, shapes, transformer, model)
    return lora


def _family_error(name: str, lora: str, model) -> ModelError:
    from desktop_app.models.model_files import FAMILY_NAMES

    known = FAMILY_NAMES.get(model.family)
    unet = getattr(model.pipe, "unet", None) is not None
    model_name = known or ("a Stable Diffusion UNet of its own size" if unet else f"of the family {model.family}")
    return ModelError(f"LoRA {name} is for {family_name(lora)}; the model {model.display_name} is {model_name}: "
                      f"choose a LoRA made for {known or 'that model'}")


def _check_widths(name: str, shapes: dict[str, list[int]], transformer, model) -> None:
    """Each LoRA layer the model has must take and give the widths of the model's layer (diffusers' layout); in
    the makers' layouts, the attention's input must be the transformer's hidden width."""
    import torch

    modules = dict(transformer.named_modules())
    for key, shape in shapes.items():
        found = _DIFFUSERS_KEY.match(key)
        module = modules.get(found["module"]) if found else None
        module = getattr(module, "base_layer", module)  # a layer that holds another LoRA of this set already
        if not isinstance(module, torch.nn.Linear) or len(shape) != 2:
            continue
        width, wanted = (shape[1], module.in_features) if found["part"] == "A" else (shape[0], module.out_features)
        if width != wanted:
            raise _width_error(name, model, found["module"], width, wanted)
    config = getattr(transformer, "config", None)
    hidden = getattr(config, "num_attention_heads", 0) * getattr(config, "attention_head_dim", 0)
    for key, shape in shapes.items():
        if hidden and _HIDDEN_DOWN.search(key) and len(shape) == 2 and shape[1] != hidden:
            raise _width_error(name, model, key.rsplit(".lora_", 1)[0], shape[1], hidden)


def _width_error(name: str, model, layer: str, width: int, wanted: int) -> ModelError:
    return ModelError(f"LoRA {name} was made for a model of another size: its layer {layer} is {width} wide, the "
                      f"model {model.display_name} ({family_name(model.family)}) has {wanted}")


# a Flux LoRA's CLIP text-encoder part, in diffusers', kohya's and ComfyUI's layouts
_CLIP_PART = ("text_encoder.", "lora_te_", "lora_te1_", "text_encoders.clip_l.")


def flux_state(pipe, path: Path) -> tuple[dict | None, str]:
    """What Flux's LoRA loader (FluxPipeline, ChromaPipeline) should get instead of the file, and a note for the
    user: None (the loader reads the file itself, with diffusers' own metadata) unless
    - the LoRA is in ComfyUI's/BFL's layout with peft's part names (``diffusion_model.double_blocks.0.img_attn.qkv
      .lora_A.weight``), which diffusers 0.42 passes through unconverted: renamed to kohya's ``lora_down``/
      ``lora_up``, which it converts (no alpha: scale 1, as peft's names mean);
    - it has a CLIP text-encoder part and the pipeline has no CLIP (Chroma: T5 alone), where diffusers' loader
      fails: that part is left out, and the note says so."""
    from diffusers.loaders import FluxLoraLoaderMixin

    if not isinstance(pipe, FluxLoraLoaderMixin):
        return None, ""
    keys = read_header(path)
    rename = any(k.startswith("diffusion_model.") and ".lora_A." in k for k in keys) and not any(
        ".lora_down." in k for k in keys)
    encoder = getattr(pipe, "text_encoder", None)
    drop = "CLIP" not in type(encoder).__name__ and any(k.startswith(_CLIP_PART) for k in keys)
    if not rename and not drop:
        return None, ""
    from safetensors.torch import load_file

    state = {key: value for key, value in load_file(str(path)).items()
             if not (drop and key.startswith(_CLIP_PART))}
    if rename:
        state = {key.replace(".lora_A.", ".lora_down.").replace(".lora_B.", ".lora_up."): value
                 for key, value in state.items()}
    return state, ("its CLIP text-encoder layers left out: the model has no CLIP text encoder" if drop else "")
