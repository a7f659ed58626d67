"""A1111 prompt weighting (engine/prompt_weights.py parses it) on the transformer families' text encoders, CLIP and
T5: each token's output vector times its weight, then the sequence scaled back to its original mean (A1111's
emphasis). The pipeline's own tokenizers and encoders run on the prompt laid out exactly as the pipeline lays it
out, so that a prompt whose weights are all 1 gives the pipeline's own embeddings, bit for bit.

- T5 (Flux.1, SD3's third encoder, Chroma, PixArt-Sigma): one sequence of the pipeline's
  ``max_sequence_length``. Its tokens are the plain prompt's own (the syntax taken out, a BREAK a space), each
  weighted by the text it came from; what does not fit is cut as the pipeline cuts it, and said in the log as
  the pipeline says it.
- CLIP (SD3's two encoders, SDXL's in sd.py): windows of 75 tokens as the SD family cuts them (BREAK, A1111's
  comma backtrack), their penultimate hidden states one after the other along the sequence.
- The pooled CLIP vector (Flux, SD3) is the pipeline's own, of the plain prompt; SDXL's is A1111's, of the first
  window (``clip_windows``).
"""

from __future__ import annotations

import inspect
import logging

import torch

from desktop_app.engine import prompt_weights

COMMA_BACKTRACK = 20  # A1111's default "comma padding backtrack", in tokens of a 75-token chunk (as sd.py)

log = logging.getLogger(__name__)


def needs_weighting(*prompts: str) -> bool:
    """Some prompt has weighting syntax (a plain one goes to the pipeline as text, as it always did)."""
    return not all(map(prompt_weights.is_plain, prompts))


def call_default(pipe, name: str, options: dict | None = None):
    """The value the pipeline call takes for ``name``: the family's call option, else the call's default."""
    if options and name in options:
        return options[name]
    parameter = inspect.signature(type(pipe).__call__).parameters.get(name)
    return None if parameter is None else parameter.default


