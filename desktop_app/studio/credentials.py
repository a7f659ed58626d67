"""C2PA content credentials: every image the studio writes carries a manifest signed on this computer, and
``desktop-app info`` checks it.

What the manifest says (``manifest``): made by desktop-app (the claim generator, with its version), created by a
trained model (the ``c2pa.actions`` assertion: ``c2pa.created``, digital source type ``trainedAlgorithmicMedia``),
with which model, LoRAs and settings (``org.desktop-app.recipe``: the same recipe as the PNG's ``recipe`` chunk,
model and LoRA hashes included), and from which start image and mask (ingredients, when those files are still
there and unchanged). An upscale names its input as the parent ingredient; an edit (``desktop-app edit``) names its
input image as the parent and says ``c2pa.edited`` by a trained model.

Signing is the last step of writing a file (``sign_in_place``, inside the atomic write): the manifest's hash covers
every other byte, so the recipe chunk written before it is kept and covered; any change after it makes the
manifest invalid. The signer is the local identity of ``local_ca`` (a local authority: valid, never trusted).

Credentials are optional: without ``c2pa-python`` (or ``cryptography``), with ``content_credentials`` false in the
settings, or when signing fails, the image is written without them; the reason is logged once per process, one line
(``off_reason`` gives it to a window). ``c2pa`` is imported inside the functions: the studio loads without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from pathlib import Path

from desktop_app.errors import printable

log = logging.getLogger(__name__)

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
RECIPE_LABEL = "org.desktop-app.recipe"
SETTING = "content_credentials"
MAX_INGREDIENT_BYTES = 256 << 20
UNTRUSTED = "signingCredential.untrusted"
CHANGED = ("assertion.dataHash.mismatch", "assertion.boxesHash.mismatch", "assertion.bmffHash.mismatch")
MIME_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "TIFF": "image/tiff"}

_lock = threading.Lock()
_state: dict = {"context": None, "off": None, "told": set()}


# ---- signing --------------------------------------------------------------------------------------------------


def sign_in_place(stream, mime: str, recipe: dict | None, title: str) -> bool:
    """Replace the image just written to ``stream`` (a file opened for writing, by name: ``write_atomically``'s)
    by the same bytes with a signed manifest. False (and the file as it was) when credentials are off."""
    stream.flush()
    with open(stream.name, "rb") as written:
        data = written.read()
    signed = sign_bytes(data, mime, recipe, title)
    if signed is None:
        return False
    stream.seek(0)
    stream.truncate()
    stream.write(signed)
    return True


def sign_bytes(data: bytes, mime: str, recipe: dict | None, title: str) -> bytes | None:
    """The image ``data`` with a signed manifest, or None when credentials are off (the reason logged once)."""
    if not wanted():
        return None
    try:
        import c2pa
    except (ImportError, OSError) as exc:  # OSError: the package is there, its native library is not
        return _off(f"the c2pa-python package is not available ({_reason(exc)})")
    try:
        from desktop_app.studio.local_ca import signing_identity

        chain, key = signing_identity()
    except ImportError as exc:
        return _off(f"the cryptography package is not available ({_reason(exc)})")
    except (OSError, ValueError) as exc:
        return _off(f"the signing certificate could not be made ({_reason(exc)})")
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
        inputs = _inputs(_plain(recipe or {}))  # the start image, mask or input: hashed once for both uses
        with signer, c2pa.Builder(manifest(recipe, title, inputs), _context(c2pa)) as builder:
            for ingredient, path in ingredients(recipe, inputs):
                try:
                    with open(path, "rb") as source:
                        builder.add_ingredient(ingredient, _sniff(path) or "", source)
                except (OSError, c2pa.C2paError) as exc:  # the image is signed without this ingredient
                    log.debug("ingredient %s left out: %s", path, exc)
            out = io.BytesIO()
            builder.sign(signer, mime, io.BytesIO(data), out)
        return out.getvalue()
    except Exception as exc:  # noqa: BLE001 - a native library's failure costs the credentials, never the image
        return _off(f"signing failed ({_reason(exc)})")


def manifest(recipe: dict | None, title: str, inputs: list | None = None) -> dict:
    """The manifest definition for an image made from ``recipe`` (without ingredients: ``ingredients``);
    ``inputs``: ``_inputs`` of the recipe when the caller has them already."""
    import desktop_app

    recipe = _plain(recipe or {})
    version = str(recipe.get("app_version") or desktop_app.__version__)
    ids = [label for label, _ in (_inputs(recipe) if inputs is None else inputs)]
    if recipe.get("job") == "upscale" and "input" in ids:
        actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": ["input"]}},
                   {"action": "c2pa.resized", "softwareAgent": {"name": "desktop-app", "version": version}}]
    elif recipe.get("job") == "edit":
        edited = {"action": "c2pa.edited", "digitalSourceType": DIGITAL_SOURCE_TYPE,
                  "softwareAgent": {"name": "desktop-app", "version": version},
                  "parameters": {"description": str(recipe.get("instruction") or "")}}
        actions = ([{"action": "c2pa.opened", "parameters": {"ingredientIds": ["input"]}}] if "input" in ids
                   else []) + [edited]
    else:
        created = {"action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE,
                   "softwareAgent": {"name": "desktop-app", "version": version}}
        if ids:
            created["parameters"] = {"ingredientIds": ids}
        actions = [created]
    return {"claim_generator_info": [{"name": "desktop-app", "version": version}], "title": title,
            "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}},
                           {"label": RECIPE_LABEL, "data": recipe}]}


def ingredients(recipe: dict | None, inputs: list | None = None) -> list[tuple[dict, Path]]:
    """(ingredient definition, file) for the start image, the mask and an upscale's input: only files that are
    still there and, where the recipe holds their sha256, unchanged since they were used."""
    found = []
    for label, path in (_inputs(recipe or {}) if inputs is None else inputs):
        relationship = "parentOf" if label == "input" else "inputTo"
        found.append(({"title": Path(path).name, "relationship": relationship, "label": label}, Path(path)))
    return found


def _inputs(recipe: dict) -> list[tuple[str, str]]:
    job = recipe.get("job")
    fields = ((("input", "input", None),) if job == "upscale" else (("input", "image", "image_sha256"),)
              if job == "edit" else (("init_image", "init_image", "init_image_sha256"),
                                     ("mask", "mask", "mask_sha256")))
    found = []
    for label, key, hash_key in fields:
        path = recipe.get(key)
        if not isinstance(path, str) or not path:
            continue
        try:
            file = Path(path)
            if not file.is_file() or file.stat().st_size > MAX_INGREDIENT_BYTES or _sniff(file) is None:
                continue
            if isinstance(recipe.get(hash_key), str) and _sha256(file) != recipe[hash_key]:
                continue
        except (OSError, ValueError):
            continue
        found.append((label, path))
    return found


def wanted() -> bool:
    """False when the settings file says ``"content_credentials": false``. Read as it is on disk, every time (a
    small file), without the side effects of ``settings.load``."""
    try:
        from desktop_app.paths import settings_path

        with open(settings_path(), "rb") as handle:
            stored = json.loads(handle.read(1 << 20))
    except (OSError, ValueError, RecursionError):
        return True
    return not (isinstance(stored, dict) and stored.get(SETTING) is False)


def off_reason() -> str | None:
    """Why images go without credentials, a line for a window's status bar: the last signing's failure, or before
    any, a package that is missing (looked for, not imported: cheap enough for a window's start). None when they
    are on, or off by the user's own setting."""
    if _state["off"] is not None:
        return _state["off"]
    if not wanted():
        return None
    import importlib.util

    for module, package in (("c2pa", "c2pa-python"), ("cryptography", "cryptography")):
        try:
            missing = importlib.util.find_spec(module) is None
        except (ImportError, ValueError):  # ValueError: a module in sys.modules without a spec
            missing = True
        if missing:
            return _off_line(f"the {package} package is not available")
    return None


def _off_line(reason: str) -> str:
    return f"content credentials are off: {reason}; images are saved without a C2PA manifest"


def _off(reason: str) -> None:
    line = _off_line(reason)
    with _lock:
        _state["off"] = line
        first = line not in _state["told"]
        _state["told"].add(line)
    if first:
        log.warning("desktop-app: warning: %s", line)
    return None


def _context(c2pa):
    """Settings for signing and reading: no thumbnail (the image is its own), nothing fetched from a network."""
    with _lock:
        if _state["context"] is None:
            settings = c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}},
                                                "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}})
            _state["context"] = c2pa.Context(settings)
        return _state["context"]


