"""Upscaling inside the Engine: the generation's upscale stage and its recipe, the hires fix on a plain Stable
Diffusion model, and ``Engine.upscale`` as a job of its own."""

from __future__ import annotations

import hashlib
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from desktop_app.errors import ModelError, RequestError
from desktop_app.engine.events import Cancelled, Finished, Progress, StageStarted
from desktop_app.engine.recipe import UpscaleRecipe
from desktop_app.engine.request import GenerationRequest, UpscaleRequest


def short_sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def picture(width=48, height=40, mode="RGB"):
    y, x = np.mgrid[0:height, 0:width]
    array = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1).astype(np.uint8)
    return Image.fromarray(array).convert(mode)


class Events(list):
    def of(self, kind):
        return [e for e in self if isinstance(e, kind)]


# ---- the upscale stage of a generation ---------------------------------------------------------------


def test_the_recipe_records_the_upscaler_name_hash_and_scale(generate, make_request, tiny_model_dir):
    result, events = generate(make_request(upscale="default"))
    record = result.recipe.upscaler
    assert result.recipe.to_dict()["upscaler"] == record
    own = tiny_model_dir / "upscaler" / "model.safetensors"
    assert record == {"name": "default", "file": "model.safetensors", "sha256": short_sha(own),
                      "architecture": "RealESRGAN Compact", "scale": 4}
    ticks = [p for p in events.progress if p.stage == "upscale"]
    assert ticks and ticks[-1].step == ticks[-1].total  # one Progress per tile


def test_an_upscaler_named_by_path_is_recorded_by_its_file(generate, make_request, tmp_path, tiny_model_dir):
    path = tmp_path / "4x-mine.safetensors"
    shutil.copy(tiny_model_dir / "upscaler" / "model.safetensors", path)
    result, _ = generate(make_request(upscale=str(path)))
    assert result.images[0].size == (128, 128)
    assert result.recipe.request.upscale == str(path)
    assert result.recipe.upscaler["name"] == "4x-mine" and result.recipe.upscaler["sha256"] == short_sha(path)


def test_cancel_between_the_tiles_of_a_generations_upscale(generate, make_request):
    cancel = threading.Event()

    def stop_at_the_first_tile(event):
        if isinstance(event, Progress) and event.stage == "upscale":
            cancel.set()

    result, events = generate(make_request(upscale="default", batch_size=3), cancel=cancel,
                              emit=stop_at_the_first_tile)
    assert result is None and events.cancelled
    assert [(p.step, p.total) for p in events.progress if p.stage == "upscale"] == [(1, 3)]


def test_no_upscale_no_record(generate, make_request):
    result, _ = generate(make_request())
    assert result.recipe.upscaler is None and "upscaler" not in result.recipe.to_dict()
    assert result.images[0].size == (32, 32)


# ---- the hires fix -------------------------------------------------------------------------------------


def test_hires_fix_enlarges_and_refines_on_a_plain_sd_model(generate, make_request, tiny_sd_dir):
    request = make_request(model=str(tiny_sd_dir), steps=4, hires_scale=2.0, hires_strength=0.5)
    result, events = generate(request)
    assert result.images[0].size == (64, 64)
    data = result.recipe.to_dict()
    assert data["hires_scale"] == 2.0 and data["hires_strength"] == 0.5
    assert result.recipe.hires == data["hires"] == {"upscaler": "Lanczos", "size": [64, 64], "steps": 2,
                                                    "scale": 2.0, "strength": 0.5}
    assert events.stages[-2:] == ["upscale", "hires"]
    assert [p.step for p in events.progress if p.stage == "hires"] == [1, 2]
    # the img2img pass changed the picture: it is not just the Lanczos enlargement
    enlarged, _ = generate(make_request(model=str(tiny_sd_dir), steps=4, hires_scale=2.0,
                                        hires_strength=0.0))
    assert enlarged.recipe.hires["steps"] == 0
    difference = np.abs(np.asarray(result.images[0], float) - np.asarray(enlarged.images[0], float))
    assert difference.mean() > 1.0


def test_hires_fix_with_an_upscaler_model_is_seeded(generate, make_request, tiny_sd_dir, tiny_model_dir):
    own = tiny_model_dir / "upscaler" / "model.safetensors"
    request = make_request(model=str(tiny_sd_dir), steps=2, hires_scale=1.5, hires_strength=1.0,
                           upscale=str(own))
    first, _ = generate(request)
    again, _ = generate(request)
    assert first.images[0].size == (48, 48)
    assert first.recipe.hires["upscaler"]["sha256"] == short_sha(own)
    assert first.images[0].tobytes() == again.images[0].tobytes()


def test_hires_fix_is_refused_on_the_embedded_format(generate, make_request):
    with pytest.raises(RequestError) as info:
        generate(make_request(hires_scale=2.0))
    assert info.value.field == "hires_scale" and "Stable Diffusion" in str(info.value)


def test_cancel_during_the_hires_pass(generate, make_request, tiny_sd_dir):
    cancel = threading.Event()

    def stop_in_hires(event):
        if isinstance(event, Progress) and event.stage == "hires":
            cancel.set()

    result, events = generate(make_request(model=str(tiny_sd_dir), steps=6, hires_scale=2.0),
                              cancel=cancel, emit=stop_in_hires)
    assert result is None and events.cancelled
    assert len([p for p in events.progress if p.stage == "hires"]) == 1


