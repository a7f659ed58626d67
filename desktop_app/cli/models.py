"""``desktop-app models ...``: list, add and remove the models in the user's library (no torch needed).

Bad files exit 2 with one line that says what is wrong; the library is left unchanged. A damaged file in a
registered folder never breaks the listing: ``models list`` lists the rest and then names the damaged ones with
the reason. Every name or path that comes from the disk is printed through ``safe_names.printable`` (control
characters and terminal escapes shown escaped): a file name cannot move the cursor or forge a line.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from desktop_app.models.display import format_size


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
    from desktop_app.cli.download import add_parser as add_download_parser

    add_download_parser(actions)


def run(args: argparse.Namespace) -> int:
    from desktop_app.models import model_library
    from desktop_app.cli.errors import BadInput
    from desktop_app.errors import ModelError
    from desktop_app.errors import printable

    try:
        if args.models_command == "list":
            skipped: list = []
            return _list(model_library.entries(args.kind, skipped=skipped), args.json, skipped)
        if args.models_command == "add":
            entry = model_library.add(args.path, name=args.name, prediction_type=args.prediction_type)
            family = f", {entry.family_name}" if entry.family != "unknown" else ""
            if entry.prediction_type:
                family += f", {entry.prediction_type.replace('_', '-')}"
            print(f"added {printable(entry.name)}: {entry.kind}{family}, {format_size(entry.size)} "
                  f"({printable(entry.path, 400)})")
            return 0
        if args.models_command == "download":
            from desktop_app.cli import download as cli_download

            return cli_download.run(args)
        if args.models_command == "add-folder":
            scan = model_library.add_folder(args.path)
            print(f"added the {scan.layout} folder {printable(scan.folder, 400)}: {len(scan.entries)} file(s) "
                  "found")
            for entry in scan.entries:
                print(f"  {printable(entry.name)}: {entry.kind}, {entry.family_name}")
            for path, reason in scan.skipped:
                print(f"  skipped {printable(path, 400)}: {printable(_one_line(reason), 600)}")
            return 0
        entry = model_library.remove(args.name)
        print(f"removed {printable(entry.name)} from the library (the files stay in {printable(entry.path, 400)})")
        return 0
    except ModelError as exc:
        raise BadInput(_escaped(_one_line(str(exc)))) from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _escaped(text: str) -> str:
    """``text`` with control characters (terminal escapes) shown escaped, unquoted: a message stays readable."""
    import unicodedata

    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Cf", "Cs") else c for c in text)


def _list(entries, as_json: bool, skipped=()) -> int:
    from desktop_app.errors import printable

    if as_json:  # JSON escapes control characters itself; the damaged files are named on stderr, one line
        print(json.dumps([asdict(e) for e in entries], indent=2))
        if skipped:
            import sys

            print(f"note: {len(skipped)} unusable file(s) left out (see `desktop-app models list`): "
                  f"{printable(skipped[0][0], 200)}", file=sys.stderr)
        return 0
    rows = [("NAME", "KIND", "FAMILY", "SIZE", "SOURCE")]
    rows += [(printable(e.name), e.kind, printable(e.family_cell, 40), format_size(e.size),
              printable(e.source, 400)) for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if skipped:
        print(f"\n{len(skipped)} file(s) left out because they cannot be used:")
        for path, reason in skipped:
            print(f"  skipped {printable(path, 400)}: {printable(_one_line(reason), 600)}")
    return 0