# ---- checking -------------------------------------------------------------------------------------------------


def verify(path: Path) -> dict:
    """What the file's manifest says and whether it holds: {"state": "valid" | "invalid" | "absent" | "unchecked",
    "valid": the manifest and the file's hash check out, "trusted": the signer is on a trust list (never for a
    local certificate), "signer", "problems": [failure explanations], "claims": {claim_generator, title, actions,
    ingredients, assertions}, "why": a line for "absent" and "unchecked"}."""
    result = {"state": "unchecked", "valid": False, "trusted": False}
    try:
        import c2pa
    except (ImportError, OSError) as exc:
        return result | {"why": f"the c2pa-python package is not available: {_reason(exc)}"}
    try:
        with open(path, "rb") as handle:
            reader = c2pa.Reader.try_create(_sniff(Path(path)), handle, None, _context(c2pa))
            if reader is None:
                return result | {"state": "absent", "why": "the file holds no C2PA manifest"}
            with reader:
                state = reader.get_validation_state() or ""
                results = reader.get_validation_results() or {}
                active = reader.get_active_manifest() or {}
    except OSError as exc:
        return result | {"why": f"the file could not be read ({_reason(exc)})"}
    except Exception as exc:  # noqa: BLE001 - a damaged file or manifest: say so, in one line
        if type(exc).__name__.endswith("NotSupported"):
            return result | {"state": "absent", "why": "a format C2PA does not cover"}
        if not _holds_manifest_box(Path(path)):  # a damaged image without credentials: none to check
            return result | {"state": "absent", "why": f"no readable C2PA manifest ({_reason(exc)})"}
        return result | {"state": "invalid", "problems": [f"the manifest could not be read ({_reason(exc)})"],
                         "claims": {}}
    failures = (results.get("activeManifest") or {}).get("failure") or []
    codes = [str(item.get("code")) for item in failures if isinstance(item, dict)]
    problems = [_problem(item) for item in failures if isinstance(item, dict) and item.get("code") != UNTRUSTED]
    valid = state in ("Valid", "Trusted") and not problems
    return {"state": "valid" if valid else "invalid", "valid": valid, "trusted": state == "Trusted",
            "changed": any(code in CHANGED for code in codes), "signer": _signer(active), "problems": problems,
            "claims": _claims(active)}


