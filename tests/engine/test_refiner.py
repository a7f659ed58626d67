"""The optional SDXL refiner on tiny random models: the base runs the first part of the schedule, the refiner
the rest, as diffusers' "ensemble of expert denoisers" does; errors, cancel, sharing, recipe, single file."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from tiny_checkpoints import REFINER

from desktop_app.studio import png_recipe
from desktop_app.engine import refiner
from desktop_app.models import single_file
from desktop_app.errors import RequestError
from desktop_app.engine.events import Cancelled, Progress, StageStarted
from desktop_app.engine.request import SAMPLERS, GenerationRequest



def _passes(events) -> tuple[list, list]:
    """The Progress events before the refiner's "denoise" stage, and after it."""
    marks = [k for k, e in enumerate(events.events)
             if isinstance(e, StageStarted) and e.stage == "denoise" and e.detail.startswith("refiner")]
    assert len(marks) == 1, events.stages
    before, after = events.events[:marks[0]], events.events[marks[0]:]
    return [e for e in before if isinstance(e, Progress)], [e for e in after if isinstance(e, Progress)]


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_the_base_runs_the_switch_share_and_the_refiner_the_rest(generate, xl_request, tiny_xl, engine):
    result, events = generate(xl_request(steps=5, refiner_switch=0.8))
    assert result is not None and [image.size for image in result.images] == [(32, 32)]
    base, refined = _passes(events)
    assert [p.step for p in base] == [1, 2, 3, 4]  # 0.8 x 5 steps
    assert [p.step for p in refined] == [5]
    assert {p.total for p in base + refined} == {5}  # one count across the switch: progress bar, timeline
    assert all(p.preview is not None for p in base + refined)  # previews go on in the refiner's part
    assert events.stages[-2:] == ["denoise", "decode"]  # the refiner decodes; the base hands over latents
    # the refiner shares the base's VAE and text encoder 2, which hold the same weights
    loaded = engine._refiner[2]
    assert loaded.pipe.vae is engine.model.pipe.vae
    assert loaded.pipe.text_encoder_2 is engine.model.pipe.text_encoder_2
    record = result.recipe.refiner_model
    assert record["name"] == "tiny-refiner" and record["switch"] == 0.8 and record["steps"] == [4, 1]
    assert record["shared"] == ["vae", "text_encoder_2"] and len(record["hash"]) == 10
    assert result.recipe.request.refiner == str(tiny_xl["refiner"]) and result.recipe.request.refiner_switch == 0.8
    assert "refiner" in result.timings

    # another switch moves the hand-over; without a refiner the base alone draws another picture
    _, later = generate(xl_request(steps=5, refiner_switch=0.5))
    assert [len(part) for part in _passes(later)] == [2, 3]  # Euler's timesteps 999, 749.25, 499.5, ...
    alone, _ = generate(xl_request(refiner=None))
    assert np.abs(_pixels(alone.images[0]) - _pixels(result.images[0])).max() > 0


def test_same_seed_same_pixels_and_the_refiner_is_loaded_once(generate, xl_request):
    first, _ = generate(xl_request(batch_size=2))
    again, events = generate(xl_request(batch_size=2))
    assert not any(e.detail.startswith("refiner") for e in events.of(StageStarted) if e.stage == "load")
    for one, two in zip(first.images, again.images):
        assert np.array_equal(_pixels(one), _pixels(two))
    # image 2 of the batch, alone with its seed, gives the same picture (to the last bit of batched maths)
    alone, _ = generate(xl_request(seed=xl_request().seed + 1))
    assert np.abs(_pixels(alone.images[0]) - _pixels(first.images[1])).max() <= 1


