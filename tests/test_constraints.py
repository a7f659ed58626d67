"""constraints.txt pins every dependency pyproject.toml names, so that a fresh set-up (make, .ci/run) installs
the versions the suite passed with, not whatever was released since."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_dependency_is_pinned_and_its_pin_satisfies_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra
    pins = _pins()
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is a dependency but constraints.txt does not pin it"
        assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])


def test_the_pins_are_exact_versions_and_the_makefile_and_ci_use_them():
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version) for version in _pins().values())
    assert (ROOT / "Makefile").read_text().count("-c constraints.txt") >= 2
    assert "-c constraints.txt" in (ROOT / ".ci" / "run").read_text()
