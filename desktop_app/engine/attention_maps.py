"""Where the words landed: per-token cross-attention heat maps over the image, summed over heads, layers and steps
(DAAM, Tang et al. 2023, "What the DAAM: interpreting Stable Diffusion using cross attention"), for the UNet
models (the embedded model, Stable Diffusion 1.x, 2.x, XL).

Each cross-attention layer of the UNet (``attn2``: image positions attend to the text encoder's tokens) gets, for
one run, a processor that first computes softmax(Q K^T / sqrt(d)) for the text-conditioned image (classifier-free
guidance doubles the batch, [unconditioned, conditioned]: the second half), keeps the columns of the prompt's own
tokens (not the start, end or padding tokens), sums them over the heads, upsamples the layer's grid to the
latent's, and adds it to the sum of the run; then it hands the call, untouched, to the processor that was there.
So the run's image is the image of a run without maps, and the original processors come back after the run (on
error and cancel too).

``record_attention(pipe, prompt, size)`` is the ``with`` block around one pipeline call; its ``result()`` holds
the tokens and, per token, a map at image size stretched to 0..1 over its own range (as DAAM draws them), and
the raw sums at the latent's size.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from desktop_app.engine.families import weighted_encoders


@dataclass(frozen=True)
class PromptToken:
    index: int  # among the prompt's tokens, from 0
    text: str  # as the tokenizer spells it ("</w>" taken off CLIP's word ends)
    id: int
    position: int  # where its vector sits in the sequence the UNet's cross-attention reads


@dataclass
class AttentionMaps:
    tokens: list[PromptToken]
    maps: np.ndarray  # (tokens, height, width) at image size, float32, each stretched to 0..1 over its own range
    latent_sums: np.ndarray  # (tokens, latent height, latent width): the raw sums, heads x layers x steps
    steps: int  # UNet calls seen (one per denoising step)
    layers: list[str]  # the cross-attention layers that were hooked
    seconds: float  # the time the maps added to the run (spent inside the hooks)


def prompt_tokens(pipe, prompt: str) -> list[PromptToken]:
    """The prompt's tokens (the first tokenizer's; the start, end and padding tokens left out) with where each
    sits in the encoder's output: the SD family encodes windows of the tokenizer's length (start, up to its
    room of tokens, end, padding) one after the other, cut as A1111 cuts them (weighted_encoders.clip_chunks:
    the pipeline's own encode_prompt lays out a plain prompt within one window the same way)."""
    tokenizer = pipe.tokenizer if getattr(pipe, "tokenizer", None) is not None else pipe.tokenizer_2
    window = int(tokenizer.model_max_length)
    lead = _start_tokens(tokenizer)
    found = []
    for c, (ids, _) in enumerate(weighted_encoders.clip_chunks(pipe, tokenizer, prompt)):
        texts = tokenizer.convert_ids_to_tokens(ids)
        for j, (i, text) in enumerate(zip(ids, texts)):
            found.append(PromptToken(len(found), text.removesuffix("</w>"), int(i), c * window + lead + j))
    return found


def _start_tokens(tokenizer) -> int:
    """How many special tokens the tokenizer puts before a text (1 for CLIP's start, BERT's [CLS])."""
    marker = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for k in range(len(full) - len(marker) + 1):
        if full[k:k + len(marker)] == marker:
            return k
    return 1


class AttentionRecorder:
    """The running sum of one run's maps, at the latent's size; filled by the processors ``record_attention``
    installs."""

    def __init__(self, pipe, tokens: list[PromptToken], image_size: tuple[int, int]):
        self.pipe, self.tokens = pipe, tokens
        self.width, self.height = image_size
        scale = int(getattr(pipe, "vae_scale_factor", 8))
        self.latent = (max(1, self.height // scale), max(1, self.width // scale))
        self.sum: torch.Tensor | None = None
        self.layers: list[str] = []
        self.calls: dict[str, int] = {}
        self.seconds = 0.0

    def add(self, name: str, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
            attention_mask: torch.Tensor | None, temb: torch.Tensor | None) -> None:
        began = time.perf_counter()
        self.calls[name] = self.calls.get(name, 0) + 1
        positions = [token.position for token in self.tokens if token.position < encoder_hidden_states.shape[1]]
        if positions:
            probs = self._probabilities(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
            if probs is not None:
                self._accumulate(probs[:, positions])
        self.seconds += time.perf_counter() - began

    def _rows(self, batch: int) -> slice:
        """The first text-conditioned image of the batch: with guidance the batch is [unconditioned,
        conditioned], one half each."""
        guided = bool(getattr(self.pipe, "do_classifier_free_guidance", False))
        first = batch // 2 if guided and batch % 2 == 0 else 0
        return slice(first, first + 1)

    def _probabilities(self, attn, hidden_states, encoder_hidden_states, attention_mask, temb):
        """softmax(Q K^T scale) of the conditioned image, summed over the heads: (image positions, tokens);
        Q and K as AttnProcessor2_0 makes them."""
        batch = (hidden_states.shape[0] if encoder_hidden_states is None else encoder_hidden_states.shape[0])
        rows = self._rows(batch)
        hidden = hidden_states
        if attn.spatial_norm is not None:
            hidden = attn.spatial_norm(hidden, temb)
        if hidden.ndim == 4:
            b, channels, h, w = hidden.shape
            hidden = hidden.view(b, channels, h * w).transpose(1, 2)
        hidden, context = hidden[rows], encoder_hidden_states[rows]
        if attn.group_norm is not None:
            hidden = attn.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query, key = attn.to_q(hidden).float(), attn.to_k(context).float()
        heads = attn.heads
        head_dim = key.shape[-1] // heads
        query = query.view(1, -1, heads, head_dim).transpose(1, 2)
        key = key.view(1, -1, heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        scores = query @ key.transpose(-1, -2) * (1.0 / math.sqrt(head_dim))  # what SDPA does by default
        if attention_mask is not None:
            mask = attn.prepare_attention_mask(attention_mask, key.shape[2], batch)
            mask = mask.view(batch, heads, -1, mask.shape[-1])[rows].float()
            scores = scores + mask
        return scores.softmax(dim=-1).sum(dim=1)[0]  # (positions, tokens)

    def _accumulate(self, probs: torch.Tensor) -> None:
        grid = self._grid(probs.shape[0])
        if grid is None:
            return
        maps = probs.transpose(0, 1).reshape(1, probs.shape[1], *grid)
        if grid != self.latent:
            maps = F.interpolate(maps, size=self.latent, mode="bilinear", align_corners=False)
        if self.sum is None:
            self.sum = torch.zeros(maps.shape[1:], dtype=torch.float32, device=maps.device)
        self.sum += maps[0]

    def _grid(self, count: int) -> tuple[int, int] | None:
        """The (height, width) of a layer's grid of ``count`` positions: the latent halved (rounding up, as the
        UNet's strided convolutions do) until it fits."""
        h, w = self.latent
        while h * w > count and (h > 1 or w > 1):
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return (h, w) if h * w == count else None

    def result(self) -> AttentionMaps:
        """The maps at image size, each token's stretched to 0..1 (its weakest place 0, strongest 1)."""
        count = len(self.tokens)
        sums = self.sum if self.sum is not None else torch.zeros(count, *self.latent)
        sums = sums[:count] if sums.shape[0] >= count else torch.cat(
            [sums, torch.zeros(count - sums.shape[0], *sums.shape[1:], device=sums.device)])
        big = F.interpolate(sums[None].float(), size=(self.height, self.width), mode="bilinear",
                            align_corners=False)[0] if count else sums.float()
        if count:  # each map stretched to 0..1 over its own range, as DAAM draws them
            flat = big.flatten(1)
            low, high = flat.amin(dim=1).view(-1, 1, 1), flat.amax(dim=1).view(-1, 1, 1)
            big = (big - low) / (high - low).clamp_min(1e-12)
        steps = max(self.calls.values(), default=0)
        return AttentionMaps(self.tokens, big.cpu().numpy().astype(np.float32),
                             sums.float().cpu().numpy(), steps, list(self.layers), self.seconds)


class MapProcessor:
    """The processor installed on one cross-attention layer for a run: records, then calls the one it
    replaced with the same arguments."""

    def __init__(self, inner, recorder: AttentionRecorder, name: str):
        self.inner, self.recorder, self.name = inner, recorder, name

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args, **kwargs):
        if encoder_hidden_states is not None:
            self.recorder.add(self.name, attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if temb is not None:
            kwargs["temb"] = temb
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)


def cross_attention_layers(unet) -> list[tuple[str, object]]:
    """The UNet's cross-attention modules (the transformer blocks' ``attn2``), by name."""
    from diffusers.models.attention_processor import Attention

    return [(name, module) for name, module in unet.named_modules()
            if isinstance(module, Attention) and name.endswith("attn2") and module.is_cross_attention]


@contextmanager
def record_attention(pipe, prompt: str, image_size: tuple[int, int], unet=None):
    """Inside the ``with`` block, every call of ``unet`` (the pipeline's by default) adds to the maps of
    ``prompt``'s tokens; ``image_size`` is (width, height). Yields the AttentionRecorder (``result()`` after
    the run); the processors that were there come back when the block ends, however it ends."""
    unet = unet if unet is not None else pipe.unet
    recorder = AttentionRecorder(pipe, prompt_tokens(pipe, prompt), image_size)
    layers = cross_attention_layers(unet)
    originals = [(module, module.processor) for _, module in layers]
    try:
        for name, module in layers:
            module.set_processor(MapProcessor(module.processor, recorder, name))
            recorder.layers.append(name)
        yield recorder
    finally:
        for module, processor in originals:
            module.set_processor(processor)
