"""The packaging files that this machine cannot run (Windows, macOS, hosted CI) checked as far as it can, and
the Linux build's pieces on a small stand-in bundle."""

from __future__ import annotations

import configparser
import os
import plistlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from packaging_paths import PACKAGING, ROOT, load

build_linux = load("build_linux.py", "build_linux_under_test")
bundle_contents = load("pyinstaller/bundle_contents.py", "bundle_contents_under_test")
frozen_entry = load("pyinstaller/frozen_entry.py", "frozen_entry_under_test")

SPEC = PACKAGING / "pyinstaller" / "desktop_app.spec"
ISS = PACKAGING / "windows" / "desktop_app.iss"
WORKFLOW = ROOT / ".github" / "workflows" / "installers.yml"
APP = bundle_contents.APP_NAME


# ---- PyInstaller spec and its lists ------------------------------------------------------------------------


def test_spec_compiles_and_names_files_that_exist():
    text = SPEC.read_text(encoding="utf-8")
    compile(text, str(SPEC), "exec")
    assert "COLLECT(" in text and "onefile" not in text.lower()  # one folder, not a self-unpacking exe
    for relative in ("frozen_entry.py",):
        assert (PACKAGING / "pyinstaller" / relative).is_file()
    for icon in re.findall(r'"(desktop-app\.(?:ico|icns|png))"', text):
        assert (ROOT / "resources" / "icons" / icon).is_file(), icon
    assert (ROOT / "resources" / "models" / "emoji-mini" / "model_index.json").is_file()


def test_every_metadata_distribution_is_installed():
    import importlib.metadata

    for name in bundle_contents.metadata_to_copy():
        assert importlib.metadata.version(name), name  # raises PackageNotFoundError for a misspelt name


def test_lazy_module_filters_keep_what_the_app_loads_and_drop_the_rest():
    keep_d, keep_t = bundle_contents.keep_diffusers_module, bundle_contents.keep_transformers_module
    assert keep_d("diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion")
    assert keep_d("diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl")
    assert keep_d("diffusers.pipelines.pipeline_utils")  # a module, not a pipeline family
    assert keep_d("diffusers.schedulers.scheduling_dpmsolver_multistep")
    assert not keep_d("diffusers.pipelines.kandinsky")
    assert not keep_d("diffusers.commands.env")
    assert keep_t("transformers.models.bert.modeling_bert") and keep_t("transformers.models.clip")
    assert keep_t("transformers.modeling_utils")
    assert not keep_t("transformers.models.llama.modeling_llama")


def test_excluded_modules_are_not_imported_by_the_app():
    imported: dict[str, set] = {}
    for source in (ROOT / "desktop_app").rglob("*.py"):
        for match in re.finditer(r"^\s*(?:from|import)\s+([\w.]+)", source.read_text(encoding="utf-8"), re.M):
            imported.setdefault(match.group(1), set()).add(source.relative_to(ROOT).as_posix())
    for excluded in bundle_contents.EXCLUDES:
        clashes = {name: files for name, files in imported.items()
                   if name == excluded or name.startswith(excluded + ".")}
        guarded = bundle_contents.OPTIONAL_IMPORTS.get(excluded)
        if guarded is not None:  # imported only where it is looked for first, with a fallback without it
            assert set().union(*clashes.values()) <= {guarded, "desktop_app/bench/cpu_openvino.py"}, clashes
            assert f'find_spec("{excluded}")' in (ROOT / guarded).read_text(encoding="utf-8")
            continue
        assert not clashes, f"{excluded} is excluded from the bundle but imported: {clashes}"


def test_frozen_entry_turns_the_hub_off_unless_the_user_opts_in():
    env = {"HF_HUB_OFFLINE": "0"}
    frozen_entry.offline_environment(env)
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    env = {frozen_entry.ALLOW_HUB: "1", "HF_HUB_OFFLINE": "0"}
    frozen_entry.offline_environment(env)
    assert env["HF_HUB_OFFLINE"] == "0" and "TRANSFORMERS_OFFLINE" not in env


