"""A1111 prompt weighting on the transformer families that had none (issue 16): PixArt-Sigma's T5 takes the
weights (its text lower-cased and trimmed as the pipeline prepares it, the negative prompt too); the families
whose text encoder is a chat language model (Sana and Sana Sprint: Gemma 2; Z-Image and FLUX.2 [klein]: Qwen3;
Qwen-Image: Qwen2.5-VL) get the prompt without its syntax and one notice saying so. On the tiny random pipelines
of tests/tiny_families.py: a plain prompt keeps the pipeline's own embeddings bit for bit, weights of 1 change
nothing, a weight changes the image."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image
from tiny_families import build_family, build_pipeline

from desktop_app.engine.events import Finished
from desktop_app.engine.families import for_family
from desktop_app.engine.families import pixart as pixart_code
from desktop_app.engine.families.weighted_encoders import t5_tokens
from desktop_app.engine.request import GenerationRequest

CPU = torch.device("cpu")
PLAIN = ["a red cat", "", "A Red CAT", "  cat, red a cat  "]
# tiny folder -> (the engine's family key, the sampler it runs, a size it takes)
UNWEIGHTED = {"sana": ("sana", "Euler", 64), "sana-sprint": ("sana-sprint", "Euler", 32),
              "z-image": ("z-image", "Euler", 32), "qwen-image": ("qwen-image", "Euler", 32),
              "flux2-klein": ("flux2-klein", "Euler", 32)}
RUN = UNWEIGHTED | {"pixart": ("pixart-sigma", "DPM++ 2M", 32)}


@pytest.fixture(scope="module")
def pipe():
    torch.set_grad_enabled(False)  # as the pipeline call runs (its decorator)
    yield build_pipeline("pixart")
    torch.set_grad_enabled(True)


def reference(pipe, prompt: str, negative: str) -> dict:
    names = ("prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds", "negative_prompt_attention_mask")
    embeds = pipe.encode_prompt(prompt, negative_prompt=negative, device=CPU, clean_caption=False)
    return dict(zip(names, embeds), negative_prompt=None)


def assert_bit_equal(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        if expected[name] is None:
            assert got[name] is None, name
            continue
        assert got[name].shape == expected[name].shape, name
        assert torch.equal(got[name], expected[name]), name


def token_ratios(weighted: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
    """weighted / plain, one ratio per token (each token's vector is a multiple of the plain one)."""
    ratios = weighted[0] / plain[0]
    assert torch.allclose(ratios, ratios[:, :1].expand_as(ratios), rtol=1e-4, atol=1e-5)
    return ratios[:, 0]


# ---- PixArt-Sigma's embeddings -----------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", PLAIN)
def test_pixart_our_encoding_of_a_plain_prompt_is_the_pipelines_own(prompt, pipe):
    assert_bit_equal(pixart_code.weighted_kwargs(pipe, [prompt, "Red"], CPU), reference(pipe, prompt, "Red"))


@pytest.mark.parametrize("weighted, plain", [
    ("(a red cat:1.0)", "a red cat"),
    ("  (A Red:1.0) CAT ", "a red cat"),  # lower-cased and trimmed as the pipeline does
    ("a red BREAK cat", "a red cat"),  # T5 reads a BREAK as a space
    (r"\(cat\)", "(cat)"),
])
def test_pixart_weights_of_one_give_the_plain_prompts_embeddings(weighted, plain, pipe):
    assert_bit_equal(pixart_code.weighted_kwargs(pipe, [weighted, "(red:1)"], CPU), reference(pipe, plain, "red"))


def test_pixart_a_weight_scales_its_t5_token_and_the_mean_is_restored(pipe):
    weighted = pixart_code.weighted_kwargs(pipe, ["a (red:1.5) cat", ""], CPU)
    plain = reference(pipe, "a red cat", "")
    ratios = token_ratios(weighted["prompt_embeds"], plain["prompt_embeds"])  # ▁a ▁red ▁cat </s> <pad>...
    assert ratios[1] / ratios[0] == pytest.approx(1.5, rel=1e-4)
    others = torch.cat([ratios[:1], ratios[2:]])
    assert torch.allclose(others, others[0].expand_as(others), rtol=1e-5)
    assert weighted["prompt_embeds"].mean().item() == pytest.approx(plain["prompt_embeds"].mean().item(), rel=1e-4)
    assert torch.equal(weighted["prompt_attention_mask"], plain["prompt_attention_mask"])
    assert torch.equal(weighted["negative_prompt_embeds"], plain["negative_prompt_embeds"])


def test_pixart_a_weighted_negative_prompt_is_weighted_too(pipe):
    weighted = pixart_code.weighted_kwargs(pipe, ["a cat", "red (cat:0.5)"], CPU)
    plain = reference(pipe, "a cat", "red cat")
    assert torch.equal(weighted["prompt_embeds"], plain["prompt_embeds"])
    ratios = token_ratios(weighted["negative_prompt_embeds"], plain["negative_prompt_embeds"])  # ▁red ▁cat </s>
    assert ratios[1] / ratios[0] == pytest.approx(0.5, rel=1e-4)


@pytest.mark.parametrize("prompt, tokens, weights", [
    ("  (A:0.5) Red BREAK [CAT]  ", ["▁a", "▁red", "▁cat"], [0.5, 1.0, 1 / 1.1]),
    (" (  RED cat :1.5) ", ["▁red", "▁cat"], [1.5, 1.5]),
])
def test_pixart_t5_tokens_are_the_prepared_texts_each_with_its_weight(prompt, tokens, weights, pipe):
    ids, got, _ = t5_tokens(pipe, pipe.tokenizer, prompt, 16, lower=True)
    assert pipe.tokenizer.convert_ids_to_tokens(ids[:len(tokens) + 1]) == [*tokens, "</s>"]
    assert got[:len(tokens)] == pytest.approx(weights)


def test_pixart_a_plain_prompt_still_goes_to_the_pipeline_as_text(pipe):
    request = GenerationRequest(prompt="a red cat", negative_prompt="blurry", guidance_scale=4.5)
    assert for_family("pixart-sigma").encode_text(pipe, request, CPU) == {
        "prompt": "a red cat", "negative_prompt": "blurry", "clean_caption": False}
    weighted = GenerationRequest(prompt="a red cat", negative_prompt="[blurry]", guidance_scale=4.5)
    assert "prompt_embeds" in for_family("pixart-sigma").encode_text(pipe, weighted, CPU)
    unguided = GenerationRequest(prompt="a red cat", negative_prompt="[blurry]", guidance_scale=1.0)
    assert "prompt_embeds" not in for_family("pixart-sigma").encode_text(pipe, unguided, CPU)  # not used


# ---- the notices -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key, encoder", [("sana", "Gemma 2"), ("sana-sprint", "Gemma 2"), ("z-image", "Qwen3"),
                                          ("qwen-image", "Qwen2.5-VL"), ("flux2-klein", "Qwen3"),
                                          ("flux2", "Mistral Small 3.1")])
