"""``desktop-app train``: exit codes 0/2/1, one-line errors, the result and the originality report."""

from __future__ import annotations

import pytest
from training_helpers import make_images

from desktop_app import paths
from desktop_app.cli import main


def train_args(images, *extra):
    return ["train", "--images", str(images), "--token", "sks", "--class-word", "ball", "--steps", "3",
            "--sample-every", "0", "--device", "cpu", *extra]


def test_train_writes_the_lora_and_prints_originality(images, capsys):
    assert main(train_args(images, "--out", "mine", "--rank", "4")) == 0
    out, err = capsys.readouterr()
    assert (paths.loras_dir() / "mine.safetensors").is_file()
    assert (paths.loras_dir() / "mine" / "pytorch_lora_weights.safetensors").is_file()
    assert "generate 'a photo of sks ball' --lora mine:1.0" in out  # shell-quoted: safe to copy-paste
    lines = [line for line in out.splitlines() if "nearest img" in line]
    assert len(lines) == 2 and all("similarity" in line for line in lines)
    assert "3 image(s), starting, 3 steps on cpu (float32)" in err
    assert "train: preset for cpu: 64 px, rank 4, batch 1, 3 steps (given: steps" in err  # told once started
    assert "Traceback" not in err


def test_the_lora_works_with_generate(images, tmp_path, capsys):
    from desktop_app.cli import build_parser

    if "--lora" not in build_parser()._subparsers._group_actions[0].choices["generate"].format_help():
        pytest.skip("generate --lora is not in this tree yet")
    assert main(train_args(images, "--out", "gen")) == 0
    out_file = tmp_path / "out.png"
    code = main(["generate", "a photo of sks ball", "--lora", "gen:0.8", "--out", str(out_file), "--steps", "3",
                 "--seed", "1", "--device", "cpu", "--no-upscale"])
    assert code == 0, capsys.readouterr().err
    assert out_file.is_file()


@pytest.mark.parametrize("extra, message", [
    (["--rank", "0"], "rank: must be 1 to 256"),
    (["--lr", "-1"], "lr: must be above 0"),
    (["--batch", "9"], "fewer than the batch size 9"),
    (["--out", "bad name!"], "LoRA name must be letters"),
    (["--token", "two words"], "token: must be one word"),
    (["--resolution", "63"], "resolution: must be a multiple of 8"),
])
def test_bad_options_exit_2_with_one_line(images, capsys, extra, message):
    assert main(train_args(images, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_folders_exit_2_and_name_the_problem(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(train_args(tmp_path / "empty")) == 2
    assert "has no PNG, JPEG or WebP images" in capsys.readouterr().err
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"\xff\xd8 not really")
    assert main(train_args(junk)) == 2
    err = capsys.readouterr().err
    assert "no usable images" in err and "a.jpg: unreadable" in err
    assert main(["train", "--images", str(junk)]) == 2
    assert "--token TOKEN are needed" in capsys.readouterr().err


def test_nan_exits_1_with_the_reason(images, capsys, monkeypatch):
    from desktop_app.training import config as config_module

    original = config_module.TrainConfig.__post_init__

    def with_nan(self):
        original(self)
        if self.name == "nanjob":
            self.inject_nan_at = 2

    monkeypatch.setattr(config_module.TrainConfig, "__post_init__", with_nan)
    assert main(train_args(images, "--out", "nanjob")) == 1
    err = capsys.readouterr().err
    assert "loss became nan at step 2" in err and "Traceback" not in err


def test_resume_continues_a_job(images, capsys):
    make_images(images, 3)
    from desktop_app.training.trainer import job_dir

    assert main(train_args(images, "--out", "again", "--steps", "2", "--checkpoint-every", "1")) == 0
    assert main(["train", "--out", "again", "--resume", "--steps", "4", "--sample-every", "0"]) == 0
    err = capsys.readouterr().err
    assert "resuming at step 2, 4 steps" in err
    assert (job_dir("again") / "config.json").is_file()


def test_ctrl_c_pauses_with_a_checkpoint_and_exit_130(images, user_home):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root))
    process = subprocess.Popen([sys.executable, "-m", "desktop_app", *train_args(images, "--out", "ctrlc"),
                                "--steps", "2000"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=env, cwd=root)
    for line in process.stderr:
        if line.startswith("step "):
            process.send_signal(signal.SIGINT)
            break
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "paused at step" in err and "train --out ctrlc --resume" in err and "Traceback" not in err
    from desktop_app.training import checkpoint

    assert checkpoint.latest_folder(user_home / "training" / "ctrlc") is not None  # accelerate's save_state folder
