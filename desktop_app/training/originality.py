"""Originality check: for each sample image, the nearest training image and how alike they are.

The feature is a small colour layout (16x16 RGB, values in -1..1): cheap, no model needed, and it catches what
matters here, a sample that reproduces a training photo's composition and colours. Similarity is the cosine of
two layouts (1: the same picture); distance is their mean absolute difference (0: the same picture).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

LAYOUT = 16
COPY_WARNING = 0.95  # above this, a sample is likely a near-copy of a training image


def layout(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        image = ImageOps.fit(image, (LAYOUT, LAYOUT), Image.Resampling.BOX)
    return (np.asarray(image, dtype=np.float32) / 127.5 - 1.0).reshape(-1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-8))


def nearest(samples: list[str | Path], training: list[str | Path]) -> list[dict]:
    """One entry per sample: {"sample", "nearest", "similarity", "distance", "near_copy"}."""
    train = [(str(p), layout(p)) for p in training]
    report = []
    for sample in samples:
        feature = layout(sample)
        scored = [(cosine(feature, f), float(np.abs(feature - f).mean()), p) for p, f in train]
        similarity, distance, path = max(scored)
        report.append({"sample": str(sample), "nearest": path, "similarity": round(similarity, 4),
                       "distance": round(distance, 4), "near_copy": similarity >= COPY_WARNING})
    return report


def mean_distance(samples: list[str | Path], training: list[str | Path]) -> float:
    """The mean over samples of the distance to the nearest training image (lower: closer to the training set)."""
    train = [layout(p) for p in training]
    return float(np.mean([min(np.abs(layout(s) - f).mean() for f in train) for s in samples]))


def describe(entry: dict) -> str:
    flag = "  (near copy!)" if entry["near_copy"] else ""
    return (f"{Path(entry['sample']).name}: nearest {Path(entry['nearest']).name}, similarity "
            f"{entry['similarity']:.3f}{flag}")