def test_a_chat_model_family_says_once_that_the_weights_were_not_applied(key, encoder):
    family = for_family(key)
    line = family.prompt_notice(GenerationRequest(prompt="a (red:1.3) [cat]"))
    assert line is not None and "\n" not in line
    assert "weighting is not applied" in line and family.display() in line and encoder in line
    assert family.prompt_notice(GenerationRequest(prompt="a red cat")) is None
    if family.negative_prompt:
        assert family.prompt_notice(GenerationRequest(prompt="a cat", negative_prompt="(red:1.2)")) is not None


@pytest.mark.parametrize("key", ["pixart-sigma", "flux", "sd3", "chroma", "sd1", "sdxl"])
def test_the_families_that_weight_prompts_have_no_notice(key):
    assert for_family(key).prompt_notice(GenerationRequest(prompt="a (red:1.3) [cat]")) is None


# ---- through the engine ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("weighted-llm")
    return {name: build_family(name, root / name) for name in RUN}


@pytest.fixture(scope="module")
def engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cpu", preview_share=None)


def generate(engine, folders, name: str, prompt: str, **changes) -> Finished:
    _, sampler, size = RUN[name]
    values = dict(prompt=prompt, model=str(folders[name]), steps=2, width=size, height=size, sampler=sampler,
                  guidance_scale=3.0, seed=11)
    result = engine.run(GenerationRequest(**(values | changes)), lambda event: None)
    assert isinstance(result, Finished)
    return result


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_pixart_a_weight_changes_the_image_and_a_weight_of_one_does_not(folders, engine):
    plain = generate(engine, folders, "pixart", "a red cat")
    weighted = generate(engine, folders, "pixart", "a red (cat:1.5)")
    one = generate(engine, folders, "pixart", "a red (cat:1.0)")
    assert np.abs(pixels(weighted.images[0]) - pixels(plain.images[0])).max() > 0
    assert np.abs(pixels(one.images[0]) - pixels(plain.images[0])).max() <= 1
    assert weighted.recipe.request.prompt == "a red (cat:1.5)"  # the prompt as written
    assert not weighted.recipe.notices


def test_pixart_a_weighted_negative_prompt_changes_the_image_and_a_batch_reproduces(folders, engine):
    plain = generate(engine, folders, "pixart", "a cat", negative_prompt="red")
    weighted = generate(engine, folders, "pixart", "a cat", negative_prompt="(red:1.5)", batch_size=2)
    second = generate(engine, folders, "pixart", "a cat", negative_prompt="(red:1.5)", seed=12)
    assert np.abs(pixels(weighted.images[0]) - pixels(plain.images[0])).max() > 0
    assert np.abs(pixels(weighted.images[1]) - pixels(second.images[0])).max() <= 1


@pytest.mark.parametrize("name", list(UNWEIGHTED))
def test_a_chat_model_family_draws_the_prompt_without_its_syntax(name, folders, engine):
    negative = {"negative_prompt": "[blurry]"} if for_family(RUN[name][0]).negative_prompt else {}
    written = generate(engine, folders, name, "a (red:1.4) [cat] BREAK dog", **negative)
    stripped = generate(engine, folders, name, "a red cat dog",
                        **{key: "blurry" for key in negative})
    assert np.array_equal(pixels(written.images[0]), pixels(stripped.images[0]))
    assert written.recipe.request.prompt == "a (red:1.4) [cat] BREAK dog"


@pytest.mark.parametrize("name", ["sana", "qwen-image"])
def test_the_recipe_of_a_chat_model_family_says_the_weights_were_not_applied(name, folders, engine):
    written = generate(engine, folders, name, "a (red:1.4) cat")
    assert [line for line in written.recipe.notices if "weighting is not applied" in line] == [
        for_family(RUN[name][0]).prompt_notice(written.recipe.request)]
    assert not generate(engine, folders, name, "a red cat").recipe.notices
