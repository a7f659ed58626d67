"""A1111 prompt weighting: the parser (engine/prompt_weights.py) and its application to the text encoder's output
on StableDiffusionPipeline (SdFamily.encode_text), on the tiny CLIP model and the tiny embedded (MiniLM) model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop_app.engine.events import Finished
from desktop_app.engine.families.sd import SdFamily
from desktop_app.engine.prompt_weights import BREAK, DOWN, UP, Piece, chunk, escape, is_plain, parse, plain_text
from desktop_app.engine.request import GenerationRequest


def pairs(prompt: str) -> list:
    return [item if item is BREAK else (item.text, pytest.approx(item.weight)) for item in parse(prompt)]


# ---- the parser -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt,expected", [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("((x))", [("x", 1.21)]),
    ("(x:1.5)", [("x", 1.5)]),
    ("( x : 0.5 )", [(" x ", 0.5)]),
    ("(x:-1)", [("x", -1.0)]),
    ("[x]", [("x", 1 / 1.1)]),
    ("[[x]]", [("x", 1 / 1.21)]),
    ("(a (b:2) c)", [("a ", 1.1), ("b", 2.2), (" c", 1.1)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("[unbalanced", [("unbalanced", 1 / 1.1)]),
    ("((a)", [("a", 1.21)]),
    ("closed) only]", [("closed) only]", 1.0)]),
    ("a:1.5) b", [("a:1.5) b", 1.0)]),  # a weight with no bracket open is text, as in A1111
    ("(cat:1.2.3)", [("cat:1.2.3)", 1.1)]),  # not a number: text (A1111 stops with an error)
    ("a: b", [("a: b", 1.0)]),
    (r"\(literal\]", [("(literal]", 1.0)]),
    (r"\\", [("\\", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",  # A1111's own example
     [("a ", 1.0), ("house", 1.573), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55), (", sun, ", 1.1),
      ("sky", 1.4641), (".", 1.1)]),
    ("", []),
])
def test_parse_reads_the_syntax_as_a1111_does(prompt, expected):
    assert pairs(prompt) == [(text, pytest.approx(weight)) for text, weight in expected]


@pytest.mark.parametrize("prompt,expected", [
    ("a cat BREAK a dog", [("a cat", 1.0), BREAK, ("a dog", 1.0)]),
    ("BREAK a", [BREAK, ("a", 1.0)]),
    ("a BREAK BREAK b", [("a", 1.0), BREAK, BREAK, ("b", 1.0)]),
    ("(a BREAK b)", [("a", 1.1), BREAK, ("b", 1.1)]),
    ("(a) BREAK", [("a", 1.1), BREAK]),
    ("aBREAK b, break, Break", [("aBREAK b, break, Break", 1.0)]),  # a word of its own, in capitals
])
def test_break_is_a_chunk_break(prompt, expected):
    assert pairs(prompt) == [item if item is BREAK else (item[0], pytest.approx(item[1])) for item in expected]


def test_the_multipliers():
    assert UP == 1.1 and DOWN == pytest.approx(1 / 1.1)


@pytest.mark.parametrize("prompt,plain", [
    ("a red cat", True), ("", True), ("a) b]", True), ("a: 1.2", True),
    ("(a)", False), ("[a]", False), (r"a \(b\)", False), ("a BREAK b", False), ("(a:1)", False)])
def test_is_plain(prompt, plain):
    assert is_plain(prompt) is plain


def test_plain_text_takes_the_syntax_out():
    assert plain_text("a (red:1.3) [cat] \\(x\\) BREAK dog") == "a red cat (x) dog"
    assert plain_text("a red cat") == "a red cat"


def _bits(parts: list[str], most: int):
    """Strings made of these parts (the syntax, mostly)."""
    return st.lists(st.sampled_from(parts), max_size=most).map("".join)


_TEXT = st.text(st.characters(codec="utf-8"), max_size=60)
_SYNTAX_FREE = st.text(st.characters(codec="utf-8", exclude_characters="\\()[]"), max_size=60).filter(
    lambda s: "BREAK" not in s)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_TEXT, _bits(list("()[]:\\.-+1 aB") + [" BREAK ", ":1.2)", ":.)"], 40)))
def test_parse_never_raises_and_keeps_every_piece_nonempty(prompt):
    items = parse(prompt)
    assert all(item is BREAK or (isinstance(item, Piece) and item.text) for item in items)
    assert isinstance(is_plain(prompt), bool) and isinstance(plain_text(prompt), str)


@settings(max_examples=200, deadline=None)
@given(_SYNTAX_FREE)
def test_text_without_syntax_is_one_piece_of_weight_one(text):
    assert parse(text) == ([Piece(text, 1.0)] if text else [])
    assert is_plain(text) and plain_text(text) == text


@settings(max_examples=300, deadline=None)
@given(st.one_of(_TEXT, _bits(list("()[]:\\1 ") + ["BREAK", " BREAK ", "(a:2)"], 30)))
def test_escaping_round_trips(text):
    assert parse(escape(text)) == ([Piece(text, 1.0)] if text else [])


# ---- chunks -----------------------------------------------------------------------------------------------


def test_chunks_of_the_window_and_breaks():
    assert chunk([], 75) == [([], [])]
    assert chunk([BREAK], 75) == [([], [])]  # A1111: a break closes the (empty) chunk, none opens after it
    long = chunk([(list(range(80)), 1.5)], 75)
    assert [len(ids) for ids, _ in long] == [75, 5] and long[1] == ([75, 76, 77, 78, 79], [1.5] * 5)
    assert chunk([([1, 2], 1.0), BREAK, ([3], 2.0)], 75) == [([1, 2], [1.0, 1.0]), ([3], [2.0])]
    assert chunk([BREAK, ([3], 1.0)], 75) == [([], []), ([3], [1.0])]


def test_a_full_chunk_ends_at_a_recent_comma():
    ids = list(range(100, 170)) + [0] + list(range(200, 220))  # the comma (0) at 70 of 91 tokens
    backtracked = chunk([(ids, 1.0)], 75, comma=0, backtrack=20)
    assert [len(c) for c, _ in backtracked] == [71, 20] and backtracked[0][0][-1] == 0
    assert chunk([(ids, 1.0)], 75, comma=0, backtrack=3)[0][0] == ids[:75]  # too far back: cut at 75


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.just(BREAK), st.tuples(st.lists(st.integers(0, 5), max_size=30),
                                                    st.floats(0.5, 2.0))), max_size=8),
       st.integers(1, 10), st.integers(0, 12))
def test_chunks_keep_every_token_in_order_within_the_window(parts, size, backtrack):
    chunks = chunk(parts, size, comma=0, backtrack=backtrack)
    assert chunks and all(len(ids) == len(weights) <= size for ids, weights in chunks)
    flat = [(t, w) for item in parts if item is not BREAK for t in item[0] for w in [item[1]]]
    assert [(t, w) for ids, weights in chunks for t, w in zip(ids, weights)] == flat
    assert len(chunks) >= sum(item is BREAK for item in parts)


# ---- the embeddings ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["clip", "embedded"])
def pipe(request, tiny_sd_dir, tiny_model_dir):
    from desktop_app.engine.loader import load_model

    folder = tiny_sd_dir if request.param == "clip" else tiny_model_dir
    return load_model(str(folder), "cpu", torch.float32).pipe


def embeds(pipe, prompt, negative="", guidance=5.0):
    request = GenerationRequest(prompt=prompt, negative_prompt=negative, guidance_scale=guidance,
                                width=32, height=32, steps=2)
    with torch.inference_mode():
        return SdFamily().encode_text(pipe, request, torch.device("cpu"))


def old(pipe, prompt, negative=None):
    with torch.inference_mode():
        return pipe.encode_prompt(prompt, "cpu", 1, True, negative_prompt=negative)


def test_the_windows(pipe):
    assert pipe.tokenizer.model_max_length == 16  # both tiny models; the shipped embedded model has 20


def test_a_prompt_without_syntax_is_encoded_as_before(pipe):
    kwargs = embeds(pipe, "a red cat", "blurry")
    positive, negative = old(pipe, "a red cat", "blurry")
    assert torch.equal(kwargs["prompt_embeds"], positive)
    assert torch.equal(kwargs["negative_prompt_embeds"], negative)
    assert set(embeds(pipe, "a red cat", guidance=1.0)) == {"prompt_embeds"}


def test_weights_of_one_give_the_same_embeddings_by_the_new_path(pipe):
    """(a red cat:1) goes the weighted way (pieces, chunks, the layout built by hand) and must meet the old."""
    kwargs = embeds(pipe, "(a red cat:1)", "blurry")
    positive, negative = old(pipe, "a red cat", "blurry")
    assert torch.equal(kwargs["prompt_embeds"], positive)
    assert torch.equal(kwargs["negative_prompt_embeds"], negative)


def test_a_weight_changes_the_weighted_tokens_only_up_to_the_mean(pipe):
    plain = old(pipe, "a red cat")[0]
    weighted = embeds(pipe, "a red (cat:1.5)")["prompt_embeds"]
    assert weighted.shape == plain.shape
    cat = 3  # BOS, a, red, cat
    others = [k for k in range(plain.shape[1]) if k != cat]
    scale = float((weighted[:, others] * plain[:, others]).sum() / plain[:, others].square().sum())
    torch.testing.assert_close(weighted[:, others], plain[:, others] * scale)
    torch.testing.assert_close(weighted[:, cat], plain[:, cat] * 1.5 * scale)
    if plain.mean().abs() > 1e-3 * plain.abs().mean():  # MiniLM: the mean restored, as A1111 does
        torch.testing.assert_close(weighted.mean(), plain.mean())
        assert scale != pytest.approx(1.0, abs=1e-4)
    else:  # the tiny CLIP's last layer norm leaves each vector's mean at zero: nothing to restore
        assert scale == 1.0
    assert not torch.allclose(weighted, plain)


def test_which_models_restore_the_mean(pipe):
    plain = old(pipe, "a red cat")[0]
    restorable = bool(plain.mean().abs() > 1e-3 * plain.abs().mean())
    assert restorable is (pipe.tokenizer.__class__.__name__ != "CLIPTokenizer")


def test_a_long_prompt_is_no_longer_truncated(pipe):
    prompt = ", ".join(["a red cat"] * 6)  # more than 14 tokens: two windows of 16
    kwargs = embeds(pipe, prompt, "blurry")
    width = pipe.text_encoder.config.hidden_size
    assert kwargs["prompt_embeds"].shape == (1, 32, width)
    assert kwargs["negative_prompt_embeds"].shape == (1, 32, width)  # padded with an empty prompt's chunk
    empty = old(pipe, "")[0]
    assert torch.equal(kwargs["negative_prompt_embeds"][:, 16:], empty)
    assert torch.equal(kwargs["negative_prompt_embeds"][:, :16], old(pipe, "blurry")[0])
    # the first window ends at its last comma (A1111's backtrack), not in the middle of "a red cat"
    assert torch.equal(kwargs["prompt_embeds"][:, :16], old(pipe, "a red cat, a red cat, a red cat,")[0])


def test_break_starts_a_chunk(pipe):
    kwargs = embeds(pipe, "a red BREAK cat")
    assert kwargs["prompt_embeds"].shape[1] == 32
    assert torch.equal(kwargs["prompt_embeds"][:, :16], old(pipe, "a red")[0])
    assert torch.equal(kwargs["prompt_embeds"][:, 16:], old(pipe, "cat")[0])
    assert kwargs["negative_prompt_embeds"].shape[1] == 32


def test_a_weighted_negative_prompt_is_weighted(pipe):
    kwargs = embeds(pipe, "a red cat", "(blurry:1.3)")
    positive, negative = old(pipe, "a red cat", "blurry")
    assert torch.equal(kwargs["prompt_embeds"], positive)
    assert not torch.allclose(kwargs["negative_prompt_embeds"], negative)


def test_pipelines_that_encode_themselves_get_the_prompt_without_syntax():
    request = GenerationRequest(prompt="a (red:1.2) cat BREAK dog", negative_prompt="[blurry]",
                                width=32, height=32)
    assert SdFamily().encode_text(object(), request, torch.device("cpu")) == {
        "prompt": "a red cat dog", "negative_prompt": "blurry"}
    plain = GenerationRequest(prompt="a red cat", width=32, height=32)
    assert SdFamily().encode_text(object(), plain, torch.device("cpu")) == {"prompt": "a red cat",
                                                                            "negative_prompt": None}


# ---- end to end -------------------------------------------------------------------------------------------


def test_weighted_and_long_prompts_generate_and_reproduce(generate, make_request):
    def pixels(result):
        return np.asarray(result.images[0].convert("RGB"), dtype=np.int16)

    plain, _ = generate(make_request(prompt="a red cat", seed=5))
    weighted, _ = generate(make_request(prompt="a (red:1.6) cat", seed=5))
    again, _ = generate(make_request(prompt="a (red:1.6) cat", seed=5))
    assert isinstance(weighted, Finished) and weighted.recipe.request.prompt == "a (red:1.6) cat"
    assert np.array_equal(pixels(weighted), pixels(again))
    assert not np.array_equal(pixels(weighted), pixels(plain))
    long, _ = generate(make_request(prompt=" ".join(["a red cat"] * 8), negative_prompt="blurry BREAK dark",
                                    seed=5))
    assert isinstance(long, Finished) and long.images[0].size == (32, 32)


def test_chunked_embeddings_reach_the_hires_pass(generate, make_request, tiny_sd_dir):
    result, events = generate(make_request(model=str(tiny_sd_dir), steps=2, hires_scale=2.0, hires_strength=0.5,
                                           prompt="(a red cat:1.2) BREAK " + ", ".join(["a red cat"] * 5),
                                           negative_prompt="[blurry]"))
    assert isinstance(result, Finished) and result.images[0].size == (64, 64)
    assert any(p.stage == "hires" for p in events.progress)
