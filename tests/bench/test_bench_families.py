"""``desktop-app bench`` on a transformer family's folder (issue 16): the overhead and previews sections run on a
tiny Flux at 32x32 for 2 steps and report their fields. The plumbing, never the figures
(tests/benchmarks/families_overhead.py measures those)."""

from __future__ import annotations

import json

import pytest
from tiny_families import build_family

from desktop_app.bench import overhead, previews
from desktop_app.bench.common import NOT_AVAILABLE
from desktop_app.cli import main

SPREAD = {"median", "min", "max", "runs"}


@pytest.fixture(scope="module")
def flux_report(tmp_path_factory):
    folder = build_family("flux", tmp_path_factory.mktemp("families") / "tiny-flux")
    return folder, tmp_path_factory.mktemp("bench") / "report.json"


@pytest.fixture
def flux_bench(flux_report, capsys):
    folder, out = flux_report
    if not out.exists():  # once per module; the user_home fixture is per test, so the run sits in one
        code = main(["bench", "--quick", "--json", "--sections", "overhead,previews", "--model", str(folder),
                     "--device", "cpu", "--width", "32", "--height", "32", "--steps", "2", "--out", str(out)])
        assert code == 0, capsys.readouterr().err[-3000:]
    return json.loads(out.read_text())


def test_overhead_runs_on_a_flux_folder_against_the_bare_flux_pipeline(flux_bench):
    assert flux_bench["model"]["overrides"] == {"width": 32, "height": 32, "steps": 2}
    section = flux_bench["sections"]["overhead"]
    assert set(overhead.KEYS) <= set(section) and not section.get("error"), section.get("error")
    settings = section["settings"]
    assert settings["family"] == "flux" and settings["size"] == [32, 32] and settings["steps"] == 2
    assert settings["sampler"] == "Euler" and settings["guidance"] == 3.5  # the family's own defaults
    assert section["images_match"] is True  # the bare call made the same picture from the same seed
    for key in ("ours_s", "bare_s", "ours_no_previews_s", "pair_ratio"):
        assert set(section[key]) == SPREAD and section[key]["runs"] == 3, key
    assert section["ratio"] > 0 and section["ratio_no_previews"] > 0
    assert settings["events_per_run"] >= 2 + 1  # a Progress per step, and the terminal event at least
    assert settings["preview_decoder"] == "VaePreview"  # the tiny VAE is small enough to decode every preview


def test_previews_run_on_a_flux_folder_with_the_decoders_it_has(flux_bench):
    section = flux_bench["sections"]["previews"]
    assert set(previews.KEYS) <= set(section) and not section.get("error"), section.get("error")
    for key in ("off_s", "every_step_vae_s", "every_step_linear_s", "app_default_s"):
        assert set(section[key]) == SPREAD, key
    assert section["every_step_fitted_s"] == NOT_AVAILABLE and section["ratio_every_step_fitted"] is None
    assert section["fit"]["found"].startswith(NOT_AVAILABLE)
    decoders = section["decoders"]
    assert decoders["every_step_linear"] == "LinearPreview" and decoders["app_default"] == "VaePreview"
    shown = decoders["previews_shown"]
    assert shown["off"] == 0 and shown["every_step_vae"] == 2 and shown["every_step_linear"] == 2
    assert section["ratio"] == section["ratio_every_step_vae"] > 0 and section["ratio_every_step_linear"] > 0
    profile = section["profile"]
    assert set(profile["linear_preview_ms"]) == SPREAD and set(profile["vae_preview_ms"]) == SPREAD
    assert profile["fitted_preview_ms"] == NOT_AVAILABLE and profile["step_ms"] > 0
    assert section["settings"]["family"] == "flux" and section["settings"]["size"] == [32, 32]


def test_the_other_sections_are_marked_not_run(flux_bench):
    for name in ("responsiveness", "startup", "throughput", "memory", "training", "gpu"):
        assert flux_bench["sections"][name].get("section_s") is None, name


def test_a_size_or_step_count_below_one_is_a_one_line_error(flux_report, capsys):
    folder, _ = flux_report
    assert main(["bench", "--model", str(folder), "--device", "cpu", "--steps", "0"]) == 2
    assert "--steps must be a positive number" in capsys.readouterr().err
