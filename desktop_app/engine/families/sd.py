"""The Stable Diffusion UNets (1.x, 2.x, XL and its refiner) and the embedded model: noise drawn here (so the
explain view and the hires fix see it), the prompt encoded here (so the text stage is timed on its own), with
A1111's prompt weighting (engine/prompt_weights.py) on the one text encoder of SD 1.x/2.x and the embedded
model, and on SDXL's two (its refiner's one)."""

from __future__ import annotations

import torch

from desktop_app.engine import prompt_weights
from desktop_app.engine.families import weighted_encoders
from desktop_app.engine.families.base import EngineFamily, call_parameters
from desktop_app.engine.request import GenerationRequest


class SdFamily(EngineFamily):
    key = "sd"

    def encode_text(self, pipe, request: GenerationRequest, device: torch.device) -> dict:
        """Prompt embeddings for the pipeline call. A prompt with weighting syntax, or longer than the text
        encoder's window, is encoded as A1111 does (``_weighted_kwargs``; SDXL and its refiner:
        ``xl_weighted_kwargs``); any other goes through the pipeline's own encode_prompt, as it always did.
        Other pipelines get the prompts without the syntax and encode them themselves."""
        from diffusers import StableDiffusionPipeline

        if _is_xl(pipe):  # the base and the refiner, each its own (run_steps encodes for each)
            return _xl_encode(pipe, request, device)
        if not isinstance(pipe, StableDiffusionPipeline):
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

COMMA_BACKTRACK = weighted_encoders.COMMA_BACKTRACK  # A1111's default "comma padding backtrack"


def _needs_weighting(pipe, prompts: list[str], tokenizers: list | None = None) -> bool:
    """A prompt has weighting syntax, or more tokens than one window of a text encoder holds."""
    if not all(map(prompt_weights.is_plain, prompts)):
        return True
    for tokenizer in tokenizers or [pipe.tokenizer]:
        room = tokenizer.model_max_length - tokenizer.num_special_tokens_to_add()
        if any(len(_token_ids(pipe, prompt, tokenizer)) > room for prompt in prompts):
            return True
    return False


def _token_ids(pipe, text: str, tokenizer=None) -> list[int]:
    """``text``'s token ids without the start and end tokens, untruncated; textual inversions expanded to their
    tokens as encode_prompt expands them."""
    from diffusers.loaders import TextualInversionLoaderMixin

    tokenizer = tokenizer or pipe.tokenizer
    if isinstance(pipe, TextualInversionLoaderMixin):
        text = pipe.maybe_convert_prompt(text, tokenizer)
    return tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]


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
        embeds.append(weighted_encoders.emphasize(z, weights))
    return torch.cat(embeds, dim=1)


# ---- SDXL (CLIP-L and OpenCLIP bigG) and its refiner (bigG alone) ----------------------------------------------


def _is_xl(pipe) -> bool:
    """An SDXL pipeline (base, img2img, inpainting, refiner): text encoder 2 and a pooled embedding."""
    return (getattr(pipe, "text_encoder_2", None) is not None and hasattr(pipe, "tokenizer_2")
            and "pooled_prompt_embeds" in call_parameters(type(pipe)))


def _xl_clips(pipe) -> list[tuple]:
    """(tokenizer, text encoder) pairs in the order encode_prompt runs them (the refiner has bigG alone)."""
    if pipe.tokenizer is None:
        return [(pipe.tokenizer_2, pipe.text_encoder_2)]
    return [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]


def _xl_encode(pipe, request: GenerationRequest, device: torch.device) -> dict:
    """SDXL's four embeddings: by the pipeline's own encode_prompt for plain prompts within one window (so their
    images do not change), else as A1111 encodes them. An empty negative prompt is SDXL's zeros where the
    model asks for them (force_zeros_for_empty_prompt), as diffusers does."""
    guided = request.guidance_scale > 1 and pipe.unet.config.time_cond_proj_dim is None
    negative = request.negative_prompt
    zero = guided and getattr(pipe.config, "force_zeros_for_empty_prompt", False) and not (
        prompt_weights.plain_text(negative))
    prompts = [request.prompt, negative] if guided and not zero else [request.prompt]
    if _needs_weighting(pipe, prompts, [tokenizer for tokenizer, _ in _xl_clips(pipe)]):
        return xl_weighted_kwargs(pipe, prompts, device, zero_negative=zero)
    embeds = pipe.encode_prompt(request.prompt, device=device, num_images_per_prompt=1,
                                do_classifier_free_guidance=guided, negative_prompt=None if zero else negative)
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    return {name: value for name, value in zip(names, embeds) if value is not None}


def xl_weighted_kwargs(pipe, prompts: list[str], device: torch.device, zero_negative: bool = False) -> dict:
    """``prompt_embeds`` and ``pooled_prompt_embeds`` of ``prompts[0]`` (and the negative ones of ``prompts[1]``;
    zeros like the positive ones instead where ``zero_negative``) as A1111 encodes SDXL: each encoder cuts the
    prompt into 75-token windows (BREAK, the comma backtrack); per window, each encoder's penultimate hidden
    state with its tokens weighted and its mean restored, the two side by side along the width (768 + 1280; the
    refiner's 1280 alone); the windows one after the other along the sequence, the shorter prompt filled up
    with empty windows; the pooled vector that of bigG on the first window, unweighted (A1111's). A plain
    prompt within one window gives the pipeline's encode_prompt result bit for bit."""
    clips = _xl_clips(pipe)
    chunked = [[weighted_encoders.clip_chunks(pipe, tokenizer, prompt) for tokenizer, _ in clips]
               for prompt in (prompts[:1] if zero_negative else prompts)]
    count = max(len(chunks) for per_prompt in chunked for chunks in per_prompt)
    dtype = pipe.text_encoder_2.dtype
    names = ("prompt_embeds", "pooled_prompt_embeds"), ("negative_prompt_embeds", "negative_pooled_prompt_embeds")
    kwargs = {}
    with torch.no_grad():
        for per_prompt, (embeds_name, pooled_name) in zip(chunked, names):
            filled = [chunks + [([], [])] * (count - len(chunks)) for chunks in per_prompt]
            parts = [weighted_encoders.clip_windows(tokenizer, encoder, chunks, device, encoder.dtype)
                     for (tokenizer, encoder), chunks in zip(clips, filled)]
            kwargs[embeds_name] = torch.cat([hidden for hidden, _ in parts], dim=-1).to(dtype=dtype, device=device)
            kwargs[pooled_name] = parts[-1][1]
    if zero_negative:
        kwargs["negative_prompt_embeds"] = torch.zeros_like(kwargs["prompt_embeds"])
        kwargs["negative_pooled_prompt_embeds"] = torch.zeros_like(kwargs["pooled_prompt_embeds"])
    return kwargs
