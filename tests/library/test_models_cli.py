"""``desktop-app models ...`` run as people run it (a subprocess), on crafted files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from crafted_files import (EMBEDDING_SD1, ESRGAN, FAMILY_SHAPES, HOSTILE, KOHYA_LORA, make_hostile,
                           write_safetensors)

from desktop_app.models import model_library

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "desktop_app", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def listed() -> list[dict]:
    proc = run_cli("models", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_add_list_remove(tmp_path):
    model = write_safetensors(tmp_path / "dreamy.safetensors", FAMILY_SHAPES["sdxl"])
    before = listed()
    assert [e["name"] for e in before] == ["default"]
    assert before[0]["source"] == "embedded"

    proc = run_cli("models", "add", model, "--name", "Dreamy XL")
    assert proc.returncode == 0, proc.stderr
    assert "checkpoint" in proc.stdout and "SDXL" in proc.stdout
    entry = {e["name"]: e for e in listed()}["Dreamy XL"]
    assert (entry["kind"], entry["family"], entry["source"]) == ("checkpoint", "sdxl", "added")
    assert entry["size"] == model.stat().st_size and entry["path"] == str(model.resolve())

    table = run_cli("models", "list").stdout
    assert "Dreamy XL" in table and "sdxl" in table and "added" in table

    duplicate = one_line_error(run_cli("models", "add", write_safetensors(tmp_path / "other.safetensors",
                                                                          FAMILY_SHAPES["sd1"]),
                                       "--name", "Dreamy XL"))
    assert "already has a model named 'Dreamy XL'" in duplicate
    again = one_line_error(run_cli("models", "add", model))
    assert again.endswith("is already in the library as 'Dreamy XL'.")

    assert "Did you mean 'Dreamy XL'" in one_line_error(run_cli("models", "remove", "Dreamy"))
    assert run_cli("models", "remove", "Dreamy XL").returncode == 0
    assert [e["name"] for e in listed()] == ["default"]
    assert model.is_file()  # unregistered, never deleted


def test_every_bad_file_exits_2_with_its_message_and_leaves_the_library_unchanged(tmp_path):
    good = write_safetensors(tmp_path / "good.safetensors", FAMILY_SHAPES["sd1"])
    assert run_cli("models", "add", good).returncode == 0
    saved = model_library.library_path().read_bytes()
    for kind in sorted(HOSTILE):
        path, words = make_hostile(kind, tmp_path / kind)
        message = one_line_error(run_cli("models", "add", path, "--name", kind))
        for word in words:
            assert word in message, f"{kind}: {word!r} not in {message!r}"
        assert model_library.library_path().read_bytes() == saved, kind
    assert [e["name"] for e in listed()] == ["default", "good"]


def a1111_tree(root: Path) -> Path:
    write_safetensors(root / "models" / "Stable-diffusion" / "realistic.safetensors", FAMILY_SHAPES["sd1"])
    write_safetensors(root / "models" / "Stable-diffusion" / "xl" / "base.safetensors", FAMILY_SHAPES["sdxl"])
    make_hostile("ckpt", root / "models" / "Stable-diffusion")  # an old pickled checkpoint: skipped, not loaded
    write_safetensors(root / "models" / "Lora" / "style.safetensors", KOHYA_LORA)
    write_safetensors(root / "embeddings" / "bad-hands.safetensors", EMBEDDING_SD1)
    write_safetensors(root / "models" / "ESRGAN" / "4x-sharp.safetensors", ESRGAN)
    return root


def test_add_folder_scans_an_automatic1111_tree_without_copying(tmp_path):
    root = a1111_tree(tmp_path / "stable-diffusion-webui")
    proc = run_cli("models", "add-folder", root)
    assert proc.returncode == 0, proc.stderr
    assert "AUTOMATIC1111" in proc.stdout and "5 file(s) found" in proc.stdout
    assert "skipped" in proc.stdout and "model.ckpt" in proc.stdout and "convert it to .safetensors" in proc.stdout

    found = {e["name"]: e for e in listed()}
    expected = {"realistic": ("checkpoint", "sd1"), "base": ("checkpoint", "sdxl"), "style": ("lora", "sd1"),
                "bad-hands": ("embedding", "sd1"), "4x-sharp": ("upscaler", "unknown")}
    assert {n: (found[n]["kind"], found[n]["family"]) for n in expected} == expected
    assert all(found[n]["source"] == f"scanned: {root.resolve()}" for n in expected)
    assert not any(p.name == "realistic.safetensors" for p in model_library.paths.home().rglob("*"))

    # scanned on demand: a new file appears without adding the folder again
    write_safetensors(root / "models" / "Lora" / "later.safetensors", KOHYA_LORA)
    assert "later" in {e["name"] for e in listed()}
    assert model_library.resolve_lora("style") == root / "models" / "Lora" / "style.safetensors"
    assert model_library.resolve_model("realistic") == str((root / "models" / "Stable-diffusion" /
                                                            "realistic.safetensors").resolve())

    assert "already in the library" in one_line_error(run_cli("models", "add-folder", root))
    assert run_cli("models", "remove", root).returncode == 0
    assert [e["name"] for e in listed()] == ["default"]


def test_a_comfyui_tree_and_a_flat_folder(tmp_path):
    comfy = tmp_path / "ComfyUI"
    write_safetensors(comfy / "models" / "checkpoints" / "flux-dev.safetensors", FAMILY_SHAPES["flux"])
    write_safetensors(comfy / "models" / "loras" / "detail.safetensors", KOHYA_LORA)
    scan = model_library.add_folder(comfy)
    assert scan.layout == "ComfyUI"
    assert {(e.name, e.family) for e in scan.entries} == {("flux-dev", "flux"), ("detail", "sd1")}
    flat = tmp_path / "downloads"
    write_safetensors(flat / "detail.safetensors", KOHYA_LORA)  # the same name: kept apart
    write_safetensors(flat / "v2.safetensors", FAMILY_SHAPES["sd2-v"])
    scan = model_library.add_folder(flat)
    assert scan.layout == "flat"
    assert {(e.name, e.family) for e in scan.entries} == {("detail-2", "sd1"), ("v2", "sd2-v")}


def test_generate_model_resolves_names_and_suggests_close_ones(tmp_path):
    message = one_line_error(run_cli("generate", "a cat", "--model", "defualt", "--out", tmp_path / "a.png"))
    assert "Unknown model 'defualt'" in message and "Did you mean 'default'" in message
    assert not (tmp_path / "a.png").exists()


def test_resolve_lora_finds_paths_library_names_and_the_lora_folder(tmp_path):
    from desktop_app import paths

    own = write_safetensors(paths.loras_dir() / "mine.safetensors", KOHYA_LORA)
    assert model_library.resolve_lora("mine") == own
    assert model_library.resolve_lora("mine.safetensors") == own
    assert model_library.resolve_lora(str(own)) == own
    added = model_library.add(write_safetensors(tmp_path / "x.safetensors", KOHYA_LORA), name="ink")
    assert model_library.resolve_lora("ink") == Path(added.path)
    with pytest.raises(model_library.ModelError, match="Unknown LoRA 'mien'.*'mine'"):
        model_library.resolve_lora("mien")


def test_the_hugging_face_cache_lists_diffusers_repos(tiny_sd_dir, empty_hf_cache):
    import shutil

    repo = empty_hf_cache / "models--someone--tiny-sd"
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_sd_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    (repo / "blobs").mkdir()
    entries = {e.name: e for e in model_library.entries()}
    assert entries["someone/tiny-sd"].source == "hf-cache"
    assert entries["someone/tiny-sd"].kind == "diffusers"
    assert model_library.resolve_model("someone/tiny-sd") == str(snapshot)


def test_the_apps_own_lora_and_upscaler_folders_are_listed(tmp_path):
    from desktop_app import paths

    write_safetensors(paths.loras_dir() / "my-style.safetensors", KOHYA_LORA)
    write_safetensors(paths.upscalers_dir() / "4x-mine.safetensors", ESRGAN)
    found = {e["name"]: e for e in listed()}
    assert (found["my-style"]["kind"], found["my-style"]["source"]) == ("lora", f"scanned: {paths.loras_dir()}")
    assert found["4x-mine"]["kind"] == "upscaler"
    assert "move or delete the file" in one_line_error(run_cli("models", "remove", "my-style"))


def test_a_pytorch_upscaler_is_listed_only_from_an_upscaler_folder(tmp_path):
    from crafted_files import zip_file

    root = tmp_path / "webui"
    (root / "models" / "ESRGAN").mkdir(parents=True)
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    zip_file(root / "models" / "ESRGAN" / "4x-old.pth")
    zip_file(root / "models" / "Stable-diffusion" / "old.pth")
    scan = model_library.add_folder(root)
    assert [(e.name, e.kind, e.layout) for e in scan.entries] == [("4x-old", "upscaler", "pytorch")]
    assert [Path(p).name for p, _ in scan.skipped] == ["old.pth"]
    assert "convert it to .safetensors" in scan.skipped[0][1]


def test_a_failed_write_leaves_the_library_as_it_was(tmp_path, monkeypatch):
    model_library.add(write_safetensors(tmp_path / "a.safetensors", FAMILY_SHAPES["sd1"]))
    saved = model_library.library_path().read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    from desktop_app import paths as atomic_write

    monkeypatch.setattr(atomic_write.os, "fsync", disk_full)  # the temporary file is written, not yet in place
    with pytest.raises(OSError):
        model_library.add(write_safetensors(tmp_path / "b.safetensors", FAMILY_SHAPES["sd2"]))
    assert model_library.library_path().read_bytes() == saved
    assert [p.name for p in model_library.library_path().parent.glob(".library-*")] == []


def test_generate_with_a_library_name(tiny_model_dir, tmp_path):
    assert run_cli("models", "add", tiny_model_dir, "--name", "tiny").returncode == 0
    out = tmp_path / "cat.png"
    proc = run_cli("generate", "a cat", "--model", "tiny", "--out", out, "--seed", 1, "--steps", 2,
                   "--no-upscale", "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == "tiny-embedded" and out.is_file()


def test_resolve_model_names_paths_and_kinds(tmp_path):
    assert model_library.resolve_model("default") == "default"
    model = write_safetensors(tmp_path / "m.safetensors", FAMILY_SHAPES["sd1"])
    assert model_library.resolve_model(str(model)) == str(model)
    model_library.add(model, name="mine")
    assert model_library.resolve_model("mine") == str(model.resolve())
    model_library.add(write_safetensors(tmp_path / "l.safetensors", KOHYA_LORA), name="a lora")
    with pytest.raises(model_library.ModelError, match="'a lora' is a lora, not a model"):
        model_library.resolve_model("a lora")
    with pytest.raises(model_library.ModelError, match="Model not found: .*does not exist"):
        model_library.resolve_model(str(tmp_path / "gone"))
    with pytest.raises(model_library.ModelError, match="Did you mean 'mine'"):
        model_library.resolve_model("mien")


def test_a_file_that_is_no_usable_model_is_refused(tmp_path):
    unet = write_safetensors(tmp_path / "diffusion_pytorch_model.safetensors",
                             {"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": (8, 768)})
    message = one_line_error(run_cli("models", "add", unet))
    assert "not a model this app can use" in message and "add the whole model folder" in message
    assert not model_library.library_path().exists()


def test_a_remembered_prediction_type_picks_the_sd2_config(tmp_path):
    """SD 2.x files cannot tell 768 v-prediction from the 512 epsilon base: the user says it once."""
    from desktop_app.models import single_file

    base = write_safetensors(tmp_path / "sd2-base.safetensors", FAMILY_SHAPES["sd2"])
    assert single_file.file_defaults(base)["width"] == 768  # diffusers' own default for SD 2: 768, v

    proc = run_cli("models", "add", base, "--name", "SD2 base", "--prediction-type", "epsilon")
    assert proc.returncode == 0, proc.stderr
    assert "epsilon" in proc.stdout
    entry = {e["name"]: e for e in listed()}["SD2 base"]
    assert entry["prediction_type"] == "epsilon"
    assert "sd2 (epsilon)" in run_cli("models", "list").stdout
    assert model_library.stored_prediction_type(base) == "epsilon"
    assert single_file.remembered_prediction_type(base) == ("epsilon", "the model library")
    assert single_file.file_defaults(base)["width"] == 512  # the 512 epsilon config now

    bad = one_line_error(run_cli("models", "add", base, "--name", "x", "--prediction-type", "x0"))
    assert "invalid choice: 'x0'" in bad
    lora = write_safetensors(tmp_path / "style.safetensors", KOHYA_LORA)
    refused = one_line_error(run_cli("models", "add", lora, "--prediction-type", "v"))
    assert "applies to single-file checkpoints" in refused
    assert [e["name"] for e in listed()] == ["default", "SD2 base"]


@pytest.mark.parametrize("text, expected", [
    ('model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    parameterization: "v"\n',
     "v_prediction"),
    ("model:\n  params:\n    linear_start: 0.00085\n", "epsilon"),  # no parameterization: the LDM default
    ('model:\n  params:\n    parameterization: "eps"\n', "epsilon"),
])
def test_an_automatic1111_yaml_beside_the_file_gives_the_prediction_type(tmp_path, text, expected):
    from desktop_app.models import single_file

    model = write_safetensors(tmp_path / "sd21.safetensors", FAMILY_SHAPES["sd2"])
    assert single_file.remembered_prediction_type(model) == (None, "")
    (tmp_path / "sd21.yaml").write_text(text)
    assert single_file.remembered_prediction_type(model) == (expected, "sd21.yaml")


@pytest.mark.parametrize("text, message", [
    ("model: [unclosed\n", "sd21.yaml beside sd21.safetensors cannot be read"),
    ('model:\n  params:\n    parameterization: "x0"\n', "gives parameterization 'x0'"),
])
def test_a_broken_yaml_beside_the_file_is_named(tmp_path, text, message):
    from desktop_app.models import single_file
    from desktop_app.errors import ModelError

    model = write_safetensors(tmp_path / "sd21.safetensors", FAMILY_SHAPES["sd2"])
    (tmp_path / "sd21.yaml").write_text(text)
    with pytest.raises(ModelError, match=message):
        single_file.remembered_prediction_type(model)


def test_a_damaged_library_does_not_stop_a_file_loading_by_path(tmp_path):
    from desktop_app.models import single_file

    model = write_safetensors(tmp_path / "sd21.safetensors", FAMILY_SHAPES["sd2"])
    model_library.library_path().parent.mkdir(parents=True, exist_ok=True)
    model_library.library_path().write_text("{not json")
    assert model_library.stored_prediction_type(model) == ""
    assert single_file.remembered_prediction_type(model) == (None, "")
    assert single_file.file_defaults(model)["width"] == 768
