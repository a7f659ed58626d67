"""Build the Linux bundle and installers, then measure them: ``make package``.

    .venv/bin/python packaging/build_linux.py                 # bundle, .tar.gz, .deb, report
    .venv/bin/python packaging/build_linux.py --bundle-only   # just dist/desktop-app/ (what CI checks)
    .venv/bin/python packaging/build_linux.py --skip-build    # installers + report from an existing bundle

Writes into dist/ (gitignored): desktop-app/ (the one-folder PyInstaller bundle),
desktop-app-VERSION-linux-x86_64.tar.gz, desktop-app_VERSION_amd64.deb and packaging-report.json. The report
(also printed) gives the bundle size, its ten largest parts, the build time, and the time to the window and to
the first image, frozen against the source checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from desktop_app.gui import system_libraries  # Qt-free: the xcb libraries the window needs

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
WORK = ROOT / "build"
SPEC = ROOT / "packaging" / "pyinstaller" / "desktop_app.spec"
APP = "desktop-app"
INSTALL_DIR = "/opt/desktop-app"
SHOWN_MARK = "window shown at "  # desktop_app/gui/app.py prints it with DESKTOP_APP_EXIT_AFTER_SHOW=1
# what the bundled Qt needs from the system (the xcb platform plugin; offscreen needs only the first five)
# (the xcb list is the one the window checks before it starts: desktop_app/gui/system_libraries.py)
DEB_DEPENDS = ", ".join(["libc6 (>= 2.31)", "libgl1", "libdbus-1-3",
                         *sorted(set(system_libraries.XCB_LIBRARIES.values()))])


def version() -> str:
    text = (ROOT / "desktop_app" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def bundle_dir() -> Path:
    return DIST / APP


# ---- build ---------------------------------------------------------------------------------------------


def build_bundle() -> float:
    """Run PyInstaller on the spec (niced: it is CPU-heavy); the seconds it took."""
    started = time.perf_counter()
    subprocess.run(["nice", "-n", "10", sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
                    "--distpath", str(DIST), "--workpath", str(WORK / "pyinstaller"), str(SPEC)],
                   check=True, cwd=ROOT)
    return time.perf_counter() - started


def make_tarball(bundle: Path, out: Path) -> Path:
    """dist/desktop-app-VERSION-linux-x86_64.tar.gz: the bundle folder, to unpack anywhere and run."""
    compressor = "pigz -1" if shutil.which("pigz") else "gzip -1"  # -6: 1.4x the time, 3% smaller
    subprocess.run(["tar", "-I", compressor, "-cf", str(out), "-C", str(bundle.parent), bundle.name], check=True)
    return out


def deb_control(version_: str, installed_kib: int) -> str:
    return (f"Package: {APP}\n"
            f"Version: {version_}\n"
            "Section: graphics\n"
            "Priority: optional\n"
            "Architecture: amd64\n"
            "Maintainer: desktop-app developers <desktop-app@users.noreply.github.com>\n"
            f"Installed-Size: {installed_kib}\n"
            f"Depends: {DEB_DEPENDS}\n"
            "Description: desktop diffusion studio: text to image, offline\n"
            " Type a prompt and watch the image form, on the CPU or a GPU. Ships a small embedded\n"
            " model, so it makes images with no download.\n")


def stage_deb_root(bundle: Path, root: Path, version_: str) -> Path:
    """The file tree the .deb installs: the bundle in /opt, a launcher, a menu entry, icons, the licence."""
    opt = root / INSTALL_DIR.lstrip("/")
    opt.parent.mkdir(parents=True)
    try:  # hard links: the bundle is gigabytes, and dpkg-deb only reads it
        shutil.copytree(bundle, opt, copy_function=os.link, symlinks=True)
    except OSError:
        shutil.rmtree(opt, ignore_errors=True)
        shutil.copytree(bundle, opt, symlinks=True)
    launcher = root / "usr" / "bin" / APP
    launcher.parent.mkdir(parents=True)
    shutil.copy(ROOT / "packaging" / "linux" / "desktop-app.sh", launcher)
    launcher.chmod(0o755)
    applications = root / "usr" / "share" / "applications"
    applications.mkdir(parents=True)
    shutil.copy(ROOT / "packaging" / "linux" / "desktop-app.desktop", applications / f"{APP}.desktop")
    icons = ROOT / "resources" / "icons"
    for size, name in ((256, "desktop-app.png"), (512, "desktop-app-512.png")):
        target = root / "usr" / "share" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP}.png"
        target.parent.mkdir(parents=True)
        shutil.copy(icons / name, target)
    scalable = root / "usr" / "share" / "icons" / "hicolor" / "scalable" / "apps" / f"{APP}.svg"
    scalable.parent.mkdir(parents=True)
    shutil.copy(icons / "desktop-app.svg", scalable)
    doc = root / "usr" / "share" / "doc" / APP
    doc.mkdir(parents=True)
    shutil.copy(ROOT / "LICENSE", doc / "copyright")
    debian = root / "DEBIAN"
    debian.mkdir()
    installed_kib = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink()) // 1024
    # no maintainer scripts: dpkg's own triggers refresh the menu and icon caches, and removal leaves nothing
    (debian / "control").write_text(deb_control(version_, installed_kib), encoding="utf-8")
    return root


def make_deb(bundle: Path, out: Path, version_: str) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK, prefix="deb-") as scratch:
        root = stage_deb_root(bundle, Path(scratch) / "root", version_)
        # zstd: gzip or xz take many minutes on gigabytes of CUDA libraries (dpkg >= 1.21.18 reads it)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zzstd", "-z3", "--build", str(root), str(out)],
                       check=True, stdout=subprocess.DEVNULL)
    return out


# ---- measure -------------------------------------------------------------------------------------------


def tree_size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() or f.is_symlink())


def largest_parts(bundle: Path, count: int = 10, depth: int = 2) -> list[dict]:
    """The biggest files or folders, ``depth`` levels into the bundle's library folder (_internal)."""
    base = bundle / "_internal" if (bundle / "_internal").is_dir() else bundle
    parts: dict[str, int] = {}
    for item in base.rglob("*"):
        if not (item.is_file() or item.is_symlink()) or item.is_dir():
            continue
        relative = item.relative_to(base).parts
        key = "/".join(relative[:depth]) if len(relative) > depth else "/".join(relative)
        parts[key] = parts.get(key, 0) + item.lstat().st_size
    ranked = sorted(parts.items(), key=lambda kv: -kv[1])[:count]
    return [{"part": name, "mb": round(size / 1e6, 1)} for name, size in ranked]


