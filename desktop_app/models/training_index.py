"""The embedded model's training images, indexed (issue 18, originality): for an image's encoding by the
contrastive image tower (``engine/contrastive.py``), the nearest training images with their similarity, their
source and licence, and where that similarity sits among the training images' own nearest-neighbour similarities.

Files (written by the model recipe, ``train_contrastive.export_into``), in the model folder's ``contrastive/``:
``index.npz`` (``embeddings``: N x D unit-length fp16; ``nearest_other``: each training image's similarity to its
nearest other training image; ``thumbnails``: N x 32 x 32 x 3) and ``index.json`` (each image's name, style and
code point; the art's package, version, licence and credit per style). Torch-free: numpy and PIL only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from desktop_app.errors import ModelError


@dataclass(frozen=True)
class Neighbour:
    rank: int
    label: str
    style: str
    similarity: float
    thumbnail: Image.Image
    source: str  # the npm package and version the art came from
    licence: str
    credit: str

    def as_dict(self) -> dict:
        return {"rank": self.rank, "label": self.label, "style": self.style,
                "similarity": round(self.similarity, 4), "source": self.source, "licence": self.licence}


class TrainingIndex:
    def __init__(self, embeddings: np.ndarray, nearest_other: np.ndarray, thumbnails: np.ndarray, meta: dict):
        self.embeddings = embeddings.astype(np.float32)
        self.nearest_other = np.sort(nearest_other.astype(np.float32))
        self.thumbnails = thumbnails
        self.items = meta["items"]
        self.sources = meta["sources"]

    def __len__(self) -> int:
        return len(self.items)

    def nearest(self, embedding: np.ndarray, k: int = 5) -> list[Neighbour]:
        """The ``k`` training images with the highest dot product with ``embedding`` (unit length), best first."""
        sims = self.embeddings @ np.asarray(embedding, np.float32).reshape(-1)
        order = np.argsort(-sims, kind="stable")[:k]
        found = []
        for rank, row in enumerate(order, 1):
            item = self.items[row]
            source = self.sources.get(item["style"], {})
            found.append(Neighbour(rank, item["label"], item["style"], float(sims[row]),
                                   Image.fromarray(self.thumbnails[row]),
                                   f"{source.get('package', '?')} {source.get('version') or ''}".strip(),
                                   source.get("licence", "unknown"), source.get("credit", "")))
        return found

    def percentile(self, similarity: float) -> float:
        """The share (0..100) of training images whose nearest other training image is less similar than
        ``similarity``: 99 means closer to a training image than 99% of training images are to each other."""
        return round(100.0 * float(np.searchsorted(self.nearest_other, similarity)) / len(self.nearest_other), 1)

    def histogram(self, low: float, high: float = 1.0, bins: int = 60) -> list[int]:
        """How many training images have their nearest other training image at each similarity (``bins`` equal
        bins from ``low`` to ``high``)."""
        counts, _ = np.histogram(self.nearest_other, bins=bins, range=(low, high))
        return counts.tolist()

    def typical(self) -> dict:
        """The training images' own nearest-neighbour similarities: median and the 5th and 95th percentiles."""
        q = np.percentile(self.nearest_other, [5, 50, 95])
        return {"p5": round(float(q[0]), 4), "median": round(float(q[1]), 4), "p95": round(float(q[2]), 4)}


def load(folder: Path | str) -> TrainingIndex:
    """The index in ``folder`` (the model folder's ``contrastive/``). ModelError, one line, when it is missing."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        with np.load(folder / "index.npz") as arrays:
            return TrainingIndex(arrays["embeddings"], arrays["nearest_other"], arrays["thumbnails"], meta)
    except FileNotFoundError as exc:
        raise ModelError(f"the training-image index is missing: {Path(exc.filename or folder).name} not in "
                         f"{folder}") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"the training-image index in {folder} cannot be read: {exc}") from None
