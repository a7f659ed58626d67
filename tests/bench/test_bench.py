"""``desktop-app bench``: the plumbing (every section runs in --quick mode and reports every key), never the
figures. Timing claims live in the report itself, measured in one run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from desktop_app.bench import gpu, report, startup

REPO = Path(__file__).resolve().parents[2]
TOP_KEYS = ("schema", "date", "quick", "machine", "load_average_before", "load_average_after", "model", "note",
            "sections", "seconds")
MACHINE_KEYS = ("cpu", "cores", "usable_cores", "torch", "torch_threads", "device", "dtype", "gpu")


def _run(args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def quick_report(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "report.json"
    proc = _run(["-m", "desktop_app", "bench", "--quick", "--json", "--model", tiny_model_dir, "--device", "cpu",
                 "--out", out])
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == printed  # --out writes the same report
    return printed


def test_every_section_reports_every_key(quick_report):
    assert set(TOP_KEYS) <= set(quick_report)
    assert set(MACHINE_KEYS) <= set(quick_report["machine"])
    assert quick_report["quick"] is True and quick_report["machine"]["device"] == "cpu"
    assert list(quick_report["sections"]) == list(report.SECTIONS)
    for name, module in report.SECTIONS.items():
        section = quick_report["sections"][name]
        assert set(module.KEYS) <= set(section), name
        assert not section.get("error"), f"{name}: {section.get('error')}"


def test_figures_come_as_median_and_spread(quick_report):
    sections = quick_report["sections"]
    for summary in (sections["overhead"]["ours_s"], sections["overhead"]["bare_s"],
                    sections["previews"]["off_s"], sections["startup"]["window_shown_s"],
                    sections["startup"]["first_image_s"], sections["memory"]["generate_peak_rss_mb"]):
        assert set(summary) == {"median", "min", "max", "runs"}
        assert summary["min"] <= summary["median"] <= summary["max"] and summary["runs"] >= 2


def test_what_is_not_built_or_not_here_says_so(quick_report):
    sections = quick_report["sections"]
    assert sections["training"]["status"] == "measured" and sections["training"]["ratio"] > 0
    training = sections["responsiveness"]["training"]  # the window probed while the Fine-tune panel trains
    assert training["outcome"] == "finished" and training["max_gap_ms"] > 0 and training["ticks"] > 0
    if quick_report["machine"]["gpu"] is None:
        assert sections["gpu"]["status"] == gpu.SKIPPED
        assert sections["gpu"]["sd15_512"]["standard"]["it_per_s"] == gpu.SKIPPED
        assert sections["memory"]["peak_gpu_mb"] == gpu.SKIPPED or "skipped" in sections["memory"]["peak_gpu_mb"]


def test_the_table_names_every_section(tiny_model_dir):
    proc = _run(["-m", "desktop_app", "bench", "--quick", "--model", tiny_model_dir, "--device", "cpu",
                 "--only", "training,gpu"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    for title in report.TITLES.values():
        assert title in proc.stdout


def test_bad_options_are_one_line_errors(tiny_model_dir, tmp_path):
    proc = _run(["-m", "desktop_app", "bench", "--only", "nonsense", "--model", tiny_model_dir])
    assert proc.returncode == 2 and "unknown section" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run(["-m", "desktop_app", "bench", "--model", tmp_path / "missing"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_the_window_prints_when_shown_with_the_marks_the_bench_reads():
    from desktop_app.gui import app

    assert (app.EXIT_AFTER_SHOW, app.SHOWN_MARK) == (startup.EXIT_AFTER_SHOW, startup.SHOWN_MARK)


def test_the_gpu_script_runs_its_code_on_tiny_configs(tmp_path):
    # SDXL only (the SD1.5 path is the same code on a simpler pipeline): keeps the test short
    proc = _run([REPO / "packaging" / "gpu" / "bench_gpu.py", tmp_path, "--tiny", "--device", "cpu", "--quick",
                 "--no-compile", "--models", "sdxl_1024"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert set(gpu.KEYS) <= set(result)
    for name in ("sdxl_1024",):
        assert result[name]["error"] is None, result[name]["error"]
        for mode in ("standard", "fast"):
            assert set(gpu.RUN_KEYS) <= set(result[name][mode])
            assert isinstance(result[name][mode]["ours_s"], dict)  # our engine ran the injected pipeline


def test_gpu_keys_are_all_there_when_skipped():
    skipped = gpu.skipped()
    assert set(gpu.KEYS) <= set(skipped)
    for name in gpu.MODELS:
        assert set(gpu.MODEL_KEYS) <= set(skipped[name])
        assert all(skipped[name][mode][key] == gpu.SKIPPED for mode in ("standard", "fast")
                   for key in gpu.RUN_KEYS)


def test_the_report_renders_the_performance_table(quick_report):
    table = report.markdown(quick_report)
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| #")]
    assert [row.split(" | ")[0] for row in rows] == ["| 1", *["| 2"] * 4, *["| 3"] * 3, "| 4", "| 4", "| 5", "| 5",
                                                     "| 6", "| 6", "| 7", "| 8", *["| 9"] * 5]
    assert "--quick" in table.splitlines()[0]
