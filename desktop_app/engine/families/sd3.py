"""Stable Diffusion 3 and 3.5: three text encoders (two CLIPs and T5), 16 latent channels, a negative prompt.
A prompt (or negative prompt) with A1111 weighting syntax is encoded here (weighted_encoders.py): each CLIP in
windows of 75 tokens as the SD family encodes it, T5 with its tokens weighted, the pooled CLIP vectors of the plain
text; a plain prompt goes to the pipeline as text, as it always did."""

from __future__ import annotations

import torch

from desktop_app.engine.families import weighted_encoders
from desktop_app.engine.families.flow import FlowFamily
from desktop_app.engine.prompt_weights import plain_text
from desktop_app.engine.request import GenerationRequest

# rows: the 16 latent channels; columns: R, G, B (ComfyUI comfy/latent_formats.py, class SD3)
SD3_FACTORS = [[-0.0922, -0.0175, 0.0749], [0.0311, 0.0633, 0.0954], [0.1994, 0.0927, 0.0458],
               [0.0856, 0.0339, 0.0902], [0.0587, 0.0272, -0.0496], [-0.0006, 0.1104, 0.0309],
               [0.0978, 0.0306, 0.0427], [-0.0042, 0.1038, 0.1358], [-0.0194, 0.0020, 0.0669],
               [-0.0488, 0.0130, -0.0268], [0.0922, 0.0988, 0.0951], [-0.0278, 0.0524, -0.0542],
               [0.0332, 0.0456, 0.0895], [-0.0069, -0.0030, -0.0810], [-0.0596, -0.0465, -0.0293],
               [-0.1448, -0.1463, -0.1189]]
SD3_BIAS = [0.2394, 0.2135, 0.1925]


class Sd3Family(FlowFamily):
    linear_preview = (SD3_FACTORS, SD3_BIAS)

    def __init__(self):
        super().__init__("sd3", negative_prompt=True)

    def encode_text(self, pipe, request: GenerationRequest, device: torch.device) -> dict:
        prompts = [request.prompt, request.negative_prompt] if request.guidance_scale > 1 else [request.prompt]
        if not hasattr(pipe, "tokenizer_3") or not weighted_encoders.needs_weighting(*prompts):
            return super().encode_text(pipe, request, device)
        return weighted_kwargs(pipe, prompts, device, self.call_options(pipe, request))

    repeats_given_embeddings = False


def weighted_kwargs(pipe, prompts: list[str], device: torch.device, options: dict | None = None) -> dict:
    """``prompt_embeds`` and ``pooled_prompt_embeds`` of ``prompts[0]`` (and the negative ones of ``prompts[1]``)
    laid out as the pipeline's encode_prompt lays them out: the two CLIPs' penultimate states side by side along
    the width (padded to T5's), then T5's along the sequence (the call's ``max_sequence_length``, 256 unless the
    family sets another). The CLIP windows of the shorter prompt are filled up with empty ones (as A1111 does)
    so that both have as many."""
    max_length = weighted_encoders.call_default(pipe, "max_sequence_length", options)
    clips = [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]
    chunked = [[weighted_encoders.clip_chunks(pipe, tokenizer, prompt) for tokenizer, _ in clips]
               for prompt in prompts]
    count = max(len(chunks) for per_prompt in chunked for chunks in per_prompt)
    names = ("prompt_embeds", "pooled_prompt_embeds"), ("negative_prompt_embeds", "negative_pooled_prompt_embeds")
    kwargs = {}
    with torch.no_grad():
        for prompt, per_prompt, (embeds_name, pooled_name) in zip(prompts, chunked, names):
            padded = [chunks + [([], [])] * (count - len(chunks)) for chunks in per_prompt]
            clip = torch.cat([weighted_encoders.clip_hidden(tokenizer, encoder, chunks, device,
                                                            pipe.text_encoder.dtype)
                              for (tokenizer, encoder), chunks in zip(clips, padded)], dim=-1)
            if pipe.text_encoder_3 is None:  # SD3 without T5: the pipeline's zeros
                t5 = pipe._get_t5_prompt_embeds("", max_sequence_length=max_length, device=device)
            else:
                t5, _ = weighted_encoders.t5_embeds(pipe, pipe.tokenizer_3, pipe.text_encoder_3, prompt,
                                                    max_length, device)
            clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
            kwargs[embeds_name] = torch.cat([clip, t5], dim=-2)
            plain = plain_text(prompt)
            pooled = [pipe._get_clip_prompt_embeds(plain, device=device, clip_model_index=k)[1] for k in (0, 1)]
            kwargs[pooled_name] = torch.cat(pooled, dim=-1)
    return kwargs
