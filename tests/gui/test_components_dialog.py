"""Models > Components…: naming, per family, the diffusers folder whose text encoders, tokenizers and VAE its
single transformer files run with (the window's `desktop-app models components FAMILY FOLDER`); what will not do
is refused in one line in the dialog; the form says in one line what a transformer file lacks, until it has it.

The folders here are laid out as diffusers writes them (model_index.json, a subfolder per part, .safetensors
weights), with tiny zero weights: the components check reads names and files, never weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from desktop_app.cli import main
from desktop_app.models import components, families

PARTS = {  # model_index.json of each family's pipeline, as save_pretrained writes it
    "flux": {"_class_name": "FluxPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "T5EncoderModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
             "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]},
    "sd3": {"_class_name": "StableDiffusion3Pipeline",
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "text_encoder_3": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"], "tokenizer_3": ["transformers", "T5TokenizerFast"],
            "transformer": ["diffusers", "SD3Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]},
}
# a Flux.1 transformer file in BFL's layout (the tensor names models/families.py recognises it by)
FLUX_FILE = {"double_blocks.0.img_attn.norm.key_norm.scale": (8,), "single_blocks.0.linear1.weight": (8, 8)}


def components_folder(folder, family: str = "flux", without=()):
    """A diffusers folder of ``family`` without its transformer weights (what `models components` takes)."""
    index = PARTS[family]
    for part in index:
        if part.startswith("_") or part in without:
            continue
        (folder / part).mkdir(parents=True)
        (folder / part / "config.json").write_text("{}")
        if part.startswith("text_encoder") or part == "vae":
            save_file({"weight": np.zeros((2, 2), np.float16)}, str(folder / part / "model.safetensors"))
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def transformer_file(path):
    save_file({name: np.zeros(shape, np.float16) for name, shape in FLUX_FILE.items()}, str(path))
    return path


@pytest.fixture
def dialog(qtbot):
    from desktop_app.gui.components_dialog import ComponentsDialog

    widget = ComponentsDialog()
    qtbot.addWidget(widget)
    return widget


def choosing(dialog, monkeypatch, folder):
    """The folder the next Choose… picks (no native dialog in tests)."""
    monkeypatch.setattr(dialog, "folder_dialog", lambda parent, name: str(folder))


def test_the_families_are_those_whose_files_run_with_components(dialog):
    offered = {dialog.family_combo.itemData(i): dialog.family_combo.itemText(i)
               for i in range(dialog.family_combo.count())}
    assert set(offered) == families.SINGLE_FILES
    assert offered["flux"] == "Flux.1" and offered["sd3"] == "Stable Diffusion 3.x"
    assert "pixart-sigma" not in offered and "sd1" not in offered  # folders only; no transformer file at all


def test_choose_names_the_folder_for_the_family_as_the_command_line_does(dialog, qtbot, monkeypatch, tmp_path,
                                                                         capsys):
    parts = components_folder(tmp_path / "FLUX.1-dev")
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("flux"))
    assert dialog.folder_label.text().startswith("None named") and not dialog.clear_button.isEnabled()
    choosing(dialog, monkeypatch, parts)
    with qtbot.waitSignal(dialog.changed) as changed:
        dialog.choose_button.click()
    assert changed.args == ["flux"]
    assert dialog.folder_label.text() == str(parts.resolve()) and dialog.clear_button.isEnabled()
    assert "from the next run" in dialog.message.text() and not dialog.message.property("error")
    assert main(["models", "components", "flux"]) == 0  # the command line reads the same library
    assert capsys.readouterr().out.strip() == str(parts.resolve())
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("sd3"))  # one folder per family
    assert dialog.folder_label.text().startswith("None named")


@pytest.mark.parametrize("make, says", [
    (lambda root: root / "nothing-here", "is not a diffusers model folder (no model_index.json)"),
    (lambda root: components_folder(root / "sd3.5", "sd3"), "is Stable Diffusion 3.x, not Flux.1"),
    (lambda root: components_folder(root / "partial", without=("vae", "tokenizer_2")), "lacks tokenizer_2, vae"),
])
def test_a_folder_that_will_not_do_is_refused_in_one_line(dialog, monkeypatch, tmp_path, make, says):
    folder = make(tmp_path)
    folder.mkdir(exist_ok=True)
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("flux"))
    choosing(dialog, monkeypatch, folder)
    dialog.choose_button.click()
    text = dialog.message.text()
    assert says in text and "\n" not in text and "Traceback" not in text
    assert dialog.message.property("error") is True
    assert components.stored() == {} and dialog.folder_label.text().startswith("None named")


def test_cancelling_the_folder_dialog_changes_nothing(dialog, monkeypatch, qtbot):
    choosing(dialog, monkeypatch, "")
    with qtbot.assertNotEmitted(dialog.changed):
        dialog.choose_button.click()
    assert components.stored() == {} and dialog.message.text() == ""


def test_clear_forgets_the_folder(qtbot, tmp_path):
    from desktop_app.gui.components_dialog import ComponentsDialog

    parts = components.set_for_family("sd3", components_folder(tmp_path / "sd3.5", "sd3"))
    dialog = ComponentsDialog(family="sd3")  # opened on a family: shows what is named for it
    qtbot.addWidget(dialog)
    assert dialog.family() == "sd3" and dialog.folder_label.text() == str(parts)
    with qtbot.waitSignal(dialog.changed) as changed:
        dialog.clear_button.click()
    assert changed.args == ["sd3"] and components.stored() == {}
    assert dialog.folder_label.text().startswith("None named") and not dialog.clear_button.isEnabled()
    assert "Forgot" in dialog.message.text() and (parts / "model_index.json").is_file()  # the folder stays


def test_a_named_folder_that_has_gone_is_told(dialog, tmp_path):
    import shutil

    parts = components.set_for_family("flux", components_folder(tmp_path / "gone"))
    shutil.rmtree(parts / "vae")
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("sd3"))
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("flux"))
    assert "will not do now" in dialog.message.text() and "lacks vae" in dialog.message.text()


def test_a_damaged_library_is_one_line_in_the_dialog(dialog, monkeypatch, tmp_path):
    from desktop_app.models import model_library

    parts = components_folder(tmp_path / "FLUX.1-dev")
    model_library.library_path().parent.mkdir(parents=True, exist_ok=True)
    model_library.library_path().write_text("{not json")
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("flux"))
    choosing(dialog, monkeypatch, parts)
    dialog.choose_button.click()
    text = dialog.message.text()
    assert "model library cannot be read" in text and "\n" not in text


def test_the_window_names_components_from_its_menu_and_the_form_follows(open_fake_window, monkeypatch, tmp_path):
    """A Flux transformer file in the form: one line under the model says what is missing (and where to name
    it); naming the folder in Models > Components… clears it, forgetting it brings it back."""
    from desktop_app.gui.components_dialog import ComponentsDialog

    window = open_fake_window()
    menus = window.menus
    assert [a.text() for a in menus.models_menu.actions()] == ["&Components…"]
    assert menus.models_menu.menuAction() in window.menuBar().actions()
    file = transformer_file(tmp_path / "flux1-dev.safetensors")
    form = window.form
    form.select_model(str(file))
    note = form.model_note
    assert not note.isHidden()
    assert note.text() == families.components_message("flux", file.name)
    assert "Models > Components…" in note.text() and "\n" not in note.text()
    assert not form.lora_picker.isHidden() and form.lora_picker.taken  # Flux.1 takes LoRAs
    monkeypatch.setattr(ComponentsDialog, "folder_dialog",
                        staticmethod(lambda parent, name: str(components_folder(tmp_path / "parts"))))
    menus.components_action.trigger()
    dialog = menus.components_dialog
    assert dialog.isVisible()
    dialog.family_combo.setCurrentIndex(dialog.family_combo.findData("flux"))
    dialog.choose_button.click()
    assert note.isHidden() and note.text() == ""
    dialog.clear_button.click()
    assert not note.isHidden() and "needs its text encoders, tokenizers and VAE" in note.text()
    dialog.close()
    components.set_for_family("flux", tmp_path / "parts")  # named on the command line meanwhile
    menus.components_action.trigger()
    assert menus.components_dialog is dialog and dialog.folder_label.text() == str((tmp_path / "parts").resolve())
    form.select_model("default")
    assert note.isHidden()  # a folder model has its own parts


def test_a_file_whose_named_components_lack_a_part_says_which(open_fake_window, tmp_path):
    import shutil

    parts = components.set_for_family("flux", components_folder(tmp_path / "parts"))
    shutil.rmtree(parts / "text_encoder_2")
    window = open_fake_window()
    window.form.select_model(str(transformer_file(tmp_path / "flux1-dev.safetensors")))
    text = window.form.model_note.text()
    assert "cannot use its components" in text and "lacks text_encoder_2" in text and "\n" not in text
