"""``desktop-app models download REPO_ID``: a diffusers model from the Hugging Face hub into the user's library.

The command line is offline by default (cli.main sets HF_HUB_OFFLINE=1 when the user has not set it); asking for a
download is the opt-in that lifts that default for this command. A user's own HF_HUB_OFFLINE=1 still wins.
Ctrl-C cancels; running the command again continues the partial files.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from .cli_models import format_size


def add_parser(actions) -> None:
    download = actions.add_parser("download", help="download a diffusers model by Hugging Face repo id "
                                                   "(resumable, verified) and add it to the library")
    download.add_argument("repo_id", metavar="REPO_ID", help="owner/name, e.g. stabilityai/sdxl-turbo")
    download.add_argument("--revision", default="main", help="branch, tag or commit (default: main)")
    download.add_argument("--name", help="the name to use it by (default: the repo name)")


class _Bar:
    """A one-line byte counter on stderr, redrawn at most 10 times a second."""

    def __init__(self):
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        percent = f"{100 * done / total:5.1f}%" if total else ""
        print(f"\r{percent} {format_size(done)} of {format_size(total)}", end="", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from . import hub_download, model_library, paths

    hub_download.lift_app_offline_default()
    cancel = threading.Event()
    try:
        folder = hub_download.download(args.repo_id, paths.models_dir() / "downloads", progress=_Bar(),
                                       cancel=cancel, revision=args.revision,
                                       endpoint=os.environ.get("HF_ENDPOINT") or None)
    except KeyboardInterrupt:
        cancel.set()
        print(f"\ndownload of {args.repo_id} stopped; run the same command again to continue", file=sys.stderr)
        return 130
    finally:
        print(file=sys.stderr)
    name = args.name or args.repo_id.strip().rpartition("/")[2]
    existing = model_library.find(name)
    if existing is not None and existing.path == str(folder.resolve()):
        print(f"{name} is already in the library ({folder})")
        return 0
    entry = model_library.add(folder, name=name, source="downloaded")
    print(f"downloaded {args.repo_id} as {entry.name}: {entry.family_name}, "
          f"{format_size(entry.size)} ({entry.path})")
    return 0

