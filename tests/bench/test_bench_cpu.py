"""``desktop-app bench``'s CPU section (issue 20) at tiny sizes: every key, each candidate path measured side by
side, the PSNR of each against float32, the path the engine chose and why. The plumbing, never the figures
(those come from the real ``desktop-app bench --only cpu``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from desktop_app.bench import cpu, report
from desktop_app.bench.common import Settings
from desktop_app.engine import device as devices
from desktop_app.models.resolve import model_defaults

SPREAD = {"median", "min", "max", "runs"}


@pytest.fixture(scope="module")
def section(tiny_model_dir):
    model = str(tiny_model_dir)
    settings = Settings(model=model, device="cpu", quick=True)
    settings.defaults = model_defaults(model) | {"width": 32, "height": 32, "steps": 2}
    # bf16 forced in, so that its paths run here whatever the CPU has (slow without units, tiny sizes)
    return cpu.run(settings, sd_size=64, sd_config=cpu.TINY_UNET, upscale_px=24, rounds=2, bf16=True)


def test_every_key_and_every_candidate_is_measured(section):
    assert set(cpu.KEYS) <= set(section)
    expected = {"float32", "float32+channels_last", "bfloat16", "bfloat16+channels_last"}
    assert set(section["sd15"]["paths"]) == expected and set(section["upscaler"]["paths"]) == expected
    assert set(section["embedded"]["paths"]) == {"float32", "bfloat16"}
    for part in ("sd15", "upscaler", "embedded"):
        for name, run in section[part]["paths"].items():
            assert set(run["s"]) == SPREAD and run["s"]["runs"] == 2, (part, name)
            assert run["ratio"] > 0
        assert section[part]["paths"]["float32"]["ratio"] == 1.0
    assert section["sd15_step_ratio"] == section["sd15"]["paths"][section["sd15"]["fastest"]]["ratio"]
    assert section["upscaler_ratio"] == section["upscaler"]["paths"][section["upscaler"]["fastest"]]["ratio"]
    assert section["sd15"]["flops_per_step"] > 0 and section["settings"]["sd15_size"] == 64


def test_quality_is_measured_against_float32(section):
    for part in ("sd15", "upscaler"):
        for name in ("float32+channels_last", "bfloat16", "bfloat16+channels_last"):
            value = section[part]["paths"][name]["psnr_db"]
            assert value is None or value > 20, (part, name, value)  # None: identical to float32
    # bfloat16 keeps 8 bits of mantissa: close to float32, never the same
    assert 20 < section["sd15"]["paths"]["bfloat16"]["psnr_db"] < 120
    assert section["embedded"]["paths"]["bfloat16"]["psnr_db"] is not None


def test_the_chosen_path_is_the_engines_and_says_why(section, tiny_model_dir):
    path = devices.cpu_path()
    assert section["bf16_units"] == path["bf16_units"]
    assert path["large_models"] in section["chosen_path"] and section["why"].startswith(path["why"])
    # a tiny model is below the bf16 size on every CPU: the engine keeps it in float32
    assert cpu.engine_dtype(str(tiny_model_dir)) == torch.float32
    assert section["embedded"]["dtype"] == "float32" and section["embedded_ratio"] is None
    rates = section["matmul_gflops"]
    assert rates["float32"]["median"] > 0 and rates["bfloat16"]["median"] > 0


def test_the_table_shows_the_figures(section):
    lines = report.cpu_lines(section)
    text = "\n".join(lines)
    assert section["chosen_path"] in text and "SD 1.5 UNet step: ratio" in text
    assert f"ratio {section['sd15_step_ratio']}" in text and "bfloat16+channels_last" in text
    rows = report._cpu_rows(section)
    assert any(row[2] == section["upscaler_ratio"] for row in rows)


def test_without_bf16_units_bf16_is_not_measured_and_the_reason_is_given(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(devices, "cpu_bf16_units", lambda: False)
    model = str(tiny_model_dir)
    settings = Settings(model=model, device="cpu", quick=True)
    settings.defaults = model_defaults(model) | {"width": 32, "height": 32, "steps": 1}
    result = cpu.run(settings, sd_size=32, sd_config=cpu.TINY_UNET, upscale_px=16, rounds=1)
    assert set(result["sd15"]["paths"]) == {"float32", "float32+channels_last"}
    assert "bfloat16 not measured" in result["why"] and result["chosen_path"].startswith("large models float32")
    assert result["embedded_ratio"] is None and "float32" in result["embedded"]["status"]


def test_psnr_of_images_and_tensors():
    image = np.full((8, 8, 3), 100, dtype=np.uint8)
    assert cpu.psnr_images(image, image) is None
    assert cpu.psnr_images(image + 1, image) == pytest.approx(48.13, abs=0.01)  # 20 log10(255)
    reference = torch.linspace(0, 1, 100)
    assert cpu.psnr(reference + 0.01, reference) == pytest.approx(40.0, abs=0.01)
