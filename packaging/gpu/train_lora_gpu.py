"""LoRA training speed and memory on the SD1.5 architecture, on a CUDA machine with no network.

    python packaging/gpu/train_lora_gpu.py OUT_FOLDER [--steps 300] [--resolution 512] [--batch 1] [--rank 8]
        [--lr 1e-4] [--mixed-precision auto|fp16|bf16|no] [--no-gradient-checkpointing] [--no-8bit-adam]

Builds SD1.5 (UNet, VAE, CLIP ViT-L text encoder) with random weights from the published configs (nothing is
downloaded; desktop_app/bench/gpu.py holds the configs), writes it as a diffusers folder under OUT_FOLDER, makes
five synthetic training images, and runs this app's trainer (desktop_app/training/trainer.py) on it: mixed
precision with the LoRA parameters in float32, gradient checkpointing, 8-bit Adam where bitsandbytes imports.
Prints steps/s (the trainer's own step events, the first step left out) and the peak GPU memory, and writes
OUT_FOLDER/train_lora_gpu.json. Needs about 4 GB of disk and a few minutes.

``--tiny --device cpu`` runs the same code on tiny configs on the CPU: a plumbing check, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder for the model, the images, the job and train_lora_gpu.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--mixed-precision", default="auto", choices=("auto", "fp16", "bf16", "no"))
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--no-8bit-adam", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="tiny configs (with --device cpu: a plumbing check)")
    args = parser.parse_args(argv)
    for name in ("steps", "resolution", "batch", "rank"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.resolution % 8:
        parser.error("--resolution must be a multiple of 8")
    return args


def build_model(folder: Path, device: str, tiny: bool) -> Path:
    import torch

    from desktop_app.bench.gpu import build_pipeline

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = build_pipeline("sd15_512", device, dtype, tiny=tiny)
    pipe.save_pretrained(folder, safe_serialization=True)
    del pipe
    return folder


def make_images(folder: Path, resolution: int, count: int = 5) -> Path:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        image = Image.new("RGB", (resolution + 64, resolution), (230, 120 + 20 * k, 40))
        ImageDraw.Draw(image).ellipse((32 + 8 * k, 32, resolution // 2 + 8 * k, resolution - 32),
                                      fill=(30, 60, 200))
        image.save(folder / f"{k}.png")
    return folder


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ["DESKTOP_APP_HOME"] = str(out / "home")
    sys.path.insert(0, str(ROOT))
    import torch

    from desktop_app.training.config import TrainConfig, bitsandbytes_available
    from desktop_app.training.trainer import train

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("train_lora_gpu: no CUDA GPU here (use --tiny --device cpu for a plumbing check)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    model = build_model(out / "sd15-random", args.device, args.tiny)
    images = make_images(out / "images", args.resolution)
    build_s = time.perf_counter() - started
    adam8 = not args.no_8bit_adam and cuda and bitsandbytes_available()
    config = TrainConfig(images=str(images), token="sks", class_word="ball", name="gpu-bench", model=str(model),
                         device=args.device, steps=args.steps, rank=args.rank, learning_rate=args.lr,
                         batch_size=args.batch, resolution=args.resolution, checkpoint_every=100,
                         sample_every=0, sample_steps=20, mixed_precision=args.mixed_precision if cuda else "no",
                         gradient_checkpointing=not args.no_gradient_checkpointing, use_8bit_adam=adam8)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    last: dict = {}

    def emit(event: dict) -> None:
        last.update(event)
        if event["event"] == "step":
            times.append(time.perf_counter())
            if event["step"] % 50 == 0:
                print(f"  step {event['step']}/{event['total']} loss {event['loss']:.4f}", flush=True)
        elif event["event"] == "started":
            print(f"training on {event['device']} ({event['dtype']}), {event['images']} images", flush=True)

    result = train(config, emit)
    figures = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name() if cuda else None, "torch": torch.__version__,
        "device": args.device, "tiny": args.tiny, "resolution": args.resolution, "batch": args.batch,
        "rank": args.rank, "steps": args.steps, "mixed_precision": config.mixed_precision,
        "gradient_checkpointing": config.gradient_checkpointing, "adam_8bit": adam8,
        "steps_per_s": round((len(times) - 1) / (times[-1] - times[0]), 3) if len(times) > 1 else None,
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
        "build_s": round(build_s, 1), "total_s": round(time.perf_counter() - started, 1),
        "final_loss": result["losses"][-1][1] if result.get("losses") else None,
        "lora": result["files"]["kohya"],
    }
    (out / "train_lora_gpu.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
