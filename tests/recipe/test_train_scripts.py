"""The recipe's three training scripts run through the shared loop on a tiny synthetic cache (seconds, CPU):
the checkpoints keep their layout, and a second stretch resumes where the first stopped."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

RECIPE = Path(__file__).resolve().parents[2] / "packaging" / "model_recipe"
DRIVER = """
import sys
from pathlib import Path
import torch
sys.path.insert(0, sys.argv[1])
import train_sr, train_unet, train_vae
cache, steps = Path(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
train_vae.train(cache, 10, steps=steps, batch=2)
train_unet.train(cache, 10, steps=steps, batch=2, lr=3e-4, lr_final=1e-5)
train_sr.train(cache, 10, steps=steps, batch=2, lr_final=1e-5)
"""


def synthetic_cache(cache: Path, n: int = 4) -> None:
    """What the prepare and encode stages leave: images, their 4x versions, the split, latents, captions."""
    rng = np.random.default_rng(0)
    (cache / "data").mkdir(parents=True)
    np.savez(cache / "data" / "dataset.npz", images=rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8),
             hi_res=rng.integers(0, 255, (n, 256, 256, 3), dtype=np.uint8))
    items = [dict(index=i, split="val" if i == n - 1 else "train", style="fluent", hi_res=i) for i in range(n)]
    (cache / "data" / "meta.json").write_text(json.dumps({"items": items}))
    g = torch.Generator().manual_seed(0)
    torch.save({"mean": torch.randn(n, 4, 16, 16, generator=g), "std": torch.rand(n, 4, 16, 16, generator=g),
                "scaling": 0.5, "text": torch.randn(2 * n, 20, 384, generator=g).half(),
                "owner": torch.arange(n).repeat(2), "captions": ["x"] * (2 * n),
                "uncond": torch.randn(20, 384, generator=g).half()}, cache / "encoded.pt")


def train(cache: Path, steps: int) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(RECIPE), str(cache), str(steps)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_the_three_stages_train_save_and_resume(tmp_path):
    synthetic_cache(tmp_path)
    out = train(tmp_path, 2)
    assert "resumed" not in out
    layout = {"vae": {"model", "opt", "step", "seconds", "val_psnr"},
              "unet": {"model", "ema", "opt", "step", "seconds"},
              "sr": {"model", "opt", "step", "seconds"}}
    for name, keys in layout.items():
        state = torch.load(tmp_path / "ckpt" / f"{name}.pt", weights_only=False)
        assert set(state) == keys and state["step"] == 2, name
    out = train(tmp_path, 3)
    for name in layout:
        assert f"{name}: resumed at step 2" in out
        assert torch.load(tmp_path / "ckpt" / f"{name}.pt", weights_only=False)["step"] == 3
    vae_log = [json.loads(line) for line in (tmp_path / "logs" / "vae.jsonl").read_text().splitlines()]
    assert [row["step"] for row in vae_log] == [2, 3] and "val_psnr" in vae_log[-1]