def test_the_engine_matches_the_diffusers_ensemble_of_experts(generate, xl_request, tiny_xl):
    """The flow the diffusers SDXL guide documents, written out by hand on the same folders."""
    from diffusers import DiffusionPipeline, EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline
    from diffusers.utils.torch_utils import randn_tensor

    result, _ = generate(xl_request(steps=6, refiner_switch=0.7))
    base = DiffusionPipeline.from_pretrained(tiny_xl["base"])
    refine = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        tiny_xl["refiner"], vae=base.vae, text_encoder_2=base.text_encoder_2, tokenizer_2=base.tokenizer_2)
    for pipe in (base, refine):
        pipe.scheduler = EulerDiscreteScheduler.from_config(base.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
    generator = [torch.Generator().manual_seed(xl_request().seed)]
    noise = randn_tensor((1, 4, 8, 8), generator=generator)
    common = dict(prompt="a red cat", num_inference_steps=6, guidance_scale=5.0, generator=generator)
    latents = base(**common, latents=noise, width=32, height=32, denoising_end=0.7, output_type="latent").images
    expected = refine(**common, image=latents, denoising_start=0.7).images[0]
    assert np.abs(_pixels(expected) - _pixels(result.images[0])).max() <= 1


def test_a_refiner_needs_an_sdxl_base_and_a_refiner_must_be_one(generate, xl_request, make_request, tiny_xl,
                                                                  tiny_sd_dir):
    with pytest.raises(RequestError, match="the refiner works with SDXL base models; tiny-embedded is the "
                                           "embedded model") as info:
        generate(make_request(refiner=str(tiny_xl["refiner"])))
    assert info.value.field == "refiner"
    with pytest.raises(RequestError, match="tiny-sdxl is not an SDXL refiner: it holds SDXL") as info:
        generate(xl_request(refiner=str(tiny_xl["base"])))
    assert info.value.field == "refiner"
    with pytest.raises(RequestError, match="tiny-sd is not an SDXL refiner"):
        generate(xl_request(refiner=str(tiny_sd_dir)))
    with pytest.raises(RequestError, match="refiner: Model not found"):
        generate(xl_request(refiner=str(tiny_xl["base"].parent / "missing")))
    with pytest.raises(RequestError, match="is an SDXL refiner: it finishes what an SDXL base") as info:
        generate(xl_request(model=str(tiny_xl["refiner"]), refiner=None))
    assert info.value.field == "model"


def test_a_switch_that_leaves_one_model_no_step_is_refused(generate, xl_request):
    with pytest.raises(RequestError, match="leaves the base model no step") as info:
        generate(xl_request(steps=1))  # Euler's one timestep is the last one, below any switch
    assert info.value.field == "refiner_switch"
    # DPM++ 2M's five steps end at timestep 200: a switch at 0.8 (timestep 200) leaves the refiner nothing
    with pytest.raises(RequestError, match="leaves the refiner no step"):
        generate(xl_request(sampler="DPM++ 2M"))
    result, _ = generate(xl_request(sampler="DPM++ 2M", steps=6))
    assert result.recipe.refiner_model["steps"] == [5, 1]


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.2, "0.8", float("nan"), True])
def test_refiner_switch_is_checked_when_the_request_is_built(value):
    with pytest.raises(RequestError) as info:
        GenerationRequest("a cat", refiner="refiner", refiner_switch=value)
    assert info.value.field == "refiner_switch" and "between 0 and 1" in str(info.value)
    with pytest.raises(RequestError) as info:
        GenerationRequest("a cat", refiner=" ")
    assert info.value.field == "refiner"


def test_cancel_during_the_refiner_pass(generate, xl_request):
    cancel = threading.Event()
    seen = []

    def stop_in_the_refiner(event):
        seen.append(event)
        if isinstance(event, StageStarted) and event.detail.startswith("refiner"):
            seen.append("switch")
        if isinstance(event, Progress) and "switch" in seen:
            cancel.set()

    result, events = generate(xl_request(steps=6, refiner_switch=0.5), cancel=cancel, emit=stop_in_the_refiner)
    assert result is None and events.of(Cancelled)
    base, refined = _passes(events)
    assert len(base) == 3 and [p.step for p in refined] == [4]  # stopped within the refiner's first step
    assert "decode" not in events.stages


