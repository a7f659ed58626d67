"""The models panel, driven with pytest-qt: add a file, see its row, use it, remove it; bad files show their
message in the panel and change nothing."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from crafted_files import FAMILY_SHAPES, KOHYA_LORA, make_hostile, write_safetensors
from PySide6.QtCore import Qt

from desktop_app.models import model_library
from desktop_app.gui.models_panel import ModelsPanel


@pytest.fixture
def panel(qtbot, monkeypatch):
    chosen = {"file": "", "folder": "", "prediction": "v", "asked": []}

    def answer(parent, file_name):
        chosen["asked"].append(file_name)
        return chosen["prediction"]

    monkeypatch.setattr(ModelsPanel, "file_dialog", staticmethod(lambda parent: chosen["file"]))
    monkeypatch.setattr(ModelsPanel, "folder_dialog", staticmethod(lambda parent: chosen["folder"]))
    monkeypatch.setattr(ModelsPanel, "prediction_dialog", staticmethod(answer))
    widget = ModelsPanel()
    widget.chosen = chosen
    qtbot.addWidget(widget)
    widget.show()
    return widget


def row_of(panel, name) -> list[str]:
    row = panel.names().index(name)
    return [panel.table.item(row, column).text() for column in range(panel.table.columnCount())]


def test_add_a_file_see_the_row_remove_it(qtbot, panel, tmp_path):
    assert panel.names() == ["default"]
    model = write_safetensors(tmp_path / "photon.safetensors", FAMILY_SHAPES["sd2"])
    panel.chosen["file"] = str(model)
    qtbot.mouseClick(panel.add_file_button, Qt.MouseButton.LeftButton)
    assert panel.chosen["asked"] == ["photon.safetensors"]  # SD 2.x: which flavour is it?
    assert row_of(panel, "photon")[:3] == ["photon", "checkpoint", "sd2 (v)"]
    assert row_of(panel, "photon")[4] == "added"
    assert "Stable Diffusion 2.x" in panel.message.text()

    panel.select("photon")
    assert panel.remove_button.isEnabled() and panel.use_button.isEnabled()
    qtbot.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
    assert panel.names() == ["default"]
    assert model.is_file()
    panel.select("default")
    assert not panel.remove_button.isEnabled()  # the embedded model stays


def test_an_sd2_file_asks_its_prediction_type_unless_it_says(qtbot, panel, tmp_path):
    base = write_safetensors(tmp_path / "sd2-base.safetensors", FAMILY_SHAPES["sd2"])
    panel.chosen.update(file=str(base), prediction=None)  # Cancel: nothing is added
    qtbot.mouseClick(panel.add_file_button, Qt.MouseButton.LeftButton)
    assert panel.names() == ["default"] and not model_library.library_path().exists()

    panel.chosen["prediction"] = "epsilon"
    qtbot.mouseClick(panel.add_file_button, Qt.MouseButton.LeftButton)
    assert row_of(panel, "sd2-base")[2] == "sd2 (epsilon)"
    assert model_library.stored_prediction_type(base) == "epsilon"

    # a file with the v_pred marker, or an A1111 .yaml beside it, says it itself: no question
    marked = write_safetensors(tmp_path / "sd21-v.safetensors", FAMILY_SHAPES["sd2-v"])
    beside = write_safetensors(tmp_path / "sd21.safetensors", FAMILY_SHAPES["sd2"])
    (tmp_path / "sd21.yaml").write_text("model:\n  params:\n    parameterization: v\n")
    sd1 = write_safetensors(tmp_path / "sd15.safetensors", FAMILY_SHAPES["sd1"])
    for path in (marked, beside, sd1):
        panel.chosen["file"] = str(path)
        qtbot.mouseClick(panel.add_file_button, Qt.MouseButton.LeftButton)
    assert panel.chosen["asked"] == ["sd2-base.safetensors", "sd2-base.safetensors"]
    assert row_of(panel, "sd21-v")[2] == "sd2-v" and row_of(panel, "sd21")[2] == "sd2"


@pytest.mark.parametrize("kind", ["pickle-renamed", "claims-more", "lfs-pointer", "empty"])
def test_a_bad_file_shows_its_message_and_changes_nothing(qtbot, panel, tmp_path, kind):
    path, words = make_hostile(kind, tmp_path)
    panel.chosen["file"] = str(path)
    qtbot.mouseClick(panel.add_file_button, Qt.MouseButton.LeftButton)
    assert panel.names() == ["default"]
    assert panel.message.property("error") is True
    for word in words:
        assert word in panel.message.text()
    assert not model_library.library_path().exists()


def test_add_folder_and_use_only_models(qtbot, panel, tmp_path):
    root = tmp_path / "webui"
    write_safetensors(root / "models" / "Stable-diffusion" / "dream.safetensors", FAMILY_SHAPES["sdxl"])
    write_safetensors(root / "models" / "Lora" / "ink.safetensors", KOHYA_LORA)
    panel.chosen["folder"] = str(root)
    qtbot.mouseClick(panel.add_folder_button, Qt.MouseButton.LeftButton)
    assert "AUTOMATIC1111" in panel.message.text()
    assert row_of(panel, "dream")[1:3] == ["checkpoint", "sdxl"]
    assert row_of(panel, "ink")[1:3] == ["lora", "sd1"]

    used = []
    panel.use_requested.connect(used.append)
    panel.select("ink")
    assert not panel.use_button.isEnabled()
    panel.use_selected()
    assert used == [] and "not a model to generate with" in panel.message.text()
    panel.select("dream")
    qtbot.mouseClick(panel.use_button, Qt.MouseButton.LeftButton)
    assert used == [str((root / "models" / "Stable-diffusion" / "dream.safetensors").resolve())]

    qtbot.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)  # a scanned entry goes with its folder
    assert panel.names() == ["default"]


class NoEngine:
    def __init__(self, device="auto"):
        self.device = device

    def run(self, request, emit, cancel):  # pragma: no cover - these tests never generate
        raise AssertionError("not used")


def test_use_in_the_window_sets_the_forms_model(qtbot, tiny_sd_dir):
    from desktop_app.gui.main_window import MainWindow

    window = MainWindow(engine_factory=NoEngine)
    qtbot.addWidget(window)
    try:
        window.show()
        panel = window.models_panel
        assert window.models_dock.widget() is panel and window.models_action.text() == "&Models"
        panel.add_path(str(tiny_sd_dir))
        panel.select(tiny_sd_dir.name)
        qtbot.mouseClick(panel.use_button, Qt.MouseButton.LeftButton)
        assert window.form.model() == str(tiny_sd_dir.resolve())
        panel.select("default")
        panel.use_selected()
        assert window.form.model() == "default"
    finally:
        window.close()
    from desktop_app.gui.workers import live_threads

    qtbot.waitUntil(lambda: not live_threads(), timeout=10_000)


def test_the_worker_resolves_a_library_name(qtbot, tiny_sd_dir):
    """The worker hands the engine paths, not library names (models.resolve.resolve_names); a name the library
    does not know is a ModelError with its close matches (the window shows it as a "model" failure)."""
    import threading

    from desktop_app.engine.request import GenerationRequest
    from desktop_app.errors import ModelError
    from desktop_app.gui.workers import GenerationWorker

    class Recording:
        def __init__(self):
            self.requests = []

        def run(self, request, emit, cancel):
            self.requests.append(request)

    engine, worker = Recording(), GenerationWorker(device="cpu")
    model_library.add(tiny_sd_dir, name="tiny")
    worker._execute(engine, GenerationRequest(prompt="a cat", model="tiny"), threading.Event())
    assert engine.requests[0].model == str(tiny_sd_dir.resolve())
    with pytest.raises(ModelError, match="Did you mean 'tiny'"):
        worker._execute(engine, GenerationRequest(prompt="a cat", model="tini"), threading.Event())
    with pytest.raises(ModelError, match="does not exist"):
        worker._execute(engine, GenerationRequest(prompt="a cat", model="/nowhere/model"), threading.Event())
    assert len(engine.requests) == 1, "nothing reaches the engine for a name that cannot be resolved"


def test_a_download_shows_up_selected_and_removable(panel, tmp_path):
    model = write_safetensors(tmp_path / "turbo" / "model.safetensors", FAMILY_SHAPES["sdxl"])
    model_library.add(model, name="turbo", source="downloaded")
    panel._on_downloaded("turbo")  # what the download dialog's downloaded(name) triggers
    assert panel.selected().name == "turbo"
    assert row_of(panel, "turbo")[4] == "downloaded"
    assert panel.remove_button.isEnabled() and "Downloaded turbo" in panel.message.text()


@pytest.mark.parametrize("button, expected", [("512 base, epsilon", "epsilon"), ("768, v-prediction", "v"),
                                              ("Cancel", None)])
def test_the_sd2_question_itself(qtbot, button, expected):
    """The real dialog (not the fixture's stand-in): its buttons give the answers add_path expects."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton

    from desktop_app.gui.models_panel import ask_sd2_prediction_type

    def click():
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox) and "sd2.safetensors" in box.text()
        next(b for b in box.findChildren(QPushButton) if b.text() == button).click()

    QTimer.singleShot(50, click)
    assert ask_sd2_prediction_type(None, "sd2.safetensors") == expected
