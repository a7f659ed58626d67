"""Section 2 of the explain report: texts and images matched by the dot product of their encodings (the
explainer's figure 2), and the result's nearest training images (originality).

The encodings are the embedded model's contrastive pair (``engine/contrastive.py``): MiniLM for the texts, the
trained image tower for the images, both unit length, so each cell of the matrix is a cosine similarity. For a
model other than the embedded one the same pair is used (the others ship no image tower), and the data says so.

Texts: the prompt, other prompts (from the history, or given), and the names of the nearest training images.
Images: this run's result, the guidance row's other pictures (the same seed with no prompt, unguided, high
guidance), and the nearest training images. The best match of each text row is marked.
"""

from __future__ import annotations

import numpy as np

from desktop_app.engine import contrastive
from desktop_app.models import training_index

NEAREST = 5  # nearest training images listed
IN_MATRIX = 2  # of which this many (with different names) join the matrix as images and their names as texts
OTHER_TEXTS = 3  # other prompts at most
STYLE_WORDS = {"fluent": "fluent flat"}  # the style words of the training captions


def similarity_numbers(prompt: str, result, others: list[tuple[str, object]], other_texts: list[str],
                       embedded: bool, pair: contrastive.Contrastive | None = None,
                       index: training_index.TrainingIndex | None = None) -> dict:
    """The matrix and the nearest training images. ``result``: this run's image (PIL); ``others``: (label, image)
    pairs; ``other_texts``: other prompts (duplicates and the prompt itself dropped); ``embedded``: whether the
    run's model is the embedded model (the pair's own)."""
    pair = pair or contrastive.load()
    index = index or training_index.load(pair.folder)
    result_code = pair.encode_images([result])[0]
    nearest = index.nearest(result_code, NEAREST)
    shown, names = [], set()
    for neighbour in nearest:
        if neighbour.label not in names and len(shown) < IN_MATRIX:
            shown.append(neighbour)
            names.add(neighbour.label)

    texts = [prompt] + _others(other_texts, prompt) + [f"{n.label}, {STYLE_WORDS.get(n.style, n.style)} style"
                                                       for n in shown]
    text_kinds = ["prompt"] + ["other prompt"] * (len(texts) - 1 - len(shown)) + ["training caption"] * len(shown)
    images = [("this result", result)] + list(others) + [(f"training: {n.label} ({n.style})", n.thumbnail)
                                                          for n in shown]
    text_codes = pair.encode_texts(texts)
    image_codes = np.concatenate([result_code[None], pair.encode_images([image for _, image in images[1:]])])
    matrix = pair.similarity(text_codes, image_codes)
    retrieval = pair.config.get("retrieval", {}).get("held_out", {})
    low = float(np.floor(min(index.typical()["p5"], nearest[0].similarity if nearest else 1.0, 0.5) * 10) / 10)
    return {
        "texts": texts, "text_kinds": text_kinds,
        "images": [label for label, _ in images], "pictures": [image for _, image in images],
        "matrix": matrix.astype(np.float64).round(4).tolist(), "best": [int(k) for k in matrix.argmax(axis=1)],
        "nearest": [{**n.as_dict(), "thumbnail": n.thumbnail, "credit": n.credit} for n in nearest],
        "nearest_percentile": index.percentile(nearest[0].similarity) if nearest else None,
        "typical": index.typical(), "training_images": len(index),
        "histogram": {"low": low, "high": 1.0, "counts": index.histogram(low, 1.0)},
        "embedded": embedded, "retrieval": retrieval,
    }


def _others(texts: list[str], prompt: str) -> list[str]:
    kept: list[str] = []
    for text in texts:
        text = (text or "").strip()
        if text and text != prompt.strip() and text not in kept:
            kept.append(text)
    return kept[:OTHER_TEXTS]
