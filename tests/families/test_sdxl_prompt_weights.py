"""A1111 prompt weighting on SDXL and its refiner (issue 16; engine/families/sd.py, xl_weighted_kwargs): per
75-token window (here the tiny tokenizers' 14), CLIP-L's and bigG's penultimate hidden states side by side along
the width (768 + 1280; the refiner's 1280 alone), each token times its weight and each encoder's window scaled
back to its mean; the windows along the sequence; the pooled vector bigG's of the first window. A plain prompt
keeps the pipeline's own embeddings bit for bit; weights of 1 change nothing; through the Engine a weight changes
the image, the recipe keeps the prompt as written, and a weighted batch reproduces each image alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_checkpoints import REFINER, build_tiny_pipeline
from tiny_families import build_family, build_pipeline

from desktop_app.engine.events import Finished
from desktop_app.engine.families import for_family
from desktop_app.engine.families.sd import xl_weighted_kwargs
from desktop_app.engine.request import GenerationRequest

CPU = torch.device("cpu")
PLAIN = ["a red cat", "", "cat", "a cat, a red cat, red"]
NAMES = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
L_WIDTH = 768  # CLIP-L's share of the 2048


@pytest.fixture(scope="module")
def pipes():
    torch.set_grad_enabled(False)  # as the pipeline call runs (its decorator)
    base = build_pipeline("sdxl")
    yield {"sdxl": base, "refiner": build_tiny_pipeline(REFINER, base=base)}
    torch.set_grad_enabled(True)


def reference(pipe, prompt: str, negative: str | None) -> dict:
    """The pipeline's own encode_prompt (negative None: SDXL's zeros where the model asks for them)."""
    return dict(zip(NAMES, pipe.encode_prompt(prompt, device=CPU, negative_prompt=negative)))


def assert_bit_equal(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].shape == expected[name].shape, name
        assert torch.equal(got[name], expected[name]), name


def token_ratios(weighted: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
    """weighted / plain, one ratio per token (each token's vector must be a multiple of the plain one)."""
    ratios = weighted[0] / plain[0]
    assert torch.allclose(ratios, ratios[:, :1].expand_as(ratios), rtol=1e-4, atol=1e-5)
    return ratios[:, 0]


def request(prompt: str, negative: str = "", **changes) -> GenerationRequest:
    values = dict(prompt=prompt, negative_prompt=negative, width=32, height=32, steps=2, sampler="Euler",
                  guidance_scale=5.0, seed=11)
    return GenerationRequest(**(values | changes))


def encode(pipe, prompt: str, negative: str = "", **changes) -> dict:
    with torch.inference_mode():
        return for_family("sdxl").encode_text(pipe, request(prompt, negative, **changes), CPU)


# ---- the embeddings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["sdxl", "refiner"])
@pytest.mark.parametrize("prompt", PLAIN)
def test_our_encoding_of_a_plain_prompt_is_the_pipelines_own(prompt, which, pipes):
    pipe = pipes[which]
    assert_bit_equal(xl_weighted_kwargs(pipe, [prompt, "red"], CPU), reference(pipe, prompt, "red"))


def test_an_empty_negative_prompt_is_sdxls_zeros_as_diffusers_gives_them(pipes):
    pipe = pipes["sdxl"]
    assert pipe.config.force_zeros_for_empty_prompt
    expected = reference(pipe, "a red cat", None)
    assert not expected["negative_prompt_embeds"].any()
    assert_bit_equal(xl_weighted_kwargs(pipe, ["a red cat"], CPU, zero_negative=True), expected)
    assert_bit_equal(encode(pipe, "a red cat"), expected)  # plain: the pipeline's own encode_prompt
    weighted = encode(pipe, "a red (cat:1.3)")  # weighted: zeros as long as the positive
    assert not weighted["negative_prompt_embeds"].any() and not weighted["negative_pooled_prompt_embeds"].any()
    assert weighted["negative_prompt_embeds"].shape == weighted["prompt_embeds"].shape


def test_the_refiner_encodes_an_empty_negative_prompt_as_its_config_says(pipes):
    pipe = pipes["refiner"]
    assert not pipe.config.force_zeros_for_empty_prompt
    got = encode(pipe, "a (red:1.0) cat")
    assert_bit_equal(got, reference(pipe, "a red cat", ""))
    assert got["negative_prompt_embeds"].any()


@pytest.mark.parametrize("which", ["sdxl", "refiner"])
@pytest.mark.parametrize("weighted, plain, negative, plain_negative", [
    ("(cat:1.0)", "cat", "red", "red"),
    ("(a red cat:1.0)", "a red cat", "a (red:1.0)", "a red"),
    (r"\(cat\)", "(cat)", "", None),  # no negative prompt: SDXL's zeros (the refiner's config: its encoding)
])
def test_weights_of_one_give_the_plain_prompts_embeddings(weighted, plain, negative, plain_negative, which, pipes):
    pipe = pipes[which]
    expected = reference(pipe, plain, plain_negative)
    assert_bit_equal(encode(pipe, weighted, negative), expected)
    if plain_negative is not None:
        assert_bit_equal(xl_weighted_kwargs(pipe, [weighted, negative], CPU), expected)


def test_a_weight_scales_its_token_in_both_halves_and_each_half_keeps_its_mean(pipes):
    pipe = pipes["sdxl"]
    weighted = encode(pipe, "a (cat:1.5)", "red")
    plain = reference(pipe, "a cat", "red")
    got, expected = weighted["prompt_embeds"], plain["prompt_embeds"]
    assert got.shape == (1, 16, 2048)
    ids = pipe.tokenizer("a cat")["input_ids"]
    assert pipe.tokenizer.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "cat</w>", "<|endoftext|>"]
    for part in (slice(0, L_WIDTH), slice(L_WIDTH, 2048)):  # CLIP-L, bigG: <start> a cat <end> padding
        ratios = token_ratios(got[:, :, part], expected[:, :, part])
        others = torch.cat([ratios[:2], ratios[3:]])
        assert torch.allclose(others, others[0].expand_as(others), rtol=1e-5)  # one rescale for the others
        assert ratios[2] / ratios[0] == pytest.approx(1.5, rel=1e-4)
        assert others[0] != pytest.approx(1.0, abs=1e-4)  # the rescale happened, and restores the mean
        assert got[:, :, part].mean().item() == pytest.approx(expected[:, :, part].mean().item(), rel=1e-4)
    assert torch.equal(weighted["pooled_prompt_embeds"], plain["pooled_prompt_embeds"])  # unweighted, as A1111
    assert torch.equal(weighted["negative_prompt_embeds"], plain["negative_prompt_embeds"])
    assert torch.equal(weighted["negative_pooled_prompt_embeds"], plain["negative_pooled_prompt_embeds"])


