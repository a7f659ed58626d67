"""Where the words landed (engine/attention_maps.py): a token's map concentrates where a tiny cross-attention
model, trained here for it, puts that token's object; the conditioned half of a guided batch is the one mapped;
the maps sum over steps, come at image size, and leave the UNet's processors (and so its images) exactly as they
were; the explain report on the embedded model has the page."""

from __future__ import annotations

import dataclasses
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny_models import tiny_clip_tokenizer

from desktop_app.engine.attention_maps import cross_attention_layers, prompt_tokens, record_attention
from desktop_app.engine.request import GenerationRequest

SIDE = 8  # the tiny net's latent, 8 x 8 (a 32 x 32 image at the stand-in VAE's factor of 4)
PROMPTS = ["red", "cat", "red cat", "cat red", ""]


class TinyCrossAttentionNet(torch.nn.Module):
    """A stand-in for a UNet: two cross-attention layers (diffusers' Attention, as a UNet's ``attn2``), one at
    the latent's size and one at half of it. Its input has a positional channel (left -1 .. right +1); it
    predicts, per position, whether the object of its half of the picture is in the prompt."""

    def __init__(self, width: int = 16, context: int = 32):
        from diffusers.models.attention_processor import Attention

        super().__init__()
        self.proj_in = torch.nn.Conv2d(1, width, 1)
        self.fine = torch.nn.ModuleDict({"attn2": Attention(width, cross_attention_dim=context, heads=2,
                                                            dim_head=8)})
        self.coarse = torch.nn.ModuleDict({"attn2": Attention(width, cross_attention_dim=context, heads=2,
                                                              dim_head=8)})
        self.proj_out = torch.nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h = self.proj_in(x)
        b, c, height, width = h.shape
        fine = self.fine["attn2"](h.flatten(2).transpose(1, 2), context).transpose(1, 2).reshape(h.shape)
        small = torch.nn.functional.avg_pool2d(h, 2)
        coarse = self.coarse["attn2"](small.flatten(2).transpose(1, 2), context).transpose(1, 2)
        coarse = torch.nn.functional.interpolate(coarse.reshape(b, c, height // 2, width // 2), scale_factor=2)
        return self.proj_out(fine + coarse)


def _layout(tokenizer, table: torch.Tensor, prompt: str) -> torch.Tensor:
    """The prompt as an SD pipeline lays it out for the UNet (start, tokens, end, padding), each id's row of a
    fixed random table standing for the text encoder: (window, width)."""
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length)["input_ids"]
    return table[torch.tensor(ids)]


def _target(prompt: str) -> torch.Tensor:
    """The picture the prompt asks for: "red" fills the left half, "cat" the right."""
    picture = torch.zeros(1, SIDE, SIDE)
    words = prompt.split()
    picture[:, :, :SIDE // 2] = float("red" in words)
    picture[:, :, SIDE // 2:] = float("cat" in words)
    return picture


@pytest.fixture(scope="module")
def trained():
    """The tiny net trained (a few hundred steps) to draw each word's object in its half, as a pipeline
    stand-in: the tiny CLIP tokenizer, a VAE factor of 4, guidance on or off."""
    torch.manual_seed(0)
    tokenizer = tiny_clip_tokenizer()
    table = torch.randn(len(tokenizer), 32)
    net = TinyCrossAttentionNet()
    position = torch.linspace(-1, 1, SIDE).expand(1, 1, SIDE, SIDE)
    contexts = {prompt: _layout(tokenizer, table, prompt) for prompt in PROMPTS}
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        chosen = [PROMPTS[k] for k in torch.randint(len(PROMPTS), (16,))]
        guess = net(position.expand(16, -1, -1, -1), torch.stack([contexts[p] for p in chosen]))
        loss = torch.nn.functional.mse_loss(guess, torch.stack([_target(p) for p in chosen]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.02, f"the tiny net did not learn its task (loss {loss.item():.3f})"
    net.eval()
    return SimpleNamespace(net=net, tokenizer=tokenizer, contexts=contexts, position=position)


def _maps(trained, prompt: str, guided: bool, steps: int = 3):
    """Run the tiny net ``steps`` times on ``prompt`` (with guidance: [empty prompt, prompt] as one batch, as
    the pipelines do) with the maps recorded."""
    pipe = SimpleNamespace(tokenizer=trained.tokenizer, vae_scale_factor=4, do_classifier_free_guidance=guided)
    cond = trained.contexts[prompt]
    context = torch.stack([trained.contexts[""], cond]) if guided else cond[None]
    with torch.no_grad(), record_attention(pipe, prompt, (32, 32), unet=trained.net) as recorder:
        for _ in range(steps):
            trained.net(trained.position.expand(len(context), -1, -1, -1), context)
    return recorder.result()


def _left_share(heat: np.ndarray) -> float:
    return float(heat[:, :heat.shape[1] // 2].sum() / heat.sum())


@pytest.mark.parametrize("guided", [False, True])
def test_a_tokens_map_lands_where_the_model_puts_its_object(trained, guided):
    found = _maps(trained, "red cat", guided)
    assert [token.text for token in found.tokens] == ["red", "cat"]
    assert found.maps.shape == (2, 32, 32) and found.steps == 3 and len(found.layers) == 2
    red, cat = found.maps
    assert _left_share(red) > 0.8, _left_share(red)  # the trained net reads "red" from the left half ...
    assert _left_share(cat) < 0.2, _left_share(cat)  # ... and "cat" from the right
    # the same holds for the raw sums (before stretching to 0..1), at the latent's size
    raw_red, raw_cat = found.latent_sums
    assert raw_red.shape == (SIDE, SIDE)
    assert raw_red[:, :SIDE // 2].sum() > raw_red[:, SIDE // 2:].sum()
    assert raw_cat[:, SIDE // 2:].sum() > raw_cat[:, :SIDE // 2].sum()


def test_with_guidance_the_conditioned_half_is_mapped(trained):
    guided, alone = _maps(trained, "cat red", True), _maps(trained, "cat red", False)
    assert [token.text for token in guided.tokens] == ["cat", "red"]
    np.testing.assert_allclose(guided.latent_sums, alone.latent_sums, rtol=1e-4, atol=1e-6)
    # the unconditioned half alone (the empty prompt at those positions) gives other maps
    pipe = SimpleNamespace(tokenizer=trained.tokenizer, vae_scale_factor=4, do_classifier_free_guidance=False)
    with torch.no_grad(), record_attention(pipe, "cat red", (32, 32), unet=trained.net) as recorder:
        for _ in range(3):
            trained.net(trained.position, trained.contexts[""][None])
    assert not np.allclose(recorder.result().latent_sums, alone.latent_sums, rtol=1e-2)


def test_maps_sum_over_steps(trained):
    one, two = _maps(trained, "red cat", True, steps=1), _maps(trained, "red cat", True, steps=2)
    assert (one.steps, two.steps) == (1, 2)
    np.testing.assert_allclose(two.latent_sums, 2 * one.latent_sums, rtol=1e-5)  # the same input twice


# ---- on real pipelines: the tiny SD folder and the embedded format --------------------------------------------


def _request(model, **changes):
    values = {"prompt": "a red cat", "width": 32, "height": 32, "steps": 3, "seed": 11, "guidance_scale": 5.0,
              "model": str(model), "preview": False}
    return GenerationRequest(**(values | changes))


def _image(engine, request) -> np.ndarray:
    return np.asarray(engine.run(request, lambda event: None, None).images[0])


@pytest.mark.parametrize("fixture", ["tiny_sd_dir", "tiny_model_dir"])
def test_processors_come_back_and_the_image_is_bit_equal(engine, fixture, request):
    model_dir = request.getfixturevalue(fixture)
    req = _request(model_dir)
    before = _image(engine, req)
    pipe = engine.load(req.model, lambda event: None, (32, 32, 1)).pipe
    processors = dict(pipe.unet.attn_processors)
    assert cross_attention_layers(pipe.unet)
    with record_attention(pipe, req.prompt, (32, 32)) as recorder:
        during = _image(engine, req)
    assert recorder.result().steps == 3
    assert dict(pipe.unet.attn_processors) == processors  # the very same objects, every layer
    after = _image(engine, req)
    assert np.array_equal(before, after) and np.array_equal(before, during)


def test_processors_come_back_after_an_error(engine, tiny_sd_dir):
    pipe = engine.load(str(tiny_sd_dir), lambda event: None, (32, 32, 1)).pipe
    processors = dict(pipe.unet.attn_processors)
    with pytest.raises(RuntimeError, match="stopped"):
        with record_attention(pipe, "a red cat", (32, 32)):
            assert dict(pipe.unet.attn_processors) != processors
            raise RuntimeError("stopped")
    assert dict(pipe.unet.attn_processors) == processors


@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_maps_on_a_pipeline_are_at_image_size_per_token(engine, tiny_sd_dir, guidance):
    req = _request(tiny_sd_dir, width=48, height=32, guidance_scale=guidance)
    pipe = engine.load(req.model, lambda event: None, (48, 32, 1)).pipe
    with record_attention(pipe, req.prompt, (48, 32)) as recorder:
        engine.run(req, lambda event: None, None)
    found = recorder.result()
    ids = pipe.tokenizer(req.prompt, add_special_tokens=False)["input_ids"]
    assert [token.id for token in found.tokens] == ids  # the prompt's tokens, no start or end token
    assert [token.position for token in found.tokens] == [1, 2, 3]
    assert found.maps.shape == (3, 32, 48) and found.latent_sums.shape == (3, 8, 12)
    assert np.isfinite(found.maps).all() and found.maps.min() == 0 and found.maps.max() == pytest.approx(1)
    assert found.steps == 3


def test_a_long_prompts_tokens_sit_in_their_windows(engine, tiny_sd_dir):
    pipe = engine.load(str(tiny_sd_dir), lambda event: None, (32, 32, 1)).pipe
    words = ["red", "cat"] * 10  # 20 tokens: one window of the tiny tokenizer holds 14
    tokens = prompt_tokens(pipe, " ".join(words))
    assert [token.text for token in tokens] == words
    window = pipe.tokenizer.model_max_length
    assert [token.position for token in tokens] == [1 + k for k in range(14)] + [window + 1 + k for k in range(6)]


def test_the_explain_report_on_the_embedded_model_has_the_attention_page(engine, tmp_path):
    import pypdfium2 as pdfium

    from desktop_app.engine.explain import explain
    from desktop_app.resources import default_model_dir
    from desktop_app.studio.explain_report import write_report

    request = GenerationRequest(prompt="a red apple", model=str(default_model_dir()), steps=4, seed=3,
                                preview=False)
    data = explain(request, engine)
    attention = data["attention"]
    assert [token["text"] for token in attention["tokens"]] == ["a", "red", "apple"]
    assert attention["maps"].shape == (3, *reversed(data["request"]["size"])) and attention["steps"] == 4
    write_report(data, tmp_path)
    assert (tmp_path / "attention.png").is_file()
    pdf = pdfium.PdfDocument(str(tmp_path / "report.pdf"))
    titles = [pdf[k].get_textpage().get_text_range().splitlines()[0] for k in range(1, len(pdf))]
    assert titles[6] == "7. Where the words landed"
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    section = re.search(r"<section id=s7>(.*?)</section>", page).group(1)
    assert 'alt="attention.png"' in section and "4 steps" in section
    # without the maps, the page says so rather than guess
    plain = explain(dataclasses.replace(request, steps=2), engine, attention=False)
    assert plain["attention"] is None
