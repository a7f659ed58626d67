"""The compare grid (engine/compare_grid.py, issue 18 section 6): axes read as written (CSV quotes, aliases),
every cell's request built and checked before any image (errors name the axis and the value), and on the tiny
embedded model each cell is exactly the image ``Engine.run`` makes for that cell's request; a cell already made
is not made again."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from desktop_app.engine.compare_grid import MAX_CELLS, Axis, parse_axis, plan, run_grid
from desktop_app.engine.request import GenerationRequest, LoraChoice
from desktop_app.errors import RequestError


def base(**changes) -> GenerationRequest:
    values = {"prompt": "a red apple on a red plate", "negative_prompt": "a red blur", "seed": 4, "steps": 3,
              "width": 32, "height": 32, "guidance_scale": 5.0, "preview": False}
    return GenerationRequest(**(values | changes))


def test_an_axis_reads_as_written_and_writes_back():
    assert parse_axis("cfg=3, 7 ,12") == Axis("guidance", ("3", "7", "12"))
    assert parse_axis(" Steps =10,20", "y") == Axis("steps", ("10", "20"))
    sr = parse_axis('prompt=red,green,"blue, dark"')
    assert sr.values == ("red", "green", "blue, dark") and parse_axis(sr.text()) == sr
    quoted = Axis("negative", ('say "no"', " spaced", ""))
    assert parse_axis(quoted.text()) == quoted
    assert sr.label("green") == "green" and parse_axis("seed=1,2").label("2") == "seed 2"


@pytest.mark.parametrize("text, field, words", [
    ("guidance", "x", "NAME=V1,V2"), ("colour=1,2", "x", "unknown setting colour"),
    ("steps=", "y", "steps has no values"), ("seed=1,1", "x", "twice"),
    ("steps=" + ",".join(map(str, range(1, 15))), "x", "at most 12")])
def test_a_bad_axis_is_one_line_naming_its_field(text, field, words):
    with pytest.raises(RequestError) as caught:
        parse_axis(text, field)
    assert caught.value.field == field and words in str(caught.value) and "\n" not in str(caught.value)


def test_the_plan_sets_one_setting_per_axis_and_keeps_the_rest():
    rows = plan(base(), parse_axis("guidance=2,9"), parse_axis("prompt=red,green", "y"))
    assert [[(c.prompt, c.negative_prompt, c.guidance_scale) for c in row] for row in rows] == [
        [("a red apple on a red plate", "a red blur", 2.0), ("a red apple on a red plate", "a red blur", 9.0)],
        [("a green apple on a green plate", "a green blur", 2.0),
         ("a green apple on a green plate", "a green blur", 9.0)]]
    assert all(c.seed == 4 and c.steps == 3 and c.sampler == base().sampler for row in rows for c in row)
    loras = plan(base(loras=(LoraChoice("a", 1.0), LoraChoice("b", 0.5))), parse_axis("lora=0,0.7"))[0]
    assert [c.loras for c in loras] == [(LoraChoice("a", 0.0), LoraChoice("b", 0.5)),
                                        (LoraChoice("a", 0.7), LoraChoice("b", 0.5))]
    samplers = plan(base(), parse_axis("sampler=Euler,DDIM"), parse_axis("negative=,blur", "y"))
    assert [[(c.sampler, c.negative_prompt) for c in row] for row in samplers] == [
        [("Euler", ""), ("DDIM", "")], [("Euler", "blur"), ("DDIM", "blur")]]


@pytest.mark.parametrize("x, y, field, words", [
    ("steps=2,0", None, "x", "steps=0: must be a whole number from 1 to 150"),
    ("guidance=2,high", None, "x", "guidance=high: not a number"),
    ("sampler=Euler,Nope", None, "x", "sampler=Nope: unknown sampler"),
    ("lora=0.5", None, "x", "give a LoRA"), ("prompt=pear,fig", None, "x", "prompt=pear: not in the prompt"),
    ("steps=1,2", "steps=3", "y", "both axes are steps"),
    ("seed=" + ",".join(map(str, range(12))), "steps=" + ",".join(map(str, range(1, 7))), "x", "72 cells")])
def test_a_bad_cell_is_refused_before_any_image(x, y, field, words):
    with pytest.raises(RequestError) as caught:
        plan(base(), parse_axis(x), parse_axis(y, "y") if y else None)
    assert caught.value.field == field and words in str(caught.value), str(caught.value)
    assert MAX_CELLS == 64


class CountingEngine:
    def __init__(self, engine):
        self.engine, self.runs = engine, []

    def run(self, request, emit, cancel=None):
        self.runs.append(request)
        return self.engine.run(request, emit, cancel)


def test_each_cell_is_the_engines_image_for_its_request(engine, tiny_model_dir):
    request = base(model=str(tiny_model_dir))
    x, y = parse_axis("guidance=1,6"), parse_axis("seed=4,5", "y")
    counting = CountingEngine(engine)
    own = engine.run(request, lambda event: None).images[0]  # guidance 5 is not a cell: seed 4, guidance 6 is
    six = dataclasses.replace(request, guidance_scale=6.0)
    grid = run_grid(counting, request, x, y, done={six: own})
    assert len(counting.runs) == 3 and six not in counting.runs  # the cell made already is not made again
    assert grid["x"] == {"name": "guidance", "values": ["1", "6"]} and grid["seeds"] == [[4, 4], [5, 5]]
    assert grid["labels"] == {"x": ["guidance 1", "guidance 6"], "y": ["seed 4", "seed 5"]}
    assert grid["images"][0][1] is own
    alone = engine.run(dataclasses.replace(request, seed=5, guidance_scale=1.0), lambda event: None).images[0]
    assert np.array_equal(np.asarray(grid["images"][1][0]), np.asarray(alone))
    assert not np.array_equal(np.asarray(grid["images"][1][0]), np.asarray(grid["images"][0][0]))  # seeds differ
