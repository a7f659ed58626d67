"""The training images: a folder of PNG/JPEG/WebP files, each with an optional ``.txt`` caption beside it.

``scan`` sorts the folder into usable images and unusable ones (with the reason) without loading torch;
``load_pixels`` crops and resizes the usable ones to the training resolution. Captions are UTF-8; a caption in
another encoding is read as Windows-1252 (every byte decodes) and the fallback is reported as a warning.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CAPTION_FALLBACK = "cp1252"
MIN_SIDE = 32  # smaller images carry too little to learn from at any resolution


class DatasetError(ValueError):
    """The folder cannot be trained on; the message says why and what to do."""


@dataclass(frozen=True)
class Item:
    path: Path
    caption: str | None  # None: no .txt beside the image; the instance prompt is used
    size: tuple[int, int]


@dataclass
class Scan:
    folder: Path
    usable: list[Item] = field(default_factory=list)
    unusable: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"folder": str(self.folder),
                "usable": [{"path": str(i.path), "caption": i.caption, "size": list(i.size)} for i in self.usable],
                "unusable": [{"path": str(p), "reason": r} for p, r in self.unusable],
                "warnings": list(self.warnings)}


def instance_prompt(token: str, class_word: str = "") -> str:
    """ "a photo of sks dog" style: the prompt for images without a caption."""
    return " ".join(["a photo of", token.strip(), class_word.strip()]).strip()


def class_prompt(class_word: str) -> str:
    return f"a photo of {class_word.strip()}".strip()


def read_caption(path: Path, warnings: list[str]) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode(CAPTION_FALLBACK, errors="replace")
        warnings.append(f"{path.name}: caption is not UTF-8; read it as {CAPTION_FALLBACK} (Windows Western). "
                        "Save it as UTF-8 if characters look wrong.")
    return " ".join(text.split())


def scan(folder: str | Path, min_side: int = MIN_SIDE) -> Scan:
    """Sort ``folder``'s images into usable and unusable (with a reason). DatasetError when the folder itself is
    missing or has no images at all."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"images folder {folder} does not exist or is not a folder")
    result = Scan(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"images folder {folder} has no PNG, JPEG or WebP images")
    for path in files:
        try:
            with Image.open(path) as image:
                image = ImageOps.exif_transpose(image)
                image.load()
                size = image.size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            result.unusable.append((path, f"unreadable ({' '.join(str(exc).split())[:120] or 'damaged file'})"))
            continue
        if min(size) < min_side:
            result.unusable.append((path, f"too small ({size[0]}x{size[1]}; at least {min_side} px a side)"))
            continue
        caption_file = path.with_suffix(".txt")
        caption = read_caption(caption_file, result.warnings) if caption_file.is_file() else None
        result.usable.append(Item(path, caption or None, size))
    return result


def check_ready(result: Scan, batch_size: int) -> None:
    """DatasetError when the scan cannot make a training run of ``batch_size``."""
    if not result.usable:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in result.unusable[:3])
        raise DatasetError(f"no usable images in {result.folder} ({reasons})")
    if len(result.usable) < batch_size:
        raise DatasetError(f"{len(result.usable)} usable image(s) in {result.folder}, fewer than the batch size "
                           f"{batch_size}; add images or lower the batch size")


def dataset_hash(items: list[Item]) -> str:
    """sha256 over the images' bytes and captions, in order (the first 12 hex digits)."""
    sha = hashlib.sha256()
    for item in items:
        sha.update(item.path.read_bytes())
        sha.update((item.caption or "").encode())
    return sha.hexdigest()[:12]


def prepare(path: Path, resolution: int, crop: str = "center", rng: random.Random | None = None) -> Image.Image:
    """The image as RGB, EXIF-rotated, its short side resized to ``resolution``, then cropped square (centre,
    or at a random place with ``crop="random"``)."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            backdrop = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(backdrop, image)
        image = image.convert("RGB")
    width, height = image.size
    scale = resolution / min(width, height)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
    spare_x, spare_y = size[0] - resolution, size[1] - resolution
    if crop == "random":
        rng = rng or random.Random()
        left, top = rng.randint(0, spare_x), rng.randint(0, spare_y)
    else:
        left, top = spare_x // 2, spare_y // 2
    return image.crop((left, top, left + resolution, top + resolution))