def test_frozen_resources_are_found_in_the_bundle(monkeypatch, tmp_path):
    from desktop_app import resources

    monkeypatch.delenv("DESKTOP_APP_RESOURCES", raising=False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.resources_dir() == tmp_path / "resources"
    assert resources.default_model_dir() == tmp_path / "resources" / "models" / "emoji-mini"


# ---- Linux: the .deb on a stand-in bundle ------------------------------------------------------------------


@pytest.fixture
def fake_bundle(tmp_path):
    bundle = tmp_path / "dist" / APP
    (bundle / "_internal" / "torch" / "lib").mkdir(parents=True)
    (bundle / "_internal" / "torch" / "lib" / "libtorch_cpu.so").write_bytes(b"\0" * 300_000)
    (bundle / "_internal" / "libpython3.so").write_bytes(b"\0" * 100_000)
    (bundle / "_internal" / "resources").mkdir()
    (bundle / "_internal" / "resources" / "a.txt").write_bytes(b"x" * 10)
    exe = bundle / APP
    exe.write_text("#!/bin/sh\necho frozen \"$@\"\n")
    exe.chmod(0o755)
    return bundle


def test_largest_parts_ranks_the_bundle_by_size(fake_bundle):
    parts = build_linux.largest_parts(fake_bundle, count=2)
    assert [p["part"] for p in parts] == ["torch/lib", "libpython3.so"]
    assert parts[0]["mb"] == 0.3


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="needs dpkg-deb")
def test_deb_installs_launcher_menu_entry_and_icon_and_has_no_scripts(fake_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(build_linux, "WORK", tmp_path / "work")
    deb = build_linux.make_deb(fake_bundle, tmp_path / "app.deb", "0.1.0")
    info = subprocess.run(["dpkg-deb", "--info", str(deb)], capture_output=True, text=True, check=True).stdout
    assert f"Package: {APP}" in info and "Architecture: amd64" in info
    assert not re.search(r"\b(preinst|postinst|prerm|postrm)\b", info)  # removal leaves nothing behind
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    check_installed_tree(root)
    launcher = root / "usr" / "bin" / APP
    text = launcher.read_text()
    assert f"exec {build_linux.INSTALL_DIR}/{APP} \"$@\"" in text


def check_installed_tree(root):
    """What a .deb must put in place (used on the real one too, in test_frozen_bundle.py)."""
    assert os.access(root / "opt" / APP / APP, os.X_OK)
    assert os.access(root / "usr" / "bin" / APP, os.X_OK)
    entry = root / "usr" / "share" / "applications" / f"{APP}.desktop"
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(entry)
    section = parser["Desktop Entry"]
    assert section["Exec"].split()[0] == APP and section["Icon"] == APP and section["Type"] == "Application"
    assert (root / "usr" / "share" / "icons" / "hicolor" / "256x256" / "apps" / f"{APP}.png").is_file()
    assert (root / "usr" / "share" / "doc" / APP / "copyright").is_file()
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
        assert result.returncode == 0 and not result.stdout.strip(), result.stdout


def test_icons_are_the_sizes_the_installers_expect():
    from PIL import Image

    icons = ROOT / "resources" / "icons"
    assert (icons / "desktop-app.svg").is_file()
    assert Image.open(icons / "desktop-app.png").size == (256, 256)
    assert Image.open(icons / "desktop-app-512.png").size == (512, 512)
    with Image.open(icons / "desktop-app.ico") as ico:
        assert (256, 256) in ico.info["sizes"] and (16, 16) in ico.info["sizes"]
    with Image.open(icons / "desktop-app.icns") as icns:
        assert icns.format == "ICNS"


# ---- Windows, macOS, hosted CI -----------------------------------------------------------------------------


def iss_defines(text: str) -> dict:
    return dict(re.findall(r'^\s*#define\s+(\w+)\s+"([^"]*)"', text, re.M))


def test_inno_setup_script_is_per_user_with_shortcut_and_uninstaller():
    text = ISS.read_text(encoding="utf-8")
    defines = iss_defines(text)

    def expand(value: str) -> str:
        return re.sub(r"\{#(\w+)\}", lambda m: defines[m.group(1)], value)

    setup = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    assert setup["PrivilegesRequired"] == "lowest"
    assert setup["DefaultDirName"].startswith("{localappdata}")  # writable without admin rights
    # every file it reads exists (or is the bundle the build makes), relative to the script's folder
    for key in ("SetupIconFile", "LicenseFile"):
        assert (ISS.parent / setup[key].replace("\\", "/")).resolve().is_file(), key
    bundle = (ISS.parent / expand(defines["BundleDir"]).replace("\\", "/")).resolve()
    assert bundle == build_linux.DIST / APP  # the spec's COLLECT folder
    assert re.search(r'^Source: "\{#BundleDir\}\\\*";.*recursesubdirs', text, re.M)
    # the shortcut starts the windowed executable the spec builds on Windows
    assert defines["AppExeName"] == f"{APP}-gui.exe"
    assert 'name=f"{APP}-gui"' in SPEC.read_text(encoding="utf-8")
    assert re.search(r'^Name: "\{group\}\\\{#AppName\}"; Filename: "\{app\}\\\{#AppExeName\}"', text, re.M)
    assert "{uninstallexe}" in text


def test_macos_plist_parses_and_matches_the_bundle():
    with open(PACKAGING / "macos" / "Info.plist", "rb") as handle:
        plist = plistlib.load(handle)
    assert re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+){2,}", plist["CFBundleIdentifier"])
    assert plist["NSHighResolutionCapable"] is True and plist["LSBackgroundOnly"] is False
    assert (ROOT / "resources" / "icons" / plist["CFBundleIconFile"]).is_file()
    assert plist["CFBundleExecutable"] == f"{APP}-gui"
    import desktop_app

    assert plist["CFBundleShortVersionString"] == desktop_app.__version__


def test_shell_scripts_pass_bash_syntax_check():
    scripts = sorted(PACKAGING.rglob("*.sh")) + [ROOT / ".ci" / "run"]
    assert len(scripts) >= 3
    for script in scripts:
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_workflow_builds_on_the_three_systems_with_files_that_exist():
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    job = workflow["jobs"]["build"]
    systems = job["strategy"]["matrix"]["os"]
    for family in ("ubuntu", "windows", "macos"):
        assert any(name.startswith(family) for name in systems), family
    commands = "\n".join(step.get("run", "") for step in job["steps"])
    for path in re.findall(r"packaging[/\\][\w/\\.]+\.(?:py|sh|iss|spec)", commands):
        assert (ROOT / path.replace("\\", "/")).is_file(), path
    assert commands.count("selftest") >= 3  # the frozen self-test on each system


def test_frozen_entry_answers_the_training_panel_call_of_its_own_executable():
    # the panel runs "<sys.executable> -m desktop_app.training.run --config job.json": frozen, that is the app
    argv = ["desktop-app", "-m", "desktop_app.training.run", "--config", "job.json"]
    assert frozen_entry.child_module(argv) == "desktop_app.training.run"
    assert frozen_entry.child_module(["desktop-app", "generate", "a cat"]) is None
    assert frozen_entry.child_module(["desktop-app", "-m", "os"]) is None  # no other module runs this way
    from desktop_app.gui import training_panel

    assert "desktop_app.training.run" in open(training_panel.__file__, encoding="utf-8").read()
