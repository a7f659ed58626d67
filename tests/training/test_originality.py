"""The originality check: nearest training image and similarity per sample."""

from __future__ import annotations

import shutil

from PIL import Image
from training_helpers import make_images

from desktop_app.training import originality


def test_a_copy_is_found_and_flagged_and_a_new_picture_is_not(tmp_path):
    training = make_images(tmp_path / "train", 3)
    copy = tmp_path / "copy.png"
    shutil.copy(training[1], copy)
    Image.open(training[1]).resize((40, 32)).save(tmp_path / "small-copy.png")  # resized: still the same layout
    other = tmp_path / "other.png"
    Image.new("RGB", (64, 64), (10, 200, 90)).save(other)
    report = originality.nearest([copy, tmp_path / "small-copy.png", other], training)
    assert report[0]["nearest"] == str(training[1]) and report[0]["similarity"] == 1.0
    assert report[0]["near_copy"] and report[0]["distance"] == 0
    assert report[1]["nearest"] == str(training[1]) and report[1]["near_copy"]
    assert not report[2]["near_copy"] and report[2]["similarity"] < 0.9
    assert "near copy" in originality.describe(report[0]) and "near copy" not in originality.describe(report[2])
    assert originality.mean_distance([copy], training) == 0
    assert originality.mean_distance([other], training) > 0.3
