"""The AUTOMATIC1111-style ``parameters`` text that most tools write and image sites read: parsed into our request
fields, in one linear pass with bounded input (a hostile last line cannot make it slow). Writing that text is
``png_recipe.parameters_text``; this module only reads."""

from __future__ import annotations

import json
import re

from desktop_app.studio import foreign_recipes

_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([-+]?[0-9.]+))?>")  # one class for the weight: no backtracking
# AUTOMATIC1111's own key-value pattern is modules/infotext_utils.py's; _settings_pairs reads the same pairs
MAX_PARAMETERS = 1024 * 1024  # characters of A1111 text parsed (a long prompt is a few thousand)
MAX_SETTINGS_LINE = 64 * 1024  # characters of its last line read for settings (a real one is under 2,000)


class NoRecipe(ValueError):
    """The file is not an image, or an image without a recipe we can read."""


def parse_parameters(text: str) -> dict:
    """AUTOMATIC1111 ``parameters`` text -> {"request": {...}, "info": {every other key: value}}.

    Linear in the text and capped at ``MAX_PARAMETERS`` characters (longer text raises NoRecipe, the only error
    this raises): the window's drop handler runs it on the UI thread."""
    if not isinstance(text, str):
        raise NoRecipe("the parameters are not text")
    if len(text) > MAX_PARAMETERS:
        raise NoRecipe(f"the 'parameters' text is {len(text):,} characters long; more than any recipe "
                       f"({MAX_PARAMETERS:,} at most)")
    lines = text.strip().split("\n")
    settings_line = ""
    if lines and re.match(r"\s*Steps:", lines[-1]):
        settings_line = lines.pop()
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].lstrip()
        (negative_lines if in_negative else prompt_lines).append(line)
    prompt = "\n".join(prompt_lines).strip()
    loras = []
    for name, weight in _LORA_TAG.findall(prompt):
        number = foreign_recipes.float_value(weight) if weight else 1.0
        loras.append({"name": name, "weight": 1.0 if number is None else number})
    prompt = re.sub(r"[ \t]{2,}", " ", _LORA_TAG.sub("", prompt)).strip()
    request: dict = {"prompt": prompt, "negative_prompt": "\n".join(negative_lines).strip(),
                     "batch_size": 1, "loras": loras}
    info: dict = {}
    for key, value in _settings_pairs(settings_line[:MAX_SETTINGS_LINE]):
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                value = value[1:-1]
            if not isinstance(value, str):
                value = str(value)
        info[key] = value
    _take(request, "steps", info.get("Steps"), foreign_recipes.int_value)
    _take(request, "guidance_scale", info.get("CFG scale"), foreign_recipes.float_value)
    _take(request, "seed", info.get("Seed"), foreign_recipes.int_value)
    if "Size" in info:
        size = re.match(r"\s*(\d{1,7})\s*x\s*(\d{1,7})", info["Size"])
        if size:
            request["width"], request["height"] = int(size.group(1)), int(size.group(2))
    sampler = info.get("Sampler")
    if sampler:
        # newer A1111: "Sampler: DPM++ 2M, Schedule type: Karras"; older: "Sampler: DPM++ 2M Karras"
        if info.get("Schedule type", "").lower() == "karras" and not sampler.endswith("Karras"):
            sampler = f"{sampler} Karras"
        request["sampler"] = sampler
    if info.get("Refiner"):  # the name (and hash) go to info, as the model's do; the switch to the request
        _take(request, "refiner_switch", info.get("Refiner switch at"), foreign_recipes.float_value)
    extra = {"model_hash": info.get("Model hash"), "model_name": info.get("Model"),
             "refiner_name": _without_hash(info.get("Refiner", "")), "app_version": info.get("Version")}
    extra = {key: value for key, value in extra.items() if value}
    extra["fields"] = info
    return {"request": request, "info": extra}


def _settings_pairs(line: str) -> list[tuple[str, str]]:
    """The ``key: value`` pairs of A1111's settings line, as its own pattern
    ``\\s*(\\w[\\w \\-/]+):\\s*("(?:\\\\.|[^\\\\"])+"|[^,]*)(?:,|$)`` finds them with ``findall``, in one pass:
    that regex, run over a long line without a colon, takes time growing with the square of the length."""
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(line)
    while pos < end:
        colon = line.find(":", pos)
        if colon < 0:
            break
        start = colon
        while start > pos and (line[start - 1].isalnum() or line[start - 1] in "_ -/"):
            start -= 1
        while start < colon and not (line[start].isalnum() or line[start] == "_"):
            start += 1  # a key starts with a word character
        key = line[start:colon]
        if len(key) < 2:
            pos = colon + 1
            continue
        value_start = colon + 1
        while value_start < end and line[value_start].isspace():
            value_start += 1
        quoted = _QUOTED.match(line, value_start)
        if quoted and (quoted.end() == end or line[quoted.end()] == ","):
            value_end = quoted.end()
        else:
            value_end = line.find(",", value_start)
            value_end = end if value_end < 0 else value_end
        pairs.append((key, line[value_start:value_end]))
        pos = value_end + 1
    return pairs


_QUOTED = re.compile(r'"(?:\\.|[^\\"])+"')  # one pass: each character can only be read one way


def _without_hash(name: str) -> str:
    """``NAME [0123abcd]`` -> ``NAME`` (A1111 writes the refiner with its hash)."""
    name = name.rstrip()
    if name.endswith("]"):
        start = name.rfind("[")
        digits = name[start + 1:-1] if start >= 0 else ""
        if digits and all(char in "0123456789abcdefABCDEF" for char in digits):
            return name[:start].rstrip()
    return name


def _take(request: dict, key: str, value, kind) -> None:
    if value is None:
        return
    number = kind(value)
    if number is not None:
        request[key] = number


def _lora_pair(lora) -> tuple[str, float]:
    if isinstance(lora, dict):
        return str(lora.get("name")), float(lora.get("weight", 1.0))
    if isinstance(lora, (list, tuple)):
        return str(lora[0]), float(lora[1]) if len(lora) > 1 else 1.0
    return str(getattr(lora, "name", lora)), float(getattr(lora, "weight", 1.0))