def time_to_window(command: list[str], env: dict) -> float:
    """Seconds from launch to the window's first paint (offscreen), as the app itself reports it."""
    env = dict(env, DESKTOP_APP_EXIT_AFTER_SHOW="1", QT_QPA_PLATFORM="offscreen")
    started = time.time()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    for line in result.stdout.splitlines():
        if line.startswith(SHOWN_MARK):
            return float(line[len(SHOWN_MARK):]) - started
    raise RuntimeError(f"{command[0]} did not report its window (exit {result.returncode}): "
                       f"{result.stderr.strip()[-300:]}")


def time_to_image(command: list[str], env: dict, out: Path) -> float:
    """Seconds for ``generate`` end to end: start, load the model, 20 steps, upscale, write the PNG."""
    started = time.perf_counter()
    subprocess.run(command + ["generate", "a red apple", "--out", str(out), "--seed", "1"], env=env, check=True,
                   capture_output=True, timeout=600)
    seconds = time.perf_counter() - started
    if not out.is_file():
        raise RuntimeError(f"{command[0]} generate wrote no image")
    return seconds


def measure_starts(bundle: Path) -> dict:
    frozen = [str(bundle / APP)]
    source = [str(Path(sys.executable).parent / APP)]
    if not Path(source[0]).exists():
        source = [sys.executable, "-m", "desktop_app"]
    figures = {}
    with tempfile.TemporaryDirectory(prefix="desktop-app-report-") as scratch:
        env = dict(os.environ, DESKTOP_APP_HOME=scratch, HF_HUB_OFFLINE="1")
        env.pop("DESKTOP_APP_RESOURCES", None)
        for label, command in (("frozen", frozen), ("source", source)):
            figures[label] = {
                "window_s": round(time_to_window(command, env), 2),
                "first_image_s": round(time_to_image(command, env, Path(scratch) / f"{label}.png"), 2),
            }
    return figures


