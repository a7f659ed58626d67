"""Originality check: for each sample image, the nearest training image and how alike they are.

Two measures, each for what it is good at:
- **similarity** (which training image is nearest, and how near): the cosine of the embedded model's contrastive
  image tower's encodings (``engine/contrastive.py``, issue 18: the same encoder that finds the embedded model's
  nearest training images), so a sample is compared by what it shows; with ``percentile``, the share of training
  images whose own nearest other training image is less similar. Without the tower (its folder missing), the
  colour layout below stands in, and ``encoder`` says which was used.
- **near copy** (pixel evidence): a small colour layout (16x16 RGB, values in -1..1) whose cosine with the nearest
  training image's layout reaches ``COPY_WARNING``: a sample that reproduces a training photo's composition and
  colours. ``distance`` is the layouts' mean absolute difference (0: the same picture).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from desktop_app.errors import ModelError

LAYOUT = 16
COPY_WARNING = 0.95  # layout cosine above this: a sample is likely a near-copy of a training image
log = logging.getLogger(__name__)


def layout(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        image = ImageOps.fit(image, (LAYOUT, LAYOUT), Image.Resampling.BOX)
    return (np.asarray(image, dtype=np.float32) / 127.5 - 1.0).reshape(-1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-8))


def encodings(paths: list[str | Path]) -> tuple[np.ndarray, str]:
    """Unit-length rows for ``paths``: the contrastive image tower's, or (without it) the colour layouts'."""
    pair = _tower()
    if pair is not None:
        codes = []
        for path in paths:
            with Image.open(path) as image:
                codes.append(pair.encode_images([ImageOps.exif_transpose(image)])[0])
        return np.stack(codes).astype(np.float32), "image tower"
    rows = np.stack([layout(path) for path in paths])
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-8), "colour layout"


def _tower():
    """The embedded model's contrastive pair, or None (logged) when it cannot be loaded."""
    try:
        from desktop_app.engine import contrastive

        return contrastive.load()
    except (ImportError, ModelError) as exc:
        log.info("originality by colour layout: %s", exc)
        return None


def nearest(samples: list[str | Path], training: list[str | Path]) -> list[dict]:
    """One entry per sample: {"sample", "nearest", "similarity", "percentile", "encoder", "layout_nearest",
    "layout_similarity", "distance", "near_copy"}."""
    codes, encoder = encodings(list(training) + list(samples))
    train_codes, sample_codes = codes[:len(training)], codes[len(training):]
    own = train_codes @ train_codes.T
    np.fill_diagonal(own, -2.0)
    nearest_other = np.sort(own.max(axis=1)) if len(training) > 1 else np.zeros(0)
    layouts = [layout(path) for path in training]
    report = []
    for sample, code in zip(samples, sample_codes):
        sims = train_codes @ code
        best = int(np.argmax(sims))
        feature = layout(sample)
        scored = [(cosine(feature, f), float(np.abs(feature - f).mean()), str(p))
                  for p, f in zip(training, layouts)]
        layout_similarity, distance, layout_path = max(scored)
        share = (100.0 * float(np.searchsorted(nearest_other, sims[best])) / len(nearest_other)
                 if len(nearest_other) else None)
        report.append({"sample": str(sample), "nearest": str(training[best]),
                       "similarity": round(float(sims[best]), 4),
                       "percentile": None if share is None else round(share, 1), "encoder": encoder,
                       "layout_nearest": layout_path, "layout_similarity": round(layout_similarity, 4),
                       "distance": round(distance, 4), "near_copy": layout_similarity >= COPY_WARNING})
    return report


def mean_distance(samples: list[str | Path], training: list[str | Path]) -> float:
    """The mean over samples of the layout distance to the nearest training image (lower: closer to the set)."""
    train = [layout(p) for p in training]
    return float(np.mean([min(np.abs(layout(s) - f).mean() for f in train) for s in samples]))


def describe(entry: dict) -> str:
    flag = "  (near copy!)" if entry["near_copy"] else ""
    where = (f", closer than {entry['percentile']:.0f}% of the training images are to each other"
             if entry.get("percentile") is not None else "")
    return (f"{Path(entry['sample']).name}: nearest {Path(entry['nearest']).name}, similarity "
            f"{entry['similarity']:.3f}{where}{flag}")
