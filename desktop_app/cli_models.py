"""``desktop-app models ...``: list, add and remove the models in the user's library (no torch needed).

Bad files exit 2 with one line that says what is wrong; the library is left unchanged.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def register(commands) -> None:
    models = commands.add_parser("models", help="the model library: list, add, add-folder, remove, download",
                                 description="The models, LoRAs, embeddings and upscalers the app knows by name. "
                                             "Files are inspected (only safetensors and diffusers folders; the "
                                             "family comes from the tensors) and never copied or deleted.")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=type(models))
    actions.required = True
    listing = actions.add_parser("list", help="list the library")
    listing.add_argument("--json", action="store_true", help="one JSON array of entries")
    listing.add_argument("--kind", choices=("model", "checkpoint", "diffusers", "lora", "embedding", "upscaler"),
                         help="only this kind")
    add = actions.add_parser("add", help="register a .safetensors file or a diffusers folder")
    add.add_argument("path", metavar="PATH")
    add.add_argument("--name", help="the name to use it by (default: the file or folder name)")
    add.add_argument("--prediction-type", choices=("v", "epsilon"),
                     help="what a single-file checkpoint predicts, remembered for it: SD 2.x files cannot tell "
                          "(768 models: v, the 512 base: epsilon; default v, or what a FILE.yaml beside it says)")
    folder = actions.add_parser("add-folder", help="register another tool's model folder (AUTOMATIC1111, "
                                                   "ComfyUI, or a flat folder), scanned without copying")
    folder.add_argument("path", metavar="DIR")
    remove = actions.add_parser("remove", help="unregister a name or a folder (the files stay)")
    remove.add_argument("name", metavar="NAME")
    from .cli_download import add_parser as add_download_parser

    add_download_parser(actions)


def run(args: argparse.Namespace) -> int:
    from . import model_library
    from .cli import BadInput
    from .engine.errors import ModelError

    try:
        if args.models_command == "list":
            return _list(model_library.entries(args.kind), args.json)
        if args.models_command == "add":
            entry = model_library.add(args.path, name=args.name, prediction_type=args.prediction_type)
            family = f", {entry.family_name}" if entry.family != "unknown" else ""
            if entry.prediction_type:
                family += f", {entry.prediction_type.replace('_', '-')}"
            print(f"added {entry.name}: {entry.kind}{family}, {format_size(entry.size)} ({entry.path})")
            return 0
        if args.models_command == "download":
            from . import cli_download

            return cli_download.run(args)
        if args.models_command == "add-folder":
            scan = model_library.add_folder(args.path)
            print(f"added the {scan.layout} folder {scan.folder}: {len(scan.entries)} file(s) found")
            for entry in scan.entries:
                print(f"  {entry.name}: {entry.kind}, {entry.family_name}")
            for path, reason in scan.skipped:
                print(f"  skipped {path}: {reason}")
            return 0
        entry = model_library.remove(args.name)
        print(f"removed {entry.name} from the library (the files stay in {entry.path})")
        return 0
    except ModelError as exc:
        raise BadInput(" ".join(str(exc).split())) from None


def _list(entries, as_json: bool) -> int:
    if as_json:
        print(json.dumps([asdict(e) for e in entries], indent=2))
        return 0
    rows = [("NAME", "KIND", "FAMILY", "SIZE", "SOURCE")]
    rows += [(e.name, e.kind, e.family_cell, format_size(e.size), e.source) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
