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

from desktop_app.cli.errors import EXIT_INTERRUPTED, EXIT_OK
from desktop_app.models.display import format_size


def add_parser(actions) -> None:
    download = actions.add_parser("download", help="download a diffusers model by Hugging Face repo id "
                                                   "(resumable, verified) and add it to the library")
    download.add_argument("repo_id", metavar="REPO_ID", help="owner/name, e.g. stabilityai/sdxl-turbo")
    download.add_argument("--revision", default="main", help="branch, tag or commit (default: main)")
    download.add_argument("--name", help="the name to use it by (default: the repo name)")


class _Bar:
    """A one-line byte counter on stderr, redrawn at most 10 times a second; ``end()`` finishes its line (only
    when it drew one, so that an error before any byte is the only line on stderr)."""

    def __init__(self):
        self.last = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        self.drawn = True
        percent = f"{100 * done / total:5.1f}%" if total else ""
        print(f"\r{percent} {format_size(done)} of {format_size(total)}", end="", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from desktop_app.models import hub_download, model_library
    from desktop_app import paths
    from desktop_app.errors import ModelError
    from desktop_app.models.safe_names import UnsafeName, check_name

    # 1. everything that becomes a path or a name, checked before the network or the disk is touched
    repo_id = hub_download.check_repo_id(args.repo_id)
    name = args.name if args.name is not None else repo_id.rpartition("/")[2]
    try:
        check_name(name, "--name" if args.name is not None else "the model name")
    except UnsafeName as exc:
        raise ModelError(str(exc)) from None
    # 2. the download: asking for it is the user's opt-in to the network
    cancel = threading.Event()
    bar = _Bar()
    try:
        with hub_download.app_offline_lifted():
            folder = hub_download.download(repo_id, paths.models_dir() / "downloads", progress=bar,
                                           cancel=cancel, revision=args.revision,
                                           endpoint=os.environ.get("HF_ENDPOINT") or None)
    except KeyboardInterrupt:
        cancel.set()
        print(f"{chr(10) if bar.drawn else ''}download of {repo_id} stopped; run the same command again to "
              "continue", file=sys.stderr)
        bar.drawn = False  # the message above ended the progress line
        return EXIT_INTERRUPTED
    finally:
        if bar.drawn:  # end the progress line; an error before any byte stays the only line
            print(file=sys.stderr)
    existing = model_library.find(name)
    if existing is not None and existing.path == str(folder.resolve()):
        print(f"{name} is already in the library ({folder})")
        return EXIT_OK
    entry = model_library.add(folder, name=name, source="downloaded")
    print(f"downloaded {repo_id} as {entry.name}: {entry.family_name}, "
          f"{format_size(entry.size)} ({entry.path})")
    return EXIT_OK