def report(bundle: Path, build_s: float | None, artifacts: list[Path], timings: dict | None) -> dict:
    data = {
        "version": version(),
        "bundle": str(bundle.relative_to(ROOT)),
        "bundle_mb": round(tree_size(bundle) / 1e6, 1),
        "bundle_files": sum(1 for f in bundle.rglob("*") if f.is_file()),
        "largest_parts": largest_parts(bundle),
        "build_s": round(build_s, 1) if build_s is not None else None,
        "artifacts": {a.name: round(a.stat().st_size / 1e6, 1) for a in artifacts},
        "start": timings,
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    return data


def print_report(data: dict) -> None:
    print(f"\npackaging report: {APP} {data['version']}")
    build = f"{data['build_s']:.0f} s" if data["build_s"] is not None else "not built in this run"
    print(f"  bundle {data['bundle']}: {data['bundle_mb'] / 1000:.2f} GB in {data['bundle_files']} files; "
          f"build {build}")
    for name, mb in data["artifacts"].items():
        took = data.get("packing_s", {}).get(name)
        print(f"  {name}: {mb / 1000:.2f} GB" + (f", made in {took:.0f} s" if took is not None else ""))
    print("  ten largest parts:")
    for part in data["largest_parts"]:
        print(f"    {part['mb']:>8.1f} MB  {part['part']}")
    if data["start"]:
        print("  start-up             frozen    source")
        for key, label in (("window_s", "to the window"), ("first_image_s", "to the first image")):
            frozen, source = data["start"]["frozen"][key], data["start"]["source"][key]
            print(f"    {label:<18} {frozen:>6.2f} s  {source:>6.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Linux bundle, .tar.gz and .deb into dist/.")
    parser.add_argument("--bundle-only", action="store_true", help="only the PyInstaller bundle")
    parser.add_argument("--skip-build", action="store_true", help="reuse dist/desktop-app/")
    parser.add_argument("--no-timings", action="store_true", help="skip the start-up measurements")
    args = parser.parse_args(argv)
    WORK.mkdir(exist_ok=True)
    bundle = bundle_dir()
    build_s = None
    if not args.skip_build:
        build_s = build_bundle()
        print(f"built {bundle.relative_to(ROOT)} in {build_s:.0f} s")
    if not (bundle / APP).is_file():
        print(f"build_linux: {bundle / APP} does not exist; build it first (without --skip-build)",
              file=sys.stderr)
        return 2
    if args.bundle_only:
        return 0
    version_ = version()
    artifacts, packing_s = [], {}
    for name, make in ((f"{APP}-{version_}-linux-x86_64.tar.gz", lambda out: make_tarball(bundle, out)),
                       (f"{APP}_{version_}_amd64.deb", lambda out: make_deb(bundle, out, version_))):
        started = time.perf_counter()
        artifacts.append(make(DIST / name))
        packing_s[name] = round(time.perf_counter() - started, 1)
        print(f"wrote dist/{name} in {packing_s[name]:.0f} s")
    timings = None if args.no_timings else measure_starts(bundle)
    data = report(bundle, build_s, artifacts, timings)
    data["packing_s"] = packing_s
    (DIST / "packaging-report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print_report(data)
    print(f"\nwrote {(DIST / 'packaging-report.json').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
