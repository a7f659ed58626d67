"""What each of the spec's excludes saves, and that the app works without them, from the source checkout.

    .venv/bin/python packaging/pyinstaller/check_exclusions.py [--each]

For every excluded top-level package: its installed size (what PyInstaller would otherwise collect, at most).
Then the self-test (no window) runs with all of them made unimportable, the way the bundle lacks them;
with --each, also once per package. A package the app needs fails the self-test here, in seconds, instead
of in a ten-minute build.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bundle_contents  # noqa: E402

# run in the child: hide the packages from imports and from importlib.util.find_spec, then run the self-test
BLOCKER = """
import importlib.abc, importlib.util, sys
BLOCK = tuple(sys.argv[1].split(","))
def blocked(name):
    return any(name == b or name.startswith(b + ".") for b in BLOCK)
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ModuleNotFoundError(f"No module named {name!r} (excluded from the bundle)", name=name)
        return None
sys.meta_path.insert(0, Blocker())
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: None if blocked(name) else _find_spec(name, package)
from desktop_app.cli import main
sys.exit(main(["selftest", "--no-window"]))
"""


def installed_mb(top: str) -> float | None:
    """Size of an installed top-level package (and its vendored .libs folder), in MB; None if absent."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    folder = Path(spec.origin).parent
    if not spec.submodule_search_locations:  # a single-file module
        return round(Path(spec.origin).stat().st_size / 1e6, 1)
    total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    libs = folder.with_name(f"{top.rsplit('.', 1)[-1]}.libs")
    if libs.is_dir():
        total += sum(f.stat().st_size for f in libs.rglob("*") if f.is_file())
    return round(total / 1e6, 1)


def selftest_without(modules: list[str]) -> bool:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    result = subprocess.run([sys.executable, "-c", BLOCKER, ",".join(modules)], env=env, capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0:
        failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
        print(f"  without {', '.join(modules)}: {failed or result.stderr.strip()[-300:]}")
    return result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--each", action="store_true", help="also run the self-test once per excluded package")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    excludes = [name for name in bundle_contents.EXCLUDES if not name.startswith("PySide6.")]
    sizes = {name: installed_mb(name) for name in excludes}
    works = {"all": selftest_without(excludes)}
    if args.each:
        for name in excludes:
            if sizes[name] is not None:
                works[name] = selftest_without([name])
    if args.json:
        print(json.dumps({"installed_mb": sizes, "selftest_passes_without": works}))
    else:
        for name, size in sizes.items():
            shown = "not installed" if size is None else f"{size:8.1f} MB"
            print(f"  {name:<26} {shown}")
        print(f"self-test without all of them: {'PASS' if works['all'] else 'FAIL'}")
    return 0 if all(works.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
