"""Upscaling images with the tiny 4x upscaler: every kind of input, tiles against no tiles, scale, cancel,
and the files and sizes that are refused."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from desktop_app.engine import upscale
from desktop_app.errors import CancelledError, RequestError
from desktop_app.engine.upscale import load_upscaler, open_image, plan, upscale_image

W, H = 40, 24  # input size: not square, so a swapped side shows


@pytest.fixture(scope="module")
def descriptor(tiny_model_dir):
    return load_upscaler(tiny_model_dir / "upscaler" / "model.safetensors")


def noise(shape, dtype=np.uint8, top=255, seed=0):
    return (np.random.default_rng(seed).random(shape) * top).astype(dtype)


def smooth_rgb(width, height, seed=0):
    """A picture-like image: gradients and blobs plus a little noise (pure noise hides seams less well)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [np.sin(x / 7 + k) * np.cos(y / 5 - k) for k in range(3)]
    base = (np.stack(channels, -1) * 0.4 + 0.5) * 255
    return Image.fromarray(np.clip(base + noise((height, width, 3), np.float32, 30, seed) - 15, 0, 255)
                           .astype(np.uint8))


def rgba():
    image = Image.fromarray(noise((H, W, 3)))
    alpha = np.zeros((H, W), np.uint8)
    alpha[4:20, 8:30] = 255  # an opaque shape on a transparent background
    image.putalpha(Image.fromarray(alpha))
    return image


def palette(transparent: bool):
    image = Image.fromarray(noise((H, W, 3))).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    if transparent:
        image.info["transparency"] = 0
    return image


INPUTS = {
    "RGB": (lambda: Image.fromarray(noise((H, W, 3))), "RGB"),
    "RGBA": (rgba, "RGBA"),
    "L": (lambda: Image.fromarray(noise((H, W))), "L"),
    "LA": (lambda: Image.fromarray(np.stack([noise((H, W)), noise((H, W), seed=1)], -1)), "LA"),
    "P": (lambda: palette(False), "RGB"),
    "P+transparency": (lambda: palette(True), "RGBA"),
    "I;16": (lambda: Image.fromarray(noise((H, W), np.uint16, 65535)), "I;16"),
    "I": (lambda: Image.fromarray(noise((H, W), np.int32, 65535)), "I;16"),
    "1": (lambda: Image.fromarray(noise((H, W)) > 128), "L"),
    "CMYK": (lambda: Image.fromarray(noise((H, W, 3))).convert("CMYK"), "RGB"),
}


@pytest.mark.parametrize("kind", list(INPUTS))
def test_every_kind_of_image_is_upscaled_4x_and_keeps_its_kind(descriptor, kind):
    make, mode = INPUTS[kind]
    image = make()
    result = upscale_image(descriptor, image, tile=0)
    assert result.size == (W * 4, H * 4)
    assert result.mode == mode


def test_alpha_is_upscaled_with_the_colour_and_stays_sharp(descriptor):
    result = upscale_image(descriptor, rgba())
    alpha = np.asarray(result)[..., 3]
    assert alpha[6 * 4:18 * 4, 10 * 4:28 * 4].min() > 200  # inside the shape: opaque
    assert alpha[:2 * 4].max() < 60 and alpha[22 * 4:].max() < 60  # well outside: transparent


def test_an_opaque_alpha_costs_no_extra_pass(descriptor):
    image = Image.fromarray(noise((H, W, 3))).convert("RGBA")
    assert plan(descriptor, image, 0) == 1
    assert plan(descriptor, rgba(), 0) == 2
    assert np.asarray(upscale_image(descriptor, image))[..., 3].min() == 255


def test_16_bit_greyscale_keeps_16_bits(descriptor):
    result = upscale_image(descriptor, Image.fromarray(noise((H, W), np.uint16, 65535)))
    values = np.asarray(result)
    assert values.dtype == np.uint16 and len(np.unique(values)) > 256


