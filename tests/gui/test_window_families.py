"""The window on a transformer family (issue 16): the real engine generates with a tiny Flux model chosen in the
form, which offers the family's sampler and defaults and no negative prompt box."""

from __future__ import annotations

import pytest
from tiny_families import build_family


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory):
    return build_family("flux", tmp_path_factory.mktemp("families") / "tiny-flux")


def test_the_window_generates_with_a_flux_model(qtbot, open_window, tiny_flux):
    from desktop_app.engine.generate import Engine

    window = open_window(engine_factory=lambda device: Engine(device="cpu"))
    form = window.form
    form.negative_edit.setPlainText("blurry")
    form.select_model(str(tiny_flux))
    assert form.sampler_combo.currentText() == "Euler" and form.steps_spin.value() == 28  # Flux.1 dev's own
    assert form.sampler_combo.count() == 1  # flow matching: the model's own Euler, nothing else offered
    assert not form.hires_spin.isEnabled()  # the hires fix is for the SD UNets
    assert not form.negative_edit.isEnabled() and form.build_request().negative_prompt == ""
    assert form.negative_edit.toPlainText() == "blurry"  # kept for a model that takes one
    form.width_spin.setValue(32)
    form.height_spin.setValue(32)
    form.steps_spin.setValue(2)
    form.prompt_edit.setPlainText("a red fox")
    with qtbot.waitSignal(window.run_ended, timeout=60_000) as ended:
        window.generate()
    assert ended.args == ["finished"]
    assert window._result.recipe.family == "flux" and window._result.images[0].size == (32, 32)
    form.select_model("default")
    assert form.negative_edit.isEnabled() and form.build_request().negative_prompt == "blurry"
    from desktop_app.engine.request import SAMPLERS

    assert form.sampler_combo.count() == len(SAMPLERS)
