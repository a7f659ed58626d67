"""``desktop-app generate --lora NAME[:WEIGHT]`` (repeatable): parsed and checked before torch loads."""

from __future__ import annotations

import argparse

MIN_WEIGHT, MAX_WEIGHT = -4.0, 4.0


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lora", action="append", default=[], metavar="NAME[:WEIGHT]",
                        help="apply a LoRA (a .safetensors file, a name in the LoRA folder or the model library) "
                             "with a weight (default 1); repeat for several")


def parse_lora(text: str):
    """``NAME[:WEIGHT]`` -> LoraChoice. The weight is what follows the last colon when it is a number (so
    Windows paths like C:\\loras\\x.safetensors keep their colon). RequestError for a bad weight."""
    from desktop_app.errors import RequestError
    from desktop_app.engine.request import LoraChoice

    name, weight = text.strip(), 1.0
    head, sep, tail = name.rpartition(":")
    if sep and not tail.startswith(("\\", "/")):
        try:
            weight = float(tail)
        except ValueError:
            raise RequestError("lora", f"{text!r}: the weight after ':' must be a number, got {tail!r}") from None
        name = head
    if not name:
        raise RequestError("lora", f"{text!r}: give a LoRA name or file")
    if not MIN_WEIGHT <= weight <= MAX_WEIGHT or weight != weight:
        raise RequestError("lora", f"{text!r}: the weight must be from {MIN_WEIGHT:g} to {MAX_WEIGHT:g}")
    return LoraChoice(name, weight)


def loras_from_args(args: argparse.Namespace) -> tuple:
    """The LoraChoices of ``--lora``, each found and checked (safe safetensors LoRA) now: an unknown or bad
    file exits 2 before the model loads."""
    from desktop_app.engine.lora import check_file, resolve_lora

    choices = tuple(parse_lora(text) for text in getattr(args, "lora", None) or ())
    for choice in choices:
        check_file(resolve_lora(choice.name), "lora", f"LoRA {choice.name}")
    return choices
