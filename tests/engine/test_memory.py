"""Out-of-memory fallbacks (injected errors, the fixed order, the final message) and the fp16-VAE NaN guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from desktop_app.engine import memory
from desktop_app.errors import FailureKind, OutOfMemory
from desktop_app.engine.events import Failed, StageStarted


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture
def fresh_model(engine):
    """The fallbacks stay switched on for a pipeline: free it after the test, so others get a clean one."""
    yield engine
    engine.unload()


def inject_oom(monkeypatch, pipe, times: int) -> list:
    """pipe.unet raises torch.OutOfMemoryError on its first ``times`` calls; returns the call log."""
    calls = []
    original = pipe.unet.forward

    def forward(*args, **kwargs):
        calls.append(len(calls))
        if len(calls) <= times:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return original(*args, **kwargs)

    monkeypatch.setattr(pipe.unet, "forward", forward)
    return calls


def test_fallbacks_come_in_order_and_the_run_succeeds(generate, make_request, fresh_model, monkeypatch):
    expected, _ = generate(make_request(batch_size=2, preview=False))
    pipe = fresh_model.model.pipe
    inject_oom(monkeypatch, pipe, times=3)
    result, events = generate(make_request(batch_size=2, preview=False))
    # on the CPU, model offload does not apply (CUDA only): tiling, slicing, then one image at a time
    assert result.recipe.memory_fallbacks == ("vae_tiling", "attention_slicing", "batch_1")
    assert result.recipe.to_dict()["memory_fallbacks"] == ["vae_tiling", "attention_slicing", "batch_1"]
    notices = [e.detail for e in events.of(StageStarted) if e.detail.startswith("out of memory")]
    assert notices == ["out of memory; trying again with VAE tiling",
                       "out of memory; trying again with attention slicing",
                       "out of memory; trying again with one image at a time"]
    assert list(result.recipe.notices) == result.recipe.to_dict()["notices"] == notices
    assert len(result.images) == 2
    assert pipe.vae.use_tiling
    for got, want in zip(result.images, expected.images):  # the same images, one at a time
        assert np.abs(pixels(got) - pixels(want)).max() <= 2


def test_an_error_that_outlasts_every_fallback_gets_a_clear_message(generate, make_request, fresh_model,
                                                                    monkeypatch):
    generate(make_request(preview=False))
    inject_oom(monkeypatch, fresh_model.model.pipe, times=100)
    heard = []
    with pytest.raises(OutOfMemory, match="ran out of memory even with VAE tiling, attention slicing") as info:
        generate(make_request(batch_size=2, preview=False), emit=heard.append)
    assert heard[-1] == Failed(FailureKind.OUT_OF_MEMORY, str(info.value))  # the terminal event, by its type


def test_other_errors_are_not_taken_for_out_of_memory(generate, make_request, fresh_model, monkeypatch):
    generate(make_request(preview=False))

    def broken(*args, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(fresh_model.model.pipe.unet, "forward", broken)
    with pytest.raises(RuntimeError, match="something else"):
        generate(make_request(preview=False))


def test_cpu_offload_is_tried_on_cuda_only(monkeypatch):
    offloaded = []

    class Pipe:
        vae = None

        def enable_attention_slicing(self):
            pass

        def enable_model_cpu_offload(self, device=None):
            offloaded.append(device)

    attempts = []

    def call(one_at_a_time):
        attempts.append(one_at_a_time)
        if len(attempts) < 3:
            raise torch.OutOfMemoryError("injected")
        return "done"

    result, used = memory.run_with_fallbacks(call, Pipe(), torch.device("cuda"), 1)
    assert result == "done" and used == ["attention_slicing", "cpu_offload"]  # no VAE: no tiling
    assert offloaded == [torch.device("cuda")]


def test_large_images_are_tiled_from_the_start():
    class Vae:
        use_tiling = False

        def enable_tiling(self):
            self.use_tiling = True

        def disable_tiling(self):
            self.use_tiling = False

    class Pipe:
        vae = Vae()
        sliced = False

        def enable_attention_slicing(self):
            self.sliced = True

    pipe = Pipe()
    memory.prepare(pipe, torch.device("cpu"), 1536, 768)
    assert pipe.vae.use_tiling and not pipe.sliced
    memory.prepare(pipe, torch.device("cpu"), 512, 512)
    assert not pipe.vae.use_tiling
    memory.prepare(pipe, torch.device("mps"), 512, 512)
    assert pipe.sliced  # attention slicing on Apple MPS by default


# ---- the fp16 VAE black-image problem -------------------------------------------------------------------


def test_a_nan_decode_is_done_again_in_float32_and_the_user_is_told(generate, make_request, fresh_model,
                                                                   monkeypatch):
    expected, _ = generate(make_request(preview=False))
    vae = fresh_model.model.pipe.vae
    original = vae.decode
    seen = []

    def nan_once(z, *args, **kwargs):
        seen.append(z.dtype)
        out = original(z, *args, **kwargs)
        if len(seen) == 1:  # the pipeline asks for a tuple (return_dict=False)
            return (torch.full_like(out[0], float("nan")),)
        return out

    monkeypatch.setattr(vae, "decode", nan_once)
    result, events = generate(make_request(preview=False))
    assert len(seen) == 2 and seen[1] == torch.float32
    message = "the float32 VAE produced NaNs; decoded again in float32"
    assert message in [e.detail for e in events.of(StageStarted) if e.stage == "decode"]
    assert result.recipe.notices == (message,)
    assert np.array_equal(pixels(result.images[0]), pixels(expected.images[0]))


def test_the_guard_upcasts_a_half_vae_for_the_redo_and_puts_it_back():
    class Out:
        def __init__(self, sample):
            self.sample = sample

    class HalfVae(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1, dtype=torch.float16))

        @property
        def dtype(self):
            return self.scale.dtype

        def decode(self, z):
            if self.scale.dtype == torch.float16:  # what an fp16 SD VAE does on some latents
                return Out(torch.full(z.shape, float("nan"), dtype=torch.float16))
            return Out(torch.tanh(z.float() * self.scale))

    vae = HalfVae()
    heard = []
    with memory.decode_guard(vae, heard.append):
        out = vae.decode(torch.ones(1, 3, 4, 4, dtype=torch.float16))
    assert torch.isfinite(out.sample).all() and out.sample.dtype == torch.float16
    assert vae.dtype == torch.float16 and "decode" not in vars(vae)
    assert heard == ["the float16 VAE produced NaNs; decoded again in float32"]
    assert memory.bad_decode(torch.full((1, 3, 2, 2), -1.0)) == "an all-black image"
    assert memory.bad_decode(torch.zeros(1, 3, 2, 2)) is None
