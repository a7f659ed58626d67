"""The compare grid (issue 18, section 6; the X/Y plot of AUTOMATIC1111 and Forge): one request made over every
pair of values of two settings, the rest kept as they are, so that what one setting does is seen beside another.

An axis is written ``NAME=V1,V2,...`` (values split as CSV: quote one that holds a comma). The names:
``guidance`` (alias ``cfg``), ``steps``, ``sampler``, ``seed``, ``lora`` (the weight of the request's first
LoRA), ``negative`` (the negative prompt) and ``prompt`` (search and replace, as A1111's "Prompt S/R": the first
value is a piece of the prompt, and each value takes its place in the prompt and the negative prompt, the first
column being the prompt as written). Every cell's request is built, and so checked, before the first image is
made: a bad value is one line naming the axis and the value. The images come from ``Engine.run``, the same as
``generate`` makes for the cell's request; a cell equal to a request already run is not run again.
"""

from __future__ import annotations

import csv
import dataclasses
import threading
from dataclasses import dataclass

from desktop_app.engine.events import Emit, StageStarted
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import CancelledError, RequestError, printable

AXES = ("guidance", "steps", "sampler", "seed", "lora", "negative", "prompt")
ALIASES = {"cfg": "guidance", "cfg_scale": "guidance", "guidance_scale": "guidance", "prompt_sr": "prompt",
           "s/r": "prompt", "negative_prompt": "negative"}
MAX_VALUES = 12  # on one axis
MAX_CELLS = 64  # in one grid


@dataclass(frozen=True)
class Axis:
    name: str  # one of AXES
    values: tuple[str, ...]  # as written

    def label(self, value: str) -> str:
        """The value as the grid's column or row heading."""
        if self.name in ("prompt", "negative"):
            return value if value else "(empty)"
        return f"{self.name} {value}"

    def text(self) -> str:
        """The axis as it is written (``parse_axis`` reads it back)."""
        return f"{self.name}=" + ",".join(_quoted(value) for value in self.values)


def parse_axis(text: str, field: str = "x") -> Axis:
    """``NAME=V1,V2,...`` as an Axis; RequestError naming ``field`` when it cannot be one."""
    if not isinstance(text, str) or "=" not in text:
        raise RequestError(field, f"write an axis as NAME=V1,V2,... with NAME one of {', '.join(AXES)}, got "
                                  f"{printable(str(text), 80)}")
    name, _, rest = text.partition("=")
    name = name.strip().lower()
    name = ALIASES.get(name, name)
    if name not in AXES:
        raise RequestError(field, f"unknown setting {printable(name, 40)!s}; choose one of {', '.join(AXES)}")
    try:
        values = next(csv.reader([rest], skipinitialspace=True), [])
    except csv.Error as exc:
        raise RequestError(field, f"its values cannot be read ({exc}); separate them with commas") from None
    values = [value.strip() if name not in ("prompt", "negative") else value for value in values]
    if name not in ("prompt", "negative"):
        values = [value for value in values if value]
    if not values:
        raise RequestError(field, f"{name} has no values: write {name}=V1,V2,...")
    if len(values) > MAX_VALUES:
        raise RequestError(field, f"{name} has {len(values)} values; at most {MAX_VALUES} on one axis")
    if len(set(values)) != len(values):
        raise RequestError(field, f"{name} names a value twice")
    return Axis(name, tuple(values))


def plan(request: GenerationRequest, x: Axis, y: Axis | None = None,
         fields: tuple[str, str] = ("x", "y")) -> list[list[GenerationRequest]]:
    """The cells' requests, a row for each value of ``y`` (one row without it), a column for each of ``x``; each
    built and checked now (RequestError naming the axis, as ``fields`` call them, and the value)."""
    if y is not None and y.name == x.name:
        raise RequestError(fields[1], f"both axes are {x.name}: choose two different settings")
    cells = len(x.values) * (len(y.values) if y else 1)
    if cells > MAX_CELLS:
        raise RequestError(fields[0], f"{cells} cells; a grid holds at most {MAX_CELLS}")
    request = dataclasses.replace(request, batch_size=1)
    rows = []
    for y_value in (y.values if y else (None,)):
        row_request = request if y is None else _with(request, y, y_value, fields[1])
        rows.append([_with(row_request, x, x_value, fields[0]) for x_value in x.values])
    return rows


def run_grid(engine, request: GenerationRequest, x: Axis, y: Axis | None = None, emit: Emit | None = None,
             cancel: threading.Event | None = None, done: dict | None = None) -> dict:
    """Make every cell's image with ``engine`` (an Engine). ``done``: {request: image} already made (the explain
    run's own), not made again. Returns {"x", "y": the axes (y None), "labels": {"x", "y"}, "images": rows of
    PIL images, "seeds": rows of seeds}, plain data (axes as {"name", "values"}). CancelledError when ``cancel``
    is set."""
    emit = emit or (lambda event: None)
    rows = plan(request, x, y)
    made = dict(done or {})  # request -> image
    images, seeds = [], []
    total, count = sum(len(row) for row in rows), 0
    for row in rows:
        images.append([])
        seeds.append([])
        for cell in row:
            count += 1
            if cell not in made:
                emit(StageStarted("compare", f"compare grid: image {count} of {total}"))
                finished = engine.run(cell, lambda event: None, cancel)
                if finished is None:
                    raise CancelledError("cancelled")
                made[cell] = finished.images[0]
            images[-1].append(made[cell])
            seeds[-1].append(cell.seed)
    return {"x": {"name": x.name, "values": list(x.values)},
            "y": {"name": y.name, "values": list(y.values)} if y else None,
            "labels": {"x": [x.label(v) for v in x.values],
                                       "y": [y.label(v) for v in y.values] if y else [""]},
            "images": images, "seeds": seeds}


def _with(request: GenerationRequest, axis: Axis, value: str, field: str) -> GenerationRequest:
    """``request`` with ``axis`` set to ``value`` (checked by the request itself)."""
    try:
        return dataclasses.replace(request, **_changes(request, axis, value))
    except RequestError as exc:
        message = str(exc).removeprefix(f"{exc.field}: ")
        raise RequestError(field, f"{axis.name}={printable(value, 60)}: {message}") from None


def _changes(request: GenerationRequest, axis: Axis, value: str) -> dict:
    name = axis.name
    if name == "guidance":
        return {"guidance_scale": _number(value, float, name)}
    if name in ("steps", "seed"):
        return {name: _number(value, int, name)}
    if name == "sampler":
        return {"sampler": value}
    if name == "negative":
        return {"negative_prompt": value}
    if name == "lora":
        if not request.loras:
            raise RequestError("loras", "the lora axis sets the first LoRA's weight; give a LoRA (--lora NAME)")
        first = dataclasses.replace(request.loras[0], weight=_number(value, float, name))
        return {"loras": (first, *request.loras[1:])}
    found = axis.values[0]  # prompt: search and replace
    if not found or found not in request.prompt:
        raise RequestError("prompt", "not in the prompt: the first value of prompt= is the piece of the prompt "
                                     "each value replaces")
    return {"prompt": request.prompt.replace(found, value),
            "negative_prompt": request.negative_prompt.replace(found, value)}


def _number(value: str, kind, name: str):
    try:
        number = kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise RequestError(name, f"not {what}") from None
    return number


def _quoted(value: str) -> str:
    if any(c in value for c in ',"') or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value
