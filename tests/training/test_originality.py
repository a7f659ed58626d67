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
    assert not report[2]["near_copy"] and report[2]["layout_similarity"] < 0.9
    assert report[0]["encoder"] == "image tower" and report[0]["layout_similarity"] == 1.0
    assert "near copy" in originality.describe(report[0]) and "near copy" not in originality.describe(report[2])
    assert originality.mean_distance([copy], training) == 0
    assert originality.mean_distance([other], training) > 0.3


def test_the_image_tower_finds_the_same_emoji_in_another_style(tmp_path):
    """By what it shows, not its pixels: among six Noto emoji (thumbnails from the shipped training index), a
    Twemoji cat face's nearest is Noto's cat face, and it is no near copy of it."""
    from desktop_app.engine import contrastive
    from desktop_app.models import training_index

    index = training_index.load(contrastive.default_folder())
    wanted = ["cat face", "rocket", "red apple", "ghost", "sun", "snowman"]
    by_name = {(item["label"], item["style"]): k for k, item in enumerate(index.items)}
    training = []
    for name in wanted:
        path = tmp_path / f"noto-{name.replace(' ', '-')}.png"
        Image.fromarray(index.thumbnails[by_name[(name, "noto")]]).resize((64, 64), Image.LANCZOS).save(path)
        training.append(path)
    sample = tmp_path / "twemoji-cat.png"
    twemoji_cat = index.thumbnails[by_name[("cat face", "twemoji")]]
    Image.fromarray(twemoji_cat).resize((64, 64), Image.LANCZOS).save(sample)
    entry = originality.nearest([sample], training)[0]
    assert entry["encoder"] == "image tower" and entry["nearest"] == str(training[0])
    assert not entry["near_copy"] and 0 <= entry["percentile"] <= 100
    assert "closer than" in originality.describe(entry)