def test_the_refiner_weights_its_one_encoder(pipes):
    pipe = pipes["refiner"]
    weighted = encode(pipe, "a cat", "(red:0.5)")
    plain = reference(pipe, "a cat", "red")
    assert torch.equal(weighted["prompt_embeds"], plain["prompt_embeds"])
    assert weighted["negative_prompt_embeds"].shape == (1, 16, 1280)
    ratios = token_ratios(weighted["negative_prompt_embeds"], plain["negative_prompt_embeds"])  # <start> red
    assert ratios[1] / ratios[0] == pytest.approx(0.5, rel=1e-4)


def test_a_weighted_negative_prompt_is_weighted_in_both_halves(pipes):
    pipe = pipes["sdxl"]
    weighted = encode(pipe, "a cat", "[red]")
    plain = reference(pipe, "a cat", "red")
    assert torch.equal(weighted["prompt_embeds"], plain["prompt_embeds"])
    for part in (slice(0, L_WIDTH), slice(L_WIDTH, 2048)):
        ratios = token_ratios(weighted["negative_prompt_embeds"][:, :, part],
                              plain["negative_prompt_embeds"][:, :, part])
        assert ratios[1] / ratios[0] == pytest.approx(1 / 1.1, rel=1e-4)


def test_break_makes_two_windows_and_the_negative_as_many(pipes):
    pipe = pipes["sdxl"]
    got = encode(pipe, "a red BREAK cat", "blurry")
    assert got["prompt_embeds"].shape == got["negative_prompt_embeds"].shape == (1, 32, 2048)
    assert torch.equal(got["prompt_embeds"][:, :16], reference(pipe, "a red", "")["prompt_embeds"])
    assert torch.equal(got["prompt_embeds"][:, 16:], reference(pipe, "cat", "")["prompt_embeds"])
    blurry, empty = reference(pipe, "blurry", ""), reference(pipe, "", "")
    assert torch.equal(got["negative_prompt_embeds"][:, :16], blurry["prompt_embeds"])
    assert torch.equal(got["negative_prompt_embeds"][:, 16:], empty["prompt_embeds"])  # filled up, as A1111
    # A1111's pooled vector: bigG's of the first window
    assert torch.equal(got["pooled_prompt_embeds"], reference(pipe, "a red", "")["pooled_prompt_embeds"])
    assert torch.equal(got["negative_pooled_prompt_embeds"], blurry["pooled_prompt_embeds"])


def test_a_long_plain_prompt_is_encoded_in_windows_instead_of_cut(pipes):
    pipe = pipes["sdxl"]
    prompt = ", ".join(["a red cat"] * 6)  # 23 tokens, over the tiny window's 14
    got = encode(pipe, prompt, "blurry")
    assert got["prompt_embeds"].shape == (1, 32, 2048)
    cut = reference(pipe, prompt, "blurry")  # what the pipeline alone gives: the first 14 tokens
    assert cut["prompt_embeds"].shape == (1, 16, 2048)
    # the first window ends at its last comma (A1111's backtrack), not in the middle of "a red cat"
    first = reference(pipe, "a red cat, a red cat, a red cat,", "")
    assert torch.equal(got["prompt_embeds"][:, :16], first["prompt_embeds"])
    assert torch.equal(got["pooled_prompt_embeds"], first["pooled_prompt_embeds"])


