"""The window and the command line resolve the same request to the same model, steps, guidance and sampler
(issue 15): both go through desktop_app.models.resolve, so what a model declares, a few-step family's
defaults (Turbo, LCM) and an LCM-LoRA's defaults cannot differ between them.

Each case is run both ways on a recording engine (the real contract, no torch): the window with the model
chosen in its form and the LoRA ticked in its picker, the command line with ``--model`` and ``--lora``."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from desktop_app.engine.events import Finished

from tests.fake_recipes import generation_recipe
from tests.gui.test_lora_picker import write_lora


class RecordingEngine:
    """Records the request Engine.run receives; returns one small image (the command line writes it)."""

    requests: list = []

    def __init__(self, device: str = "auto", **_options):
        self.device = device

    def run(self, request, emit, cancel: threading.Event | None = None):
        from PIL import Image

        RecordingEngine.requests.append(request)
        seeds = [request.seed or 0]
        recipe = generation_recipe(request, seeds, model_name="x")
        finished = Finished(images=[Image.new("RGB", (request.width, request.height))], seeds=seeds,
                            recipe=recipe, timings={"total": 0.0})
        emit(finished)
        return finished

    def describe_device(self) -> str:
        return "cpu (float32)"


def lcm_copy(source: Path, target: Path) -> Path:
    """A copy of a diffusers folder whose scheduler is the LCM one (an LCM-distilled model, as published)."""
    shutil.copytree(source, target)
    config = target / "scheduler" / "scheduler_config.json"
    data = json.loads(config.read_text()) if config.exists() else {}
    config.parent.mkdir(exist_ok=True)
    config.write_text(json.dumps(data | {"_class_name": "LCMScheduler"}))
    return target


def by_window(qtbot, open_window, model: str, lora: str | None):
    from PySide6.QtWidgets import QCheckBox

    RecordingEngine.requests = []
    window = open_window(engine_factory=lambda device: RecordingEngine(device))
    window.form.select_model(model)
    if lora:
        window.form.lora_picker.findChild(QCheckBox, f"lora_check_{lora}").setChecked(True)
    window.form.prompt_edit.setPlainText("a red fox")
    with qtbot.waitSignal(window.run_ended, timeout=20_000):
        window.generate()
    assert len(RecordingEngine.requests) == 1
    return RecordingEngine.requests[0]


def by_command_line(monkeypatch, tmp_path, model: str, lora: str | None):
    from desktop_app.cli import main
    from desktop_app.engine import generate

    RecordingEngine.requests = []
    monkeypatch.setattr(generate, "Engine", RecordingEngine)
    argv = ["generate", "a red fox", "--out", str(tmp_path / "out.png"), "--model", model]
    if lora:
        argv += ["--lora", lora]
    assert main(argv) == 0
    assert len(RecordingEngine.requests) == 1
    return RecordingEngine.requests[0]


def sampling(request) -> tuple:
    model = request.model if request.model == "default" else str(Path(request.model).resolve())
    return model, request.steps, request.guidance_scale, request.sampler


@pytest.mark.parametrize("case", ["embedded", "plain", "lcm-model", "plain+lcm-lora", "library-name"])
def test_the_window_and_the_command_line_resolve_the_same_request(case, qtbot, open_window, monkeypatch,
                                                                    tmp_path, tiny_sd_dir):
    from desktop_app import paths

    write_lora(paths.loras_dir() / "lcm-lora-sdv1-5.safetensors")
    lcm_model = lcm_copy(tiny_sd_dir, tmp_path / "tiny-lcm")
    model, lora = {
        "embedded": ("default", None),
        "plain": (str(tiny_sd_dir), None),
        "lcm-model": (str(lcm_model), None),
        "plain+lcm-lora": (str(tiny_sd_dir), "lcm-lora-sdv1-5"),
        "library-name": (str(lcm_model), None),
    }[case]
    cli_model = model
    if case == "library-name":  # the command line names it as the library lists it
        from desktop_app.models import model_library

        cli_model = model_library.add(lcm_model, name="fast-one").name
    window = by_window(qtbot, open_window, model, lora)
    command_line = by_command_line(monkeypatch, tmp_path, cli_model, lora)
    assert sampling(window) == sampling(command_line)
    # and the cases differ where they should: the few-step ones really are few-step
    few_step = case in ("lcm-model", "plain+lcm-lora", "library-name")
    assert (sampling(window)[1:] == (6, 1.0, "LCM")) == few_step


def test_ticking_an_lcm_lora_sets_few_step_settings_and_unticking_gives_the_models_back(qtbot, tiny_sd_dir):
    from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox

    from desktop_app import paths
    from desktop_app.gui.generation_form import GenerationForm

    write_lora(paths.loras_dir() / "lcm-lora-sdv1-5.safetensors")
    write_lora(paths.loras_dir() / "style.safetensors")
    form = GenerationForm()
    qtbot.addWidget(form)
    form.select_model(str(tiny_sd_dir))
    plain = sampling(form.build_request())[1:]
    assert plain != (6, 1.0, "LCM")
    form.lora_picker.findChild(QCheckBox, "lora_check_lcm-lora-sdv1-5").setChecked(True)
    assert sampling(form.build_request())[1:] == (6, 1.0, "LCM")
    form.steps_spin.setValue(5)  # the person's own choice: another LoRA's tick or weight leaves it alone
    form.lora_picker.findChild(QCheckBox, "lora_check_style").setChecked(True)
    form.lora_picker.findChild(QDoubleSpinBox, "lora_weight_style").setValue(0.5)
    assert form.build_request().steps == 5
    form.lora_picker.findChild(QCheckBox, "lora_check_lcm-lora-sdv1-5").setChecked(False)
    assert sampling(form.build_request())[1:] == plain


def test_a_recipe_with_an_lcm_lora_keeps_its_own_numbers(qtbot, tiny_sd_dir):
    from desktop_app import paths
    from desktop_app.gui.generation_form import GenerationForm

    write_lora(paths.loras_dir() / "lcm-lora-sdv1-5.safetensors")
    form = GenerationForm()
    qtbot.addWidget(form)
    form.apply_request({"model": str(tiny_sd_dir), "steps": 8, "guidance_scale": 1.5, "sampler": "Euler",
                        "loras": [{"name": "lcm-lora-sdv1-5", "weight": 1.0}]})
    assert sampling(form.build_request())[1:] == (8, 1.5, "Euler")