def _problem(item: dict) -> str:
    return printable(f"{item.get('code')}: {item.get('explanation', '')}".rstrip(": "), 300)


def _signer(active: dict) -> dict:
    info = active.get("signature_info") or {}
    keys = ("common_name", "issuer", "alg", "time", "cert_serial_number")
    return {key: printable(str(info[key]), 200) for key in keys if info.get(key) is not None}


def _claims(active: dict) -> dict:
    generators = [" ".join(str(part) for part in (item.get("name"), item.get("version")) if part)
                  for item in active.get("claim_generator_info") or () if isinstance(item, dict)]
    assertions = {}
    actions = []
    for assertion in active.get("assertions") or ():
        if not isinstance(assertion, dict):
            continue
        label, data = str(assertion.get("label")), assertion.get("data")
        if label.startswith("c2pa.actions") and isinstance(data, dict):
            actions += [{key: item[key] for key in ("action", "digitalSourceType") if key in item}
                        for item in data.get("actions") or () if isinstance(item, dict)]
        assertions[label] = data if len(json.dumps(data, default=str)) < 100_000 else "(too large to show)"
    ingredients_found = [{key: item[key] for key in ("title", "relationship", "format") if key in item}
                         for item in active.get("ingredients") or () if isinstance(item, dict)]
    claim_generator = "; ".join(generators) or str(active.get("claim_generator") or "")
    return {"claim_generator": claim_generator, "title": active.get("title"), "actions": actions,
            "ingredients": ingredients_found, "assertions": assertions}


