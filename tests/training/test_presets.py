"""Training presets chosen from the device's memory (issue 21): a small GPU gets a smaller rank and batch and
accumulates to the same images a step; the memory is read without torch (nvidia-smi, a Mac's memory); the
preset is told in one line, in the window's Fine-tune panel and on the command line."""

from __future__ import annotations

import os
import stat

import pytest

from desktop_app.training import device_memory
from desktop_app.training.config import EFFECTIVE_BATCH, PRESETS, preset, preset_line


@pytest.mark.parametrize("memory, rank, batch, accumulate, checkpointing", [
    (4.0, 4, 1, 4, True), (8.6, 8, 2, 2, True), (12.9, 16, 2, 2, True), (25.8, 16, 4, 1, False)])
def test_a_gpus_memory_sets_rank_batch_and_accumulation(memory, rank, batch, accumulate, checkpointing):
    values = preset("cuda:1", memory, check_8bit=False)
    assert (values["rank"], values["batch_size"], values["accumulate"]) == (rank, batch, accumulate)
    assert values["batch_size"] * values["accumulate"] == EFFECTIVE_BATCH
    assert values["gradient_checkpointing"] is checkpointing and values["resolution"] == 512


def test_without_a_known_memory_the_base_preset_holds_and_the_cpu_ignores_memory():
    assert preset("cuda", None, check_8bit=False) == PRESETS["cuda"]
    assert preset("cpu", 64.0) == PRESETS["cpu"] and "accumulate" not in preset("cpu", 64.0)
    small, large = preset("mps", 16.0), preset("mps", 36.0)
    assert (small["batch_size"], small["accumulate"], large["batch_size"], large["accumulate"]) == (1, 4, 2, 2)
    assert not small["use_8bit_adam"]


def test_the_preset_is_told_in_one_line():
    line = preset_line("cuda", 8.6, preset("cuda", 8.6, check_8bit=False))
    assert line.startswith("preset for cuda with 8.6 GB: 512 px, rank 8, batch 2 x accumulate 2 (4 images a "
                           "step), gradient checkpointing")
    assert line.endswith("500 steps") and "\n" not in line
    assert preset_line("cpu", None, PRESETS["cpu"]) == "preset for cpu: 64 px, rank 4, batch 1, 300 steps"


def fake_nvidia_smi(folder, output: str, code: int = 0):
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '{output}'\nexit {code}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return folder


def test_the_gpus_memory_is_read_from_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_nvidia_smi(tmp_path, "8192\\n24576\\n")) + os.pathsep + os.environ["PATH"])
    assert device_memory.memory_gb("cuda") == pytest.approx(8192 * 2**20 / 1e9)
    assert device_memory.memory_gb("cuda:1") == pytest.approx(24576 * 2**20 / 1e9)
    assert device_memory.memory_gb("cuda:2") is None  # no such GPU
    assert device_memory.memory_gb("cpu") is None and device_memory.memory_gb("mps") > 0


def test_a_broken_or_missing_nvidia_smi_gives_no_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed", 9)))
    assert device_memory.memory_gb("cuda") is None
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert device_memory.memory_gb("cuda") is None


def test_the_fine_tune_panel_shows_and_applies_the_memory_preset(qtbot, monkeypatch):
    from desktop_app.gui.training_panel import TrainingPanel

    monkeypatch.setattr(device_memory, "memory_gb", lambda device: 10.7 if device == "cuda" else None)
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    assert panel.preset_label.text() == "preset for cpu: 64 px, rank 4, batch 1, 300 steps"
    panel.device_combo.setCurrentText("cuda")
    assert (panel.rank.value(), panel.batch.value(), panel.accumulate.value()) == (8, 2, 2)
    assert "with 10.7 GB" in panel.preset_label.text() and "4 images a step" in panel.preset_label.text()
    panel.device_combo.setCurrentText("cpu")
    assert (panel.rank.value(), panel.batch.value(), panel.accumulate.value()) == (4, 1, 1)
