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
    parts = actions.add_parser("components", help="the diffusers folder whose text encoders and VAE a family's "
                                                  "transformer files run with",
                               description="A single transformer file (Flux, SD3 ... .safetensors or .gguf) runs "
                                           "with the text encoders, tokenizers, VAE and scheduler of a diffusers "
                                           "folder of its family, named once per family. Without arguments: "
                                           "the folders named.")
    parts.add_argument("family", nargs="?", metavar="FAMILY", help="flux, sd3, chroma, sana, z-image, ...")
    parts.add_argument("folder", nargs="?", metavar="FOLDER", help="a complete diffusers folder of that family")
    parts.add_argument("--clear", action="store_true", help="forget the family's folder")
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
        if args.models_command == "components":
            return _components(args)
        if args.models_command == "add-folder":
            scan = model_library.add_folder(args.path)
            print(f"added the {scan.layout} folder {printable(scan.folder, 400)}: {len(scan.entries)} file(s) "
                  "found")
            for entry in scan.entries:
                print(f"  {printable(entry.name)}: {entry.kind}, {entry.family_name}")
            for path, reason in scan.skipped:
                print(f"  skipped {printable(path, 400)}: {printable(_one_line(reason), 600)}")
            for note in scan.notes:
                print(f"  note: {printable(note, 600)}")
            return 0
        entry = model_library.remove(args.name)
        print(f"removed {printable(entry.name)} from the library (the files stay in {printable(entry.path, 400)})")
        return 0
    except ModelError as exc:
        raise BadInput(_escaped(_one_line(str(exc)))) from None


def _components(args: argparse.Namespace) -> int:
    from desktop_app.cli.errors import BadInput
    from desktop_app.errors import printable
    from desktop_app.models import components

    if args.family is None:
        for family, folder in sorted(components.stored().items()):
            print(f"{printable(family, 60)}: {printable(folder, 400)}")
        return 0
    if args.clear:
        if args.folder is not None:
            raise BadInput("models components FAMILY --clear takes no FOLDER")
        cleared = components.clear(args.family)
        print(f"{'forgot' if cleared else 'no components folder was named for'} {printable(args.family, 60)}")
        return 0
    if args.folder is None:
        folder = components.stored().get(args.family)
        print(printable(folder, 400) if folder else f"no components folder named for {printable(args.family, 60)}")
        return 0
    folder = components.set_for_family(args.family, args.folder)
    print(f"{printable(args.family, 60)} transformer files run with the components of {printable(folder, 400)}")
    return 0


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
