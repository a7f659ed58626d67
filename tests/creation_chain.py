"""A chain of decisions saved through the real studio functions (outputs.keep_image_as into the real history,
outputs.save_png for an upscale, recipes from the real serialiser), for the creation record's tests."""

from __future__ import annotations

import hashlib
import shutil
import time
import types
from pathlib import Path

from PIL import Image, ImageDraw

from desktop_app.engine.request import GenerationRequest, UpscaleRequest
from desktop_app.studio import history as history_module
from desktop_app.studio import outputs
from tests.fake_recipes import generation_recipe, upscale_recipe

HOUR = 3600.0


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Studio:
    """The user folder's history with a clock the test sets (the history stamps each row with ``time.time()``)."""

    def __init__(self, folder: Path, monkeypatch):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.now = time.time() - 4 * HOUR
        monkeypatch.setattr(history_module, "time", types.SimpleNamespace(time=lambda: self.now))
        self.history = history_module.History()

    def save(self, name: str, at: float, model_name: str = "tiny-a", seed: int = 1, colour=(90, 90, 90),
             **request) -> Path:
        self.now = at
        values = {"prompt": "a red fox in snow", "width": 32, "height": 32, "steps": 4, "guidance_scale": 7.0,
                  "sampler": "Euler", "model": "tiny"} | request
        recipe = generation_recipe(GenerationRequest(**values), seeds=(seed,), model_name=model_name)
        data = recipe.to_dict()
        if values.get("init_image"):
            data["init_image_sha256"] = sha(values["init_image"]) if Path(values["init_image"]).is_file() \
                else "0" * 64
        if values.get("mask"):
            data["mask_sha256"] = sha(values["mask"])
        image = Image.new("RGB", (32, 32), colour)
        ImageDraw.Draw(image).text((2, 2), name, fill=(255, 255, 255))
        return outputs.keep_image_as(image, data, seed, self.folder / name, self.history)

    def entry(self, path: Path):
        return next(e for e in self.history.entries() if e.path == Path(path).resolve())

    def upscale(self, source: Path, name: str) -> Path:
        recipe = upscale_recipe(UpscaleRequest(source=source, model="tiny-esrgan"), (32, 32)).to_dict()
        return outputs.save_png(Image.new("RGB", (128, 128), (10, 20, 30)), self.folder / name, recipe)

    def paint_mask(self, name: str = "mask.png") -> Path:
        mask = Image.new("L", (32, 32), 0)
        ImageDraw.Draw(mask).rectangle((8, 8, 24, 24), fill=255)
        path = self.folder / name
        mask.save(path)
        return path


def make_chain(studio: Studio) -> dict[str, Path]:
    """Unrelated images (another model 10 minutes before, the same model hours before), a first try, attempt 1
    (seed 3), attempt 2 (seed 7, guidance 9, a favourite), image 3 from image 2 as start image with a mask, and
    image 3 upscaled to image 4."""
    start = time.time() - HOUR
    files = {"old": studio.save("old.png", start - 3 * HOUR, prompt="a fox, long ago", seed=1),
             "other": studio.save("other.png", start - 10 * 60, model_name="tiny-b", prompt="a castle", seed=2),
             "try": studio.save("try.png", start - 5 * 60, prompt="a fox", seed=1),
             "one": studio.save("one.png", start, seed=3, colour=(200, 0, 0))}
    files["two"] = studio.save("two.png", start + 120, seed=7, guidance_scale=9.0, colour=(0, 200, 0))
    studio.history.set_favourite(studio.entry(files["two"]).id, True)
    files["mask"] = studio.paint_mask()
    files["three"] = studio.save("three.png", start + 300, seed=7, guidance_scale=9.0,
                                 init_image=str(files["two"]), mask=str(files["mask"]), strength=0.6,
                                 colour=(0, 0, 200))
    files["four"] = studio.upscale(files["three"], "four.png")
    return files


def copy_over(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
