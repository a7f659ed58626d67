"""``desktop-app info``: the recipe stored in an image (ours or another tool's), and its C2PA content credentials
checked (valid, invalid or absent; trusted or not); for an image of the embedded model, its nearest training
images (``--nearest K``); with ``--record``, its creation record (the decisions that led
to it, from the history: studio/creation_record.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from desktop_app.cli.errors import EXIT_OK, BadInput


def register(commands) -> None:
    info = commands.add_parser("info", help="print the recipe stored in an image",
                               description="Print the recipe in a PNG, JPEG or WebP: ours, or the "
                                           "AUTOMATIC1111-style 'parameters' text other tools write (in EXIF "
                                           "UserComment for JPEG and WebP), and check its C2PA content "
                                           "credentials: valid, invalid (changed after signing) or none, and "
                                           "whether the signer is trusted. Exit 2 when the file is not an "
                                           "image or holds neither a recipe nor credentials.")
    info.add_argument("image", help="a PNG, JPEG or WebP file")
    info.add_argument("--json", action="store_true",
                      help="print one JSON object: source, request, info, parameters, c2pa (state, valid, "
                           "trusted, signer, problems, claims), and record with --record")
    info.add_argument("--nearest", type=int, default=3, metavar="K",
                      help="for an image of the embedded model, list its K nearest training images with their "
                           "similarity, source and licence (default 3; 0: none)")
    info.add_argument("--record", action="store_true",
                      help="also print the creation record: the decisions that led to the image, from the history "
                           "(prompts tried, seeds and settings changed, start images, masks, upscales)")


def info(args: argparse.Namespace) -> int:
    from desktop_app.studio import credentials
    from desktop_app.studio.png_recipe import NoRecipe, describe, read_recipe

    path = Path(args.image).expanduser()
    record = creation_record(path) if getattr(args, "record", False) else None
    try:
        found = read_recipe(path)
    except NoRecipe as exc:
        checked = credentials.verify(path) if path.is_file() else {"state": "absent"}
        known = record is not None and any(event.kind != "unknown" for event in record.events)
        if checked["state"] in ("absent", "unchecked") and not known:
            raise BadInput(str(exc)) from None
        found = {"source": None, "request": {}, "info": {}, "parameters": "", "problem": str(exc)}
    else:
        checked = credentials.verify(path)
    found["c2pa"] = checked
    nearest = nearest_training_images(path, found, args.nearest) if found["source"] else None
    if nearest is not None:
        found["nearest"] = nearest
    if record is not None:
        found["record"] = record.to_dict()
    if args.json:
        print(json.dumps(found, sort_keys=True, default=str))
    else:
        print(describe(found) if found["source"] else f"Recipe: none ({found['problem']})")
        print(credentials.describe(checked))
        if nearest is not None:
            print(describe_nearest(nearest))
        if record is not None:
            print(record.to_text())
    return EXIT_OK


def nearest_training_images(path: Path, found: dict, count: int) -> dict | None:
    """For an image the embedded model made (by its recipe): its ``count`` nearest training images by the
    contrastive image tower, and where the nearest similarity sits among the training images' own. None for
    other images; {"missing": reason} when the tower or the index cannot be read."""
    from desktop_app.resources import default_model_dir

    model = str((found.get("request") or {}).get("model") or "")
    if count <= 0 or not model:
        return None
    if model != "default":
        try:
            if Path(model).expanduser().resolve() != default_model_dir().resolve():
                return None
        except (OSError, ValueError):
            return None
    from PIL import Image

    from desktop_app.engine import contrastive  # torch loads here, and only for the embedded model's images
    from desktop_app.errors import ModelError
    from desktop_app.models import training_index

    try:
        pair = contrastive.load()
        index = training_index.load(pair.folder)
        with Image.open(path) as image:
            code = pair.encode_images([image])[0]
    except ModelError as exc:
        return {"missing": str(exc)}
    except OSError as exc:
        return {"missing": f"{path.name} cannot be read as an image: {exc}"}
    neighbours = index.nearest(code, count)
    return {"neighbours": [n.as_dict() for n in neighbours],
            "percentile": index.percentile(neighbours[0].similarity) if neighbours else None,
            "training_nearest_other": index.typical(), "training_images": len(index)}


def describe_nearest(nearest: dict) -> str:
    if "missing" in nearest:
        return f"Nearest training images: not available ({nearest['missing']})"
    lines = [f"Nearest training images (of the embedded model's {nearest['training_images']}, by the contrastive "
             f"image tower; similarity 1.0 = the same picture):"]
    for item in nearest["neighbours"]:
        lines.append(f"  {item['rank']}. {item['label']} ({item['style']}), similarity {item['similarity']:.3f}, "
                     f"from {item['source']}, {item['licence']}")
    if nearest["percentile"] is not None:
        lines.append(f"  closer than {nearest['percentile']:.0f}% of training images are to their own nearest "
                     f"other training image (median {nearest['training_nearest_other']['median']:.3f})")
    return "\n".join(lines)


def creation_record(path: Path):
    """The image's creation record (studio/creation_record.py); a path that is neither a file nor in the history
    exits 2 with one line."""
    from desktop_app.errors import RequestError
    from desktop_app.studio.creation_record import build_record

    try:
        return build_record(path)
    except RequestError as exc:
        raise BadInput(str(exc).removeprefix("image: ")) from None


run = info  # the command's entry point, as in every command module
