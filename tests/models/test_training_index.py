"""The training-image index (studio/training_index.py) on a small made-up index: the nearest images are the
highest dot products, in order; the percentile counts the training images' own nearest-neighbour similarities;
a missing or damaged index is one line naming what is wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest

from desktop_app.errors import ModelError
from desktop_app.models import training_index


def write_index(folder, count=40, width=8, seed=0):
    rng = np.random.default_rng(seed)
    codes = rng.normal(size=(count, width))
    codes /= np.linalg.norm(codes, axis=1, keepdims=True)
    sims = codes @ codes.T
    np.fill_diagonal(sims, -2)
    thumbs = rng.integers(0, 255, size=(count, 32, 32, 3), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "index.npz", embeddings=codes.astype(np.float16),
                        nearest_other=sims.max(1).astype(np.float32), thumbnails=thumbs)
    meta = {"count": count, "thumbnail_size": 32,
            "sources": {"noto": {"package": "emoji-datasource-google", "version": "16.0.0",
                                 "licence": "Apache-2.0", "credit": "Noto"}},
            "items": [{"label": f"emoji {k}", "style": "noto", "hexcode": f"{k:04X}"} for k in range(count)]}
    (folder / "index.json").write_text(json.dumps(meta))
    return codes.astype(np.float16).astype(np.float32), sims.max(1), thumbs


def test_the_nearest_images_are_the_highest_dot_products_in_order(tmp_path):
    codes, _, thumbs = write_index(tmp_path)
    index = training_index.load(tmp_path)
    query = np.random.default_rng(5).normal(size=8)
    query /= np.linalg.norm(query)
    found = index.nearest(query, 4)
    direct = codes @ query
    assert [n.label for n in found] == [f"emoji {k}" for k in np.argsort(-direct)[:4]]
    assert [n.similarity for n in found] == pytest.approx(sorted(direct, reverse=True)[:4], abs=1e-6)
    best = int(np.argmax(direct))
    assert np.array_equal(np.asarray(found[0].thumbnail), thumbs[best])
    assert found[0].licence == "Apache-2.0" and found[0].source == "emoji-datasource-google 16.0.0"
    assert found[0].as_dict()["rank"] == 1


def test_a_training_image_finds_itself_first(tmp_path):
    codes, _, _ = write_index(tmp_path)
    index = training_index.load(tmp_path)
    assert index.nearest(codes[7], 1)[0].label == "emoji 7"
    assert index.nearest(codes[7], 1)[0].similarity == pytest.approx(1.0, abs=1e-3)


def test_the_percentile_counts_training_images_less_close_to_their_own_nearest(tmp_path):
    _, nearest_other, _ = write_index(tmp_path)
    index = training_index.load(tmp_path)
    for value in (0.1, 0.45, 0.6, 0.99):
        assert index.percentile(value) == pytest.approx(100 * np.mean(nearest_other < value), abs=0.1)
    typical = index.typical()
    assert typical["p5"] <= typical["median"] <= typical["p95"]
    assert sum(index.histogram(-1.0, 1.0, 20)) == len(index)


def test_a_missing_or_damaged_index_is_one_line(tmp_path):
    with pytest.raises(ModelError) as caught:
        training_index.load(tmp_path / "nowhere")
    assert "index.json" in str(caught.value) and "\n" not in str(caught.value)
    write_index(tmp_path / "bad")
    (tmp_path / "bad" / "index.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError) as caught:
        training_index.load(tmp_path / "bad")
    assert "cannot be read" in str(caught.value)
