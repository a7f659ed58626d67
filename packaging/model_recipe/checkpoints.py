"""Resumable training state: one file per stage in the cache folder, written atomically."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch


def save(path: Path, **state) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def stretch_rate(lr: float, lr_final: float | None, done: float) -> float:
    """The learning rate at fraction ``done`` of a training stretch: constant ``lr``, or with ``lr_final`` a
    cosine from ``lr`` down to ``lr_final`` (the annealing phase that a constant rate never has)."""
    if lr_final is None:
        return lr
    return lr_final + (lr - lr_final) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, done))))


def load(path: Path) -> dict | None:
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


class Log:
    """Appends JSON lines (step, loss, seconds) so a learning curve can be drawn later."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def write(self, **row) -> None:
        row["time"] = time.time()
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
