"""Recipes written by other tools, read into our shape: Fooocus, ComfyUI, InvokeAI (three variants), NovelAI.

Plain Python: no PIL, no Qt, no torch. The formats follow what each tool writes (and what the ``sd-parsers``
library reads, MIT): we do not depend on that library because its readers are unbounded on hostile files (its
alpha-channel reader can loop forever and inflate without a limit, a nested JSON raises ``RecursionError``, and a
wrong type raises ``AttributeError`` past its own error type), so this module reads the same chunks with every
step bounded.

- Fooocus: the ``parameters`` chunk holds a JSON object (``prompt``, ``negative_prompt``, ``steps``,
  ``guidance_scale``, ``seed``, ``resolution`` "(w, h)", ``sampler``, ``scheduler``, ``base_model``,
  ``base_model_hash``, ``lora_combined_N`` "name : weight", ``version``).
- ComfyUI: ``prompt`` holds the API graph ``{node id: {"class_type", "inputs"}}`` (links are ``[node id, output]``)
  and ``workflow`` the editor's graph; the recipe is read from the graph's sampler node and what it links to.
- InvokeAI: ``invokeai_metadata`` (JSON, 3.x and later), ``sd-metadata`` (JSON, 2.x), or ``Dream`` (1.x text
  ``"prompt [negative]" -s 50 -S 42 -W 512 -H 512 -C 7.5 -A k_lms``).
- NovelAI: ``Comment`` (JSON: steps, scale, seed, sampler, uc, width, height), ``Description`` (the prompt),
  ``Software`` "NovelAI", ``Source`` "NovelAI Diffusion V3 4BDE2A90" (model and hash).

Each reader takes the text chunks (``dict[str, str]``) and returns ``{"source", "request", "info", "parameters"}``
or None, adding a line to ``notes`` when a chunk is there but cannot be used. They never raise: every value is
type-checked, JSON is depth-limited, graphs are walked with a visited set and a step limit.
"""

from __future__ import annotations

import json
import math
import re

MAX_JSON_TEXT = 8 * 1024 * 1024
MAX_DEPTH = 64  # JSON nested deeper than this is refused (real recipes nest 4-6 levels)
MAX_GRAPH_STEPS = 2000  # nodes visited while following one link chain of a ComfyUI graph
MAX_FIELD = 20_000  # characters of one text value we keep (a prompt is a few hundred)
SOURCE_LABELS = {"fooocus": "Fooocus JSON", "comfyui": "ComfyUI prompt graph", "invokeai": "InvokeAI metadata",
                 "novelai": "NovelAI metadata"}

# k-diffusion / diffusers scheduler names of other tools -> the sampler names this app (and A1111) uses
_SAMPLERS = {
    "euler": "Euler", "k_euler": "Euler", "euler_a": "Euler a", "euler_ancestral": "Euler a",
    "k_euler_ancestral": "Euler a", "k_euler_a": "Euler a", "dpmpp_2m": "DPM++ 2M", "k_dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_k": "DPM++ 2M Karras", "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_2m_sde_k": "DPM++ 2M SDE Karras", "k_dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_gpu": "DPM++ SDE", "k_dpmpp_sde": "DPM++ SDE", "dpmpp_sde_k": "DPM++ SDE Karras",
    "ddim": "DDIM", "k_ddim": "DDIM", "uni_pc": "UniPC", "unipc": "UniPC", "uni_pc_bh2": "UniPC",
    "heun": "Heun", "k_heun": "Heun", "lcm": "LCM", "lms": "LMS", "k_lms": "LMS", "dpm_2": "DPM2",
    "k_dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a", "k_dpm_2_ancestral": "DPM2 a", "plms": "PLMS",
    "dpmpp_2s_ancestral": "DPM++ 2S a", "k_dpmpp_2s_ancestral": "DPM++ 2S a", "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive",
}


# ---- safe values -----------------------------------------------------------------------------------------


def load_json(text, max_depth: int = MAX_DEPTH):
    """The JSON value of ``text``, or None when it is not JSON, too long or nested deeper than ``max_depth``."""
    if not isinstance(text, str) or len(text) > MAX_JSON_TEXT:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError, MemoryError):
        return None
    return value if _depth_ok(value, max_depth) else None


