"""Names that become paths (training jobs, LoRAs, downloads, files a hub lists), training checkpoints, the
"use it with" line, and downloads from the installed app: each entry point run as a hostile user would.

Every case runs the real command line (``run_cli``): exit 0 or 2, one line on stderr, no traceback, and nothing
created outside the user folder.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from desktop_app.errors import RequestError

ROOT = Path(__file__).resolve().parents[2]
FROZEN_ENTRY = ROOT / "packaging" / "pyinstaller" / "frozen_entry.py"


def _images(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        Image.new("RGB", (64, 64), (40 * k, 120, 200)).save(folder / f"img{k}.png")
    return folder


def _sdxl_folder(folder: Path) -> Path:
    """What `train` reads of a model before loading it: an SDXL model_index.json (two text encoders)."""
    folder.mkdir(parents=True)
    index = {"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.30.0",
             "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


# ---- train: --out, --token, --resume never make or read a folder outside the user folder --------------------


@pytest.mark.parametrize("args", [
    ["--out", "../../escape", "--resume"],
    ["--token", "../../x", "--resume"],
    ["--out", "ABSOLUTE", "--resume"],
    ["--out", "..", "--resume"],
    ["--out", "job\n\x1b[2Jname", "--resume"],
    ["--out", "con", "--resume"],
    ["--out", "../../escape", "--images", "IMAGES", "--token", "sks"],
    ["--token", "../../y", "--images", "IMAGES"],
])
def test_train_names_are_checked_before_any_folder_is_made(run_cli, sandbox, tmp_path, args):
    home, work = sandbox
    absolute = tmp_path / "abs-escape"
    images = _images(tmp_path / "images")
    args = [str(absolute) if a == "ABSOLUTE" else str(images) if a == "IMAGES" else a for a in args]
    result = run_cli("train", *args)
    assert result.code == 2
    assert "LoRA name" in result.lines[0] and "\x1b" not in result.stderr
    assert not absolute.exists() and not (tmp_path / "a" / "escape").exists()
    assert not (home / "training").exists() or not any((home / "training").iterdir())


def test_a_resumed_job_config_cannot_name_another_folder(run_cli, sandbox, tmp_path):
    home, _ = sandbox
    job = home / "training" / "job"
    job.mkdir(parents=True)
    config = {"images": str(_images(tmp_path / "images")), "token": "sks", "name": "../../../../escape"}
    (job / "config.json").write_text(json.dumps(config))
    result = run_cli("train", "--out", "job", "--resume")
    assert result.code == 2 and "LoRA name" in result.lines[0]


# ---- train --resume with a hostile checkpoint ---------------------------------------------------------------


class _RunsCode:
    """A pickle that creates a file when it is unpickled (what torch.load(weights_only=False) would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _job_with_checkpoint(home: Path, images: Path, name: str, data: bytes) -> Path:
    job = home / "training" / "job"
    job.mkdir(parents=True)
    config = {"images": str(images), "token": "sks", "name": "job", "device": "cpu", "steps": 2}
    (job / "config.json").write_text(json.dumps(config))
    (job / name).write_bytes(data)
    return job


@pytest.mark.parametrize("kind", ["pickle-as-legacy-pt", "pickle-as-safetensors", "truncated", "no-state"])
def test_a_malicious_or_damaged_checkpoint_is_refused_without_unsafe_advice(run_cli, sandbox, tmp_path, kind):
    home, _ = sandbox
    marker = tmp_path / "code-ran"
    payload = pickle.dumps({"step": _RunsCode(marker)})
    if kind == "no-state":
        from safetensors.numpy import save

        import numpy as np

        data, name = save({"x": np.zeros(2, np.float32)}), "checkpoint.safetensors"
    else:
        data = {"pickle-as-legacy-pt": payload, "pickle-as-safetensors": payload,
                "truncated": b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":"}[kind]
        name = "checkpoint.pt" if kind == "pickle-as-legacy-pt" else "checkpoint.safetensors"
    _job_with_checkpoint(home, _images(tmp_path / "images"), name, data)
    result = run_cli("train", "--out", "job", "--resume", timeout=180)
    assert result.code == 2
    line = result.lines[0]
    assert "damaged or unsafe" in line and "checkpoint" in line
    assert "weights_only" not in result.stderr and "rerun" not in result.stderr.lower()
    assert not marker.exists()


def test_checkpoints_round_trip_through_safetensors(tmp_path):
    import torch

    from desktop_app.training import checkpoint

    param = torch.nn.Parameter(torch.randn(3, 2))
    optimizer = torch.optim.AdamW([param], lr=1e-3)
    param.grad = torch.ones_like(param)
    optimizer.step()
    state = {"step": 7, "losses": [[1, 0.5], [2, 0.25]], "elapsed": 1.5, "unet": {"a.lora_A.weight": param.data},
             "dataset_hash": "abc", "text_encoder": {}, "optimizer": optimizer.state_dict(), "scaler": {}}
    path = checkpoint.save(tmp_path, state)
    assert path.name == "checkpoint.safetensors" and checkpoint.exists(tmp_path)
    loaded = checkpoint.read(tmp_path)
    assert loaded["step"] == 7 and loaded["losses"] == [[1, 0.5], [2, 0.25]]
    assert torch.equal(loaded["unet"]["a.lora_A.weight"], param.data)
    again = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3, 2))], lr=1e-3)
    again.load_state_dict(loaded["optimizer"])
    assert torch.equal(again.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert checkpoint.saved_step(tmp_path) == 7


def test_resume_restores_the_random_state(tmp_path):
    import torch

    from desktop_app.training import checkpoint

    checkpoint.save(tmp_path, {"step": 1})
    after_save = torch.rand(3)
    checkpoint.load(tmp_path)
    assert torch.equal(torch.rand(3), after_save)


# ---- train: SDXL is refused before any heavy work ---------------------------------------------------------


def test_fine_tuning_an_sdxl_model_is_refused_up_front(run_cli, tmp_path):
    model = _sdxl_folder(tmp_path / "sdxl")
    result = run_cli("train", "--images", _images(tmp_path / "images"), "--token", "sks", "--model", model)
    assert result.code == 2
    line = result.lines[0]
    assert "SDXL" in line and "fine-tuning supports" in line and "1.x" in line


def test_the_trainer_itself_refuses_sdxl_before_making_the_job_folder(tmp_path, user_home):
    from desktop_app.training.config import TrainConfig
    from desktop_app.training.trainer import train

    config = TrainConfig(images=str(_images(tmp_path / "images")), token="sks", name="xl",
                         model=str(_sdxl_folder(tmp_path / "sdxl")))
    with pytest.raises(RequestError, match="SDXL"):
        train(config, lambda event: None)
    assert not (user_home / "training" / "xl").exists()


# ---- the "use it with" line ---------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["$(touch${IFS}pwned)", "`touch${IFS}pwned`", "o'x\"y$HOME*"])
def test_the_use_it_with_line_copy_pastes_safely(token, tmp_path, monkeypatch, capsys):
    from desktop_app.cli import main
    from desktop_app.training import trainer

    def fake_train(config, emit, control, resume=False):
        return {"event": "finished", "files": {"kohya": "k", "diffusers": "d"}, "originality": []}

    monkeypatch.setattr(trainer, "train", fake_train)
    monkeypatch.setattr("desktop_app.cli.train.native_resolution", lambda model, fallback: fallback)
    code = main(["train", "--images", str(_images(tmp_path / "images")), "--token", token, "--out", "job",
                 "--class-word", "dog", "--device", "cpu"])
    assert code == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("use it with: "))
    command = line.removeprefix("use it with: ").replace("desktop-app", "printf '%s\\n'", 1)
    done = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["generate", f"a photo of {token} dog", "--lora", "job:1.0"]
    assert not (tmp_path / "pwned").exists()
    assert shlex.split(line.removeprefix("use it with: "))[2] == f"a photo of {token} dog"


