"""The dataset rules: what is usable, what is not and why, captions, crops, and the errors before training."""

from __future__ import annotations

import pytest
from training_helpers import make_images
from PIL import Image

from desktop_app.training import dataset
from desktop_app.training.dataset import DatasetError


def test_scan_sorts_usable_and_unusable_with_reasons(tmp_path):
    folder = tmp_path / "set"
    make_images(folder, 2)
    make_images(folder / "x", 1, suffix=".jpg")
    (folder / "x" / "img0.jpg").rename(folder / "photo.jpg")
    Image.new("RGB", (100, 60), "red").save(folder / "wide.webp")
    Image.new("RGB", (20, 20), "red").save(folder / "tiny.png")
    (folder / "broken.png").write_bytes(b"not a png at all")
    (folder / "notes.md").write_text("ignored")
    scan = dataset.scan(folder)
    assert sorted(i.path.name for i in scan.usable) == ["img0.png", "img1.png", "photo.jpg", "wide.webp"]
    reasons = {p.name: r for p, r in scan.unusable}
    assert set(reasons) == {"tiny.png", "broken.png"}
    assert reasons["tiny.png"].startswith("too small (20x20")
    assert reasons["broken.png"].startswith("unreadable")


def test_exif_rotation_is_respected(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    image = Image.new("RGB", (96, 48), "red")
    image.paste((0, 0, 255), (0, 0, 48, 48))  # left half blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    image.save(folder / "rotated.jpg", exif=exif, quality=95)
    scan = dataset.scan(folder)
    assert scan.usable[0].size == (48, 96)  # as a person sees it: portrait
    prepared = dataset.prepare(folder / "rotated.jpg", 32)
    assert prepared.size == (32, 32)
    top, bottom = prepared.getpixel((16, 2)), prepared.getpixel((16, 29))
    assert top[2] > 200 and bottom[0] > 200  # the blue half went to the top, as displayed


def test_random_crop_moves_and_centre_crop_is_fixed(tmp_path):
    import random

    path = make_images(tmp_path, 1, size=(200, 64))[0]
    centre = [dataset.prepare(path, 64).tobytes() for _ in range(2)]
    assert centre[0] == centre[1]
    rng = random.Random(1)
    crops = {dataset.prepare(path, 64, "random", rng).tobytes() for _ in range(6)}
    assert len(crops) > 1


def test_captions_utf8_and_a_fallback_that_names_the_file(tmp_path):
    folder = tmp_path / "set"
    make_images(folder, 3)
    (folder / "img0.txt").write_text("a photo of sks ball, café\n", encoding="utf-8")
    (folder / "img1.txt").write_bytes("sks ball on a café table".encode("cp1252"))
    scan = dataset.scan(folder)
    captions = {i.path.name: i.caption for i in scan.usable}
    assert captions["img0.png"] == "a photo of sks ball, café"
    assert captions["img1.png"] == "sks ball on a café table"
    assert captions["img2.png"] is None
    assert len(scan.warnings) == 1 and "img1.txt" in scan.warnings[0] and "UTF-8" in scan.warnings[0]


def test_instance_prompt():
    assert dataset.instance_prompt("sks", "dog") == "a photo of sks dog"
    assert dataset.instance_prompt("sks") == "a photo of sks"


def test_empty_folder_missing_folder_no_usable_and_too_few_for_the_batch(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no PNG, JPEG or WebP images"):
        dataset.scan(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        dataset.scan(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"junk")
    Image.new("RGB", (10, 10)).save(bad / "b.png")
    with pytest.raises(DatasetError, match=r"no usable images .*a.png: unreadable.*b.png: too small"):
        dataset.check_ready(dataset.scan(bad), 1)
    make_images(tmp_path / "two", 2)
    with pytest.raises(DatasetError, match="2 usable image.*fewer than the batch size 4"):
        dataset.check_ready(dataset.scan(tmp_path / "two"), 4)
    dataset.check_ready(dataset.scan(tmp_path / "two"), 2)


def test_dataset_hash_follows_content(tmp_path):
    make_images(tmp_path / "a", 2)
    first = dataset.dataset_hash(dataset.scan(tmp_path / "a").usable)
    assert first == dataset.dataset_hash(dataset.scan(tmp_path / "a").usable)
    (tmp_path / "a" / "img0.txt").write_text("new caption")
    assert dataset.dataset_hash(dataset.scan(tmp_path / "a").usable) != first
