"""The training process (python -m desktop_app.training.run): JSON lines out, pause/cancel in, and a kill that
loses at most the steps since the last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from training_helpers import make_images, quick_config

from desktop_app import paths
from desktop_app.training import checkpoint, trainer
from desktop_app.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]


def start(config, tmp_path, *extra) -> subprocess.Popen:
    job = tmp_path / f"{config.name}.json"
    config.save(job)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "desktop_app.training.run", "--config", str(job), *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)


def finish(process: subprocess.Popen) -> tuple[int, list[dict]]:
    out, _ = process.communicate(timeout=120)
    return process.returncode, [json.loads(line) for line in out.splitlines()]  # every line is JSON


def test_killed_process_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(images, tmp_path):
    config = quick_config(images, "killed", steps=16, checkpoint_every=4)
    process = start(config, tmp_path)
    last_seen = 0
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "step":
            last_seen = event["step"]
            if last_seen >= 6:
                process.send_signal(signal.SIGKILL)
                break
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    saved = checkpoint.read(trainer.job_dir("killed"))["step"]
    assert saved % 4 == 0 and last_seen - last_seen % 4 <= saved < 16  # lost at most the steps since it

    code, events = finish(start(config, tmp_path, "--resume"))
    assert code == 0 and events[0]["event"] == "started" and events[0]["step"] == saved
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(saved + 1, 17))
    assert events[-1]["event"] == "finished"

    train(quick_config(images, "unbroken", steps=16, checkpoint_every=4), lambda event: None)
    resumed, unbroken = load_file(paths.loras_dir() / "killed.safetensors"), \
        load_file(paths.loras_dir() / "unbroken.safetensors")
    for key in unbroken:
        torch.testing.assert_close(resumed[key], unbroken[key], atol=1e-4, rtol=1e-3)  # two processes: float order


def test_cancel_and_pause_by_stdin_and_by_the_control_file(images, tmp_path):
    process = start(quick_config(images, "stdin", steps=500), tmp_path)
    for line in process.stdout:
        if json.loads(line)["event"] == "step":
            process.stdin.write("cancel\n")
            process.stdin.flush()
            break
    code, events = finish(process)
    assert code == 0 and events[-1]["event"] == "cancelled" and events[-1]["step"] < 500
    assert not (paths.loras_dir() / "stdin.safetensors").exists()

    process = start(quick_config(images, "byfile", steps=500), tmp_path)
    for line in process.stdout:
        if json.loads(line)["event"] == "step":
            (trainer.job_dir("byfile") / "control").write_text("pause")
            break
    code, events = finish(process)
    assert code == 0 and events[-1]["event"] == "paused"
    assert Path(events[-1]["checkpoint"]).is_dir()  # accelerate's save_state folder


def test_bad_input_exits_2_and_a_nan_exits_1_each_with_a_failed_event(tmp_path):
    (tmp_path / "empty").mkdir()
    code, events = finish(start(quick_config(tmp_path / "empty", "empty"), tmp_path))
    assert code == 2 and events[-1]["event"] == "failed" and events[-1]["kind"] == "bad_input"
    assert "has no PNG, JPEG or WebP images" in events[-1]["message"]

    make_images(tmp_path / "few", 2)
    code, events = finish(start(quick_config(tmp_path / "few", "nan", inject_nan_at=2), tmp_path))
    assert code == 1 and events[-1]["event"] == "failed" and events[-1]["kind"] == "engine"
    assert events[-1]["reason"] == "nan" and events[-1]["step"] == 2
    assert "no checkpoint was saved yet" in events[-1]["message"]
