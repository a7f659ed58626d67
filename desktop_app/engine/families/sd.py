"""The Stable Diffusion UNets (1.x, 2.x, XL and its refiner) and the embedded model: noise drawn here (so the
explain view and the hires fix see it), the prompt encoded here where the pipeline allows it (so the text stage
is timed on its own)."""

from __future__ import annotations

import torch

from desktop_app.engine import prompt_weights
from desktop_app.engine.families.base import EngineFamily
from desktop_app.engine.request import GenerationRequest


class SdFamily(EngineFamily):
    key = "sd"

    def encode_text(self, pipe, request: GenerationRequest, device: torch.device) -> dict:
        """Prompt embeddings for the pipeline call. Pipelines with another encode_prompt signature (SDXL) get
        the prompts and encode them themselves (without the weighting syntax, whose weights they do not apply).
        A prompt with weighting syntax, or longer than the text encoder's window, is encoded as A1111 does
        (``_weighted_kwargs``); any other goes through the pipeline's own encode_prompt, as it always did."""
        from diffusers import StableDiffusionPipeline

        if not isinstance(pipe, StableDiffusionPipeline):  # weights not applied yet: the syntax taken out
            return {"prompt": prompt_weights.plain_text(request.prompt),
                    "negative_prompt": prompt_weights.plain_text(request.negative_prompt) or None}
        guided = request.guidance_scale > 1 and pipe.unet.config.time_cond_proj_dim is None
        prompts = [request.prompt, request.negative_prompt] if guided else [request.prompt]
        if _needs_weighting(pipe, prompts):
            return _weighted_kwargs(pipe, prompts, device)
        positive, negative = pipe.encode_prompt(
            request.prompt, device, num_images_per_prompt=1, do_classifier_free_guidance=guided,
            negative_prompt=request.negative_prompt or None)
        kwargs = {"prompt_embeds": positive}
        if negative is not None:
            kwargs["negative_prompt_embeds"] = negative
        return kwargs

    def initial_noise(self, pipe, request: GenerationRequest, generators: list, device: torch.device) -> dict:
        """Unit-variance latent noise, one item per generator (the pipeline scales it by init_noise_sigma)."""
        from diffusers.utils.torch_utils import randn_tensor

        scale = pipe.vae_scale_factor
        shape = (len(generators), pipe.unet.config.in_channels, request.height // scale, request.width // scale)
        return {"latents": randn_tensor(shape, generator=generators, device=device, dtype=pipe.unet.dtype)}


# ---- A1111 prompt weighting on StableDiffusionPipeline's one text encoder (CLIP, or the embedded MiniLM) --------

COMMA_BACKTRACK = 20  # A1111's default "comma padding backtrack", in tokens of a 75-token chunk


def _needs_weighting(pipe, prompts: list[str]) -> bool:
    """A prompt has weighting syntax, or more tokens than one window of the text encoder holds."""
    if not all(map(prompt_weights.is_plain, prompts)):
        return True
    tokenizer = pipe.tokenizer
    room = tokenizer.model_max_length - tokenizer.num_special_tokens_to_add()
    return any(len(_token_ids(pipe, prompt)) > room for prompt in prompts)


def _token_ids(pipe, text: str) -> list[int]:
    """``text``'s token ids without the start and end tokens, untruncated; textual inversions expanded to their
    tokens as encode_prompt expands them."""
    from diffusers.loaders import TextualInversionLoaderMixin

    if isinstance(pipe, TextualInversionLoaderMixin):
        text = pipe.maybe_convert_prompt(text, pipe.tokenizer)
    return pipe.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]


def _weighted_kwargs(pipe, prompts: list[str], device: torch.device) -> dict:
    """``prompt_embeds`` (and ``negative_prompt_embeds``) of the prompts' chunks side by side along the sequence,
    the shorter padded with chunks of the empty prompt (as A1111 does) so that both have as many."""
    tokenizer = pipe.tokenizer
    room = tokenizer.model_max_length - tokenizer.num_special_tokens_to_add()
    commas = _token_ids(pipe, ",")
    comma = commas[0] if len(commas) == 1 else None
    chunked = []
    for prompt in prompts:
        parts = [item if item is prompt_weights.BREAK else (_token_ids(pipe, item.text), item.weight)
                 for item in prompt_weights.parse(prompt)]
        chunked.append(prompt_weights.chunk(parts, room, comma, COMMA_BACKTRACK * room // 75))
    count = max(map(len, chunked))
    with torch.no_grad():
        embeds = [_encode_chunks(pipe, chunks + [([], [])] * (count - len(chunks)), device) for chunks in chunked]
    kwargs = {"prompt_embeds": embeds[0]}
    if len(embeds) > 1:
        kwargs["negative_prompt_embeds"] = embeds[1]
    return kwargs


def _encode_chunks(pipe, chunks: list[tuple[list[int], list[float]]], device: torch.device) -> torch.Tensor:
    """The text encoder's output for each chunk, each laid out as the tokenizer pads one prompt (start, tokens,
    end, padding; the attention mask where the encoder wants one), each chunk's token vectors times their
    weights and then scaled back to the chunk's original mean (A1111) when that mean is clear of zero;
    (1, chunks x window, width)."""
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    window = tokenizer.model_max_length
    start, end = tokenizer("")["input_ids"]  # [BOS, EOS] for CLIP, [CLS, SEP] for BERT
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    rows, masks, multipliers = [], [], []
    for ids, weights in chunks:
        used = len(ids) + 2
        rows.append([start, *ids, end] + [pad] * (window - used))
        masks.append([1] * used + [0] * (window - used))
        multipliers.append([1.0, *weights] + [1.0] * (window - used + 1))
    input_ids = torch.tensor(rows, dtype=torch.long, device=device)
    use_mask = getattr(encoder.config, "use_attention_mask", False)
    attention_mask = torch.tensor(masks, dtype=torch.long, device=device) if use_mask else None
    embeds = []
    for k, weights in enumerate(multipliers):  # one chunk at a time, as one prompt is encoded
        mask = attention_mask[k:k + 1] if attention_mask is not None else None
        z = encoder(input_ids[k:k + 1], attention_mask=mask)[0].to(dtype=encoder.dtype, device=device)
        if any(w != 1.0 for w in weights):
            scale = torch.tensor(weights, dtype=torch.float32, device=device).reshape(1, -1, 1)
            original = z.float()
            weighted = original * scale
            ratio = original.mean() / weighted.mean()
            # A1111 divides whatever the means are; where the mean is next to zero (an encoder whose last layer
            # norm has no bias to speak of) that would scale by noise, so the weights then stand as they are
            if torch.isfinite(ratio) and ratio > 0 and original.mean().abs() > 1e-3 * original.abs().mean():
                weighted = weighted * ratio
            z = weighted.to(z.dtype)
        embeds.append(z)
    return torch.cat(embeds, dim=1)
