"""PNG files with their recipe inside, written atomically (temp file + rename); used by Save As and the CLI."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from PIL.PngImagePlugin import PngInfo


def parameters_text(recipe: dict, seed: int | None = None) -> str:
    """The AUTOMATIC1111 ``parameters`` chunk that other tools and image sites read."""
    size = f"{recipe.get('width', '?')}x{recipe.get('height', '?')}"
    seed = seed if seed is not None else (recipe.get("seeds") or [recipe.get("seed")])[0]
    model = recipe.get("model_name") or Path(str(recipe.get("model", "default"))).name
    fields = [f"Steps: {recipe.get('steps')}", f"Sampler: {recipe.get('sampler')}",
              f"CFG scale: {recipe.get('guidance_scale')}", f"Seed: {seed}", f"Size: {size}"]
    if recipe.get("model_hash"):
        fields.append(f"Model hash: {recipe['model_hash']}")
    fields.append(f"Model: {model}")
    lines = [str(recipe.get("prompt", ""))]
    if recipe.get("negative_prompt"):
        lines.append(f"Negative prompt: {recipe['negative_prompt']}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def save_png(image, path: Path, recipe: dict | None = None, seed: int | None = None) -> Path:
    """Write ``image`` (PIL) as PNG at ``path`` with the recipe in text chunks. Returns the final path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(path.suffix + ".png") if path.suffix else path.with_suffix(".png")
    info = PngInfo()
    if recipe:
        one = dict(recipe)
        if seed is not None:
            one["seed"] = seed
        info.add_text("parameters", parameters_text(one, seed))
        info.add_text("recipe", json.dumps(one, sort_keys=True, default=str))
    handle, temp = tempfile.mkstemp(prefix=".saving-", suffix=".png", dir=path.parent)
    os.close(handle)
    try:
        image.save(temp, format="PNG", pnginfo=info)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def suggested_name(prompt: str, seed: int | None) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "-", prompt.lower()).strip("-")[:48].strip("-") or "image"
    return f"{words}-{seed}.png" if seed is not None else f"{words}.png"
