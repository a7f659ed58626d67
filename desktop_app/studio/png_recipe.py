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
import re
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

from PIL.PngImagePlugin import PngInfo

from desktop_app.studio import foreign_recipes
from desktop_app.studio.parameters_text import MAX_PARAMETERS, NoRecipe, _lora_pair, parse_parameters  # noqa: F401
from desktop_app.studio.image_metadata import Unreadable, read_image_text, stealth_text
from desktop_app.errors import printable
from desktop_app.paths import write_atomically

RECIPE_FORMAT = "desktop-app-recipe/1"
TEMP_PREFIX = ".saving-"  # temporary files start with this; the start-up check removes leftovers
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
XMP_KEY = "XML:com.adobe.xmp"
REQUEST_FIELDS = ("prompt", "negative_prompt", "width", "height", "steps", "guidance_scale", "sampler",
                  "seed", "batch_size", "model", "loras", "upscale", "hires_scale", "hires_strength", "refiner",
                  "refiner_switch", "preview", "init_image", "strength", "mask", "mask_blur", "init_fit",
                  "outpaint", "controls", "image_prompt", "image_prompt_weight", "ip_adapter")




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
    if recipe.get("init_image"):  # image to image / inpainting, as AUTOMATIC1111's img2img tab writes them
        fields.append(f"Denoising strength: {recipe.get('strength')}")
        if recipe.get("mask"):
            fields.append(f"Mask blur: {recipe.get('mask_blur')}")
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
    path = png_path(path)
    info = png_info(recipe, seed)
    return write_atomically(path, lambda stream: _write(image, stream, info), prefix=TEMP_PREFIX, suffix=".png")


def png_path(path: Path) -> Path:
    """The name ``save_png`` writes for ``path``: a .png suffix added when it has another."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(path.suffix + ".png") if path.suffix else path.with_suffix(".png")
    return path


def suggested_name(prompt: str, seed: int | None) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "-", prompt.lower()).strip("-")[:48].strip("-") or "image"
    return f"{words}-{seed}.png" if seed is not None else f"{words}.png"


def timestamped_name(seed: int | None, when: datetime | None = None) -> str:
    """``20261128-141503-123-s12345.png``: names sort by the time they were made."""
    when = when or datetime.now()
    stamp = when.strftime("%Y%m%d-%H%M%S-") + f"{when.microsecond // 1000:03d}"
    return f"{stamp}-s{seed}.png" if seed is not None else f"{stamp}.png"


# ---- reading ---------------------------------------------------------------------------------------------

_INT_FIELDS = ("width", "height", "steps", "batch_size", "mask_blur")
_NUMBER_FIELDS = ("guidance_scale", "hires_strength", "refiner_switch", "strength")
_TEXT_FIELDS = ("prompt", "negative_prompt", "sampler", "model")
_OPTIONAL_TEXT_FIELDS = ("upscale", "refiner", "init_image", "mask", "init_fit")


def read_recipe(path: Path) -> dict:
    """The recipe in an image file: {"source": "desktop-app" | "parameters" | "fooocus" | "comfyui" | "invokeai" |
    "novelai", "request": {GenerationRequest fields found}, "info": {model_hash, model_name, device, dtype,
    app_version, ... what else is known}, "parameters": the A1111 text or ""}. Raises NoRecipe (and only
    NoRecipe) with a readable message; time and memory are bounded whatever the file holds (image_metadata)."""
    path = Path(path)
    shown = printable(str(path), 200)
    try:
        found_text = read_image_text(path)
    except Unreadable as exc:
        raise NoRecipe(f"{shown}: {exc}") from None
    notes = found_text.notes
    found = recipe_from_chunks(found_text.chunks, notes)
    if found is None:
        hidden = stealth_text(path, found_text)  # A1111's stealth-pnginfo, NovelAI: text in the pixels' low bits
        if hidden:
            data = foreign_recipes.load_json(hidden)
            chunks = ({str(key): value if isinstance(value, str) else json.dumps(value)
                       for key, value in data.items()} if isinstance(data, dict) else {"parameters": hidden})
            found = recipe_from_chunks(chunks, notes)
            if found is not None:
                found["info"]["stored"] = "in the pixels (stealth metadata)"
    if found is None:
        why = "; ".join(dict.fromkeys(notes)) or ("no 'recipe' or 'parameters' text chunk, no EXIF UserComment, "
                                                  "no metadata of another known tool")
        raise NoRecipe(f"{shown}: the image has no recipe ({printable(why, 400)})")
    return found


def recipe_from_chunks(chunks: dict, notes: list | None = None) -> dict | None:
    """The recipe in an image's text entries (PNG chunks, or ``parameters`` from EXIF), or None; what was there
    but could not be used goes to ``notes``. Ours first, then A1111 text, then other tools' formats."""
    notes = [] if notes is None else notes
    if "recipe" in chunks:
        ours = foreign_recipes.load_json(chunks["recipe"])
        problem = recipe_problem(ours)
        if problem is None:
            return {"source": "desktop-app", "request": request_fields(ours), "info": _info(ours),
                    "parameters": str(chunks.get("parameters", ""))[:MAX_PARAMETERS]}
        notes.append(f"its 'recipe' chunk is damaged ({problem})")
    parameters = chunks.get("parameters")
    parameters = parameters if isinstance(parameters, str) else ""
    found = foreign_recipes.fooocus(chunks, notes) if parameters.lstrip().startswith("{") else None
    if found is not None:
        return found
    parsed = None
    if parameters.strip() and not parameters.lstrip().startswith("{"):
        try:
            parsed = parse_parameters(parameters)
        except NoRecipe as exc:
            notes.append(str(exc))
    if parsed is not None and parsed["info"]["fields"]:
        return {"source": "parameters", "request": parsed["request"], "info": parsed["info"],
                "parameters": parameters}
    for reader in foreign_recipes.READERS:
        found = reader(chunks, notes)
        if found is not None:
            return found
    if parsed is not None:  # a prompt without a settings line
        return {"source": "parameters", "request": parsed["request"], "info": parsed["info"],
                "parameters": parameters}
    return None