def test_exif_rotation_is_applied_when_a_file_is_opened(descriptor, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = tmp_path / "sideways.png"
    Image.fromarray(noise((H, W, 3))).save(path, exif=exif)
    image = open_image(path)
    assert image.size == (H, W)
    assert upscale_image(descriptor, image).size == (H * 4, W * 4)


def test_tiles_match_the_untiled_result(descriptor):
    image = smooth_rgb(150, 110)
    whole = np.asarray(upscale_image(descriptor, image, tile=0)).astype(int)
    calls = []
    tiled = np.asarray(upscale_image(descriptor, image, tile=64,
                                     progress=lambda done, total: calls.append((done, total)))).astype(int)
    assert plan(descriptor, image, 64) == len(calls) == 6  # 3 x 2 overlapping tiles
    assert calls[-1] == (6, 6)
    difference = np.abs(whole - tiled)
    assert difference.max() <= 2 and difference.mean() < 0.05


class Spy:
    """A descriptor that records the size of every input it is given."""

    def __init__(self, inner):
        self.inner, self.shapes = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, x):
        self.shapes.append(tuple(x.shape[-2:]))
        return self.inner(x)


def test_no_model_call_sees_more_than_one_tile(descriptor):
    spy = Spy(descriptor)
    result = upscale_image(spy, smooth_rgb(300, 200), tile=64)
    assert result.size == (1200, 800)
    assert len(spy.shapes) == plan(descriptor, smooth_rgb(300, 200), 64) > 20
    assert max(max(shape) for shape in spy.shapes) == 64


def test_cancel_stops_between_tiles(descriptor):
    cancel = threading.Event()
    spy = Spy(descriptor)

    def progress(done, total):
        if done == 2:
            cancel.set()

    with pytest.raises(CancelledError):
        upscale_image(spy, smooth_rgb(150, 110), tile=64, progress=progress, cancel=cancel)
    assert len(spy.shapes) == 2


@pytest.mark.parametrize("scale,size", [(None, (160, 96)), (4, (160, 96)), (2, (80, 48)), (1, (40, 24)),
                                        (2.5, (100, 60))])
def test_a_smaller_scale_shrinks_the_models_result(descriptor, scale, size):
    assert upscale_image(descriptor, Image.fromarray(noise((H, W, 3))), scale=scale).size == size


@pytest.mark.parametrize("changes,field", [
    ({"scale": 8}, "scale"), ({"scale": 0.5}, "scale"), ({"scale": "4"}, "scale"),
    ({"tile": 10}, "tile"), ({"tile": 10_000}, "tile"), ({"tile": 64.5}, "tile"),
])
def test_bad_scales_and_tiles_are_refused(descriptor, changes, field):
    with pytest.raises(RequestError) as info:
        upscale_image(descriptor, Image.new("RGB", (8, 8)), **changes)
    assert info.value.field == field


def test_an_output_beyond_the_limit_is_refused_before_any_work(descriptor, monkeypatch):
    monkeypatch.setattr(upscale, "MAX_OUTPUT_PIXELS", 100_000)
    spy = Spy(descriptor)
    with pytest.raises(RequestError, match="megapixels") as info:
        upscale_image(spy, Image.new("RGB", (100, 80)))  # 400x320 = 128,000 pixels out
    assert info.value.field == "input" and not spy.shapes


def test_a_file_beyond_the_limit_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    Image.new("RGB", (100, 80)).save(tmp_path / "big.png")
    monkeypatch.setattr(upscale, "MAX_OUTPUT_PIXELS", 5_000)
    with pytest.raises(RequestError, match="megapixels"):
        open_image(tmp_path / "big.png")


@pytest.mark.parametrize("content,needle", [
    (b"", "empty file"),
    (b"this is a text file, not a picture\n" * 20, "not an image"),
    (None, "damaged or truncated"),  # a PNG cut in half
])
def test_files_that_are_not_images_get_a_clear_message(tmp_path, content, needle):
    path = tmp_path / "input.png"
    if content is None:
        Image.fromarray(noise((64, 64, 3))).save(path)
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(RequestError, match=needle) as info:
        open_image(path)
    assert info.value.field == "input" and "input.png" in str(info.value)


def test_a_missing_input_is_a_request_error(tmp_path):
    with pytest.raises(RequestError, match="not a file"):
        open_image(tmp_path / "nowhere.png")
