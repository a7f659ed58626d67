"""The generation form's SDXL refiner row, driven with pytest-qt on crafted files (headers only, no torch):
offered for SDXL base models only, filled from the library, carried into the request and back from a recipe."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from crafted_files import FAMILY_SHAPES, write_safetensors

from desktop_app.models import model_library
from desktop_app.gui.generation_form import GenerationForm
from desktop_app.gui.refiner_choice import RefinerChoice


@pytest.fixture
def files(tmp_path):
    return {family: write_safetensors(tmp_path / f"{family}.safetensors", FAMILY_SHAPES[family])
            for family in ("sdxl", "sdxl-refiner", "sd1")}


@pytest.fixture
def form(qtbot, monkeypatch):
    chosen = {"file": ""}
    monkeypatch.setattr(RefinerChoice, "file_dialog", staticmethod(lambda parent: chosen["file"]))
    widget = GenerationForm()
    widget.chosen = chosen
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_the_refiner_is_offered_for_sdxl_base_models_only(form, files):
    refiner = form.refiner_choice
    assert not refiner.combo.isEnabled()  # the embedded model: no refiner
    assert form.build_request().refiner is None

    form.select_model(str(files["sd1"]))
    assert not refiner.combo.isEnabled()
    form.select_model(str(files["sdxl"]))
    assert refiner.combo.isEnabled() and refiner.combo.currentText() == "None"
    assert not refiner.switch_spin.isEnabled()  # nothing to switch to yet
    assert form.build_request().refiner is None


def test_a_library_refiner_goes_into_the_request(qtbot, form, files):
    model_library.add(files["sdxl-refiner"], name="XL refiner")
    form.refiner_choice.refresh()  # what the Models panel's "changed" signal does
    form.select_model(str(files["sdxl"]))
    combo = form.refiner_choice.combo
    index = combo.findText("XL refiner")
    assert index > 0
    combo.setCurrentIndex(index)
    combo.activated.emit(index)
    form.refiner_choice.switch_spin.setValue(0.7)
    request = form.build_request()
    assert request.refiner == str(files["sdxl-refiner"].resolve()) and request.refiner_switch == 0.7

    # another model family greys the row out and the request goes without a refiner
    form.select_model(str(files["sd1"]))
    assert form.build_request().refiner is None


def test_browse_takes_a_refiner_file_and_refuses_anything_else(form, files):
    form.select_model(str(files["sdxl"]))
    combo = form.refiner_choice.combo
    browse = combo.count() - 1
    form.chosen["file"] = str(files["sd1"])
    combo.setCurrentIndex(browse)
    combo.activated.emit(browse)
    assert form.refiner_choice.refiner() is None
    assert "sd1.safetensors is not an SDXL refiner (Stable Diffusion 1.x)" in form.refiner_choice.problem

    form.chosen["file"] = str(files["sdxl-refiner"])
    combo.setCurrentIndex(browse)
    combo.activated.emit(browse)
    assert form.refiner_choice.refiner() == str(files["sdxl-refiner"])
    assert form.build_request().refiner == str(files["sdxl-refiner"])


def test_a_recipe_with_a_refiner_fills_the_row_or_says_it_was_skipped(form, files, tmp_path):
    recipe = {"prompt": "a lighthouse", "model": str(files["sdxl"]), "refiner": str(files["sdxl-refiner"]),
              "refiner_switch": 0.75}
    assert form.apply_request(recipe) == []
    request = form.build_request()
    assert request.model == str(files["sdxl"])  # a single-file model from a recipe is selected too
    assert (request.refiner, request.refiner_switch) == (str(files["sdxl-refiner"]), 0.75)

    missing = dict(recipe, refiner=str(tmp_path / "gone.safetensors"))
    assert form.apply_request(missing) == ["refiner"]
    assert form.apply_request(dict(recipe, refiner=None)) == []
    assert form.build_request().refiner is None


def test_the_refiner_row_is_marked_for_a_refiner_error(form, files):
    form.select_model(str(files["sdxl"]))
    widget = form.mark_field("refiner")
    assert widget is form.refiner_choice
    assert form.field_label("refiner_switch") == "Refiner switch"
    assert widget.property("invalid") is True
    form.clear_marks()
    assert not form.refiner_choice.property("invalid")


def test_a_long_refiner_name_does_not_widen_the_form(qtbot, files, tmp_path):
    """The form sits in a narrow dock: a refiner file with a long name must not push it wider."""
    before = GenerationForm()
    qtbot.addWidget(before)
    width = before.minimumSizeHint().width()
    long_name = "juggernaut-xl-refiner-v9-rundiffusion-photo-realistic-2024-final-fp16-pruned"
    refiner = write_safetensors(tmp_path / f"{long_name}.safetensors", FAMILY_SHAPES["sdxl-refiner"])
    model_library.add(refiner)
    after = GenerationForm()
    qtbot.addWidget(after)
    after.select_model(str(files["sdxl"]))
    assert after.refiner_choice.set_refiner(str(refiner))
    assert after.minimumSizeHint().width() <= width
