"""Resumable training state: one file per stage in the cache folder, written atomically (loop.Loop uses it)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch


def save(path: Path, **state) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


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
