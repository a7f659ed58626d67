"""PixArt-Sigma: a noise-predicting (epsilon) DiT sampled by the usual samplers, its prompt read by T5 alone (300
tokens, with the attention mask) through cross-attention. A prompt (or negative prompt) with A1111 weighting
syntax is encoded here (weighted_encoders.py): T5's tokens carry their weights, the text lower-cased and trimmed
as the pipeline prepares it (``clean_caption`` off); a plain prompt goes to the pipeline as text, as it always
did."""

from __future__ import annotations

import torch

from desktop_app.engine.families import weighted_encoders
from desktop_app.engine.families.flow import TransformerFamily
from desktop_app.engine.request import GenerationRequest


class PixArtFamily(TransformerFamily):
    def __init__(self, key: str = "pixart-sigma"):
        super().__init__(key)

    def encode_text(self, pipe, request: GenerationRequest, device: torch.device) -> dict:
        # the pipeline's own guidance test: a negative prompt (empty by default) only where it guides
        prompts = [request.prompt, request.negative_prompt] if request.guidance_scale > 1 else [request.prompt]
        if not _t5_pixart(pipe) or not weighted_encoders.needs_weighting(*prompts):
            return super().encode_text(pipe, request, device)
        return weighted_kwargs(pipe, prompts, device, self.call_options(pipe, request))


def _t5_pixart(pipe) -> bool:
    """A PixArt pipeline with its T5 (tokenizer, text_encoder) and its text preparation."""
    return (hasattr(pipe, "_text_preprocessing") and getattr(pipe, "text_encoder", None) is not None
            and getattr(pipe, "tokenizer", None) is not None)


def weighted_kwargs(pipe, prompts: list[str], device: torch.device, options: dict | None = None) -> dict:
    """``prompt_embeds`` and ``prompt_attention_mask`` of ``prompts[0]`` (and the negative ones of ``prompts[1]``,
    the same length), batch 1, as the pipeline's encode_prompt makes them (the call's ``max_sequence_length``: 300
    unless the family sets another); the pipeline repeats them for each image of a batch."""
    max_length = weighted_encoders.call_default(pipe, "max_sequence_length", options)
    names = (("prompt_embeds", "prompt_attention_mask"),
             ("negative_prompt_embeds", "negative_prompt_attention_mask"))
    kwargs = {}
    with torch.no_grad():
        for prompt, (embeds_name, mask_name) in zip(prompts, names):
            embeds, mask = weighted_encoders.t5_embeds(pipe, pipe.tokenizer, pipe.text_encoder, prompt or "",
                                                       max_length, device, masked=True, lower=True)
            kwargs[embeds_name], kwargs[mask_name] = embeds, mask
    if len(prompts) > 1:
        kwargs["negative_prompt"] = None  # the call's default ("") and given embeddings may not meet
    return kwargs
