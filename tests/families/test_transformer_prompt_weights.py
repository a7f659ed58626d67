"""A1111 prompt weighting on the transformer families (issue 16): Flux.1 (T5 weighted, CLIP's pooled vector of the
plain text), SD3 (both CLIPs in 75-token windows, T5 weighted, the negative prompt too) and Chroma (T5 with its
attention mask, the negative prompt too), on the tiny random
pipelines of tests/tiny_families.py. A plain prompt keeps the pipeline's own embeddings bit for bit; weights of 1
change nothing; a weight scales its token's vector (then the mean is restored, as A1111 does); the recipe keeps the
prompt as it was written."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_families import build_family, build_pipeline

from desktop_app.engine.events import Finished
from desktop_app.engine.families import for_family
from desktop_app.engine.families import flux as flux_code
from desktop_app.engine.families import sd3 as sd3_code
from desktop_app.engine.families.weighted_encoders import t5_tokens
from desktop_app.engine.request import GenerationRequest

CPU = torch.device("cpu")
PLAIN = ["a red cat", "", "cat", "a cat, a red cat, red, red a cat"]


@pytest.fixture(scope="module")
def pipes():
    torch.set_grad_enabled(False)  # as the pipeline call runs (its decorator)
    yield {name: build_pipeline(name) for name in ("flux", "sd3", "chroma")}
    torch.set_grad_enabled(True)


def flux_reference(pipe, prompt: str) -> dict:
    embeds, pooled, _ = pipe.encode_prompt(prompt, None, device=CPU)
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}


def sd3_reference(pipe, prompt: str, negative: str) -> dict:
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    return dict(zip(names, pipe.encode_prompt(prompt, None, None, device=CPU, negative_prompt=negative)))


def chroma_reference(pipe, prompt: str, negative: str) -> dict:
    embeds, _, mask, negative_embeds, _, negative_mask = pipe.encode_prompt(
        prompt, negative_prompt=negative, device=CPU, do_classifier_free_guidance=True)
    return {"prompt_embeds": embeds, "prompt_attention_mask": mask, "negative_prompt_embeds": negative_embeds,
            "negative_prompt_attention_mask": negative_mask}


def assert_bit_equal(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].shape == expected[name].shape, name
        assert torch.equal(got[name], expected[name]), name


# ---- the embeddings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", PLAIN)
def test_flux_our_encoding_of_a_plain_prompt_is_the_pipelines_own(prompt, pipes):
    pipe = pipes["flux"]
    assert_bit_equal(flux_code.weighted_kwargs(pipe, prompt, CPU), flux_reference(pipe, prompt))


@pytest.mark.parametrize("prompt", PLAIN)
def test_sd3_our_encoding_of_a_plain_prompt_is_the_pipelines_own(prompt, pipes):
    pipe = pipes["sd3"]
    assert_bit_equal(sd3_code.weighted_kwargs(pipe, [prompt, "red"], CPU), sd3_reference(pipe, prompt, "red"))


@pytest.mark.parametrize("prompt", PLAIN)
def test_chroma_our_encoding_of_a_plain_prompt_is_the_pipelines_own(prompt, pipes):
    pipe = pipes["chroma"]
    assert_bit_equal(flux_code.chroma_weighted_kwargs(pipe, [prompt, "red"], CPU),
                     chroma_reference(pipe, prompt, "red"))


def test_chroma_a_weight_scales_its_t5_token_and_weights_of_one_change_nothing(pipes):
    pipe = pipes["chroma"]
    plain = chroma_reference(pipe, "a cat", "red")
    one = flux_code.chroma_weighted_kwargs(pipe, ["(a cat:1.0)", "(red:1.0)"], CPU)
    assert_bit_equal(one, plain)
    weighted = flux_code.chroma_weighted_kwargs(pipe, ["a (cat:1.5)", "red"], CPU)
    ratios = token_ratios(weighted["prompt_embeds"], plain["prompt_embeds"])  # ▁a ▁cat </s>
    assert ratios[1] / ratios[0] == pytest.approx(1.5, rel=1e-4)
    assert torch.equal(weighted["prompt_attention_mask"], plain["prompt_attention_mask"])
    assert torch.equal(weighted["negative_prompt_embeds"], plain["negative_prompt_embeds"])


@pytest.mark.parametrize("family", ["flux", "sd3", "chroma"])
def test_a_plain_prompt_still_goes_to_the_pipeline_as_text(family, pipes):
    request = GenerationRequest(prompt="a red cat", negative_prompt="" if family == "flux" else "red",
                                sampler="Euler", guidance_scale=3.0)
    kwargs = for_family(family).encode_text(pipes[family], request, CPU)
    assert kwargs["prompt"] == "a red cat" and "prompt_embeds" not in kwargs


@pytest.mark.parametrize("weighted, plain", [
    ("(a red cat:1.0)", "a red cat"),
    ("a (red:1.0) cat", "a red cat"),
    ("a red BREAK cat", "a red cat"),  # T5 reads a BREAK as a space
    (r"\(cat\)", "(cat)"),
])
def test_flux_weights_of_one_give_the_plain_prompts_embeddings(weighted, plain, pipes):
    pipe = pipes["flux"]
    assert_bit_equal(flux_code.weighted_kwargs(pipe, weighted, CPU), flux_reference(pipe, plain))


def test_sd3_weights_of_one_give_the_plain_prompts_embeddings(pipes):
    pipe = pipes["sd3"]
    got = sd3_code.weighted_kwargs(pipe, ["(a red cat:1.0)", "a (red:1.0)"], CPU)
    assert_bit_equal(got, sd3_reference(pipe, "a red cat", "a red"))


def token_ratios(weighted: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
    """weighted / plain, one ratio per token (each token's vector is a multiple of the plain one)."""
    ratios = weighted[0] / plain[0]
    assert torch.allclose(ratios, ratios[:, :1].expand_as(ratios), rtol=1e-4, atol=1e-5)
    return ratios[:, 0]


def test_flux_a_weight_scales_its_t5_tokens_and_the_mean_is_restored(pipes):
    pipe = pipes["flux"]
    weighted = flux_code.weighted_kwargs(pipe, "a (red:1.5) cat", CPU)
    plain = flux_reference(pipe, "a red cat")
    ids, weights, _ = t5_tokens(pipe, pipe.tokenizer_2, "a (red:1.5) cat", 512)
    assert pipe.tokenizer_2.convert_ids_to_tokens(ids[:4]) == ["▁a", "▁red", "▁cat", "</s>"]
    assert weights[:4] == [1.0, 1.5, 1.0, 1.0]
    ratios = token_ratios(weighted["prompt_embeds"], plain["prompt_embeds"])
    others = torch.cat([ratios[:1], ratios[2:]])
    assert torch.allclose(others, others[0].expand_as(others), rtol=1e-5)  # one rescale for all the others
    assert ratios[1] / ratios[0] == pytest.approx(1.5, rel=1e-4)
    assert others[0] != 1.0  # the rescale happened, and it restores the mean
    assert weighted["prompt_embeds"].mean().item() == pytest.approx(plain["prompt_embeds"].mean().item(),
                                                                    rel=1e-4)
    assert torch.equal(weighted["pooled_prompt_embeds"], plain["pooled_prompt_embeds"])  # plain text: unweighted


@pytest.mark.parametrize("prompt, tokens, weights", [
    ("a (red cat:1.5)", ["▁a", "▁red", "▁cat"], [1.0, 1.5, 1.5]),
    ("(a:0.5) red BREAK [cat]", ["▁a", "▁red", "▁cat"], [0.5, 1.0, 1 / 1.1]),
    ("a red, (cat:1.2)", ["▁a", "▁red", ",", "▁cat"], [1.0, 1.0, 1.0, 1.2]),  # the plain text's own tokens
])
def test_t5_tokens_are_the_plain_prompts_each_with_the_weight_of_its_text(prompt, tokens, weights, pipes):
    tokenizer = pipes["flux"].tokenizer_2
    ids, got, _ = t5_tokens(pipes["flux"], tokenizer, prompt, 16)
    assert tokenizer.convert_ids_to_tokens(ids[:len(tokens) + 1]) == [*tokens, "</s>"]
    assert got[:len(tokens)] == pytest.approx(weights)


def test_flux_a_weight_below_one_and_brackets_scale_as_a1111(pipes):
    pipe = pipes["flux"]
    plain = flux_reference(pipe, "a red cat")["prompt_embeds"]
    for prompt, expected in [("a [red] cat", 1 / 1.1), ("a ((red)) cat", 1.21), ("a (red:0.5) cat", 0.5)]:
        ratios = token_ratios(flux_code.weighted_kwargs(pipe, prompt, CPU)["prompt_embeds"], plain)
        assert ratios[1] / ratios[0] == pytest.approx(expected, rel=1e-4), prompt


def test_sd3_a_weight_scales_its_tokens_in_both_clips_and_t5(pipes):
    pipe = pipes["sd3"]
    weighted = sd3_code.weighted_kwargs(pipe, ["a (cat:1.5)", ""], CPU)
    plain = sd3_reference(pipe, "a cat", "")
    clip_width = pipe.text_encoder.config.hidden_size
    got, expected = weighted["prompt_embeds"], plain["prompt_embeds"]
    for part in (slice(0, clip_width), slice(clip_width, 2 * clip_width)):  # CLIP-L, CLIP-G: <start> a cat
        ratios = token_ratios(got[:, :77, part], expected[:, :77, part])
        assert ratios[2] / ratios[1] == pytest.approx(1.5, rel=1e-4)
    t5 = token_ratios(got[:, 77:], expected[:, 77:])  # ▁a ▁cat </s>
    assert t5[1] / t5[0] == pytest.approx(1.5, rel=1e-4)
    assert torch.equal(weighted["pooled_prompt_embeds"], plain["pooled_prompt_embeds"])
    assert torch.equal(weighted["negative_prompt_embeds"], plain["negative_prompt_embeds"])


def test_sd3_a_weighted_negative_prompt_is_weighted_too(pipes):
    pipe = pipes["sd3"]
    weighted = sd3_code.weighted_kwargs(pipe, ["a cat", "(red:1.5)"], CPU)
    plain = sd3_reference(pipe, "a cat", "red")
    assert torch.equal(weighted["prompt_embeds"], plain["prompt_embeds"])
    t5 = token_ratios(weighted["negative_prompt_embeds"][:, 77:], plain["negative_prompt_embeds"][:, 77:])
    assert t5[0] / t5[1] == pytest.approx(1.5, rel=1e-4)  # ▁red </s>


def test_sd3_break_and_long_prompts_take_more_clip_windows_and_the_negative_as_many(pipes):
    pipe = pipes["sd3"]
    t5_length = 256  # the SD3 call's max_sequence_length
    got = sd3_code.weighted_kwargs(pipe, ["a (cat:1.2) BREAK red", "red"], CPU)
    assert got["prompt_embeds"].shape[1] == got["negative_prompt_embeds"].shape[1] == 2 * 77 + t5_length
    long = "(a:1.0) " + "red cat, " * 40  # 120 tokens: two windows, cut at a comma
    got = sd3_code.weighted_kwargs(pipe, [long, ""], CPU)
    assert got["prompt_embeds"].shape[1] == 2 * 77 + t5_length


def test_flux_a_prompt_over_t5s_length_is_cut_as_the_pipeline_cuts_it_and_says_so(pipes, caplog):
    pipe = pipes["flux"]
    long = "a red cat " * 200  # 600 T5 tokens, over 512
    with caplog.at_level(logging.WARNING):
        got = flux_code.weighted_kwargs(pipe, f"({long}:1.0)", CPU)
    assert_bit_equal(got, flux_reference(pipe, long))
    assert "truncated" in caplog.text and "512" in caplog.text
    ids, weights, mask = t5_tokens(pipe, pipe.tokenizer_2, f"(cat:1.5) {long}", 512)
    assert len(ids) == len(weights) == 512 and ids[-1] == pipe.tokenizer_2.eos_token_id and sum(mask) == 512
    assert weights[0] == 1.5 and set(weights[1:]) == {1.0}


# ---- through the engine and the command line -------------------------------------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("weighted")
    return {name: build_family(name, root / name) for name in ("flux", "sd3", "chroma")}


@pytest.fixture(scope="module")
def engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cpu", preview_share=None)


def generate(engine, folder, prompt: str, **changes) -> Finished:
    values = dict(prompt=prompt, model=str(folder), steps=2, width=32, height=32, sampler="Euler",
                  guidance_scale=3.0, seed=11)
    return engine.run(GenerationRequest(**(values | changes)), lambda event: None)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("family", ["flux", "sd3", "chroma"])
def test_a_weight_changes_the_image_and_a_weight_of_one_does_not(family, folders, engine):
    plain = generate(engine, folders[family], "a red cat")
    weighted = generate(engine, folders[family], "a red (cat:1.5)")
    one = generate(engine, folders[family], "a red (cat:1.0)")
    assert np.abs(pixels(weighted.images[0]) - pixels(plain.images[0])).max() > 0
    assert np.array_equal(pixels(one.images[0]), pixels(plain.images[0]))
    assert weighted.recipe.request.prompt == "a red (cat:1.5)"  # the prompt as written


@pytest.mark.parametrize("family", ["sd3", "chroma"])
def test_a_weighted_negative_prompt_changes_the_image(family, folders, engine):
    plain = generate(engine, folders[family], "a cat", negative_prompt="red")
    weighted = generate(engine, folders[family], "a cat", negative_prompt="(red:1.5)")
    assert np.abs(pixels(weighted.images[0]) - pixels(plain.images[0])).max() > 0
    assert weighted.recipe.request.negative_prompt == "(red:1.5)"


@pytest.mark.parametrize("family", ["flux", "sd3", "chroma"])
def test_a_weighted_batch_reproduces_each_image_alone(family, folders, engine):
    """SD3's and Chroma's pipelines do not repeat given embeddings for each image: the engine repeats them."""
    for prompt, negative in [("a (red:1.3) cat", ""), ("a red cat", "[cat]")]:
        if family == "flux" and negative:
            continue  # Flux takes no negative prompt
        batch = generate(engine, folders[family], prompt, negative_prompt=negative, batch_size=2)
        second = generate(engine, folders[family], prompt, negative_prompt=negative, seed=12)
        assert len(batch.images) == 2
        assert np.abs(pixels(batch.images[1]) - pixels(second.images[0])).max() <= 1


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_the_command_line_keeps_the_weighted_prompt_as_written(family, folders, tmp_path):
    from desktop_app.cli import main

    out = tmp_path / f"{family}.png"
    assert main(["generate", "a (red:1.4) [cat] BREAK cat", "--model", str(folders[family]), "--steps", "2",
                 "--width", "32", "--height", "32", "--out", str(out)]) == 0
    recipe = json.loads(Image.open(out).text["recipe"])
    assert recipe["prompt"] == "a (red:1.4) [cat] BREAK cat" and recipe["family"] == family
