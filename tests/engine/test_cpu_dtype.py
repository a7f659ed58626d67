"""The CPU's dtype (issue 20): bfloat16 only for large models on a CPU with bf16 matrix units, float32 otherwise;
DESKTOP_APP_CPU_DTYPE forces either, and a bad value is one clear error."""

from __future__ import annotations

import pytest
import torch

from desktop_app.engine import device as devices
from desktop_app.engine.generate import Engine
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import RequestError

CPU = devices.DeviceChoice(torch.device("cpu"), torch.float32)
SD15_UNET_BYTES = 860_000_000 * 4  # an SD 1.5 UNet at float32
EMBEDDED_UNET_BYTES = 14_000_000 * 4


@pytest.fixture(autouse=True)
def auto(monkeypatch):
    monkeypatch.delenv(devices.CPU_DTYPE_ENV, raising=False)


def _units(monkeypatch, present: bool) -> None:
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: present)


def test_with_bf16_units_large_models_run_bf16_and_the_embedded_one_stays_float32(monkeypatch):
    _units(monkeypatch, True)
    assert devices.dtype_for_model(CPU, SD15_UNET_BYTES) == torch.bfloat16
    assert devices.dtype_for_model(CPU, EMBEDDED_UNET_BYTES) == torch.float32
    assert devices.dtype_for_model(CPU, None) == torch.float32  # size unknown: the safe path
    path = devices.cpu_path()
    assert path["large_models"] == "bfloat16" and path["small_models"] == "float32" and path["bf16_units"]


def test_without_bf16_units_everything_stays_float32(monkeypatch):
    _units(monkeypatch, False)
    assert devices.dtype_for_model(CPU, SD15_UNET_BYTES) == torch.float32
    path = devices.cpu_path()
    assert path["large_models"] == "float32" and "no bf16 matrix units" in path["why"]


def test_the_environment_forces_a_dtype_either_way(monkeypatch):
    _units(monkeypatch, True)
    monkeypatch.setenv(devices.CPU_DTYPE_ENV, "float32")
    assert devices.dtype_for_model(CPU, SD15_UNET_BYTES) == torch.float32
    assert devices.resolve("cpu").dtype == torch.float32
    _units(monkeypatch, False)
    monkeypatch.setenv(devices.CPU_DTYPE_ENV, "BF16")
    assert devices.dtype_for_model(CPU, EMBEDDED_UNET_BYTES) == torch.bfloat16
    assert devices.resolve("cpu").dtype == torch.bfloat16
    assert "forces it" in devices.cpu_path()["why"]


def test_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(devices.CPU_DTYPE_ENV, "float8")
    with pytest.raises(RequestError, match=devices.CPU_DTYPE_ENV) as caught:
        devices.dtype_for_model(CPU, SD15_UNET_BYTES)
    assert "float8" in str(caught.value) and "bfloat16" in str(caught.value)


def test_other_devices_keep_their_own_dtype(monkeypatch):
    _units(monkeypatch, True)
    monkeypatch.setenv(devices.CPU_DTYPE_ENV, "bfloat16")
    cuda = devices.DeviceChoice(torch.device("cuda"), torch.float16)
    assert devices.dtype_for_model(cuda, SD15_UNET_BYTES) == torch.float16


def test_the_units_check_agrees_with_the_processor_flags():
    flags = devices._cpuinfo_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags on this system")
    expected = bool(flags & {"amx_bf16", "avx512_bf16", "bf16"})
    assert devices.cpu_bf16_units() == expected


def test_a_forced_bf16_run_makes_an_image_and_records_its_dtype(monkeypatch, tiny_model_dir):
    monkeypatch.setenv(devices.CPU_DTYPE_ENV, "bfloat16")
    engine = Engine("cpu")
    finished = engine.run(GenerationRequest(prompt="a red apple", model=str(tiny_model_dir), width=32, height=32,
                                            steps=2, seed=3, upscale=None), lambda event: None)
    assert finished.images[0].size == (32, 32)
    assert finished.recipe.dtype == "bfloat16"
    assert engine.model.pipe.unet.dtype == torch.bfloat16


def test_the_engine_loads_a_large_model_in_bfloat16_on_bf16_units_and_the_embedded_one_in_float32(
        monkeypatch, tmp_path):
    """Engine.load asks device.dtype_for_model with the model's largest component read from its files: with
    bf16 units (stubbed) a model whose denoiser passes the size threshold loads in bfloat16, the embedded model
    in float32."""
    from desktop_app.engine import device as devices
    from desktop_app.engine import generate
    from desktop_app.engine.generate import Engine

    monkeypatch.delenv(devices.CPU_DTYPE_ENV, raising=False)
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: True)
    loaded = []
    monkeypatch.setattr(generate, "load_model", lambda name, device, dtype, **_: loaded.append(dtype) or (
        _ for _ in ()).throw(RuntimeError("stop after the dtype choice")))
    engine = Engine(device="cpu")
    for size, expected in ((devices.BF16_MIN_BYTES, torch.bfloat16), (devices.BF16_MIN_BYTES - 1, torch.float32)):
        monkeypatch.setattr(generate, "_largest_component", lambda folder, parts, size=size: size)
        with pytest.raises(RuntimeError, match="stop after"):
            engine.load("default")
        assert loaded[-1] == expected
    monkeypatch.undo()
    assert generate._largest_component(engine_folder(), None) < devices.BF16_MIN_BYTES  # the embedded model


def engine_folder():
    from desktop_app.models.model_folder import check_folder

    return check_folder("default")
