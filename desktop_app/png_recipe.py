"""PNG files with their recipe inside, written atomically (temp file + fsync + rename), and read back.

Used by the CLI, the window's auto-save and Save As, and ``desktop-app info``. Plain PIL: no Qt, no torch.

Three things go into every PNG we write:
- ``parameters``: the AUTOMATIC1111 text that other tools and image sites read;
- ``recipe``: our JSON (the whole request, the seed of this image, model hash, app version, device, dtype);
- ``XML:com.adobe.xmp``: XMP with the IPTC digital source type "trainedAlgorithmicMedia" (AI-generated).

Reading accepts ours and any tool that writes ``parameters`` (AUTOMATIC1111, Forge, SD.Next, Fooocus in
its A1111 mode) and gives back a dict of GenerationRequest fields.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from .exif_recipe import user_comment

RECIPE_FORMAT = "desktop-app-recipe/1"
TEMP_PREFIX = ".saving-"  # temporary files start with this; the start-up check removes leftovers
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
XMP_KEY = "XML:com.adobe.xmp"
REQUEST_FIELDS = ("prompt", "negative_prompt", "width", "height", "steps", "guidance_scale", "sampler",
                  "seed", "batch_size", "model", "loras", "upscale", "hires_scale", "hires_strength", "refiner",
                  "refiner_switch", "preview")
_LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([-+]?[0-9]*\.?[0-9]+))?>")
# AUTOMATIC1111's own key-value pattern (modules/infotext_utils.py): values may be quoted and hold commas
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


class NoRecipe(ValueError):
    """The file is not an image, or an image without a recipe we can read."""


# ---- writing ---------------------------------------------------------------------------------------------


def parameters_text(recipe: dict, seed: int | None = None) -> str:
    """The AUTOMATIC1111 ``parameters`` chunk that other tools and image sites read."""
    if recipe.get("job") == "upscale":  # an upscale job: AUTOMATIC1111's "Extras" fields
        upscaler = recipe.get("upscaler") or {}
        fields = [f"Postprocess upscale by: {recipe.get('scale', '?'):g}",
                  f"Postprocess upscaler: {upscaler.get('name', '?')}"]
        if upscaler.get("sha256"):
            fields.append(f"Postprocess upscaler hash: {upscaler['sha256']}")
        if recipe.get("app_version"):
            fields.append(f"Version: desktop-app {recipe['app_version']}")
        return ", ".join(fields)
    size = f"{recipe.get('width', '?')}x{recipe.get('height', '?')}"
    seed = seed if seed is not None else (recipe.get("seeds") or [recipe.get("seed")])[0]
    model = recipe.get("model_name") or Path(str(recipe.get("model", "default"))).name
    fields = [f"Steps: {recipe.get('steps')}", f"Sampler: {recipe.get('sampler')}",
              f"CFG scale: {recipe.get('guidance_scale')}", f"Seed: {seed}", f"Size: {size}"]
    if recipe.get("model_hash"):
        fields.append(f"Model hash: {recipe['model_hash']}")
    fields.append(f"Model: {model}")
    hires = recipe.get("hires")
    if isinstance(hires, dict):
        upscaler = hires.get("upscaler")
        name = upscaler.get("name") if isinstance(upscaler, dict) else upscaler
        fields += [f"Denoising strength: {hires.get('strength')}", f"Hires upscale: {hires.get('scale')}",
                   f"Hires upscaler: {name}"]
    refiner = recipe.get("refiner_model")
    if isinstance(refiner, dict):  # AUTOMATIC1111 writes "Refiner: NAME [HASH], Refiner switch at: 0.8"
        name = f"{refiner.get('name')} [{refiner['hash']}]" if refiner.get("hash") else refiner.get("name")
        fields += [f"Refiner: {name}", f"Refiner switch at: {refiner.get('switch')}"]
    loras = [_lora_pair(lora) for lora in recipe.get("loras") or ()]
    hashes = recipe.get("lora_hashes") or {}
    if loras and hashes:
        listed = ", ".join(f"{name}: {hashes[name]}" for name, _ in loras if name in hashes)
        if listed:
            fields.append(f'Lora hashes: "{listed}"')
    if recipe.get("app_version"):
        fields.append(f"Version: desktop-app {recipe['app_version']}")
    prompt = str(recipe.get("prompt", ""))
    # AUTOMATIC1111 keeps LoRAs as <lora:name:weight> tags in the prompt; readers expect them there
    tags = " ".join(f"<lora:{name}:{weight:g}>" for name, weight in loras)
    lines = [f"{prompt} {tags}".strip() if tags else prompt]
    if recipe.get("negative_prompt"):
        lines.append(f"Negative prompt: {recipe['negative_prompt']}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def xmp_packet(recipe: dict | None = None) -> str:
    """XMP saying the image was made by a trained algorithm (IPTC digital source type), with the tool."""
    version = (recipe or {}).get("app_version", "")
    created = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/">\n'
        f"   <Iptc4xmpExt:DigitalSourceType>{DIGITAL_SOURCE_TYPE}</Iptc4xmpExt:DigitalSourceType>\n"
        f"   <xmp:CreatorTool>desktop-app {_xml_escape(str(version))}</xmp:CreatorTool>\n"
        f"   <xmp:CreateDate>{created}</xmp:CreateDate>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="r"?>')


def png_info(recipe: dict | None, seed: int | None = None) -> PngInfo:
    info = PngInfo()
    if recipe:
        one = dict(recipe)
        if seed is not None:
            one["seed"] = seed
        one.setdefault("format", RECIPE_FORMAT)
        info.add_text("parameters", parameters_text(one, seed))
        info.add_text("recipe", json.dumps(one, sort_keys=True, default=str))
    info.add_itxt(XMP_KEY, xmp_packet(recipe))
    return info


def _write(image, handle, info: PngInfo) -> None:
    """Encode into an open file (tests replace this to simulate a full disk)."""
    image.save(handle, format="PNG", pnginfo=info)


def save_png(image, path: Path, recipe: dict | None = None, seed: int | None = None) -> Path:
    """Write ``image`` (PIL) as PNG at ``path`` with the recipe in text chunks. Returns the final path.

    Atomic: the bytes go to a temporary file in the same folder, are flushed to disk, then renamed over
    ``path``. On any error (a full disk, a folder that cannot be written) the temporary file is removed and
    the error propagates: no partial file is ever left under either name."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(path.suffix + ".png") if path.suffix else path.with_suffix(".png")
    info = png_info(recipe, seed)
    handle, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".png", dir=path.parent)
    os.close(handle)
    try:
        with open(temp, "wb") as stream:
            _write(image, stream, info)
            stream.flush()
            os.fsync(stream.fileno())  # the rename must never publish bytes still in the page cache
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); best effort elsewhere."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def suggested_name(prompt: str, seed: int | None) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "-", prompt.lower()).strip("-")[:48].strip("-") or "image"
    return f"{words}-{seed}.png" if seed is not None else f"{words}.png"


