"""The real embedded default model, loaded through the application's own loader and engine."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from desktop_app.engine.request import GenerationRequest
from desktop_app.resources import default_model_dir

pytestmark = pytest.mark.skipif(not (default_model_dir() / "model_index.json").exists(),
                                reason="the embedded model is not built (packaging/model_recipe/build.py)")


@pytest.fixture(scope="module")
def engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cpu", preview_share=None)


def _run(engine, **kw):
    events = []
    result = engine.run(GenerationRequest(**kw), events.append, threading.Event())
    return result, events


def test_the_embedded_model_loads_offline_with_sockets_blocked(monkeypatch):
    from desktop_app.engine.loader import load_model

    def refuse(*args, **kwargs):
        raise OSError("network access attempted while offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    import torch

    model = load_model("default", torch.device("cpu"), torch.float32)
    assert model.family == "embedded"
    assert model.upscaler is not None
    assert model.pipe.unet.dtype == torch.float32  # fp16 on disk, upcast on the CPU


def test_a_fixed_seed_gives_the_same_image(engine):
    a, _ = _run(engine, prompt="red apple", seed=123, steps=8)
    b, _ = _run(engine, prompt="red apple", seed=123, steps=8)
    c, _ = _run(engine, prompt="red apple", seed=124, steps=8)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))


def test_default_generation_is_a_real_picture_upscaled_to_256(engine):
    result, events = _run(engine, prompt="grinning face", seed=1, upscale="default")
    image = np.asarray(result.images[0]).astype(float)
    assert result.images[0].size == (256, 256)
    assert np.isfinite(image).all() and image.std() > 20  # not blank, not noise-free grey
    stages = [e.stage for e in events if type(e).__name__ == "StageStarted"]
    assert stages[-1] == "upscale" and "denoise" in stages and "text" in stages


def test_the_prompt_steers_the_colours(engine):
    """A yellow face and a red heart drawn from the same noise differ where it matters: in colour."""
    face, _ = _run(engine, prompt="grinning face", seed=5)
    heart, _ = _run(engine, prompt="red heart", seed=5)
    f = np.asarray(face.images[0]).astype(float).reshape(-1, 3)
    h = np.asarray(heart.images[0]).astype(float).reshape(-1, 3)
    # the face has more green (yellow = red + green) than the heart
    assert f[:, 1].mean() > h[:, 1].mean() + 10
