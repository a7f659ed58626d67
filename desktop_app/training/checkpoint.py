"""Training state on disk: LoRA weights, optimizer, RNG and step in one file, written atomically (a temporary
file, then os.replace), so a kill while saving leaves the previous checkpoint whole."""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch

FILE_NAME = "checkpoint.pt"


def path_in(job_dir: Path) -> Path:
    return job_dir / FILE_NAME


def save(job_dir: Path, state: dict) -> Path:
    """``state`` holds tensors, numbers, strings, lists and dicts only (it loads with weights_only=True)."""
    target = path_in(job_dir)
    temp = target.with_name(target.name + ".tmp")
    state = dict(state, rng={"torch": torch.get_rng_state(), "python": list(_python_state()),
                             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []})
    with temp.open("wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, target)
    return target


def load(job_dir: Path) -> dict | None:
    """The saved state, or None when there is no checkpoint. RNG states are restored as a side effect."""
    target = path_in(job_dir)
    if not target.is_file():
        return None
    state = torch.load(target, map_location="cpu", weights_only=True)
    rng = state.get("rng") or {}
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if rng.get("python"):
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def _python_state():
    version, internal, gauss = random.getstate()
    return version, list(internal), gauss
