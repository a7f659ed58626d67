"""Training test helpers: small generated image folders, quick job settings, an event recorder."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw


def make_images(folder: Path, count: int = 3, size: tuple[int, int] = (80, 64),
                suffix: str = ".png") -> list[Path]:
    """``count`` distinct pictures: a coloured disc on a coloured ground, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(count):
        image = Image.new("RGB", size, (200, 40 + 50 * k % 200, 30))
        draw = ImageDraw.Draw(image)
        draw.ellipse((8 + 4 * k, 8, size[0] // 2 + 4 * k, size[1] - 8), fill=(20, 30 + 40 * k % 200, 220))
        path = folder / f"img{k}{suffix}"
        image.save(path)
        written.append(path)
    return written


def quick_config(images: Path, name: str, **changes):
    """A handful of steps at 64 px, rank 4, on the embedded default model on the CPU."""
    from desktop_app.training.config import TrainConfig

    values = dict(images=str(images), token="sks", class_word="ball", name=name, steps=6, rank=4,
                  learning_rate=1e-3, resolution=64, checkpoint_every=3, sample_every=0, sample_steps=2)
    values.update(changes)
    return TrainConfig(**values)


class Events(list):
    def __call__(self, event: dict) -> None:
        self.append(event)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self if e["event"] == kind]