def recipe_problem(recipe) -> str | None:
    """What is wrong with a recipe JSON (ours) that would stop it being used, or None when every field we use
    has the type GenerationRequest expects. Values are range-checked when the request is built."""
    if not isinstance(recipe, dict):
        return "not a JSON object, or nested too deep"
    for key in _TEXT_FIELDS:
        if key in recipe and not isinstance(recipe[key], str):
            return f"{key} is {_kind(recipe[key])}, not text"
    for key in _OPTIONAL_TEXT_FIELDS:
        if recipe.get(key) is not None and not isinstance(recipe[key], str):
            return f"{key} is {_kind(recipe[key])}, not text"
    for key in _INT_FIELDS:
        if key in recipe and not _is_int(recipe[key]):
            return f"{key} is {_kind(recipe[key])}, not a whole number"
    if recipe.get("seed") is not None and not _is_int(recipe["seed"]):
        return f"seed is {_kind(recipe['seed'])}, not a whole number"
    for key in _NUMBER_FIELDS:
        if key in recipe and not _is_number(recipe[key]):
            return f"{key} is {_kind(recipe[key])}, not a number"
    if recipe.get("hires_scale") is not None and not _is_number(recipe["hires_scale"]):
        return f"hires_scale is {_kind(recipe['hires_scale'])}, not a number"
    if "preview" in recipe and not isinstance(recipe["preview"], (bool, str)):
        return f"preview is {_kind(recipe['preview'])}"
    outpaint = recipe.get("outpaint")
    if outpaint is not None and not (isinstance(outpaint, list) and len(outpaint) == 4
                                     and all(_is_int(side) for side in outpaint)):
        return f"outpaint is {_kind(outpaint)}, not a list of 4 whole numbers"
    problem = _controls_problem(recipe.get("controls"))
    if problem is not None:
        return problem
    loras = recipe.get("loras")
    if loras is not None:
        if not isinstance(loras, list):
            return f"loras is {_kind(loras)}, not a list"
        for lora in loras:
            if isinstance(lora, dict):
                name, weight = lora.get("name"), lora.get("weight", 1.0)
            elif isinstance(lora, list) and 1 <= len(lora) <= 2:
                name, weight = lora[0], lora[1] if len(lora) == 2 else 1.0
            else:
                return f"a LoRA entry is {_kind(lora)}, not a name with a weight"
            if not isinstance(name, str) or not _is_number(weight):
                return "a LoRA entry is not a name with a weight"
    return None