def emphasize(z: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """``z`` (1, tokens, width) with each token's vector times its weight, then scaled back to ``z``'s mean (A1111)
    when that mean is clear of zero (an encoder whose last norm has no bias to speak of: the weights then stand
    as they are, as in sd.py); ``z`` itself when every weight is 1."""
    if all(weight == 1.0 for weight in weights):
        return z
    scale = torch.tensor(weights, dtype=torch.float32, device=z.device).reshape(1, -1, 1)
    original = z.float()
    weighted = original * scale
    ratio = original.mean() / weighted.mean()
    if torch.isfinite(ratio) and ratio > 0 and original.mean().abs() > 1e-3 * original.abs().mean():
        weighted = weighted * ratio
    return weighted.to(z.dtype)


def _execution_device(module, device: torch.device) -> torch.device:
    try:
        from diffusers.utils.torch_utils import get_module_execution_device
    except ImportError:  # an older diffusers
        return device
    return get_module_execution_device(module)


def _convert(pipe, text: str, tokenizer) -> str:
    """Textual inversions expanded to their tokens, as the pipeline's encode_prompt expands them."""
    from diffusers.loaders import TextualInversionLoaderMixin

    return pipe.maybe_convert_prompt(text, tokenizer) if isinstance(pipe, TextualInversionLoaderMixin) else text


# ---- T5 ----------------------------------------------------------------------------------------------------


def t5_tokens(pipe, tokenizer, prompt: str, max_length: int,
              lower: bool = False) -> tuple[list[int], list[float], list[int]]:
    """(ids, weights, attention mask), ``max_length`` long: the tokenizer's own layout of the plain prompt (its
    tokens, the end token, padding), each token weighted by the text it came from (by its characters'
    offsets; a token that spans text of two weights takes its first character's, spaces aside). ``lower``: the
    text lower-cased and trimmed first, as PixArt's pipeline prepares it (``clean_caption`` off)."""
    pieces = [(" ", None) if item is prompt_weights.BREAK else (_convert(pipe, item.text, tokenizer), item.weight)
              for item in prompt_weights.parse(prompt)]  # None: a BREAK, a space between the words
    if lower:
        pieces = _trimmed([(part.lower(), weight) for part, weight in pieces])
    text = "".join(part for part, _ in pieces)
    char_weights = [1.0 if weight is None else weight for part, weight in pieces for _ in part]
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids = list(encoded["input_ids"])
        weights = [_span_weight(text, char_weights, start, end) for start, end in encoded["offset_mapping"]]
    else:  # no offsets: each piece on its own
        ids, weights = [], []
        for part, weight in pieces:
            if weight is not None:
                more = tokenizer(part, add_special_tokens=False, verbose=False)["input_ids"]
                ids += more
                weights += [weight] * len(more)
    room = max_length - tokenizer.num_special_tokens_to_add()
    if len(ids) > room:
        log.warning("The following part of your input was truncated because `max_sequence_length` is set to "
                    "%d tokens: %s", max_length, tokenizer.decode(ids[room:]))
        ids, weights = ids[:room], weights[:room]
    full = ids + tokenizer("", verbose=False)["input_ids"]  # T5's special tokens: </s>, after the text
    weights = weights + [1.0] * (len(full) - len(weights))
    padding = max_length - len(full)
    return (full + [tokenizer.pad_token_id] * padding, weights + [1.0] * padding,
            [1] * len(full) + [0] * padding)


def _trimmed(pieces: list[tuple[str, float | None]]) -> list[tuple[str, float | None]]:
    """The pieces of the text without the whitespace at its two ends (``str.strip`` of the joined text)."""
    text = "".join(part for part, _ in pieces)
    first, last = len(text) - len(text.lstrip()), len(text.rstrip())
    kept, position = [], 0
    for part, weight in pieces:
        start, end = max(position, first), min(position + len(part), last)
        if end > start:
            kept.append((part[start - position:end - position], weight))
        position += len(part)
    return kept


def _span_weight(text: str, char_weights: list[float], start: int, end: int) -> float:
    """The weight of a token's first character that is not a space (a tokenizer whose offsets take in the
    space before a word must not give the word the weight of the text before it)."""
    for k in range(start, min(end, len(text))):
        if not text[k].isspace():
            return char_weights[k]
    return char_weights[min(start, len(text) - 1)] if text else 1.0


def t5_embeds(pipe, tokenizer, encoder, prompt: str, max_length: int, device: torch.device,
              masked: bool = False, lower: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings (1, max_length, width), the tokenizer's attention mask (1, max_length)) of the weighted prompt:
    the encoder run once as the pipeline runs it (with the mask where ``masked``, as Chroma's and PixArt's do;
    without, as Flux's and SD3's do), in the encoder's dtype, then emphasised. ``lower``: as ``t5_tokens``."""
    ids, weights, mask = t5_tokens(pipe, tokenizer, prompt, max_length, lower)
    where = _execution_device(encoder, device)
    input_ids = torch.tensor([ids], dtype=torch.long, device=where)
    attention_mask = torch.tensor([mask], dtype=torch.long, device=where)
    with torch.no_grad():
        if masked:
            z = encoder(input_ids, output_hidden_states=False, attention_mask=attention_mask)[0]
        else:
            z = encoder(input_ids, output_hidden_states=False)[0]
    z = z.to(dtype=encoder.dtype, device=device)
    return emphasize(z, weights), attention_mask.to(device)


# ---- CLIP windows (SD3) ------------------------------------------------------------------------------------


def clip_chunks(pipe, tokenizer, prompt: str) -> list[tuple[list[int], list[float]]]:
    """The prompt's token ids with their weights in windows of the tokenizer's length less its start and end
    tokens (BREAK ends one; A1111's comma backtrack), as the SD family cuts them."""
    room = tokenizer.model_max_length - tokenizer.num_special_tokens_to_add()

    def ids(text: str) -> list[int]:
        return tokenizer(_convert(pipe, text, tokenizer), add_special_tokens=False, truncation=False,
                         verbose=False)["input_ids"]

    commas = ids(",")
    comma = commas[0] if len(commas) == 1 else None
    parts = [item if item is prompt_weights.BREAK else (ids(item.text), item.weight)
             for item in prompt_weights.parse(prompt)]
    return prompt_weights.chunk(parts, room, comma, COMMA_BACKTRACK * room // 75)


def clip_hidden(tokenizer, encoder, chunks: list[tuple[list[int], list[float]]], device: torch.device,
                dtype: torch.dtype, skip: int = 2) -> torch.Tensor:
    """Each window laid out as the tokenizer pads one prompt (start, tokens, end, padding), through the encoder
    as SD3's pipeline runs it (its ``-skip`` hidden state: the penultimate), emphasised on its own; the windows
    one after the other along the sequence: (1, windows x length, width)."""
    return clip_windows(tokenizer, encoder, chunks, device, dtype, skip)[0]


def clip_windows(tokenizer, encoder, chunks: list[tuple[list[int], list[float]]], device: torch.device,
                 dtype: torch.dtype, skip: int = 2) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``clip_hidden``'s windows, and the pooled vector of the first window as the encoder gives it (a
    CLIPTextModelWithProjection's ``text_embeds``, unweighted: A1111's pooled for SDXL; None for an encoder
    without a projection), from the same run of the encoder."""
    window = tokenizer.model_max_length
    start, end = tokenizer("")["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    where = _execution_device(encoder, device)
    out, pooled = [], None
    for k, (ids, weights) in enumerate(chunks):
        used = len(ids) + 2
        row = torch.tensor([[start, *ids, end] + [pad] * (window - used)], dtype=torch.long, device=where)
        with torch.no_grad():
            output = encoder(row, output_hidden_states=True)
        if k == 0:
            pooled = getattr(output, "text_embeds", None)
            pooled = None if pooled is None else pooled.to(device)
        z = output.hidden_states[-skip].to(dtype=dtype, device=device)
        out.append(emphasize(z, [1.0, *weights] + [1.0] * (window - used + 1)))
    return torch.cat(out, dim=1), pooled
