"""Sampler names map to diffusers schedulers built from the model's own config."""

from __future__ import annotations

import pytest
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from desktop_app.errors import RequestError
from desktop_app.engine.samplers import make_scheduler

BASE = DPMSolverMultistepScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction").config


@pytest.mark.parametrize("name,cls", [
    ("Euler", EulerDiscreteScheduler), ("Euler a", EulerAncestralDiscreteScheduler),
    ("DPM++ 2M", DPMSolverMultistepScheduler), ("DPM++ 2M Karras", DPMSolverMultistepScheduler),
    ("DDIM", DDIMScheduler), ("UniPC", UniPCMultistepScheduler),
])
def test_each_name_gets_its_scheduler_and_keeps_the_training_settings(name, cls):
    scheduler = make_scheduler(name, BASE)
    assert type(scheduler) is cls
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.beta_schedule == "squaredcos_cap_v2"


def test_karras_is_the_only_difference_between_the_two_dpm_samplers():
    plain, karras = make_scheduler("DPM++ 2M", BASE), make_scheduler("DPM++ 2M Karras", BASE)
    assert not plain.config.use_karras_sigmas and karras.config.use_karras_sigmas
    assert plain.config.algorithm_type == karras.config.algorithm_type == "dpmsolver++"
    # built from the base config each time: Karras does not stick to the next plain run
    assert not make_scheduler("DPM++ 2M", BASE).config.use_karras_sigmas


def test_ddim_does_not_clip_latents():
    assert make_scheduler("DDIM", BASE).config.clip_sample is False


def test_an_unknown_sampler_is_a_request_error():
    with pytest.raises(RequestError) as info:
        make_scheduler("Heun++", BASE)
    assert info.value.field == "sampler"
