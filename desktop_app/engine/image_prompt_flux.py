"""A Flux.1 IP-Adapter's modules (issue 17), built as diffusers' FluxIPAdapterMixin.load_ip_adapter and
FluxTransformer2DLoadersMixin._load_ip_adapter_weights build them from XLabs' layout (models/ip_adapter_files.py):
a FluxIPAdapterAttnProcessor (its key and value projections of the image tokens, with biases) for each double
block's attention, the single blocks keeping their own, and an ImageProjection (the CLIP image embedding into 4
or 16 tokens of the T5 width) that becomes the transformer's ``encoder_hid_proj``. Each is checked against the
loaded transformer first (its blocks, inner and T5 widths), so a damaged or mismatched adapter is one line.

The pipelines (text to image, image to image, inpainting, ControlNet) take the image's embedding as
``ip_adapter_image_embeds``; the transformer's forward projects it and the double blocks add ``weight`` times
their attention over the image tokens to the picture's stream: at weight 0 that is exactly nothing."""

from __future__ import annotations

import re

from desktop_app.errors import ModelError, one_line, printable

PIPELINES = ("FluxPipeline",)  # the base pipeline; its image jobs' and ControlNet pipelines share its transformer
_BLOCK = re.compile(r"transformer_blocks\.(\d+)\.attn\.processor")
_PREFIX = "double_blocks.{}.processor.ip_adapter_double_stream_{}_proj.{}"


def build(info, transformer, model, device, dtype) -> tuple[dict, object]:
    """(processors by attention name, the MultiIPAdapterImageProjection) of the adapter ``info`` for
    ``transformer`` (a FluxTransformer2DModel), on ``device`` in ``dtype``."""
    from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection
    from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor
    from safetensors.torch import load_file

    shown, label = printable(info.name, 120), printable(model.display_name, 120)
    blocks = {name: int(found.group(1)) for name in transformer.attn_processors
              if (found := _BLOCK.fullmatch(name))}
    if len(blocks) != info.layers:
        raise ModelError(f"IP-Adapter {shown} has {info.layers} double blocks; the model {label} has "
                         f"{len(blocks)}: use an IP-Adapter made for its size of Flux.1")
    state = load_file(str(info.weights))
    config = transformer.config
    inner = config.num_attention_heads * config.attention_head_dim
    wanted = (inner, config.joint_attention_dim)
    processors = {}
    for name, k in blocks.items():
        weights = {f"to_{part}_ip.0.{kind}": state.get(_PREFIX.format(k, part, kind))
                   for part in ("k", "v") for kind in ("weight", "bias")}
        shapes = {key: tuple(tensor.shape) for key, tensor in weights.items() if tensor is not None}
        if len(shapes) != 4 or shapes["to_k_ip.0.weight"] != wanted or shapes["to_v_ip.0.weight"] != wanted:
            raise ModelError(f"IP-Adapter {shown} does not fit the model {label}: its double block {k} is "
                             f"{shapes.get('to_k_ip.0.weight')}, the transformer's {wanted}")
        proc = FluxIPAdapterAttnProcessor(hidden_size=inner, cross_attention_dim=config.joint_attention_dim,
                                          num_tokens=[info.tokens], scale=1.0)
        proc.load_state_dict(weights)
        processors[name] = proc.to(device=device, dtype=dtype)
    try:
        projection = ImageProjection(image_embed_dim=info.image_width, cross_attention_dim=info.width,
                                     num_image_text_embeds=info.tokens)
        projection.load_state_dict({"image_embeds.weight": state["ip_adapter_proj_model.proj.weight"],
                                    "image_embeds.bias": state["ip_adapter_proj_model.proj.bias"],
                                    "norm.weight": state["ip_adapter_proj_model.norm.weight"],
                                    "norm.bias": state["ip_adapter_proj_model.norm.bias"]})
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ModelError(f"IP-Adapter {shown} is damaged or of a kind this version does not load "
                         f"({one_line(exc, 160)})") from None
    del state
    return processors, MultiIPAdapterImageProjection([projection]).to(device=device, dtype=dtype)


def embeds(encoder, processor, image, size, model):
    """(the image's, a black image's) CLIP image embeddings, each (1, 1, width) in the model's dtype on its device:
    what the pipelines take as ``ip_adapter_image_embeds`` and ``negative_ip_adapter_image_embeds`` (the black
    image is diffusers' own negative; it is read only by a true-CFG pass, which the studio does not run)."""
    import torch
    from PIL import Image

    pixels = processor([image, Image.new("RGB", (size, size))], return_tensors="pt").pixel_values
    pixels = pixels.to(device=next(encoder.parameters()).device, dtype=next(encoder.parameters()).dtype)
    with torch.inference_mode():
        found = encoder(pixels).image_embeds
    found = found.to(device=model.device, dtype=model.dtype)
    return found[0:1][None], found[1:2][None]
