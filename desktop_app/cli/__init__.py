"""The command line: ``desktop-app`` opens the window; the commands run the engine, library and studio alone.

One module per command (``generate``, ``edit``, ``upscale``, ``info``, ``explain``, ``compare``, ``selftest``,
``bench``, ``train``, ``models``), each with ``register(commands)`` for its options and ``run(args)``;
``errors`` holds the exit codes, ``BadInput`` and the one-line failure report that all of them use (no command
module imports this package's ``__init__``).

Exit codes (``FailureKind.exit_code``, see ``errors.report_failure``): 0 done; 2 bad input (a request field, a
missing or damaged model, a bad option), with one line on stderr; 1 anything else, with one line on stderr (out
of memory and a full disk say so; a bug names the logs folder, where its traceback is); 130 interrupted.
torch is imported only inside the commands, so ``desktop-app --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import desktop_app
from desktop_app.cli.errors import (  # noqa: F401 - the exit codes are part of this package's interface
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PROG,
    BadInput,
    Parser,
    report_failure,
)

# the commands in the order --help lists them, each a module of this package
COMMANDS = ("generate", "edit", "upscale", "info", "explain", "compare", "selftest", "bench", "train",
            "models")


def _command(name: str):
    return importlib.import_module(f"desktop_app.cli.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Text to image on your own machine, offline. "
                                           "Without a command, opens the window.",
                    epilog=f"{PROG} [--model NAME_OR_FOLDER] [--device DEVICE] opens the window on a model.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {desktop_app.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        _command(name).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # offline by default: nothing here should ever reach a hub unless the user opts in
    if "HF_HUB_OFFLINE" not in os.environ:  # `models download` lifts this default, never the user's own setting
        os.environ["HF_HUB_OFFLINE"] = os.environ["DESKTOP_APP_DEFAULT_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        from desktop_app.cli.window import open_window

        return open_window(argv)
    args = build_parser().parse_args(argv)
    try:
        return _command(args.command).run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BadInput as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - the one place that turns every failure into an exit code
        return report_failure(exc)
