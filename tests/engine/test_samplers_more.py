"""The samplers added for the model library: Heun, DPM++ SDE, DPM++ 2M SDE Karras and LCM, each reproducible
from its seed, and the few-step defaults."""

from __future__ import annotations

import numpy as np
import pytest
from diffusers import DPMSolverMultistepScheduler, DPMSolverSDEScheduler, HeunDiscreteScheduler, LCMScheduler

from desktop_app.engine.request import GenerationRequest
from desktop_app.engine.samplers import make_scheduler

NEW = ["Heun", "DPM++ SDE", "DPM++ 2M SDE Karras", "LCM"]


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_the_names_map_to_the_diffusers_schedulers(tiny_sd_dir):
    base = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", prediction_type="epsilon").config
    assert type(make_scheduler("Heun", base)) is HeunDiscreteScheduler
    assert type(make_scheduler("DPM++ SDE", base)) is DPMSolverSDEScheduler
    assert type(make_scheduler("LCM", base)) is LCMScheduler
    sde = make_scheduler("DPM++ 2M SDE Karras", base)
    assert type(sde) is DPMSolverMultistepScheduler
    assert sde.config.algorithm_type == "sde-dpmsolver++" and sde.config.use_karras_sigmas
    assert make_scheduler("LCM", base).config.prediction_type == "epsilon"  # the model's training settings stay


@pytest.mark.parametrize("sampler", NEW)
@pytest.mark.parametrize("model", ["sd", "embedded"])
def test_each_new_sampler_gives_the_same_image_twice_and_another_for_another_seed(
        generate, tiny_sd_dir, tiny_model_dir, sampler, model):
    folder = tiny_sd_dir if model == "sd" else tiny_model_dir
    def make(seed):
        return GenerationRequest(prompt="a red cat", width=32, height=32, steps=3, seed=seed, sampler=sampler,
                                 model=str(folder), guidance_scale=1.5)
    first, events = generate(make(11))
    second, _ = generate(make(11))
    other, _ = generate(make(12))
    assert np.array_equal(pixels(first.images[0]), pixels(second.images[0]))
    assert not np.array_equal(pixels(first.images[0]), pixels(other.images[0]))
    assert all(p.preview is not None for p in events.progress)  # every sampler gives its x0 to previews


def _folder_with_scheduler(path, config):
    import json

    (path / "scheduler").mkdir(parents=True)
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    return path


def test_few_step_defaults_come_from_the_scheduler_class_or_an_lcm_lora(tmp_path, tiny_sd_dir):
    from desktop_app.models.few_step import FEW_STEP_DEFAULTS, few_step_defaults

    lcm = _folder_with_scheduler(tmp_path / "my-model-a", {"_class_name": "LCMScheduler"})
    turbo = _folder_with_scheduler(tmp_path / "my-model-b", {"_class_name": "EulerDiscreteScheduler",
                                                             "timestep_spacing": "trailing"})
    assert few_step_defaults(lcm) == FEW_STEP_DEFAULTS["lcm"] and FEW_STEP_DEFAULTS["lcm"]["sampler"] == "LCM"
    assert few_step_defaults(turbo) == FEW_STEP_DEFAULTS["turbo"]
    assert few_step_defaults(tiny_sd_dir) == {}  # DDIM, "leading": an ordinary model
    assert few_step_defaults(tiny_sd_dir, ["lcm-lora-sdv1-5:1.0"])["sampler"] == "LCM"
    for defaults in FEW_STEP_DEFAULTS.values():  # each is a valid request
        GenerationRequest(prompt="x", **defaults)
        assert 1 <= defaults["steps"] <= 8 and 0 <= defaults["guidance_scale"] <= 1.5
