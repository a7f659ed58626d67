"""Prompt weighting as AUTOMATIC1111 users write it, parsed (torch-free, pure functions; the SD family applies the
weights to the text encoder's output, families/weighted_encoders.py to SD3's, Flux.1's and Chroma's CLIP and T5).

- ``(text)`` multiplies the attention to ``text`` by 1.1, ``((text))`` by 1.21, ``(text:1.5)`` by 1.5;
  ``[text]`` divides it by 1.1. Nesting multiplies.
- ``\\(`` ``\\)`` ``\\[`` ``\\]`` and ``\\\\`` are the literal characters.
- Unbalanced brackets are tolerated as A1111 does: a ``)`` or ``]`` with nothing open is literal text, an
  unclosed ``(`` or ``[`` applies its 1.1 (or 1/1.1) to everything after it. A weight that is not a number
  (``(cat:1.2.3)``) is literal text where A1111 stops with an error.
- ``BREAK`` (a word of its own, in capitals) ends the current chunk of 75 tokens: what follows starts a new one.
  Unlike A1111, a BREAK inside brackets is still a BREAK (A1111 then reads it as the word "BREAK").

``parse`` gives the pieces of text with their weights and the breaks; ``chunk`` cuts token ids into the text
encoder's windows as A1111 does (including its "comma padding backtrack": a chunk that fills up within a few
tokens of a comma ends at the comma, so a phrase is not cut in two).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

UP = 1.1  # ( ): attention times 1.1
DOWN = 1 / 1.1  # [ ]: attention divided by 1.1

# A1111's modules/prompt_parser.py tokens, in its order: escapes, brackets, ":weight)", text runs, a lone ":"
_TOKEN = re.compile(r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_SYNTAX = re.compile(r"[\\()\[\]]|\bBREAK\b")
_WORD_BREAK = re.compile(r"\bBREAK\b")


@dataclass(frozen=True)
class Piece:
    """A stretch of prompt text and the weight of its tokens."""

    text: str
    weight: float = 1.0


class Break:
    """A chunk break (``BREAK`` in the prompt)."""

    def __repr__(self) -> str:
        return "BREAK"


BREAK = Break()


def parse(prompt: str) -> list[Piece | Break]:
    """The prompt's pieces of text with their weights, and its breaks, in order. Adjacent pieces of the same
    weight are merged (as A1111 does); pieces with no text are left out, so "" gives []. Never raises."""
    items: list[list] = []  # [text, weight] or [BREAK, None]
    round_open: list[int] = []
    square_open: list[int] = []
    for match in _TOKEN.finditer(prompt):
        token, weight = match.group(0), _number(match.group(1))
        if token.startswith("\\"):
            items.append([token[1:], 1.0])
        elif token == "(":
            round_open.append(len(items))
        elif token == "[":
            square_open.append(len(items))
        elif weight is not None and round_open:
            _multiply(items, round_open.pop(), weight)
        elif token == ")" and round_open:
            _multiply(items, round_open.pop(), UP)
        elif token == "]" and square_open:
            _multiply(items, square_open.pop(), DOWN)
        else:
            for k, part in enumerate(_BREAK.split(token)):
                if k:
                    items.append([BREAK, None])
                items.append([part, 1.0])
    for start in round_open:
        _multiply(items, start, UP)
    for start in square_open:
        _multiply(items, start, DOWN)
    merged: list[list] = []
    for text, weight in items:
        if merged and weight is not None and merged[-1][1] == weight:
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return [BREAK if weight is None else Piece(text, weight) for text, weight in merged
            if weight is None or text]


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _multiply(items: list[list], start: int, factor: float) -> None:
    for item in items[start:]:
        if item[1] is not None:
            item[1] *= factor


def is_plain(prompt: str) -> bool:
    """True when the prompt has no weighting syntax: the text encoder reads it exactly as written."""
    if not _SYNTAX.search(prompt):
        return True
    return parse(prompt) == ([Piece(prompt)] if prompt else [])


def plain_text(prompt: str) -> str:
    """The prompt with its syntax taken out (weights dropped, escapes undone, a BREAK as a space): for encoders
    that do not apply the weights. A prompt without syntax comes back unchanged."""
    if is_plain(prompt):
        return prompt
    return "".join(" " if item is BREAK else item.text for item in parse(prompt)).strip()


def escape(text: str) -> str:
    r"""``text`` written so that ``parse`` reads it back literally: one piece of weight 1 (``\(`` for "(", and
    "BREA\K" for the word BREAK, the lone backslash being dropped as A1111 drops it)."""
    text = re.sub(r"[\\()\[\]]", lambda m: "\\" + m.group(0), text)
    return _WORD_BREAK.sub(r"BREA\\K", text)


def chunk(parts: list[tuple[list[int], float] | Break], size: int, comma: int | None = None,
          backtrack: int = 0) -> list[tuple[list[int], list[float]]]:
    """Token ids with their weights cut into chunks of at most ``size`` (the encoder's window less its start and
    end tokens), as A1111's ``tokenize_line`` does: a ``Break`` ends the chunk (even an empty one); when a chunk
    is full and its last ``comma`` id is at most ``backtrack`` tokens back, the tokens after the comma move to
    the next chunk. Each chunk is (ids, weights), unpadded; there is always at least one (an empty prompt gives
    one empty chunk)."""
    if size < 1:
        raise ValueError(f"chunk size {size} < 1")
    chunks: list[tuple[list[int], list[float]]] = []
    ids: list[int] = []
    weights: list[float] = []
    last_comma = -1
    for part in parts:
        if isinstance(part, Break):
            chunks.append((ids, weights))
            ids, weights, last_comma = [], [], -1
            continue
        tokens, weight = part
        for token in tokens:
            if comma is not None and token == comma:
                last_comma = len(ids)
            elif backtrack and len(ids) == size and last_comma != -1 and len(ids) - last_comma <= backtrack:
                cut = last_comma + 1
                chunks.append((ids[:cut], weights[:cut]))
                ids, weights, last_comma = ids[cut:], weights[cut:], -1
            if len(ids) == size:
                chunks.append((ids, weights))
                ids, weights, last_comma = [], [], -1
            ids.append(token)
            weights.append(weight)
    if ids or not chunks:
        chunks.append((ids, weights))
    return chunks