def _depth_ok(value, max_depth: int) -> bool:
    stack = [(value, 0)]
    while stack:  # iterative: a deep value cannot exhaust the interpreter's stack here
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= max_depth:
                return False
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            if depth >= max_depth:
                return False
            stack.extend((child, depth + 1) for child in item)
    return True


def text_value(value, limit: int = MAX_FIELD) -> str | None:
    if isinstance(value, str):
        return value[:limit]
    return None


def int_value(value) -> int | None:
    """A whole number from a number or a short numeric text (tools store seeds both ways)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < 2**64 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value) if abs(value) < 2**64 else None
    if isinstance(value, str) and 0 < len(value.strip()) <= 20 and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def float_value(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value) if abs(value) < 1e300 else math.inf
    elif isinstance(value, str) and 0 < len(value) <= 40:
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def sampler_name(name, scheduler=None) -> str | None:
    """Another tool's sampler (and scheduler) as the name this app and A1111 use; unknown names stay as given."""
    name = text_value(name, 100)
    if not name:
        return None
    mapped = _SAMPLERS.get(name.strip().lower(), name.strip())
    scheduler = text_value(scheduler, 100)
    if scheduler and scheduler.strip().lower() == "karras" and not mapped.endswith("Karras") and mapped != name:
        mapped = f"{mapped} Karras"
    return mapped


def scalar_fields(values: dict, limit: int = 200) -> dict:
    """The scalar entries of a parsed JSON object (for ``info["fields"]``): short, printable, never nested."""
    fields = {}
    for key, value in list(values.items())[:limit]:
        if not isinstance(key, str):
            continue
        if isinstance(value, str):
            fields[key[:100]] = value[:MAX_FIELD]
        elif isinstance(value, (bool, int, float)) and (not isinstance(value, float) or math.isfinite(value)):
            fields[key[:100]] = value if not isinstance(value, int) or abs(value) < 2**64 else str(value)[:40]
    return fields


def _found(source: str, request: dict, info: dict, parameters: str = "") -> dict:
    request = {key: value for key, value in request.items() if value is not None}
    request.setdefault("prompt", "")
    request["batch_size"] = 1
    request.setdefault("loras", [])
    info = {key: value for key, value in info.items() if value not in (None, "", {}, [])}
    return {"source": source, "request": request, "info": info, "parameters": parameters}


def _size(request: dict, width, height) -> None:
    width, height = int_value(width), int_value(height)
    if width and height and 0 < width <= 1_000_000 and 0 < height <= 1_000_000:
        request["width"], request["height"] = width, height


def _lora(name, weight) -> dict | None:
    name = text_value(name, 300)
    if not name or not name.strip():
        return None
    number = float_value(weight)
    return {"name": name.strip(), "weight": 1.0 if number is None else number}


# ---- Fooocus ---------------------------------------------------------------------------------------------


def fooocus(chunks: dict, notes: list) -> dict | None:
    """Fooocus writes its own JSON into the ``parameters`` chunk (and the JPEG UserComment)."""
    text = chunks.get("parameters")
    if not isinstance(text, str) or not text.lstrip().startswith("{"):
        return None
    data = load_json(text)
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
        notes.append("the 'parameters' text holds JSON that no known tool writes (or it is damaged)")
        return None
    request = {"prompt": text_value(data.get("prompt")),
               "negative_prompt": text_value(data.get("negative_prompt")),
               "steps": int_value(data.get("steps")), "guidance_scale": float_value(data.get("guidance_scale")),
               "seed": int_value(data.get("seed")),
               "sampler": sampler_name(data.get("sampler"), data.get("scheduler"))}
    resolution = text_value(data.get("resolution"), 40)
    if resolution:
        numbers = re.findall(r"\d{1,7}", resolution)
        if len(numbers) == 2:
            _size(request, numbers[0], numbers[1])
    loras = []
    for key, value in list(data.items())[:200]:
        if isinstance(key, str) and key.startswith("lora_combined_") and isinstance(value, str):
            name, _, weight = value.rpartition(" : ")
            lora = _lora(name, weight) if name else None
            if lora:
                loras.append(lora)
    if isinstance(data.get("loras"), list):  # older Fooocus: [[name, weight], ...]
        for item in data["loras"][:50]:
            if isinstance(item, list) and len(item) >= 2:
                lora = _lora(item[0], item[1])
                if lora and lora["name"].lower() != "none":
                    loras.append(lora)
    request["loras"] = loras
    info = {"model_name": text_value(data.get("base_model"), 300),
            "model_hash": text_value(data.get("base_model_hash"), 100),
            "refiner_name": _not_none(text_value(data.get("refiner_model"), 300)),
            "app_version": text_value(data.get("version"), 100) or "Fooocus",
            "fields": scalar_fields(data)}
    return _found("fooocus", request, info, text)


