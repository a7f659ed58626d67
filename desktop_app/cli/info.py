"""``desktop-app info``: the recipe stored in an image (ours or another tool's), and its C2PA content credentials
checked (valid, invalid or absent; trusted or not)."""

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
                           "trusted, signer, problems, claims)")


def info(args: argparse.Namespace) -> int:
    from desktop_app.studio import credentials
    from desktop_app.studio.png_recipe import NoRecipe, describe, read_recipe

    path = Path(args.image).expanduser()
    try:
        found = read_recipe(path)
    except NoRecipe as exc:
        checked = credentials.verify(path) if path.is_file() else {"state": "absent"}
        if checked["state"] in ("absent", "unchecked"):
            raise BadInput(str(exc)) from None
        found = {"source": None, "request": {}, "info": {}, "parameters": "", "problem": str(exc)}
    else:
        checked = credentials.verify(path)
    found["c2pa"] = checked
    if args.json:
        print(json.dumps(found, sort_keys=True, default=str))
    else:
        print(describe(found) if found["source"] else f"Recipe: none ({found['problem']})")
        print(credentials.describe(checked))
    return EXIT_OK


run = info  # the command's entry point, as in every command module
