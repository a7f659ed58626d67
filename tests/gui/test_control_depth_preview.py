"""The ControlNet row with the "depth" and "pose" preprocessors (issue 17): the row offers them, draws no
preview (a depth map or a pose needs a model, made in the engine when the run starts) but says so, loads no
model in the window, and the request carries preprocessor "depth"."""

from __future__ import annotations

import sys

from test_control_rows import add_row, fake_controlnet, generate, picture

from desktop_app.engine.request import ControlChoice


def test_a_depth_row_says_when_its_map_is_made_and_goes_with_generate(qtbot, open_fake_window, make_engine,
                                                                     tmp_path, monkeypatch):
    fake_controlnet("depth-net")
    image = picture(tmp_path / "scene.png")
    engine = make_engine()
    window = open_fake_window(engine)
    row = add_row(qtbot, window.form, monkeypatch, "depth-net", image, preprocessor="canny")
    assert not row.thumb.pixmap().isNull()  # the Canny preview first
    options = [row.preprocessor_combo.itemText(i) for i in range(row.preprocessor_combo.count())]
    assert "depth" in options
    loaded = "transformers.models.depth_anything" in sys.modules
    row.preprocessor_combo.setCurrentText("depth")
    assert row.thumb.pixmap().isNull() and row.thumb.text() == "depth: made when the run starts"
    assert ("transformers.models.depth_anything" in sys.modules) == loaded  # no model loaded for the preview
    assert generate(qtbot, window) == "finished"
    assert engine.requests[-1].controls == (ControlChoice("depth-net", str(image), 1.0, 0.0, 1.0, "depth"),)
    row.preprocessor_combo.setCurrentText("pose")
    assert row.thumb.pixmap().isNull() and row.thumb.text() == "pose: made when the run starts"
    assert "transformers.models.vitpose" not in sys.modules or loaded
    row.preprocessor_combo.setCurrentText("canny")
    assert not row.thumb.pixmap().isNull() and row.thumb.text() == ""
