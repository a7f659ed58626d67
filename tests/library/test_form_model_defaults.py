"""The form's defaults follow the model: a Stable Diffusion checkpoint that declares no guidance gets the
request's own (what the command line uses), not the embedded model's guidance 10 left over from before."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from crafted_files import FAMILY_SHAPES, write_safetensors

from desktop_app.engine.request import GenerationRequest
from desktop_app.gui.generation_form import GenerationForm


def test_a_checkpoint_gets_the_request_defaults_and_its_own_size(qtbot, tmp_path):
    form = GenerationForm()
    qtbot.addWidget(form)
    embedded = form.build_request()
    assert embedded.guidance_scale == 10.0 and embedded.width == 64  # what the embedded model declares

    form.select_model(str(write_safetensors(tmp_path / "xl.safetensors", FAMILY_SHAPES["sdxl"])))
    request = form.build_request()
    plain = GenerationRequest(prompt="")
    assert (request.guidance_scale, request.steps, request.sampler) == (
        plain.guidance_scale, plain.steps, plain.sampler)
    assert (request.width, request.height) == (1024, 1024)

    form.select_model("default")
    assert form.build_request().guidance_scale == 10.0