def _not_none(name: str | None) -> str | None:
    return None if not name or name.strip().lower() == "none" else name


# ---- ComfyUI ---------------------------------------------------------------------------------------------


_SAMPLER_CLASSES = ("KSampler", "KSamplerAdvanced", "KSampler (Efficient)", "KSampler Adv. (Efficient)",
                    "SamplerCustom", "SamplerCustomAdvanced")


def comfyui(chunks: dict, notes: list) -> dict | None:
    """The recipe in ComfyUI's ``prompt`` graph: the first sampler node, its prompts, model, LoRAs and size."""
    if "prompt" not in chunks and "workflow" not in chunks:
        return None
    graph = load_json(chunks.get("prompt"))
    if not isinstance(graph, dict):
        notes.append("the ComfyUI 'prompt' graph is missing or damaged (only a workflow to edit is there)"
                     if "workflow" in chunks else "the 'prompt' chunk is not a ComfyUI graph")
        return None
    nodes = {str(key): node for key, node in list(graph.items())[:20_000]
             if isinstance(node, dict) and isinstance(node.get("inputs"), dict)}
    sampler_id = next((node_id for node_id, node in nodes.items()
                       if node.get("class_type") in _SAMPLER_CLASSES), None)
    if sampler_id is None:
        sampler_id = next((node_id for node_id, node in nodes.items()
                           if {"steps", "cfg", "sampler_name"} <= node["inputs"].keys()), None)
    if sampler_id is None:
        notes.append("the ComfyUI graph has no sampler node this app can read")
        return None
    inputs = nodes[sampler_id]["inputs"]
    request: dict = {"steps": int_value(_value(nodes, inputs.get("steps"))),
                     "guidance_scale": float_value(_value(nodes, inputs.get("cfg"))),
                     "seed": int_value(_value(nodes, inputs.get("seed", inputs.get("noise_seed")))),
                     "sampler": sampler_name(_value(nodes, inputs.get("sampler_name")),
                                             _value(nodes, inputs.get("scheduler")))}
    guider = _follow(nodes, inputs.get("guider"))  # SamplerCustomAdvanced: cfg and prompts sit on the guider
    source = guider["inputs"] if guider else inputs
    if guider and request["guidance_scale"] is None:
        request["guidance_scale"] = float_value(_value(nodes, source.get("cfg")))
    request["prompt"] = ", ".join(_texts(nodes, source.get("positive", source.get("conditioning")),
                                         ("text", "text_g", "text_l", "positive", "string", "value")))
    request["negative_prompt"] = ", ".join(_texts(nodes, source.get("negative"),
                                                  ("text", "text_g", "text_l", "negative", "string", "value")))
    model, loras = _model(nodes, inputs.get("model") or source.get("model"))
    request["loras"] = loras
    latent = _first(nodes, inputs.get("latent_image"), lambda node: "width" in node["inputs"]
                    and "height" in node["inputs"])
    if latent:
        _size(request, _value(nodes, latent["inputs"]["width"]), _value(nodes, latent["inputs"]["height"]))
    info = {"model_name": model, "app_version": "ComfyUI",
            "fields": {"sampler node": str(nodes[sampler_id].get("class_type", ""))[:100],
                       **scalar_fields(inputs)}}
    return _found("comfyui", request, info)


def _link(value) -> str | None:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) \
            and not isinstance(value[0], bool):
        return str(value[0])
    return None


def _follow(nodes: dict, value) -> dict | None:
    node_id = _link(value)
    return nodes.get(node_id) if node_id is not None else None


def _value(nodes: dict, value, steps: int = 8):
    """An input's value, following links through primitive nodes (a seed or text fed from another node)."""
    for _ in range(steps):
        node = _follow(nodes, value)
        if node is None:
            return value
        inputs = node["inputs"]
        value = next((inputs[key] for key in ("value", "seed", "noise_seed", "int", "float", "string", "text")
                      if key in inputs), None)
    return None


