"""The command line, run as people run it: ``python -m desktop_app ...`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from desktop_app import cli
from desktop_app.cli import generate as cli_generate
from desktop_app.cli import progress as cli_progress
from desktop_app.engine.request import GenerationRequest

from tests.fake_recipes import generation_recipe

REPO = Path(__file__).resolve().parents[2]
GUI_APP = REPO / "desktop_app" / "gui" / "app.py"
HAS_WINDOW_SELFTEST = GUI_APP.exists() and "def selftest_window" in GUI_APP.read_text(encoding="utf-8")


def run_cli(*args, env_changes=None, timeout=180):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.update(env_changes or {})
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "desktop_app", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_error(proc):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_help_answers_without_loading_torch():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "generate" in proc.stdout and "selftest" in proc.stdout
    code = ("import sys; from desktop_app import cli; cli.build_parser(); "
            "print(sorted({'torch', 'PySide6'} & set(sys.modules)))")
    probe = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(REPO)), check=False)
    assert probe.stdout.strip() == "[]", probe.stderr


def test_generate_writes_an_upscaled_png_with_its_recipe(tiny_model_dir, tmp_path):
    out = tmp_path / "cat.png"
    proc = run_cli("generate", "a red cat", "--out", out, "--model", tiny_model_dir, "--seed", 5,
                   "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for stage in ("load", "text", "noise", "denoise", "decode", "upscale"):
        assert f"{stage}:" in proc.stderr  # plain stage lines: stderr is not a terminal here
    with Image.open(out) as image:
        assert image.size == (128, 128)  # the model's defaults: 32x32, upscaled 4x by its own upscaler
        assert "a red cat" in image.text["parameters"] and "Seed: 5" in image.text["parameters"]
        recipe = json.loads(image.text["recipe"])
    assert recipe["seed"] == 5 and recipe["steps"] == 3 and recipe["upscale"] == "default"


def test_batch_json_and_no_upscale(tiny_model_dir, tmp_path):
    out = tmp_path / "sub" / "pair.png"
    proc = run_cli("generate", "a cat", "--out", out, "--model", tiny_model_dir, "--batch", 2, "--seed", 9,
                   "--no-upscale", "--width", 48, "--sampler", "Euler a", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["files"] == [str(tmp_path / "sub" / "pair-1.png"), str(tmp_path / "sub" / "pair-2.png")]
    assert report["seeds"] == [9, 10]
    assert report["device"] == "cpu" and report["dtype"] == "float32" and report["model"] == "tiny-embedded"
    assert {"load", "denoise", "total"} <= set(report["timings"])
    for path in report["files"]:
        with Image.open(path) as image:
            assert image.size == (48, 32)


@pytest.mark.parametrize("args,needle", [
    (["--steps", "0"], "steps"),
    (["--width", "30"], "width"),
    (["--height", "256"], "height"),  # the tiny model's limit is 128
    (["--sampler", "Heun++"], "sampler"),
    (["--out", "picture.jpg"], "PNG"),
    (["--model", "/no/such/model"], "/no/such/model"),
])
def test_bad_input_exits_2_with_one_line(tiny_model_dir, tmp_path, args, needle):
    base = ["generate", "a cat", "--model", tiny_model_dir, "--out", tmp_path / "x.png"]
    proc = run_cli(*base, *args)
    assert needle in assert_one_line_error(proc)
    assert not (tmp_path / "x.png").exists()


def test_the_missing_embedded_model_is_explained(tmp_path):
    proc = run_cli("generate", "a cat", "--out", tmp_path / "x.png",
                   env_changes={"DESKTOP_APP_RESOURCES": str(tmp_path)})
    assert "embedded default model is missing" in assert_one_line_error(proc)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is for Linux")
def test_no_display_points_to_the_command_line():
    proc = run_cli(env_changes={"DISPLAY": None, "WAYLAND_DISPLAY": None, "QT_QPA_PLATFORM": None})
    assert proc.returncode == 2
    assert 'generate "a prompt" --out image.png' in proc.stderr and "QT_QPA_PLATFORM=offscreen" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_selftest_on_the_tiny_model(tiny_model_dir):
    proc = run_cli("selftest", "--model", tiny_model_dir, "--device", "cpu", timeout=300,
                   env_changes={"QT_QPA_PLATFORM": None})
    lines = proc.stdout.splitlines()
    for name in ("load", "generate", "not blank", "previews", "upscale"):
        assert any(line.startswith(f"PASS  {name}:") for line in lines), proc.stdout + proc.stderr
    if HAS_WINDOW_SELFTEST:
        assert any(line.startswith("PASS  window:") for line in lines), proc.stdout + proc.stderr
        assert proc.returncode == 0
    assert "Traceback" not in proc.stderr


def test_an_internal_failure_exits_1_and_logs_the_traceback(tiny_model_dir, tmp_path, monkeypatch, capsys,
                                                           user_home):
    from desktop_app.engine.generate import Engine

    def broken(self, request, emit, cancel=None):
        raise KeyError("unet")

    monkeypatch.setattr(Engine, "run", broken)
    code = cli.main(["generate", "a cat", "--out", str(tmp_path / "x.png"), "--model", str(tiny_model_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "KeyError" in err[0] and "errors.log" in err[0]
    log = (user_home / "logs" / "errors.log").read_text()
    assert "Traceback" in log and "KeyError" in log


def test_output_paths(tmp_path):
    assert cli_generate.output_paths(tmp_path / "a.png", [1], "x") == [tmp_path / "a.png"]
    assert cli_generate.output_paths(tmp_path / "a", [1, 2], "x") == [tmp_path / "a-1.png", tmp_path / "a-2.png"]
    assert cli_generate.output_paths(tmp_path, [7, 8], "A red, cat!") == [tmp_path / "a-red-cat-7.png",
                                                                  tmp_path / "a-red-cat-8.png"]
    assert cli_generate.output_paths(str(tmp_path / "new") + "/", [3], "") == [tmp_path / "new" / "image-3.png"]
    with pytest.raises(cli.BadInput):
        cli_generate.output_paths(tmp_path / "a.jpg", [1], "x")


def test_without_a_command_the_window_opens_with_the_options(monkeypatch):
    from desktop_app.gui import app

    seen = []
    monkeypatch.setattr(app, "main", lambda argv: seen.append(argv) or 0)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert cli.main([]) == 0 and cli.main(["--model", "somewhere"]) == 0
    assert seen == [[], ["--model", "somewhere"]]


def test_a_terminal_gets_a_progress_bar():
    import io

    from desktop_app.engine.events import Progress, StageStarted

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    reporter = cli_progress.Reporter(stream)
    reporter(StageStarted("denoise", "3 steps"))
    for step in (1, 2, 3):
        reporter(Progress(step, 3, None, 0.1 * step))
    reporter(StageStarted("decode"))
    reporter.close()
    text = stream.getvalue()
    assert "denoise: 3 steps\n" in text and "\r  [" in text and "3/3" in text and "\ndecode\n" in text


def test_the_bar_names_what_it_counts_by_the_progress_stage_and_skips_terminal_events():
    import io

    from desktop_app.engine.events import Cancelled, Failed, Finished, Progress, StageStarted
    from desktop_app.errors import FailureKind

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    reporter = cli_progress.Reporter(stream)
    reporter(Progress(1, 2, None, 0.1))  # no StageStarted first: the stage travels with the progress
    reporter(Progress(2, 4, None, 0.2, stage="hires"))
    reporter(Progress(3, 8, None, 0.3, stage="upscale"))
    finished = Finished([], [1], generation_recipe(GenerationRequest("a cat"), [1]))
    for event in (finished, Cancelled(), Failed(FailureKind.INTERNAL.value, "boom")):
        reporter(event)
    reporter(StageStarted("save"))
    reporter.close()
    text = stream.getvalue()
    assert "1/2 0.1s" in text and "2/4 hires steps" in text and "3/8 tiles" in text
    assert "boom" not in text and text.endswith("\nsave\n")

    plain = io.StringIO()  # a log or a pipe: stage lines only
    logged = cli_progress.Reporter(plain)
    logged(StageStarted("upscale", "2x"))
    logged(Progress(1, 2, None, 0.1, stage="upscale"))
    logged(Failed("internal", "boom"))
    logged.close()
    assert plain.getvalue() == "upscale: 2x\n"


def test_the_timeline_recorder_keeps_denoising_previews_only_and_passes_everything_on():
    from PIL import Image

    from desktop_app.cli.studio import TimelineRecorder
    from desktop_app.engine.events import Finished, Progress, StageStarted

    seen = []
    recorder = TimelineRecorder(seen.append)
    preview = Image.new("RGB", (8, 8))
    events = [StageStarted("denoise"), Progress(1, 2, preview, 0.1), Progress(2, 2, preview, 0.2),
              Progress(1, 1, preview, 0.3, stage="hires"), Progress(1, 1, preview, 0.4, stage="upscale"),
              Finished([preview], [1], generation_recipe(GenerationRequest("a cat"), [1]))]
    for event in events:
        recorder(event)
    assert seen == events and [frame.step for frame in recorder.timeline.frames] == [1, 2]
