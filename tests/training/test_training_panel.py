"""The fine-tuning panel offscreen with pytest-qt: the dataset view, a short real training in a separate process
(loss curve, samples, originality, the LoRA in the LoRA folder), and pause / resume / cancel."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PIL import Image
from training_helpers import make_images

from desktop_app import paths
from desktop_app.gui.training_panel import TrainingPanel

TIMEOUT = 180_000  # a fresh process imports torch and loads the model: slow on a busy 2-core machine


@pytest.fixture
def panel(qtbot):
    widget = TrainingPanel()
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    if widget.is_running():
        widget.process.kill()
        widget.process.waitForFinished(10_000)
    widget.close()


def quick(panel, folder, name, steps):
    panel.set_folder(str(folder))
    panel.token_edit.setText("sks")
    panel.class_edit.setText("ball")
    panel.name_edit.setText(name)
    panel.steps.setValue(steps)
    panel.advanced.setChecked(True)
    panel.sample_every.setValue(2)
    panel.sample_steps.setValue(2)
    panel.checkpoint_every.setValue(2)


def test_the_folder_shows_usable_thumbnails_and_unusable_reasons(panel, tmp_path):
    make_images(tmp_path / "set", 3)
    Image.new("RGB", (12, 12)).save(tmp_path / "set" / "small.png")
    panel.set_folder(str(tmp_path / "set"))
    assert panel.thumbs.count() == 3
    assert not panel.thumbs.item(0).icon().isNull()
    assert [panel.unusable.item(i).text() for i in range(panel.unusable.count())] == \
        ["small.png: too small (12x12; at least 32 px a side)"]
    assert "3 usable image(s), 1 unusable" in panel.status.text()


def test_bad_input_is_shown_and_nothing_starts(panel, tmp_path):
    (tmp_path / "empty").mkdir()
    panel.set_folder(str(tmp_path / "empty"))
    assert not panel.start() and "has no PNG, JPEG or WebP images" in panel.status.text()
    make_images(tmp_path / "two", 2)
    panel.set_folder(str(tmp_path / "two"))
    panel.batch.setValue(4)
    assert not panel.start() and "fewer than the batch size 4" in panel.status.text()
    panel.batch.setValue(1)
    panel.token_edit.setText("two words")
    assert not panel.start() and "token: must be one word" in panel.status.text()
    assert panel.process is None and panel.state == "idle"


def test_unsafe_names_and_sdxl_models_are_refused_before_anything_is_made(panel, tmp_path, user_home):
    import json

    make_images(tmp_path / "set", 2)
    quick(panel, tmp_path / "set", "../../escape", 2)
    assert not panel.has_checkpoint()
    assert not panel.start() and "LoRA name" in panel.status.text()
    assert not (tmp_path / "escape").exists() and not (user_home / "training").exists()
    assert not panel.start(resume=True) and "LoRA name" in panel.status.text()
    sdxl = tmp_path / "sdxl"
    sdxl.mkdir()
    (sdxl / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionXLPipeline", "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "unet": ["diffusers", "U"]}))
    panel.name_edit.setText("xl")
    panel.model_edit.setText(str(sdxl))
    assert not panel.start()
    assert "SDXL" in panel.status.text() and "fine-tuning supports" in panel.status.text()
    assert panel.process is None and panel.state == "idle" and not (user_home / "training" / "xl").exists()


def test_presets_hide_cuda_only_options_off_cuda(panel):
    panel.device_combo.setCurrentText("cuda")
    assert panel.resolution.value() == 512 and not panel.adam8.isHidden()
    panel.device_combo.setCurrentText("mps")
    assert panel.adam8.isHidden() and panel.mixed_precision.isHidden()
    panel.device_combo.setCurrentText("cpu")
    assert panel.resolution.value() == 64 and panel.rank.value() == 4


def test_a_short_training_shows_loss_samples_and_originality(panel, qtbot, tmp_path):
    make_images(tmp_path / "set", 3)
    quick(panel, tmp_path / "set", "panel", steps=4)
    saved = []
    panel.lora_saved.connect(saved.append)
    assert panel.start()
    assert not panel.start_button.isEnabled() and panel.pause_button.isEnabled()
    qtbot.waitUntil(lambda: panel.state in ("finished", "failed"), timeout=TIMEOUT)
    assert panel.state == "finished", panel.status.text()
    assert [step for step, _ in panel.curve.points] == [1, 2, 3, 4]
    assert not panel.sample_labels[0].pixmap().isNull()
    assert panel.originality.count() == 2 and "similarity" in panel.originality.item(0).text()
    assert "done: LoRA panel is in the LoRA list" in panel.status.text()
    assert saved == ["panel"] and (paths.loras_dir() / "panel.safetensors").is_file()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=10_000)
    panel.curve.grab()  # the curve paints with points (no exception)


def test_pause_resume_and_cancel(panel, qtbot, tmp_path):
    make_images(tmp_path / "set", 3)
    quick(panel, tmp_path / "set", "pausing", steps=2000)
    panel.sample_every.setValue(0)
    assert panel.start()
    qtbot.waitUntil(lambda: len(panel.curve.points) >= 1, timeout=TIMEOUT)
    panel.pause_button.click()
    qtbot.waitUntil(lambda: panel.state == "paused", timeout=60_000)
    paused_at = panel.last_event["step"]
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=10_000)
    assert panel.resume_button.isEnabled() and not panel.pause_button.isEnabled()
    panel.close()

    # the app restarts: a new panel finds the paused job by its name and resumes it with its saved settings
    again = TrainingPanel()
    qtbot.addWidget(again)
    assert not again.resume_button.isEnabled()
    again.name_edit.setText("pausing")
    assert again.resume_button.isEnabled()
    again.resume_button.click()
    try:
        assert again.steps.value() == 2000 and again.thumbs.count() == 3  # the saved job, shown
        qtbot.waitUntil(lambda: bool(again.curve.points) and again.curve.points[-1][0] > paused_at,
                        timeout=TIMEOUT)
        assert again.curve.points[0][0] == paused_at + 1
        again.cancel_button.click()
        qtbot.waitUntil(lambda: again.state == "cancelled", timeout=60_000)
        assert again.last_event["step"] > paused_at
        assert not (paths.loras_dir() / "pausing.safetensors").exists()
        qtbot.waitUntil(lambda: not again.is_running(), timeout=10_000)
    finally:
        if again.is_running():
            again.process.kill()
            again.process.waitForFinished(10_000)


def test_accumulate_and_processes_reach_the_job_and_come_back_from_it(panel, tmp_path):
    """The panel's Accumulate and Processes fields go into the TrainConfig the training process gets, and a job
    loaded back (resume) shows them again."""
    make_images(tmp_path / "set", 2)
    quick(panel, tmp_path / "set", "acc", 4)
    panel.accumulate.setValue(4)
    panel.processes.setValue(2)
    config = panel.config()
    assert (config.accumulate, config.processes) == (4, 2)
    panel.accumulate.setValue(1)
    panel.processes.setValue(1)
    panel.load_job(config)
    assert (panel.accumulate.value(), panel.processes.value()) == (4, 2)