def _walk(nodes: dict, value, skip=("clip", "vae")):
    """Nodes reachable backwards from a link, breadth first, each once, at most ``MAX_GRAPH_STEPS``."""
    start = _link(value)
    if start is None:
        return
    queue, seen, index = [start], {start}, 0
    while index < len(queue) and index < MAX_GRAPH_STEPS:
        node_id = queue[index]
        index += 1
        node = nodes.get(node_id)
        if node is None:
            continue
        descend = yield node
        if descend is False:
            continue
        for key, child in list(node["inputs"].items())[:200]:
            child_id = _link(child)
            if child_id is not None and child_id not in seen and key not in skip:
                seen.add(child_id)
                queue.append(child_id)


def _first(nodes: dict, value, test) -> dict | None:
    for node in _walk(nodes, value):
        if test(node):
            return node
    return None


def _texts(nodes: dict, value, keys) -> list[str]:
    texts: list[str] = []
    walker = _walk(nodes, value)
    try:
        node = next(walker)
        while True:
            found = False
            for key in keys:
                text = text_value(_value(nodes, node["inputs"].get(key)))
                if text is not None and text.strip():
                    found = True
                    if text.strip() not in texts:
                        texts.append(text.strip())
                    break
            node = walker.send(not found)  # a text node ends its branch; a combiner is looked through
    except StopIteration:
        pass
    return texts[:20]


def _model(nodes: dict, value) -> tuple[str | None, list]:
    loras, name = [], None
    for node in _walk(nodes, value):
        inputs = node["inputs"]
        lora = text_value(inputs.get("lora_name"), 300)
        if lora:
            entry = _lora(lora, inputs.get("strength_model", inputs.get("strength", 1.0)))
            if entry:
                loras.append(entry)
        for key in ("ckpt_name", "unet_name", "model_name", "model_path"):
            name = text_value(_value(nodes, inputs.get(key)), 300)
            if name:
                return name, loras[:50]
    return None, loras[:50]


# ---- InvokeAI --------------------------------------------------------------------------------------------


def invokeai(chunks: dict, notes: list) -> dict | None:
    """InvokeAI 3.x+ (``invokeai_metadata``), 2.x (``sd-metadata``) or 1.x (``Dream``)."""
    if "invokeai_metadata" in chunks:
        data = load_json(chunks["invokeai_metadata"])
        if isinstance(data, dict):
            return _invokeai_meta(data)
        notes.append("the 'invokeai_metadata' chunk is damaged")
    if "sd-metadata" in chunks:
        data = load_json(chunks["sd-metadata"])
        if isinstance(data, dict) and isinstance(data.get("image"), dict):
            return _sd_metadata(data, data["image"])
        notes.append("the 'sd-metadata' chunk is damaged")
    if isinstance(chunks.get("Dream"), str):
        found = _dream(chunks["Dream"])
        if found:
            return found
        notes.append("the 'Dream' text is damaged")
    return None


def _model_name(model) -> str | None:
    if isinstance(model, dict):
        return text_value(model.get("model_name") or model.get("name"), 300)
    return text_value(model, 300)


def _invokeai_meta(data: dict) -> dict:
    request = {"prompt": text_value(data.get("positive_prompt")),
               "negative_prompt": text_value(data.get("negative_prompt")),
               "steps": int_value(data.get("steps")), "guidance_scale": float_value(data.get("cfg_scale")),
               "seed": int_value(data.get("seed")), "sampler": sampler_name(data.get("scheduler"))}
    _size(request, data.get("width"), data.get("height"))
    loras = []
    for item in data.get("loras")[:50] if isinstance(data.get("loras"), list) else ():
        if isinstance(item, dict):
            lora = _lora(_model_name(item.get("lora") or item.get("model")), item.get("weight", 1.0))
            if lora:
                loras.append(lora)
    request["loras"] = loras
    model = data.get("model")
    info = {"model_name": _model_name(model),
            "model_hash": text_value(model.get("hash"), 100) if isinstance(model, dict) else None,
            "app_version": f"InvokeAI {text_value(data.get('app_version'), 40) or ''}".strip(),
            "fields": scalar_fields(data)}
    return _found("invokeai", request, info)


