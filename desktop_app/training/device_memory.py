"""How much memory a training device has, without torch (the window asks too): an NVIDIA GPU's from
``nvidia-smi`` (the driver's own tool, there wherever CUDA runs), a Mac's unified memory (Apple GPUs share it)
from the system. The presets (config.preset) follow it; None where it cannot be known, and the base preset holds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def memory_gb(device: str) -> float | None:
    """The memory of ``device`` ("cuda", "cuda:1", "mps", "cpu") in GB (10^9 bytes), or None."""
    kind, _, index = device.partition(":")
    if kind == "cuda":
        return _nvidia_gb(int(index) if index.isdigit() else 0)
    if kind == "mps":
        return _system_gb()
    return None


def _nvidia_gb(index: int) -> float | None:
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    try:
        done = subprocess.run([tool, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10, check=True)
        rows = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        return float(rows[index]) * 2**20 / 1e9  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _system_gb() -> float | None:
    try:
        if sys.platform == "darwin":
            done = subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=10,
                                  check=True)
            return int(done.stdout.strip()) / 1e9
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (OSError, subprocess.SubprocessError, ValueError, AttributeError):
        return None