def test_without_guidance_only_the_prompt_is_encoded(pipes):
    got = encode(pipes["sdxl"], "a (red:1.2) cat", "blurry", guidance_scale=1.0)
    assert set(got) == {"prompt_embeds", "pooled_prompt_embeds"}
    plain = encode(pipes["sdxl"], "a red cat", "blurry", guidance_scale=1.0)
    assert set(plain) == {"prompt_embeds", "pooled_prompt_embeds"}


def test_with_a_refiner_the_base_weights_its_own_prompt(pipes):
    """run_steps encodes for the base and the refiner each: the base gets its weighted embeddings."""
    got = encode(pipes["sdxl"], "a (red:1.2) cat BREAK dog", "[blurry]", refiner="some-refiner")
    assert "prompt" not in got and got["prompt_embeds"].shape[-1] == 768 + 1280


# ---- through the Engine --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_family("sdxl", tmp_path_factory.mktemp("weighted-xl") / "sdxl")


@pytest.fixture(scope="module")
def engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cpu", preview_share=None)


def generate(engine, folder, prompt: str, **changes) -> Finished:
    result = engine.run(request(prompt, model=str(folder), **changes), lambda event: None)
    assert isinstance(result, Finished)
    return result


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_a_weight_changes_the_image_and_a_weight_of_one_does_not(folder, engine):
    plain = generate(engine, folder, "a red cat", negative_prompt="blurry")
    weighted = generate(engine, folder, "a red (cat:1.5)", negative_prompt="blurry")
    one = generate(engine, folder, "a red (cat:1.0)", negative_prompt="(blurry:1.0)")
    assert np.abs(pixels(weighted.images[0]) - pixels(plain.images[0])).max() > 0
    assert np.array_equal(pixels(one.images[0]), pixels(plain.images[0]))
    assert weighted.recipe.request.prompt == "a red (cat:1.5)"  # the prompt as written
    assert one.recipe.request.negative_prompt == "(blurry:1.0)"


def test_a_weighted_negative_prompt_changes_the_image(folder, engine):
    plain = generate(engine, folder, "a cat", negative_prompt="red")
    weighted = generate(engine, folder, "a cat", negative_prompt="(red:1.5)")
    assert np.abs(pixels(weighted.images[0]) - pixels(plain.images[0])).max() > 0


def test_a_weighted_batch_reproduces_each_image_alone(folder, engine):
    batch = generate(engine, folder, "a (red:1.3) cat BREAK dog", batch_size=2)
    first = generate(engine, folder, "a (red:1.3) cat BREAK dog")
    second = generate(engine, folder, "a (red:1.3) cat BREAK dog", seed=12)
    assert batch.seeds == [11, 12]
    assert np.abs(pixels(batch.images[0]) - pixels(first.images[0])).max() <= 1
    assert np.abs(pixels(batch.images[1]) - pixels(second.images[0])).max() <= 1
    assert np.abs(pixels(batch.images[0]) - pixels(batch.images[1])).max() > 0


def test_the_hires_fix_takes_the_weighted_embeddings_too(folder, engine):
    result = generate(engine, folder, "a (red:1.3) cat BREAK dog", hires_scale=1.5, hires_strength=0.5)
    assert result.images[0].size == (48, 48)
    assert result.recipe.request.prompt == "a (red:1.3) cat BREAK dog"


def test_with_a_refiner_a_weighted_prompt_still_generates(engine, tmp_path):
    base = build_pipeline("sdxl")
    base.save_pretrained(tmp_path / "base")
    build_tiny_pipeline(REFINER, base=base).save_pretrained(tmp_path / "refiner")
    result = generate(engine, tmp_path / "base", "a (red:1.3) cat BREAK dog", negative_prompt="[blurry]",
                      refiner=str(tmp_path / "refiner"), steps=4)
    assert result.recipe.request.prompt == "a (red:1.3) cat BREAK dog"
    # the base and the refiner each weight the prompt: a weight of 1 is the plain prompt, another weight is not
    same = dict(refiner=str(tmp_path / "refiner"), steps=4, negative_prompt="blurry")
    plain, one = (np.asarray(generate(engine, tmp_path / "base", prompt, **same).images[0], dtype=np.int16)
                  for prompt in ("a red cat", "a (red:1.0) cat"))
    more = np.asarray(generate(engine, tmp_path / "base", "a (red:3) cat", **same).images[0], dtype=np.int16)
    assert np.abs(plain - one).max() == 0 and np.abs(plain - more).max() > 0  # a tiny model: text moves little
    assert len(generate(engine, tmp_path / "base", "a (red:1.3) cat", batch_size=2, **same).images) == 2