@pytest.mark.parametrize("changes,field", [
    ({"hires_scale": 1.0}, "hires_scale"), ({"hires_scale": 4.5}, "hires_scale"),
    ({"hires_scale": "2"}, "hires_scale"), ({"hires_scale": 2.5, "width": 2048}, "hires_scale"),
    ({"hires_strength": -0.1}, "hires_strength"), ({"hires_strength": 1.5}, "hires_strength"),
    ({"upscale": " "}, "upscale"),
])
def test_hires_fields_are_validated(changes, field):
    with pytest.raises(RequestError) as info:
        GenerationRequest("a cat", **changes)
    assert info.value.field == field


def test_hires_fields_round_trip_through_the_recipe():
    request = GenerationRequest("a cat", hires_scale=1.5, hires_strength=0.3)
    assert GenerationRequest.from_dict(request.to_dict()) == request


# ---- Engine.upscale ----------------------------------------------------------------------------------


def test_upscale_a_file_with_a_named_upscaler(engine, tmp_path, tiny_model_dir):
    source = tmp_path / "in.png"
    picture().save(source)
    own = tiny_model_dir / "upscaler" / "model.safetensors"
    events = Events()
    result = engine.upscale(UpscaleRequest(source, str(own), tile=0), emit=events.append)
    assert isinstance(result, Finished) and result.images[0].size == (192, 160)
    recipe = result.recipe
    assert isinstance(recipe, UpscaleRecipe) and recipe.input == str(source)
    assert recipe.input_size == (48, 40) and recipe.output_size == (192, 160) and recipe.scale == 4
    assert recipe.upscaler["sha256"] == short_sha(own) and recipe.upscaler["scale"] == 4 and recipe.tile == 0
    # the dict a PNG keeps, key for key as before the typed recipe
    data = recipe.to_dict()
    assert list(data) == ["job", "input", "input_size", "output_size", "mode", "scale", "tile", "tiles",
                          "upscaler", "device", "dtype", "app_version", "timings"]
    assert data["job"] == "upscale" and data["input_size"] == [48, 40] and data["output_size"] == [192, 160]
    assert {"load", "upscale", "total"} <= set(data["timings"])
    assert [e.stage for e in events.of(StageStarted)][-1] == "upscale"
    assert [(p.step, p.total, p.stage) for p in events.of(Progress)] == [(1, 1, "upscale")]


def test_default_is_the_given_model_folders_upscaler(engine, tiny_model_dir):
    result = engine.upscale(UpscaleRequest(picture(), "default", scale=2, model_folder=str(tiny_model_dir)))
    assert result.images[0].size == (96, 80)
    assert result.recipe.upscaler["sha256"] == short_sha(tiny_model_dir / "upscaler" / "model.safetensors")


def test_default_falls_back_to_the_embedded_model(tmp_path, monkeypatch, tiny_model_dir, tiny_sd_dir):
    from desktop_app.engine.generate import Engine

    shipped = tmp_path / "res" / "models" / "emoji-mini" / "upscaler" / "model.safetensors"
    shipped.parent.mkdir(parents=True)
    shutil.copy(tiny_model_dir / "upscaler" / "model.safetensors", shipped)
    monkeypatch.setenv("DESKTOP_APP_RESOURCES", str(tmp_path / "res"))
    fresh = Engine(device="cpu")
    # that folder has no upscaler of its own
    result = fresh.upscale(UpscaleRequest(picture(), model_folder=str(tiny_sd_dir)))
    assert result.images[0].size == (192, 160) and result.recipe.upscaler_name == "default"
    shipped.unlink()
    fresh.unload()
    with pytest.raises(RequestError) as info:
        fresh.upscale(UpscaleRequest(picture()))
    assert info.value.field == "model"


def test_the_job_tiles_reports_each_tile_and_cancels_between_them(engine, tiny_model_dir):
    own = str(tiny_model_dir / "upscaler" / "model.safetensors")
    cancel = threading.Event()
    events = Events()

    def emit(event):
        events.append(event)
        if isinstance(event, Progress) and event.step == 3:
            cancel.set()

    assert engine.upscale(UpscaleRequest(picture(300, 200), own, tile=64), emit=emit, cancel=cancel) is None
    assert [p.step for p in events.of(Progress)] == [1, 2, 3] and events.of(Progress)[0].total == 6 * 4
    assert isinstance(events[-1], Cancelled)


@pytest.mark.parametrize("mode,expected", [("RGBA", "RGBA"), ("LA", "LA"), ("P", "RGB"), ("L", "L")])
def test_the_job_keeps_the_image_kind(engine, tiny_model_dir, mode, expected):
    result = engine.upscale(UpscaleRequest(picture(mode=mode), model_folder=str(tiny_model_dir)))
    assert result.images[0].mode == expected and result.recipe.mode == expected


def test_bad_inputs_to_the_job(engine, tmp_path, tiny_model_dir):
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(RequestError) as info:
        engine.upscale(UpscaleRequest(tmp_path / "notes.png", model_folder=str(tiny_model_dir)))
    assert info.value.field == "input"
    with pytest.raises(RequestError) as info:
        engine.upscale(UpscaleRequest(picture(), model_folder=str(tiny_model_dir), scale=8))
    assert info.value.field == "scale" and "from 1 to 4" in str(info.value)
    with pytest.raises(RequestError) as info:
        engine.upscale(UpscaleRequest(picture(), "no-such-upscaler"))
    assert info.value.field == "model"
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(ModelError, match="fake.safetensors"):
        engine.upscale(UpscaleRequest(picture(), str(fake)))
