"""The trainer on accelerate: gradient accumulation, and two CPU processes (gloo) through accelerate's launcher:
they train, checkpoint, survive a kill, resume and give the LoRA one process gives with the same global batch;
cancel reaches both; one process's crash stops the other with one line.

Tolerances: the same global batch split differently sums the same gradients in another order (float32), and
Adam's first steps amplify that a little: LoRA tensors agree within atol 1e-4, rtol 1e-3 (their values are
~1e-2); a real difference in what was learned (another batch, a lost step) is far larger.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch
from safetensors.torch import load_file
from training_helpers import make_images, quick_config

from desktop_app import paths
from desktop_app.cli import main as cli_main
from desktop_app.training import checkpoint, trainer
from desktop_app.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 150


def lora(name: str) -> dict[str, torch.Tensor]:
    return load_file(paths.loras_dir() / f"{name}.safetensors")


def assert_same_lora(a: str, b: str) -> None:
    first, second = lora(a), lora(b)
    assert first.keys() == second.keys()
    # the LoRA's values are about 1e-2; another batch split moves them by that much. Two processes sum their
    # gradients over gloo in another order than one process does: a few elements near zero differ by ~1e-4
    for key in first:
        torch.testing.assert_close(first[key], second[key], atol=5e-4, rtol=1e-3)


def start(config, tmp_path, *extra) -> subprocess.Popen:
    job = tmp_path / f"{config.name}.json"
    config.save(job)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "desktop_app.training.run", "--config", str(job), *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)


def finish(process: subprocess.Popen) -> tuple[int, list[dict]]:
    out, _ = process.communicate(timeout=TIMEOUT)
    return process.returncode, [json.loads(line) for line in out.splitlines()]  # every line is JSON


def workers(config_file: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = proc.info["cmdline"] or []
        if "--worker" in line and str(config_file) in line:
            found.append(proc)
    return found


def gone(config_file: Path, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not workers(config_file):
            return True
        time.sleep(0.3)
    return False


def test_four_micro_batches_of_one_give_the_lora_of_one_batch_of_four(tmp_path, events):
    make_images(tmp_path / "four", 4)
    train(quick_config(tmp_path / "four", "batch4", steps=3, batch_size=4), lambda event: None)
    result = train(quick_config(tmp_path / "four", "accum4", steps=3, batch_size=1, accumulate=4), events)
    assert result["event"] == "finished" and [e["step"] for e in events.of("step")] == [1, 2, 3]
    started = events.of("started")[0]
    assert (started["batch"], started["accumulate"], started["processes"]) == (4, 4, 1)
    assert_same_lora("batch4", "accum4")
    train(quick_config(tmp_path / "four", "batch1", steps=3, batch_size=1), lambda event: None)
    assert (lora("batch1")["lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"]
            - lora("batch4")["lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"]
            ).abs().max() > 1e-3  # a batch of one is another LoRA: the comparison above can fail


def test_two_processes_survive_a_kill_resume_and_match_one_process(images, tmp_path, capsys):
    config = quick_config(images, "two", steps=6, checkpoint_every=2, processes=2)
    process = start(config, tmp_path)
    last_seen, started = 0, None
    for line in process.stdout:
        event = json.loads(line)
        started = event if event["event"] == "started" else started
        if event["event"] == "step":
            last_seen = event["step"]
            if last_seen >= 3:
                process.send_signal(signal.SIGKILL)  # what the window's kill does
                break
    process.wait(timeout=30)
    assert started["processes"] == 2 and started["batch"] == 2
    assert gone(tmp_path / "two.json"), "workers kept running after their launcher was killed"
    saved = checkpoint.read(trainer.job_dir("two"))["step"]
    assert saved % 2 == 0 and last_seen - last_seen % 2 <= saved < 6  # lost at most the steps since it

    assert cli_main(["train", "--out", "two", "--resume", "--sample-every", "0"]) == 0  # the command line
    err = capsys.readouterr().err
    assert f"resuming at step {saved}, 6 steps" in err and "Traceback" not in err
    train(quick_config(images, "one", steps=6, checkpoint_every=2, batch_size=2), lambda event: None)
    assert_same_lora("two", "one")


def test_cancel_reaches_both_processes(images, tmp_path):
    process = start(quick_config(images, "stoptwo", steps=500, processes=2), tmp_path)
    for line in process.stdout:
        if json.loads(line)["event"] == "step":
            process.stdin.write("cancel\n")
            process.stdin.flush()
            break
    code, events = finish(process)
    assert code == 0 and events[-1]["event"] == "cancelled" and events[-1]["step"] < 500
    assert [e["event"] for e in events].count("cancelled") == 1  # one last word for both
    folder = Path(events[-1]["checkpoint"])
    assert folder.is_dir() and checkpoint.read(trainer.job_dir("stoptwo"))["step"] == events[-1]["step"]
    assert (folder / "random_states_0.pkl").is_file() and (folder / "random_states_1.pkl").is_file()  # both saved
    assert gone(tmp_path / "stoptwo.json", 5)
    assert not (paths.loras_dir() / "stoptwo.safetensors").exists()


def test_one_crashed_process_stops_the_other_with_one_line(images, tmp_path):
    process = start(quick_config(images, "crash", steps=500, processes=2), tmp_path)
    for line in process.stdout:
        if json.loads(line)["event"] == "step":
            [second] = [p for p in workers(tmp_path / "crash.json") if p.environ().get("RANK") == "1"]
            second.send_signal(signal.SIGKILL)  # as the out-of-memory killer would
            break
    code, events = finish(process)
    assert code == 1 and events[-1]["event"] == "failed"
    message = events[-1]["message"]
    assert "training process 2 of 2 stopped (killed by signal 9)" in message and "\n" not in message
    assert "Resume continues" in message
    assert gone(tmp_path / "crash.json", 5)


def test_the_packaged_app_refuses_several_processes_in_one_line(images, monkeypatch):
    """accelerate's launcher starts "<python> -m ..." processes, which a PyInstaller bundle cannot answer: the
    packaged app says so before anything starts, and still trains on one process."""
    from desktop_app.errors import RequestError

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    try:
        quick_config(images, "frozen", processes=2)
    except RequestError as refused:
        assert refused.field == "processes" and "packaged app trains on one" in str(refused)
    else:
        raise AssertionError("two processes were accepted in a packaged app")
    assert quick_config(images, "frozen", processes=1).processes == 1
