"""The trainer on the embedded default model, on the CPU: a handful of steps at 64 px, rank 4."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from training_helpers import quick_config

from desktop_app import paths
from desktop_app.errors import FailureKind
from desktop_app.training import checkpoint, trainer
from desktop_app.training.trainer import TrainingError, train


def lora_tensors(name: str) -> dict[str, torch.Tensor]:
    return load_file(paths.loras_dir() / f"{name}.safetensors")


def test_a_few_steps_write_both_formats_with_metadata(images, events):
    result = train(quick_config(images, "first", sample_every=3), events)
    steps = events.of("step")
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(e["loss"]) and e["loss"] > 0 and e["eta"] >= 0 for e in steps)
    assert events.of("started")[0]["prediction"] == "v_prediction"  # from the model's scheduler config
    samples = [p for e in events.of("sample") for p in e["paths"]]
    assert len(samples) == 4 and all(open(p, "rb").read(4) == b"\x89PNG" for p in samples)
    assert result["event"] == "finished"

    kohya = paths.loras_dir() / "first.safetensors"
    diffusers_file = paths.loras_dir() / "first" / "pytorch_lora_weights.safetensors"
    assert result["files"] == {"kohya": str(kohya), "diffusers": str(diffusers_file)}
    tensors = lora_tensors("first")
    downs = [k for k in tensors if k.endswith(".lora_down.weight")]
    assert downs and all(k.startswith("lora_unet_") for k in tensors)
    assert all(tensors[k].shape[0] == 4 for k in downs)  # rank 4
    assert all(float(tensors[k.replace("lora_down.weight", "alpha")]) == 4 for k in downs)  # alpha = rank
    assert all(v.dtype == torch.float32 for v in tensors.values())
    with safe_open(str(kohya), "pt") as handle:
        meta = handle.metadata()
    assert meta["desktop_app_trigger"] == "sks" and meta["desktop_app_class_word"] == "ball"
    assert meta["ss_network_dim"] == "4" and meta["desktop_app_steps"] == "6"
    assert len(meta["desktop_app_base_model_hash"]) == 10 and len(meta["desktop_app_dataset_hash"]) == 12
    assert json.loads((diffusers_file.parent / "training.json").read_text())["desktop_app_trigger"] == "sks"
    report = result["originality"]
    assert [r["sample"] for r in report] == result["samples"]
    assert all(r["nearest"].startswith(str(images)) and -1 <= r["similarity"] <= 1 for r in report)


def test_both_files_load_through_diffusers_and_change_the_image_alike(images, events):
    from desktop_app.engine.loader import load_model

    train(quick_config(images, "loadme", steps=4, learning_rate=5e-3), events)
    pipe = load_model("default", "cpu", torch.float32).pipe

    def draw():
        return pipe("a photo of sks ball", num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                    output_type="np").images

    base = draw()
    pipe.load_lora_weights(str(paths.loras_dir() / "loadme.safetensors"), adapter_name="kohya")
    with_kohya = draw()
    pipe.unload_lora_weights()
    pipe.load_lora_weights(str(paths.loras_dir() / "loadme"), weight_name="pytorch_lora_weights.safetensors",
                           adapter_name="diffusers")
    with_diffusers = draw()
    pipe.unload_lora_weights()
    assert np.abs(with_kohya - base).mean() > 1e-4  # the LoRA changes the picture
    np.testing.assert_allclose(with_kohya, with_diffusers, atol=1e-5)  # and both files are the same LoRA
    np.testing.assert_allclose(draw(), base, atol=1e-6)  # unloaded: the base model again


def test_pause_then_resume_matches_an_uninterrupted_run(images, events):
    train(quick_config(images, "straight"), events)
    seen = []

    def pause_after_three():
        return "pause" if len(seen) >= 3 else None

    def record(event):
        if event["event"] == "step":
            seen.append(event["step"])

    paused = train(quick_config(images, "halves"), record, pause_after_three)
    assert paused["event"] == "paused" and paused["step"] == 3
    assert not (paths.loras_dir() / "halves.safetensors").exists()
    resumed = []
    result = train(quick_config(images, "halves"), resumed.append, resume=True)
    assert resumed[0]["event"] == "started" and resumed[0]["step"] == 3 and resumed[0]["resumed"]
    assert [e["step"] for e in resumed if e["event"] == "step"] == [4, 5, 6]
    assert result["event"] == "finished"
    straight, halves = lora_tensors("straight"), lora_tensors("halves")
    assert straight.keys() == halves.keys()
    for key in straight:
        torch.testing.assert_close(halves[key], straight[key], atol=1e-5, rtol=1e-4)


def test_cancel_keeps_a_checkpoint_and_writes_no_lora(images, events):
    result = train(quick_config(images, "stopme", steps=50), events,
                   lambda: "cancel" if len(events.of("step")) >= 2 else None)
    assert result["event"] == "cancelled" and result["step"] == 2
    assert len(events.of("step")) == 2
    assert checkpoint.read(trainer.job_dir("stopme"))["step"] == 2
    assert not (paths.loras_dir() / "stopme.safetensors").exists()


def test_nan_loss_stops_keeps_the_last_good_checkpoint_and_explains(images, events):
    with pytest.raises(TrainingError) as caught:
        train(quick_config(images, "nan", steps=10, inject_nan_at=5), events)
    assert caught.value.reason == "nan" and caught.value.kind is FailureKind.ENGINE
    message = str(caught.value)
    assert "at step 5" in message and "last good checkpoint (step 3)" in message and "learning rate" in message
    assert events.of("failed")[0]["kind"] == "engine" and events.of("failed")[0]["reason"] == "nan"
    assert [e["step"] for e in events.of("step")] == [1, 2, 3, 4]
    state = checkpoint.read(trainer.job_dir("nan"))
    assert state["step"] == 3 and all(torch.isfinite(v).all() for v in state["unet"].values())
    assert not (paths.loras_dir() / "nan.safetensors").exists()


def test_not_enough_disk_is_refused_before_the_first_step(images, events, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(TrainingError, match="not enough free disk .* for checkpoints: 1 MB free") as caught:
        train(quick_config(images, "full"), events)
    assert caught.value.kind is FailureKind.DISK and not events.of("step")


def test_text_encoder_prior_preservation_min_snr_and_noise_offset(images, events, tiny_sd_dir):
    # a CLIP text encoder (the tiny SD model): diffusers' loader reads text encoder LoRAs for CLIP
    config = quick_config(images, "extras", model=str(tiny_sd_dir), resolution=32, steps=2,
                          train_text_encoder=True, prior_preservation=True, class_images=2, snr_gamma=5.0,
                          noise_offset=0.05, crop="random", gradient_checkpointing=True)
    result = train(config, events)
    assert events.of("started")[0]["prediction"] == "epsilon"  # this model's scheduler says so
    assert [e["index"] for e in events.of("class_image")] == [1, 2]
    assert len(list((trainer.job_dir("extras") / "class_images").glob("*.png"))) == 2
    assert all(np.isfinite(e["loss"]) for e in events.of("step"))
    diffusers_keys = load_file(result["files"]["diffusers"]).keys()
    assert any(k.startswith("text_encoder.") for k in diffusers_keys)
    assert any(k.startswith("unet.") for k in diffusers_keys)
    assert any(k.startswith("lora_te1_") for k in lora_tensors("extras"))
    from desktop_app.engine.loader import load_model

    pipe = load_model(str(tiny_sd_dir), "cpu", torch.float32).pipe
    for source, kwargs in ((paths.loras_dir() / "extras", {"weight_name": "pytorch_lora_weights.safetensors"}),
                           (paths.loras_dir() / "extras.safetensors", {})):
        pipe.load_lora_weights(str(source), **kwargs)
        assert any("lora_A" in name for name, _ in pipe.text_encoder.named_modules())
        assert any("lora_A" in name for name, _ in pipe.unet.named_modules())
        pipe.unload_lora_weights()


def test_text_encoder_lora_on_the_embedded_model_is_refused_clearly(images, events):
    from desktop_app.errors import RequestError

    with pytest.raises(RequestError, match="train_text_encoder: .*MiniLM.*train the U-Net alone"):
        train(quick_config(images, "te", train_text_encoder=True), events)


def test_the_engine_generates_with_the_trained_lora_by_name(images, events):
    """The generator's own LoRA path (engine/lora.py, by another issue) takes both files by the LoRA's name."""
    pytest.importorskip("desktop_app.engine.lora")
    from desktop_app.engine.generate import Engine
    from desktop_app.engine.request import GenerationRequest, LoraChoice

    train(quick_config(images, "byname", steps=4, learning_rate=5e-3), events)
    engine = Engine(device="cpu", preview_share=None)
    base = GenerationRequest(prompt="a photo of sks ball", steps=3, seed=3, upscale=None, preview=False)
    plain = engine.run(base, lambda event: None)
    outputs = {}
    for name in ("byname", "byname.safetensors"):  # the folder (diffusers file), then the kohya file
        request = GenerationRequest(prompt=base.prompt, steps=3, seed=3, upscale=None, preview=False,
                                    loras=(LoraChoice(name, 1.0),))
        outputs[name] = np.asarray(engine.run(request, lambda event: None).images[0], dtype=np.float32)
    assert np.abs(outputs["byname"] - np.asarray(plain.images[0], dtype=np.float32)).mean() > 0.1
    assert np.abs(outputs["byname"] - outputs["byname.safetensors"]).max() <= 1  # the same LoRA, both files


def test_a_non_finite_step_never_reaches_the_lora(images, events, monkeypatch):
    """The NaN step's gradients are checked before the optimizer steps: that step is skipped (only the finite
    steps before it were taken), then the run stops as above."""
    seen = []
    real = trainer._finite
    monkeypatch.setattr(trainer, "_finite", lambda params: seen.append(real(params)) or seen[-1])
    with pytest.raises(TrainingError):
        train(quick_config(images, "nan-guard", steps=10, inject_nan_at=3), events)
    assert seen == [True, True, False]
    assert trainer._finite([torch.nn.Parameter(torch.zeros(2))])  # no gradient yet: nothing to stop
