"""Section 6, memory: peak resident memory of a ``desktop-app generate`` process on the model (one image,
the 4x upscale where the model has one), of bare ``import torch, diffusers`` for scale, and of the window
(from the responsiveness section's child); and the peak GPU memory of a generation where there is a GPU.

Peak RSS is each child's own ``ru_maxrss`` (os.wait4), so nothing beyond the standard library is needed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from desktop_app.bench.common import Settings, last_line, run_child, spread

KEYS = ("generate_peak_rss_mb", "import_peak_rss_mb", "window_peak_rss_mb", "peak_gpu_mb", "settings")
SKIPPED_GPU = "skipped: no CUDA device"


def run(settings: Settings) -> dict:
    peaks = settings.shared.get("generate_peak_rss_mb")
    if not peaks:  # the start-up section did not run: measure here
        peaks = []
        with tempfile.TemporaryDirectory() as folder:
            for index in range(settings.process_runs):
                out = Path(folder) / f"memory-{index}.png"
                child = run_child(["-m", "desktop_app", "generate", settings.prompt, "--out", str(out),
                                   "--model", settings.model, "--device", settings.device], timeout=300)
                if child.returncode != 0:
                    raise RuntimeError(f"desktop-app generate failed: {last_line(child.stderr)}")
                peaks.append(child.peak_rss_mb)
    imports = [run_child(["-c", "import torch, diffusers"], timeout=120).peak_rss_mb
               for _ in range(1 if settings.quick else 3)]
    return {
        "generate_peak_rss_mb": spread(peaks, 1), "import_peak_rss_mb": spread(imports, 1),
        "window_peak_rss_mb": settings.shared.get("window_peak_rss_mb"),
        "peak_gpu_mb": peak_gpu(settings),
        "settings": {"what": "desktop-app generate with the model's defaults, one image"},
    }


def peak_gpu(settings: Settings) -> dict | str:
    import torch

    from desktop_app.engine.generate import Engine

    if not torch.cuda.is_available():
        return SKIPPED_GPU
    engine = Engine(settings.device)
    if engine.device.type != "cuda":
        return f"skipped: the bench runs on {engine.device}"
    engine.load(settings.model)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    request = settings.request(preview=True, upscale="default" if engine.model.upscaler else None)
    engine.run(request, lambda e: None)
    torch.cuda.synchronize()
    return {"allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1),
            "weights_mb": round(sum(p.numel() * p.element_size()
                                    for part in (engine.model.pipe.unet, engine.model.pipe.vae)
                                    for p in part.parameters()) / 2**20, 1)}