def test_a_token_with_control_characters_is_refused(run_cli, tmp_path):
    result = run_cli("train", "--images", _images(tmp_path / "images"), "--token", "sks\x1b[31m", "--out", "j")
    assert result.code == 2 and "token" in result.lines[0] and "\x1b" not in result.stderr


# ---- LoRA names: the export and the --lora lookup ----------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "/tmp/x", "..", "a\nb", ""])
def test_the_lora_export_refuses_a_name_before_writing(tmp_path, name):
    from desktop_app.training import export

    folder = tmp_path / "loras"
    folder.mkdir()
    with pytest.raises(RequestError):
        export.save_lora(folder, name, None, None, {}, kohya_text_encoder=True)
    assert list(tmp_path.iterdir()) == [folder] and not any(folder.iterdir())


@pytest.mark.parametrize("name", ["../../outside", "../../outside.safetensors", "x\x1b[2J"])
def test_lora_lookup_by_name_stays_in_the_lora_folder(run_cli, sandbox, tmp_path, name):
    home, work = sandbox
    (home / "loras").mkdir()
    (tmp_path / "outside.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")  # home/loras/../..
    result = run_cli("generate", "a cat", "--lora", name, "--out", "x.png")
    assert result.code == 2
    assert "not found" in result.lines[0] and "\x1b" not in result.stderr
    assert not (work / "x.png").exists()


