"""What a person changed between two attempts (issue 18's creation record): the request fields of two recipes
compared, each change as data and as a line ("seed 3 → 7", 'prompt changed from "a" to "b"'). Torch-free."""

from __future__ import annotations

from desktop_app.studio.history import stored_path

# request fields compared between attempts: key -> the name a person reads
COMPARED = {"prompt": "prompt", "negative_prompt": "negative prompt", "model": "model", "seed": "seed",
            "steps": "steps", "guidance_scale": "guidance", "sampler": "sampler", "width": "width",
            "height": "height", "loras": "LoRAs", "controls": "ControlNets", "hires_scale": "hires fix",
            "hires_strength": "hires strength", "refiner": "refiner", "upscale": "upscaler",
            "outpaint": "outpaint borders"}
WITH_START_IMAGE = {"strength": "strength", "mask_blur": "mask feather", "init_fit": "start image fit"}
TEXT_FIELDS = ("prompt", "negative_prompt")


def changes(before: dict | None, after: dict) -> list[dict]:
    """What changed from ``before`` to ``after`` (two recipes), one dict each: field, from, to, text. None
    before: the first attempt, nothing to compare."""
    if before is None:
        return []
    compared = dict(COMPARED)
    if after.get("init_image") and before.get("init_image"):  # a new start image's strength is told with it
        compared.update(WITH_START_IMAGE)
    found = []
    for key, name in compared.items():
        old, new = _value(before, key), _value(after, key)
        if old == new:
            continue
        if key in TEXT_FIELDS:
            text = f'{name} changed from "{old or ""}" to "{new or ""}"'
        else:
            text = f"{name} {_shown(old)} → {_shown(new)}"
        found.append({"field": key, "from": old, "to": new, "text": text})
    for key, picked, removed in (("init_image", "start image picked", "start image removed"),
                                 ("mask", "mask painted", "mask removed")):
        if image_key(before, key) != image_key(after, key):
            new = after.get(key)
            found.append({"field": key, "from": before.get(key), "to": new,
                          "text": f"{picked}: {new}" if new else removed})
    return found


def _value(recipe: dict, key: str):
    if key == "model":
        return recipe.get("model_name") or recipe.get("model")
    value = recipe.get(key)
    if key == "loras":
        return [_lora(lora) for lora in value or ()]
    if key == "controls":
        return [f"{c.get('model')} ({c.get('weight', 1.0)})" for c in value or () if isinstance(c, dict)]
    return value


def _lora(lora) -> str:
    if isinstance(lora, dict):
        return f"{lora.get('name')} ({lora.get('weight', 1.0)})"
    if isinstance(lora, (list, tuple)) and lora:
        return f"{lora[0]} ({lora[1] if len(lora) > 1 else 1.0})"
    return str(lora)


def _shown(value) -> str:
    if value is None or value == []:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def image_key(recipe: dict, key: str):
    """What identifies a start image or mask: its recorded sha256, else its path."""
    if not recipe.get(key):
        return None
    return recipe.get(f"{key}_sha256") or stored_path(str(recipe[key]))


def settings(recipe: dict) -> str:
    size = f"{recipe.get('width', '?')}x{recipe.get('height', '?')}"
    loras = _value(recipe, "loras")
    text = (f'prompt "{recipe.get("prompt", "")}", seed {recipe.get("seed")}, {recipe.get("steps", "?")} steps of '
            f"{recipe.get('sampler', '?')}, guidance {_shown(recipe.get('guidance_scale'))}, {size}, model "
            f"{_value(recipe, 'model') or '?'}")
    if recipe.get("negative_prompt"):
        text += f', negative prompt "{recipe["negative_prompt"]}"'
    return text + (f", LoRAs {_shown(loras)}" if loras else "")


def request_fields(recipe: dict) -> dict:
    keys = (*COMPARED, *WITH_START_IMAGE, "init_image", "init_image_sha256", "mask", "mask_sha256", "outpaint",
            "model_name", "model_hash")
    return {key: recipe[key] for key in keys if key in recipe}


