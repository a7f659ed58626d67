"""The preview map fitted to a model's VAE: cheap, the right size, close to the VAE, cached per VAE."""

from __future__ import annotations

import numpy as np
import torch

from desktop_app.engine import preview_fit
from desktop_app.engine.preview import VaePreview


def test_a_fitted_map_comes_close_to_the_vae_and_is_cached(engine, generate, make_request, tiny_model_dir):
    generate(make_request(preview=False))  # loads the tiny model
    model = engine.model
    assert preview_fit.find(model.path) is None  # a fresh user folder: nothing cached yet
    fitted, report = preview_fit.fit_and_cache(model, steps=3)
    assert report["latents"] > 0 and report["scale"] == model.vae_scale_factor
    assert preview_fit.find(model.path) is not None  # found again, by the VAE weights' key

    # where it was fitted, it should predict the VAE much better than a flat grey does
    x0 = preview_fit.collect_x0(model.pipe, (32, 32), prompts=("a red cat",), steps=3, seed=7)
    images = preview_fit.vae_targets(model.pipe.vae, x0)
    flat = float(10 * torch.log10(1 / ((images / 2) ** 2).mean()))
    assert preview_fit.psnr(fitted, x0, images) > flat
    assert fitted(x0[:1], (32, 32)).size == (32, 32)


def test_the_engine_uses_the_map_when_asked_and_the_vae_otherwise(engine, generate, make_request, monkeypatch):
    generate(make_request(preview=False))
    monkeypatch.setattr(engine, "preview_mode", "vae")
    assert isinstance(engine.preview_decoder(engine.model), VaePreview)
    monkeypatch.setattr(engine, "preview_mode", "fitted")
    assert isinstance(engine.preview_decoder(engine.model), preview_fit.FittedPreview)
    _, events = generate(make_request(steps=3))
    assert [p.preview.size for p in events.progress] == [(32, 32)] * 3


def test_a_map_for_other_vae_weights_is_not_used(tmp_path):
    path = preview_fit.save(preview_fit.FittedPreview(torch.zeros(47, 48), 4), tmp_path / "map.safetensors", "aaa")
    assert preview_fit.load(path, "aaa") is not None
    assert preview_fit.load(path, "bbb") is None
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    assert preview_fit.load(tmp_path / "broken.safetensors") is None


def test_fitting_during_a_run_keeps_the_requested_sampler(engine, generate, make_request, monkeypatch):
    reference, _ = generate(make_request(sampler="Euler a", preview=False))
    monkeypatch.setattr(engine, "preview_mode", "fitted")
    monkeypatch.setattr(engine, "_preview", (None, {}))  # forget any decoder made before
    monkeypatch.setattr(preview_fit, "find", lambda folder: None)  # nothing cached: the run fits one first
    result, events = generate(make_request(sampler="Euler a"))
    assert type(engine.model.pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert all(p.preview is not None for p in events.progress)
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(reference.images[0]))
