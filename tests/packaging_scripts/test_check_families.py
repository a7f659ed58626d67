"""packaging/gpu/check_families.py: it imports, parses its arguments, reads the bundled configs, and runs its
whole path on shrunken architectures on the CPU (the real run needs a CUDA GPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "packaging" / "gpu" / "check_families.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("check_families", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments(script):
    args = script.parse_args(["--families", "sdxl", "--steps", "4"])
    assert args.families == "sdxl" and args.steps == 4 and args.dtype == "float16" and args.device == "cuda"
    with pytest.raises(SystemExit) as info:
        script.parse_args(["--families", "sd15,flux"])
    assert info.value.code == 2


def test_the_configs_are_the_native_architectures(script, capsys):
    assert script.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sd15" in out and "cross-attention 768" in out and "cross-attention 2048" in out
    sd15 = script.read_configs("sd15", script.CONFIGS)
    assert sd15["unet"]["block_out_channels"] == [320, 640, 1280, 1280]
    assert script.read_configs("sdxl", Path("/no/such/folder"))["source"] == "diffusers defaults"
    refined = script.read_configs("sdxl+refiner", script.CONFIGS)
    assert refined["refiner_unet"]["block_out_channels"] == [384, 768, 1536, 1536]
    assert refined["unet"] == script.read_configs("sdxl", script.CONFIGS)["unet"]


def test_the_whole_path_runs_tiny_on_the_cpu(script, tmp_path, capsys):
    out = tmp_path / "families.json"
    code = script.main(["--tiny", "--device", "cpu", "--dtype", "float32", "--steps", "2", "--json", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    assert [r["family"] for r in results] == ["sd15", "sdxl", "sdxl+refiner"]
    for result in results:
        assert result["it_per_s"] > 0 and result["fp16_decode_finite"] is True
        assert result["linear_preview_ms"] >= 0 and result["vae_preview_ms"] > 0
    assert "it/s" in capsys.readouterr().out


def test_it_imports_nothing_but_torch_diffusers_and_transformers():
    text = SCRIPT.read_text()
    lines = [line.strip() for line in text.splitlines()]
    imported = {line.split()[1].split(".")[0] for line in lines
                if line.startswith(("import ", "from ")) and not line.startswith("from __future__")}
    allowed = {"argparse", "json", "sys", "time", "pathlib", "torch", "diffusers", "transformers"}
    assert imported <= allowed, imported
    assert "desktop_app" not in text