def _controls_problem(controls) -> str | None:
    """What is wrong with a recipe's "controls" (ControlNets: model and image text, weight, start and end
    numbers, preprocessor text), or None."""
    if controls is None:
        return None
    if not isinstance(controls, list):
        return f"controls is {_kind(controls)}, not a list"
    for control in controls:
        if not isinstance(control, dict):
            return f"a ControlNet entry is {_kind(control)}, not an object"
        if not all(isinstance(control.get(key), str) for key in ("model", "image")):
            return "a ControlNet entry has no model or image"
        if not all(_is_number(control[key]) for key in ("weight", "start", "end") if key in control):
            return "a ControlNet entry's weight, start or end is not a number"
        if "preprocessor" in control and not isinstance(control["preprocessor"], str):
            return "a ControlNet entry's preprocessor is not text"
    return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**64


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and foreign_recipes.float_value(value) is not None


def _kind(value) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def request_fields(recipe: dict) -> dict:
    """GenerationRequest fields from our recipe, for re-running this one image (batch of 1, its seed)."""
    request = {key: recipe[key] for key in REQUEST_FIELDS if key in recipe}
    request["batch_size"] = 1
    request["loras"] = [{"name": name, "weight": weight} for name, weight in
                        (_lora_pair(lora) for lora in recipe.get("loras") or ())]
    return request


def _info(recipe: dict) -> dict:
    keys = ("model_hash", "model_name", "family", "device", "dtype", "app_version", "seeds", "output_size",
            "lora_hashes", "refiner_model", "format", "timings", "control_models", "image_prompt_model",
            "job", "instruction", "image", "image_sha256", "input_size", "pipeline")
    return {key: recipe[key] for key in keys if key in recipe}


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def describe(found: dict) -> str:
    """The recipe as a person reads it (``desktop-app info``). Text from the file is shown on its own lines with
    control characters escaped: a prompt cannot move the terminal's cursor or fake a line of the output."""
    request, info = found["request"], found["info"]
    lines = [f"Prompt: {_shown(request.get('prompt', ''))}"]
    if request.get("negative_prompt"):
        lines.append(f"Negative prompt: {_shown(request['negative_prompt'])}")
    if info.get("job") == "edit":
        lines.append(f"Job: edit by the instruction above ({_shown(info.get('pipeline') or '?')})")
        lines.append(f"Input image: {_shown(info.get('image') or '?')} "
                     f"(sha256 {_shown(info.get('image_sha256') or '?')})")
    labels = (("width", "Width"), ("height", "Height"), ("steps", "Steps"), ("guidance_scale", "CFG scale"),
              ("sampler", "Sampler"), ("seed", "Seed"), ("model", "Model"), ("upscale", "Upscale"))
    for key, label in labels:
        if request.get(key) is not None:
            lines.append(f"{label}: {_shown(request[key])}")
    for lora in request.get("loras") or ():
        lines.append(f"LoRA: {_shown(lora['name'])} (weight {lora['weight']:g})")
    for control in request.get("controls") or ():
        lines.append(f"ControlNet: {_shown(control['model'])} with {_shown(control['image'])} (weight "
                     f"{control.get('weight', 1):g}, steps {control.get('start', 0):g}-{control.get('end', 1):g}, "
                     f"{_shown(control.get('preprocessor', 'none'))})")
    if request.get("image_prompt"):
        lines.append(f"Image prompt: {_shown(request['image_prompt'])} (weight "
                     f"{request.get('image_prompt_weight', 0.6):g}, IP-Adapter "
                     f"{_shown(request.get('ip_adapter') or '?')})")
    refiner = request.get("refiner") or info.get("refiner_name")
    if refiner:
        lines.append(f"Refiner: {_shown(refiner)} (switch at {request.get('refiner_switch', 0.8):g})")
    for key, label in (("model_name", "Model name"), ("model_hash", "Model hash"), ("device", "Device"),
                       ("dtype", "Dtype"), ("app_version", "Made by"), ("stored", "Stored")):
        if info.get(key):
            value = _shown(info[key])
            lines.append(f"{label}: desktop-app {value}" if key == "app_version" and
                         found["source"] == "desktop-app" else f"{label}: {value}")
    label = foreign_recipes.SOURCE_LABELS.get(found["source"])
    lines.append("Recipe: " + ("desktop-app JSON" if found["source"] == "desktop-app"
                               else label or "AUTOMATIC1111-style parameters"))
    return "\n".join(lines)


def _shown(value, limit: int = 20_000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)[:limit]
    out = []
    for char in text[:limit]:
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") and char not in "\t\u200d":  # ZWJ: emoji
            out.append("\\n" if char == "\n" else repr(char)[1:-1])
        else:
            out.append(char)
    return "".join(out) + ("..." if len(text) > limit else "")
