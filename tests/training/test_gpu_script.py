"""packaging/gpu/train_lora_gpu.py: its options, and its code on tiny configs on the CPU (no CUDA here)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "packaging" / "gpu" / "train_lora_gpu.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_lora_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments_and_their_defaults():
    script = load_script()
    args = script.parse_args(["out"])
    assert (args.steps, args.resolution, args.batch, args.rank, args.lr) == (300, 512, 1, 8, 1e-4)
    assert args.device == "cuda" and args.mixed_precision == "auto" and not args.no_gradient_checkpointing
    args = script.parse_args(["o", "--steps", "50", "--mixed-precision", "bf16", "--no-8bit-adam", "--tiny"])
    assert args.steps == 50 and args.mixed_precision == "bf16" and args.no_8bit_adam and args.tiny
    for bad in (["o", "--steps", "0"], ["o", "--resolution", "500"], ["o", "--mixed-precision", "fp8"], []):
        with pytest.raises(SystemExit):
            script.parse_args(bad)


def test_tiny_configs_train_on_the_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--tiny", "--device", "cpu", "--steps", "3",
                           "--resolution", "64", "--rank", "2"], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads((tmp_path / "train_lora_gpu.json").read_text())
    assert figures["steps_per_s"] > 0 and figures["peak_gpu_mb"] is None and figures["mixed_precision"] == "no"
    assert Path(figures["lora"]).is_file()