def timestamped_name(seed: int | None, when: datetime | None = None) -> str:
    """``20261128-141503-123-s12345.png``: names sort by the time they were made."""
    when = when or datetime.now()
    stamp = when.strftime("%Y%m%d-%H%M%S-") + f"{when.microsecond // 1000:03d}"
    return f"{stamp}-s{seed}.png" if seed is not None else f"{stamp}.png"


# ---- reading ---------------------------------------------------------------------------------------------


def read_recipe(path: Path) -> dict:
    """The recipe in an image file: {"source": "desktop-app" | "parameters", "request": {GenerationRequest
    fields found}, "info": {model_hash, model_name, device, dtype, app_version, ... what else is known},
    "parameters": the A1111 text or ""}. Raises NoRecipe with a readable message."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            chunks = dict(getattr(image, "text", None) or {})
            for key, value in (image.info or {}).items():
                if isinstance(value, str):
                    chunks.setdefault(key, value)
            if not chunks.get("parameters"):  # JPEG, WebP: AUTOMATIC1111 keeps it in the EXIF UserComment
                chunks["parameters"] = user_comment(image)
    except FileNotFoundError:
        raise NoRecipe(f"{path}: no such file") from None
    except (UnidentifiedImageError, IsADirectoryError):
        raise NoRecipe(f"{path}: not an image this app can read") from None
    except OSError as exc:
        raise NoRecipe(f"{path}: cannot be read ({exc.strerror or exc})") from None
    parameters = chunks.get("parameters", "")
    if chunks.get("recipe"):
        try:
            ours = json.loads(chunks["recipe"])
        except ValueError:
            ours = None
        if isinstance(ours, dict):
            return {"source": "desktop-app", "request": request_fields(ours), "info": _info(ours),
                    "parameters": parameters}
    if parameters.strip():
        parsed = parse_parameters(parameters)
        return {"source": "parameters", "request": parsed["request"], "info": parsed["info"],
                "parameters": parameters}
    raise NoRecipe(f"{path}: the image has no recipe (no 'recipe' or 'parameters' text chunk, no EXIF "
                   "UserComment)")


def request_fields(recipe: dict) -> dict:
    """GenerationRequest fields from our recipe, for re-running this one image (batch of 1, its seed)."""
    request = {key: recipe[key] for key in REQUEST_FIELDS if key in recipe}
    request["batch_size"] = 1
    request["loras"] = [{"name": name, "weight": weight} for name, weight in
                        (_lora_pair(lora) for lora in recipe.get("loras") or ())]
    return request


def _info(recipe: dict) -> dict:
    keys = ("model_hash", "model_name", "family", "device", "dtype", "app_version", "seeds", "output_size",
            "lora_hashes", "refiner_model", "format", "timings")
    return {key: recipe[key] for key in keys if key in recipe}


def parse_parameters(text: str) -> dict:
    """AUTOMATIC1111 ``parameters`` text -> {"request": {...}, "info": {every other key: value}}."""
    lines = text.strip().split("\n")
    settings_line = ""
    if lines and _PARAM.findall(lines[-1]) and re.match(r"\s*Steps:", lines[-1]):
        settings_line = lines.pop()
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].lstrip()
        (negative_lines if in_negative else prompt_lines).append(line)
    prompt = "\n".join(prompt_lines).strip()
    loras = [{"name": name, "weight": float(weight) if weight else 1.0}
             for name, weight in _LORA_TAG.findall(prompt)]
    prompt = re.sub(r"\s{2,}", " ", _LORA_TAG.sub("", prompt)).strip()
    request: dict = {"prompt": prompt, "negative_prompt": "\n".join(negative_lines).strip(),
                     "batch_size": 1, "loras": loras}
    info: dict = {}
    for key, value in _PARAM.findall(settings_line):
        key, value = key.strip(), value.strip()
        if value.startswith('"') and value.endswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        info[key] = value
    _take(request, "steps", info.get("Steps"), int)
    _take(request, "guidance_scale", info.get("CFG scale"), float)
    _take(request, "seed", info.get("Seed"), int)
    if "Size" in info:
        size = re.match(r"\s*(\d+)\s*x\s*(\d+)", info["Size"])
        if size:
            request["width"], request["height"] = int(size.group(1)), int(size.group(2))
    sampler = info.get("Sampler")
    if sampler:
        # newer A1111: "Sampler: DPM++ 2M, Schedule type: Karras"; older: "Sampler: DPM++ 2M Karras"
        if info.get("Schedule type", "").lower() == "karras" and not sampler.endswith("Karras"):
            sampler = f"{sampler} Karras"
        request["sampler"] = sampler
    if info.get("Refiner"):  # the name (and hash) go to info, as the model's do; the switch to the request
        _take(request, "refiner_switch", info.get("Refiner switch at"), float)
    extra = {"model_hash": info.get("Model hash"), "model_name": info.get("Model"),
             "refiner_name": re.sub(r"\s*\[[0-9a-fA-F]+\]$", "", info.get("Refiner", "")),
             "app_version": info.get("Version")}
    extra = {key: value for key, value in extra.items() if value}
    extra["fields"] = info
    return {"request": request, "info": extra}


def _take(request: dict, key: str, value, kind) -> None:
    if value is None:
        return
    try:
        request[key] = kind(value)
    except ValueError:
        pass


def _lora_pair(lora) -> tuple[str, float]:
    if isinstance(lora, dict):
        return str(lora.get("name")), float(lora.get("weight", 1.0))
    if isinstance(lora, (list, tuple)):
        return str(lora[0]), float(lora[1]) if len(lora) > 1 else 1.0
    return str(getattr(lora, "name", lora)), float(getattr(lora, "weight", 1.0))


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def describe(found: dict) -> str:
    """The recipe as a person reads it (``desktop-app info``)."""
    request, info = found["request"], found["info"]
    lines = [f"Prompt: {request.get('prompt', '')}"]
    if request.get("negative_prompt"):
        lines.append(f"Negative prompt: {request['negative_prompt']}")
    labels = (("width", "Width"), ("height", "Height"), ("steps", "Steps"), ("guidance_scale", "CFG scale"),
              ("sampler", "Sampler"), ("seed", "Seed"), ("model", "Model"), ("upscale", "Upscale"))
    for key, label in labels:
        if request.get(key) is not None:
            lines.append(f"{label}: {request[key]}")
    for lora in request.get("loras") or ():
        lines.append(f"LoRA: {lora['name']} (weight {lora['weight']:g})")
    refiner = request.get("refiner") or info.get("refiner_name")
    if refiner:
        lines.append(f"Refiner: {refiner} (switch at {request.get('refiner_switch', 0.8):g})")
    for key, label in (("model_name", "Model name"), ("model_hash", "Model hash"), ("device", "Device"),
                       ("dtype", "Dtype"), ("app_version", "Made by")):
        if info.get(key):
            value = info[key]
            lines.append(f"{label}: desktop-app {value}" if key == "app_version" and
                         found["source"] == "desktop-app" else f"{label}: {value}")
    lines.append("Recipe: " + ("desktop-app JSON" if found["source"] == "desktop-app"
                               else "AUTOMATIC1111-style parameters"))
    return "\n".join(lines)