def describe(result: dict) -> str:
    """The check as a person reads it: a first line that says valid, invalid or none, then what was claimed."""
    state = result.get("state")
    if state in ("absent", "unchecked"):
        label = "none" if state == "absent" else "not checked"
        return f"Content credentials: {label} ({printable(result.get('why', ''), 300)})"
    signer = result.get("signer") or {}
    who = signer.get("common_name") or "an unnamed signer"
    if signer.get("issuer"):
        who += f", issued by {signer['issuer']}"
    if result.get("trusted"):
        trust = f"trusted (signed by {who})"
    else:
        local = " a local certificate made on the computer that wrote the image;" \
            if "desktop-app" in str(signer.get("issuer", "")) else ""
        trust = f"not trusted (signed by {who}:{local} no trust list vouches for the signer)"
    if result.get("valid"):
        lines = [f"Content credentials: valid, {trust}"]
    else:
        why = "the file was changed after signing" if result.get("changed") else \
            "; ".join(result.get("problems") or ()) or "the manifest does not check out"
        lines = [f"Content credentials: INVALID ({printable(why, 600)}); {trust}"]
    claims = result.get("claims") or {}
    if claims.get("claim_generator"):
        lines.append(f"Claim generator: {printable(claims['claim_generator'], 200)}")
    for action in claims.get("actions") or ():
        source = str(action.get("digitalSourceType", "")).rsplit("/", 1)[-1]
        lines.append(f"Action: {printable(action.get('action', '?'), 100)}" + (f" ({printable(source, 100)})"
                                                                             if source else ""))
    ours = (claims.get("assertions") or {}).get(RECIPE_LABEL)
    if isinstance(ours, dict):
        model = ours.get("model_name") or ours.get("model")
        if model:
            hashed = f" (hash {ours['model_hash']})" if ours.get("model_hash") else ""
            lines.append(f"Signed model: {printable(model, 200)}{printable(hashed, 100)}")
        for name, value in (ours.get("lora_hashes") or {}).items() if isinstance(ours.get("lora_hashes"), dict) \
                else ():
            lines.append(f"Signed LoRA: {printable(name, 200)} (hash {printable(value, 80)})")
    for item in claims.get("ingredients") or ():
        lines.append(f"Ingredient: {printable(item.get('title', '?'), 200)} "
                     f"({printable(item.get('relationship', '?'), 40)})")
    return "\n".join(lines)


# ---- small helpers --------------------------------------------------------------------------------------------


def _sniff(path: Path) -> str | None:
    """The image's MIME type from its first bytes (what C2PA reads), or None."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    return None


def _holds_manifest_box(path: Path) -> bool:
    """Whether the file holds a C2PA manifest store's box (a JUMBF box labelled ``c2pa``), read or not."""
    tail = b""
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                window = tail + block
                at = window.find(b"jumb")
                while at >= 0:
                    if b"c2pa" in window[at:at + 64]:
                        return True
                    at = window.find(b"jumb", at + 4)
                tail = window[-64:]
    except OSError:
        return False
    return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain(recipe: dict) -> dict:
    """The recipe as JSON has it (paths and tuples as text and lists)."""
    return json.loads(json.dumps(recipe, sort_keys=True, default=str))


def _reason(exc: BaseException) -> str:
    return printable(" ".join((getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).split()), 200)