def test_sharing_only_what_holds_the_same_weights(engine, tiny_xl, xl_request, generate):
    generate(xl_request())
    base = engine.model.pipe
    assert set(refiner.shared_components(tiny_xl["refiner"], base)) == {"vae", "text_encoder_2", "tokenizer_2"}
    assert set(refiner.shared_components(tiny_xl["file"], base)) == {"vae", "text_encoder_2", "tokenizer_2"}
    assert refiner.shared_components(tiny_xl["own"], base) == {}  # its own VAE and text encoder: kept
    result, _ = generate(xl_request(refiner=str(tiny_xl["own"])))
    assert result.recipe.refiner_model["shared"] == []
    assert engine._refiner[2].pipe.vae is not base.vae


def test_a_single_file_refiner_gives_the_folders_pixels(generate, xl_request, tiny_xl, monkeypatch):
    """The original-layout file, loaded with the (here: tiny) bundled config, is the same refiner."""
    from_folder, _ = generate(xl_request())
    real = single_file.bundled_config
    monkeypatch.setattr(single_file, "bundled_config",
                        lambda family: tiny_xl["config"] if family == REFINER else real(family))
    from_file, _ = generate(xl_request(refiner=str(tiny_xl["file"])))
    assert from_file.recipe.refiner_model["shared"] == ["vae", "text_encoder_2"]
    assert np.abs(_pixels(from_file.images[0]) - _pixels(from_folder.images[0])).max() <= 1


def test_unload_frees_the_refiner(tiny_xl, xl_request):
    from desktop_app.engine.generate import Engine

    engine = Engine(device="cpu")
    assert engine.run(xl_request(preview=False), lambda event: None) is not None
    assert engine._refiner is not None
    engine.unload()
    assert engine._refiner is None and engine.model is None


def test_the_recipe_carries_the_refiner_through_a_png(generate, xl_request, tmp_path):
    result, _ = generate(xl_request(refiner_switch=0.6))
    path = png_recipe.save_png(result.images[0], tmp_path / "refined.png", result.recipe.to_dict(),
                               result.seeds[0])
    found = png_recipe.read_recipe(path)
    request = GenerationRequest.from_dict(found["request"])
    assert request.refiner == result.recipe.request.refiner and request.refiner_switch == 0.6
    assert found["info"]["refiner_model"]["steps"] == [3, 2]
    record = result.recipe.refiner_model
    assert f"Refiner: tiny-refiner [{record['hash']}], Refiner switch at: 0.6" in found["parameters"]
    # AUTOMATIC1111's text alone: the switch comes back, the refiner's name is kept with the model's
    parsed = png_recipe.parse_parameters(found["parameters"])
    assert parsed["request"]["refiner_switch"] == 0.6 and parsed["info"]["refiner_name"] == "tiny-refiner"
    assert "Refiner: " in png_recipe.describe(found)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_hands_over_where_diffusers_does(generate, xl_request, sampler):
    """The step split the engine announces is the one the two pipelines then run (Heun: two calls a step)."""
    result, events = generate(xl_request(sampler=sampler, steps=8))
    base, refined = _passes(events)
    split = result.recipe.refiner_model["steps"]
    assert [len(base), len(refined)] == split and min(split) > 0
    assert [p.step for p in base + refined] == list(range(1, sum(split) + 1))
    assert {p.total for p in base + refined} == {sum(split)} and events.stages[-1] == "decode"
    assert np.asarray(result.images[0]).std() > 0


def test_the_hires_fix_and_the_upscaler_still_apply_after_the_refiner(generate, xl_request, tiny_model_dir):
    result, events = generate(xl_request(hires_scale=2.0, hires_strength=0.4))
    assert result.images[0].size == (64, 64) and result.recipe.hires["steps"] == 2
    assert events.stages[-4:] == ["denoise", "decode", "upscale", "hires"]
    upscaled, events = generate(xl_request(upscale=str(tiny_model_dir / "upscaler" / "model.safetensors")))
    assert upscaled.images[0].size == (128, 128) and events.stages[-1] == "upscale"
