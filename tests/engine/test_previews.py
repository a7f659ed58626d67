"""Live previews: the predicted clean image after every step, decoded cheaply; the scheduler left as found."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from desktop_app.engine import preview as previews
from desktop_app.engine.preview import (
    LinearPreview,
    PreviewPacer,
    VaePreview,
    capture_x0,
    make_decoder,
)


def test_one_preview_per_step_in_order_and_they_change(generate, make_request):
    _, events = generate(make_request(steps=5))
    steps = [p.step for p in events.progress]
    assert steps == [1, 2, 3, 4, 5]
    elapsed = [p.elapsed for p in events.progress]
    assert elapsed == sorted(elapsed)
    arrays = [np.asarray(p.preview, dtype=np.int16) for p in events.progress]
    assert all(a.shape == (32, 32, 3) for a in arrays)
    assert any(not np.array_equal(arrays[0], a) for a in arrays[1:])


def test_the_last_preview_is_close_to_the_final_image(generate, make_request):
    # DDIM's last x0 is what the final step lands on: the preview shows the image that will come out
    result, events = generate(make_request(sampler="DDIM", steps=4))
    last = np.asarray(events.progress[-1].preview, dtype=np.int16)
    final = np.asarray(result.images[0], dtype=np.int16)
    assert np.abs(last - final).mean() < 8


def test_no_previews_when_not_asked(generate, make_request):
    _, events = generate(make_request(preview=False))
    assert len(events.progress) == 3 and all(p.preview is None for p in events.progress)


def test_big_vaes_get_the_linear_preview(generate, make_request, monkeypatch, engine):
    monkeypatch.setattr(previews, "VAE_PREVIEW_MAX_PARAMS", 0)
    generate(make_request(preview=False))
    assert isinstance(make_decoder(engine.model.pipe, "sd1"), LinearPreview)
    assert isinstance(make_decoder(engine.model.pipe, "sdxl"), LinearPreview)
    _, events = generate(make_request())
    assert all(p.preview.size == (32, 32) for p in events.progress)


def test_small_vaes_decode_the_preview(generate, make_request, engine):
    generate(make_request(preview=False))
    assert isinstance(make_decoder(engine.model.pipe, "embedded"), VaePreview)


def test_linear_factors_map_latents_to_colours():
    x0 = torch.zeros(1, 4, 2, 2)
    x0[0, 0] = 1.0  # the first SD1 latent channel is warm and bright
    image = LinearPreview(previews.SD1_FACTORS, previews.SD1_BIAS)(x0, (2, 2))
    r, g, b = image.getpixel((0, 0))
    assert (r, g, b) == tuple(round((1 + f) / 2 * 255) for f in previews.SD1_FACTORS[0])


@pytest.mark.parametrize("scheduler_class", [DDIMScheduler, DPMSolverMultistepScheduler])
def test_capture_restores_the_scheduler_step_even_after_an_error(scheduler_class):
    scheduler = scheduler_class()
    scheduler.set_timesteps(2)
    original = scheduler.step
    sample = torch.randn(1, 4, 2, 2)
    with pytest.raises(RuntimeError), capture_x0(scheduler) as capture:
        out = scheduler.step(torch.randn(1, 4, 2, 2), scheduler.timesteps[0], sample, return_dict=False)
        assert isinstance(out, tuple) and out[0].shape == sample.shape
        assert capture.latest is not None and capture.latest.shape == sample.shape
        raise RuntimeError("boom")
    assert "step" not in vars(scheduler) and scheduler.step == original


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_pacer_keeps_previews_within_their_share_of_the_time():
    clock = FakeClock()
    pacer = PreviewPacer(share=0.25, clock=clock)

    def slow_decoder(x0, size):
        clock.now += 0.5  # a preview costs half a step

    decoded = []
    for _ in range(20):
        clock.now += 1.0  # one step
        if pacer.step_done():
            pacer.decode(slow_decoder, None, (8, 8))
            decoded.append(True)
    assert 4 <= len(decoded) <= 12  # far fewer than 20, but still a steady stream
    assert pacer.preview_seconds <= 0.25 * pacer.step_seconds + 0.5


def test_the_pacer_previews_every_step_when_unlimited():
    pacer = PreviewPacer(share=None, clock=FakeClock())
    assert all(pacer.step_done() for _ in range(5))


def test_the_engine_paces_previews_by_default():
    from desktop_app.engine.generate import Engine

    assert Engine("cpu").preview_share == previews.DEFAULT_PREVIEW_SHARE


def test_each_family_gets_its_factors_and_others_a_paced_full_decode(monkeypatch):
    from types import SimpleNamespace

    import torch

    monkeypatch.setattr(previews, "VAE_PREVIEW_MAX_PARAMS", 0)  # every VAE counts as big here

    def pipe(channels):
        vae = SimpleNamespace(config=SimpleNamespace(latent_channels=channels, scaling_factor=0.5),
                              parameters=lambda: iter([torch.zeros(1)]))
        return SimpleNamespace(vae=vae)

    for family, factors in (("sd1", previews.SD1_FACTORS), ("sd2", previews.SD1_FACTORS),
                            ("sdxl", previews.SDXL_FACTORS)):
        decoder = make_decoder(pipe(4), family)
        assert isinstance(decoder, LinearPreview) and decoder.factors.tolist() == torch.tensor(factors).tolist()
    from desktop_app.engine.families.flux import FLUX_FACTORS
    from desktop_app.engine.families.sd3 import SD3_FACTORS

    # the flow-matching families' 16-channel latents have published factors too
    for family, factors in (("sd3", SD3_FACTORS), ("flux", FLUX_FACTORS)):
        decoder = make_decoder(pipe(16), family)
        assert isinstance(decoder, LinearPreview) and decoder.factors.tolist() == torch.tensor(factors).tolist()
    assert isinstance(make_decoder(pipe(4), "sd3"), VaePreview)  # factors for other latents: the VAE itself
    assert isinstance(make_decoder(pipe(16), "custom"), VaePreview)  # no published factors: the VAE itself
    assert isinstance(make_decoder(pipe(4), "custom"), VaePreview)
    assert make_decoder(SimpleNamespace(vae=None), "sd3") is None
    # a VAE normalised by per-channel statistics, not a scaling factor (Qwen-Image's): no preview yet
    odd = SimpleNamespace(config=SimpleNamespace(latent_channels=16), parameters=lambda: iter([torch.zeros(1)]))
    assert make_decoder(SimpleNamespace(vae=odd), "sd3") is None
