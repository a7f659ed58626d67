"""Flux.1 (and Chroma, built on it): CLIP + T5 text encoders, 16 latent channels packed 2x2 into 64-wide tokens
(so sizes are multiples of 16, and a preview unpacks the tokens first), guidance distilled into the model (Flux
takes no negative prompt; Chroma does). A prompt with A1111 weighting syntax is encoded here
(weighted_encoders.py): its T5 tokens carry their weights, CLIP's pooled vector (Flux) is of the plain text; a
plain prompt goes to the pipeline as text, as it always did."""

from __future__ import annotations

import torch

from desktop_app.engine.families import weighted_encoders
from desktop_app.engine.families.flow import FlowFamily
from desktop_app.engine.prompt_weights import plain_text
from desktop_app.engine.request import GenerationRequest

# rows: the 16 latent channels; columns: R, G, B (ComfyUI comfy/latent_formats.py, class Flux)
FLUX_FACTORS = [[-0.0346, 0.0244, 0.0681], [0.0034, 0.0210, 0.0687], [0.0275, -0.0668, -0.0433],
                [-0.0174, 0.0160, 0.0617], [0.0859, 0.0721, 0.0329], [0.0004, 0.0383, 0.0115],
                [0.0405, 0.0861, 0.0915], [-0.0236, -0.0185, -0.0259], [-0.0245, 0.0250, 0.1180],
                [0.1008, 0.0755, -0.0421], [-0.0515, 0.0201, 0.0011], [0.0428, -0.0012, -0.0036],
                [0.0817, 0.0765, 0.0749], [-0.1264, -0.0522, -0.1103], [-0.0280, -0.0881, -0.0499],
                [-0.1262, -0.0982, -0.0778]]
FLUX_BIAS = [-0.0329, -0.0718, -0.0851]


class FluxFamily(FlowFamily):
    linear_preview = (FLUX_FACTORS, FLUX_BIAS)

    def encode_text(self, pipe, request: GenerationRequest, device: torch.device) -> dict:
        prompts = [request.prompt]
        if self.key == "chroma" and request.guidance_scale > 1:
            prompts.append(request.negative_prompt)
        if self.key == "flux" and _clip_and_t5(pipe) and weighted_encoders.needs_weighting(*prompts):
            return weighted_kwargs(pipe, request.prompt, device, self.call_options(pipe, request))
        if self.key == "chroma" and _t5_alone(pipe) and weighted_encoders.needs_weighting(*prompts):
            return chroma_weighted_kwargs(pipe, prompts, device, self.call_options(pipe, request))
        return super().encode_text(pipe, request, device)  # plain prompts; the subclasses' own encoders

    @property
    def repeats_given_embeddings(self) -> bool:
        return self.key != "chroma"

    def call_options(self, pipe, request: GenerationRequest) -> dict:
        # a FLUX.1 Kontext folder (an edit model) draws from text too, but its pipeline rescales the size asked
        # for to its max_area (1024x1024) unless told the size's own area
        if type(pipe).__name__ == "FluxKontextPipeline":
            return {"max_area": request.width * request.height}
        return {}

    def size_multiple(self, pipe) -> int:
        return 2 * int(getattr(pipe, "vae_scale_factor", 8))  # 2x2 latent patches per token

    def preview_latents(self, pipe, x0: torch.Tensor, width: int, height: int) -> torch.Tensor:
        if x0.ndim != 3:  # already (batch, channels, height, width)
            return x0
        return pipe._unpack_latents(x0, height, width, pipe.vae_scale_factor)


def _clip_and_t5(pipe) -> bool:
    """A Flux.1 pipeline: CLIP (its pooled vector) and T5 (tokenizer_2, text_encoder_2)."""
    return hasattr(pipe, "_get_clip_prompt_embeds") and all(
        getattr(pipe, name, None) is not None for name in ("text_encoder", "text_encoder_2", "tokenizer_2"))


def _t5_alone(pipe) -> bool:
    """Chroma's pipeline: T5 alone (tokenizer, text_encoder), with its attention mask."""
    return (hasattr(pipe, "_get_t5_prompt_embeds") and getattr(pipe, "text_encoder", None) is not None
            and getattr(pipe, "tokenizer_2", None) is None)


def weighted_kwargs(pipe, prompt: str, device: torch.device, options: dict | None = None) -> dict:
    """Flux.1's ``prompt_embeds`` (T5, the weights applied, the call's ``max_sequence_length``: 512 unless the
    family sets another) and ``pooled_prompt_embeds`` (CLIP's, of the plain text), batch 1 as encode_prompt
    makes them for one image (the transformer takes them for a batch of images as they are)."""
    max_length = weighted_encoders.call_default(pipe, "max_sequence_length", options)
    embeds, _ = weighted_encoders.t5_embeds(pipe, pipe.tokenizer_2, pipe.text_encoder_2, prompt, max_length,
                                            device)
    with torch.no_grad():
        pooled = pipe._get_clip_prompt_embeds(plain_text(prompt), device=device)
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}


def chroma_weighted_kwargs(pipe, prompts: list[str], device: torch.device, options: dict | None = None) -> dict:
    """Chroma's ``prompt_embeds`` and ``prompt_attention_mask`` of ``prompts[0]`` (and the negative ones of
    ``prompts[1]``): T5 with its attention mask, the weights applied, and the mask the transformer takes (the
    text and one padding token), as the pipeline's encode_prompt makes them."""
    max_length = weighted_encoders.call_default(pipe, "max_sequence_length", options)
    kwargs = {}
    for prefix, prompt in zip(("", "negative_"), prompts):
        embeds, mask = weighted_encoders.t5_embeds(pipe, pipe.tokenizer, pipe.text_encoder, prompt, max_length,
                                                   device, masked=True)
        positions = torch.arange(mask.shape[1], device=device).unsqueeze(0)
        kwargs[f"{prefix}prompt_embeds"] = embeds
        kwargs[f"{prefix}prompt_attention_mask"] = (positions <= mask.sum(dim=1, keepdim=True)).to(embeds.dtype)
    return kwargs
