"""Every bad value is refused with a RequestError that names its field, before any work is done."""

from __future__ import annotations

import pytest
import torch

from desktop_app.engine import device as devices
from desktop_app.errors import EngineError, ModelError, RequestError
from desktop_app.engine.request import GenerationRequest


@pytest.mark.parametrize("changes,field", [
    ({"prompt": None}, "prompt"),
    ({"prompt": "x" * 2001}, "prompt"),
    ({"negative_prompt": 3}, "negative_prompt"),
    ({"negative_prompt": "x" * 2001}, "negative_prompt"),
    ({"width": 30}, "width"),
    ({"width": 0}, "width"),
    ({"width": 4096}, "width"),
    ({"width": 32.0}, "width"),
    ({"height": 12}, "height"),
    ({"height": True}, "height"),
    ({"steps": 0}, "steps"),
    ({"steps": 151}, "steps"),
    ({"guidance_scale": -1}, "guidance_scale"),
    ({"guidance_scale": 31}, "guidance_scale"),
    ({"guidance_scale": float("nan")}, "guidance_scale"),
    ({"sampler": "Heun++"}, "sampler"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**32}, "seed"),
    ({"seed": "7"}, "seed"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 17}, "batch_size"),
    ({"model": " "}, "model"),
    ({"loras": ("style.safetensors",)}, "loras"),
])
def test_request_fields_are_checked_when_built(changes, field):
    values = {"prompt": "a cat", **changes}
    with pytest.raises(RequestError) as info:
        GenerationRequest(**values)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize("changes,field", [
    ({"width": 8}, "width"),  # below the model's declared minimum (16)
    ({"height": 256}, "height"),  # above its maximum (128)
    ({"upscale": "no-such-upscaler"}, "upscale"),
])
def test_the_engine_checks_the_request_against_the_model(generate, make_request, changes, field):
    with pytest.raises(RequestError) as info:
        generate(make_request(**changes))
    assert info.value.field == field


def test_upscale_default_needs_an_embedded_upscaler(generate, make_request, tiny_sd_dir):
    with pytest.raises(RequestError) as info:
        generate(make_request(model=str(tiny_sd_dir), upscale="default"))
    assert info.value.field == "upscale" and "no embedded upscaler" in str(info.value)


def test_a_pickle_named_safetensors_is_refused_as_an_upscaler(generate, make_request, tmp_path):
    fake = tmp_path / "sneaky.safetensors"
    torch.save({"body.0.weight": torch.zeros(1)}, fake)
    with pytest.raises(ModelError, match="not a safetensors file"):
        generate(make_request(upscale=str(fake)))


def test_unknown_and_absent_devices_are_request_errors():
    with pytest.raises(RequestError) as info:
        devices.choose_device("tpu")
    assert info.value.field == "device"
    if not torch.cuda.is_available():
        with pytest.raises(RequestError, match="CUDA"):
            devices.choose_device("cuda")
    if not devices.mps_available():
        with pytest.raises(RequestError, match="MPS"):
            devices.choose_device("mps")


def test_device_choice_and_dtype():
    choice = devices.resolve("cpu")
    assert choice.device == torch.device("cpu") and choice.dtype == torch.float32
    assert choice.describe() == "cpu (float32)"
    assert devices.choose_dtype(torch.device("cuda")) in (torch.float16, torch.bfloat16)
    assert devices.choose_dtype(torch.device("mps")) == torch.float32
    expected = "cuda" if torch.cuda.is_available() else ("mps" if devices.mps_available() else "cpu")
    assert devices.choose_device("auto").type == expected


def test_engine_errors_are_readable():
    assert issubclass(RequestError, EngineError) and issubclass(ModelError, EngineError)


@pytest.mark.parametrize("field_name", ["prompt", "negative_prompt"])
def test_text_that_is_not_utf8_is_refused_by_field(field_name):
    values = {"prompt": "a cat", field_name: "a \udcff cat"}
    with pytest.raises(RequestError, match=field_name):
        GenerationRequest(**values)


@pytest.mark.parametrize("loras", [[5], [{"name": "x", "colour": 1}], [["x", "heavy"]], [["", 1.0]],
                                   [["x", 99.0]]])
def test_malformed_loras_from_a_recipe_are_a_request_error(loras):
    with pytest.raises(RequestError, match="loras"):
        GenerationRequest.from_dict({"prompt": "a cat", "loras": loras})