def test_lora_lookup_still_takes_a_path_and_a_name(tmp_path, monkeypatch, user_home):
    from desktop_app import paths
    from desktop_app.engine.lora import resolve_lora

    given = tmp_path / "mine.safetensors"
    given.write_bytes(b"x")
    assert resolve_lora(str(given)) == given
    (paths.loras_dir() / "named.safetensors").write_bytes(b"x")
    assert resolve_lora("named") == paths.loras_dir() / "named.safetensors"


# ---- models download: names and target folders ------------------------------------------------------------


@pytest.mark.parametrize("repo", ["./x", "../x", "a/../b", "/etc/passwd", "owner/na\x1bme", "a/b/c", "a--b/c",
                                  "owner/" + "n" * 200, "owner/.hidden", "x"])
def test_models_download_refuses_a_bad_repo_id_with_one_line(run_cli, repo):
    result = run_cli("models", "download", repo)
    assert result.code == 2
    assert "repo id" in result.lines[0] and result.stderr.startswith("desktop-app")
    assert "\x1b" not in result.stderr


@pytest.mark.parametrize("name", ["../../x", "/abs/x", "a\nb", ".."])
def test_models_download_name_is_checked_before_the_network(run_cli, sandbox, name):
    home, _ = sandbox
    result = run_cli("models", "download", "someone/tiny-sd", "--name", name,
                     env={"DESKTOP_APP_DEFAULT_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert result.code == 2 and "--name" in result.lines[0]
    assert not (home / "models" / "downloads").exists()


@pytest.fixture
def hostile_hub(tiny_sd_dir, tmp_path):
    """The tiny SD folder served as a repo whose listing also names files outside any folder."""
    from fake_hub import TINY_SD_REPO, FakeHub

    folder = tmp_path / "repo"
    shutil.copytree(tiny_sd_dir, folder)
    extra = {"../escape.json": b"{}", "../escape.safetensors": b"x", "..\\win.json": b"{}",
             "/abs.json": b"{}", "unet/\x1b[2J.json": b"{}", "unet/../../up.json": b"{}"}
    server = FakeHub(TINY_SD_REPO, folder, extra=extra).start()
    yield server
    server.stop()


def _hub_env(server, tmp_path) -> dict:
    return {"DESKTOP_APP_DEFAULT_OFFLINE": "1", "HF_ENDPOINT": server.url, "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_CACHE": str(tmp_path / "hf-cache")}


def test_a_hub_listing_with_parent_paths_writes_nothing_outside_the_model(run_cli, sandbox, hostile_hub, tmp_path):
    home, _ = sandbox
    result = run_cli("models", "download", hostile_hub.repo_id, env=_hub_env(hostile_hub, tmp_path), timeout=120)
    assert result.code == 0, result.stderr
    downloads = home / "models" / "downloads"
    assert sorted(p.name for p in downloads.iterdir()) == [".downloading", "someone--tiny-sd"]
    assert not any((downloads / ".downloading").iterdir())
    assert not list(home.rglob("*escape*")) and not list(home.rglob("up.json"))
    assert not [r for r in hostile_hub.requests if r[1] in hostile_hub.extra]


def test_unsafe_listings_are_skipped_by_select_files():
    from huggingface_hub.hf_api import RepoSibling

    from desktop_app.models import hub_download

    names = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "../x.json",
             "../unet.safetensors", "/abs/y.json", "unet\\..\\z.json", "unet/a\x00.json"]
    chosen = hub_download.select_files([RepoSibling(rfilename=n) for n in names], {"..": ["x", "y"],
                                                                                    "unet": ["diffusers", "U"]})
    assert sorted(chosen) == ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"]


def test_download_errors_are_one_line_without_a_blank_first_line(run_cli, hostile_hub, tmp_path):
    result = run_cli("models", "download", "someone/missing", env=_hub_env(hostile_hub, tmp_path))
    assert result.code == 2
    assert result.stderr.startswith("desktop-app") and len(result.stderr.splitlines()) == 1
    assert "not on the hub" in result.lines[0]


# ---- the installed (frozen) app can download; everything else stays offline --------------------------------


def _frozen_entry():
    import importlib.util

    spec = importlib.util.spec_from_file_location("frozen_entry_for_hostile_tests", FROZEN_ENTRY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frozen_entry_marks_its_offline_setting_as_the_apps_default():
    frozen = _frozen_entry()
    env: dict = {}
    frozen.offline_environment(env)
    assert env == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DESKTOP_APP_DEFAULT_OFFLINE": "1"}
    env = {"HF_HUB_OFFLINE": "0"}  # not an opt-in: only DESKTOP_APP_ALLOW_HUB is
    frozen.offline_environment(env)
    assert env["HF_HUB_OFFLINE"] == "1" and env["DESKTOP_APP_DEFAULT_OFFLINE"] == "1"
    env = {"HF_HUB_OFFLINE": "1"}  # the user's own: a download must not lift it
    frozen.offline_environment(env)
    assert env["HF_HUB_OFFLINE"] == "1" and "DESKTOP_APP_DEFAULT_OFFLINE" not in env
    env = {"DESKTOP_APP_ALLOW_HUB": "1"}
    frozen.offline_environment(env)
    assert env == {"DESKTOP_APP_ALLOW_HUB": "1"}


def _frozen_run(args, home, work, env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DESKTOP_APP", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))}
    env.update({"DESKTOP_APP_HOME": str(home), "PYTHONPATH": str(ROOT), **env_extra})
    return subprocess.run([sys.executable, str(FROZEN_ENTRY), *args], cwd=work, env=env, capture_output=True,
                          text=True, timeout=180)


def test_the_installed_app_downloads_when_asked(sandbox, hostile_hub, tmp_path):
    home, work = sandbox
    env = {"HF_ENDPOINT": hostile_hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_CACHE": str(tmp_path / "hf-cache")}
    done = _frozen_run(["models", "download", hostile_hub.repo_id], home, work, env)
    assert done.returncode == 0, done.stderr
    assert "downloaded someone/tiny-sd as tiny-sd" in done.stdout
    assert (home / "models" / "downloads" / "someone--tiny-sd" / "model_index.json").is_file()
    # the user's own HF_HUB_OFFLINE=1 still wins, with the advice that fits it
    done = _frozen_run(["models", "download", "someone/other"], home, work, dict(env, HF_HUB_OFFLINE="1"))
    assert done.returncode == 2 and "offline mode is on" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_download_lifts_the_offline_default_only_while_it_runs(monkeypatch):
    from huggingface_hub import constants

    from desktop_app.models import hub_download

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DESKTOP_APP_DEFAULT_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with hub_download.app_offline_lifted():
        assert not hub_download.is_offline()
    assert hub_download.is_offline() and os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.delenv("DESKTOP_APP_DEFAULT_OFFLINE")  # the user's own setting: never lifted
    with hub_download.app_offline_lifted():
        assert hub_download.is_offline()


def test_a_checkpoint_of_the_earlier_format_still_resumes(tmp_path):
    import torch

    from desktop_app.training import checkpoint

    torch.save({"step": 4, "losses": [[4, 0.1]], "unet": {"w": torch.ones(2)}}, tmp_path / "checkpoint.pt")
    assert checkpoint.exists(tmp_path) and checkpoint.read(tmp_path)["step"] == 4
    checkpoint.save(tmp_path, {"step": 5})  # the next save writes the new format and retires the old file
    assert not (tmp_path / "checkpoint.pt").exists() and checkpoint.read(tmp_path)["step"] == 5