def _sd_metadata(data: dict, image: dict) -> dict:
    prompt = image.get("prompt")
    if isinstance(prompt, list):  # [{"prompt": "a cat [ugly]", "weight": 1.0}, ...]
        prompt = " ".join(item["prompt"] for item in prompt[:50]
                          if isinstance(item, dict) and isinstance(item.get("prompt"), str))
    positive, negative = _split_brackets(text_value(prompt) or "")
    request = {"prompt": positive, "negative_prompt": negative, "steps": int_value(image.get("steps")),
               "guidance_scale": float_value(image.get("cfg_scale")), "seed": int_value(image.get("seed")),
               "sampler": sampler_name(image.get("sampler"))}
    _size(request, image.get("width"), image.get("height"))
    info = {"model_name": text_value(data.get("model_weights"), 300),
            "model_hash": text_value(data.get("model_hash"), 100),
            "app_version": f"InvokeAI {text_value(data.get('app_version'), 40) or ''}".strip(),
            "fields": scalar_fields(image)}
    return _found("invokeai", request, info)


_DREAM_KEYS = {"s": "steps", "S": "seed", "W": "width", "H": "height", "C": "cfg", "A": "sampler"}


def _dream(text: str) -> dict | None:
    text = text[:MAX_FIELD * 2].strip()
    end = text.rfind('"')
    if not text.startswith('"') or end <= 0:
        return None
    positive, negative = _split_brackets(text[1:end])
    words = text[end + 1:].split()[:200]
    values = {}
    for flag, value in zip(words, words[1:]):
        if flag.startswith("-") and flag[1:] in _DREAM_KEYS:
            values[_DREAM_KEYS[flag[1:]]] = value
    request = {"prompt": positive, "negative_prompt": negative, "steps": int_value(values.get("steps")),
               "seed": int_value(values.get("seed")), "guidance_scale": float_value(values.get("cfg")),
               "sampler": sampler_name(values.get("sampler"))}
    _size(request, values.get("width"), values.get("height"))
    return _found("invokeai", request, {"app_version": "InvokeAI (Dream)", "fields": values}, text)


def _split_brackets(prompt: str) -> tuple[str, str]:
    """InvokeAI's legacy prompts keep the negative part in [square brackets]. Linear: one pass."""
    negatives = re.findall(r"\[([^\[\]]*)\]", prompt)
    positive = re.sub(r"\[[^\[\]]*\]", " ", prompt)
    return " ".join(positive.split()), ", ".join(part.strip() for part in negatives if part.strip())


# ---- NovelAI ---------------------------------------------------------------------------------------------


def novelai(chunks: dict, notes: list) -> dict | None:
    """NovelAI: ``Comment`` JSON with the settings, ``Description`` the prompt, ``Source`` the model."""
    software = text_value(chunks.get("Software"), 100) or ""
    if "Comment" not in chunks or ("novelai" not in software.lower() and "Description" not in chunks):
        return None
    data = load_json(chunks["Comment"])
    if not isinstance(data, dict):
        if "novelai" in software.lower():
            notes.append("the NovelAI 'Comment' chunk is damaged")
        return None
    if not ({"steps", "scale", "sampler"} & data.keys()):
        return None
    prompt = text_value(data.get("prompt")) or text_value(chunks.get("Description")) or ""
    request = {"prompt": prompt.strip(), "negative_prompt": text_value(data.get("uc")),
               "steps": int_value(data.get("steps")), "guidance_scale": float_value(data.get("scale")),
               "seed": int_value(data.get("seed")), "sampler": sampler_name(data.get("sampler"))}
    _size(request, data.get("width"), data.get("height"))
    source = (text_value(chunks.get("Source"), 200) or "").strip()
    name, _, code = source.rpartition(" ")
    model_name, model_hash = (name, code) if name and re.fullmatch(r"[0-9A-F]{6,16}", code) else (source, None)
    info = {"model_name": model_name or None, "model_hash": model_hash, "app_version": software or "NovelAI",
            "fields": scalar_fields(data)}
    return _found("novelai", request, info)


READERS = (invokeai, comfyui, novelai)  # tried in this order after our recipe and the parameters text
