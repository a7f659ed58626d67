"""``desktop-app info``: the recipe stored in an image (ours or another tool's)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from desktop_app.cli.errors import EXIT_OK, BadInput


def register(commands) -> None:
    info = commands.add_parser("info", help="print the recipe stored in an image",
                               description="Print the recipe in a PNG, JPEG or WebP: ours, or the "
                                           "AUTOMATIC1111-style 'parameters' text other tools write (in EXIF "
                                           "UserComment for JPEG and WebP). Exit 2 when the file is not "
                                           "an image or holds no recipe.")
    info.add_argument("image", help="a PNG, JPEG or WebP file")
    info.add_argument("--json", action="store_true",
                      help="print one JSON object: source, request, info, parameters")


def info(args: argparse.Namespace) -> int:
    from desktop_app.studio.png_recipe import NoRecipe, describe, read_recipe

    try:
        found = read_recipe(Path(args.image).expanduser())
    except NoRecipe as exc:
        raise BadInput(str(exc)) from None
    if args.json:
        print(json.dumps(found, sort_keys=True, default=str))
    else:
        print(describe(found))
    return EXIT_OK


run = info  # the command's entry point, as in every command module
