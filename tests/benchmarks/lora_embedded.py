"""A LoRA on 5 images at 64 px on the embedded default model, on the CPU (issue 6: fine-tuning).

    OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/lora_embedded.py [--steps 300] [--samples 8]
    .venv/bin/python tests/benchmarks/lora_embedded.py --compare-processes [--steps 40]

Prints the training speed (steps/s, from the trainer's own step events; model load and export excluded) and
whether the trigger prompt moved toward the training images: the mean distance (16x16 colour layouts, see
desktop_app/training/originality.py) from each trigger-prompt sample to its nearest training image, with the
base model and with the LoRA, same seeds. A prompt without the trigger is the control. Not collected by pytest.

``--compare-processes``: steps per second (and images per second) of the training process with one process and
with two CPU processes (accelerate's launcher, gloo; batch 1 per process, so two processes learn from two images
a step), timed from the step events after the first, one run each, alternately.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def training_images(folder: Path) -> list[Path]:
    """Five photos of one made-up subject: a blue disc with a white stripe on an orange ground, varied sizes."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True)
    written = []
    for k, size in enumerate([(96, 80), (80, 96), (128, 128), (72, 72), (100, 64)]):
        image = Image.new("RGB", size, (235, 130 + 8 * k, 30))
        draw = ImageDraw.Draw(image)
        w, h = size
        box = (w * 0.2 + 2 * k, h * 0.2, w * 0.8 + 2 * k, h * 0.85)
        draw.ellipse(box, fill=(30, 60, 200))
        draw.rectangle((box[0] + 6, (box[1] + box[3]) / 2 - 3, box[2] - 6, (box[1] + box[3]) / 2 + 3),
                       fill=(250, 250, 250))
        path = folder / f"subject-{k}.png"
        image.save(path)
        written.append(path)
    return written


def draw(pipe, prompt: str, seeds: list[int], folder: Path, tag: str) -> list[Path]:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        image = pipe(prompt, num_inference_steps=20, guidance_scale=5.0, width=64, height=64,
                     generator=torch.Generator().manual_seed(seed)).images[0]
        path = folder / f"{tag}-{seed}.png"
        image.save(path)
        paths.append(path)
    return paths


def process_speed(root: Path, processes: int, steps: int, tag: str) -> dict:
    """One run of ``python -m desktop_app.training.run`` on ``processes`` processes: steps/s from its events."""
    import subprocess
    import sys

    from desktop_app.training.config import TrainConfig

    config = TrainConfig(images=str(root / "images"), token="sks", class_word="ball", name=f"procs-{tag}",
                         steps=steps, rank=4, learning_rate=5e-4, resolution=64, checkpoint_every=0,
                         sample_every=0, sample_steps=2, processes=processes)
    job = root / f"{config.name}.json"
    config.save(job)
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo))
    # OMP_NUM_THREADS as given applies to every process (unset: one process takes all cores, N take 1/N each)
    process = subprocess.Popen([sys.executable, "-m", "desktop_app.training.run", "--config", str(job)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=repo)
    times = []
    for line in process.stdout:
        if json.loads(line)["event"] == "step":
            times.append(time.perf_counter())
    process.wait()
    rate = (len(times) - 1) / (times[-1] - times[0])
    return {"processes": processes, "steps_per_s": round(rate, 2), "images_per_s": round(rate * processes, 2)}


def compare_processes(steps: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="lora-procs-"))
    os.environ["DESKTOP_APP_HOME"] = str(root / "home")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    training_images(root / "images")
    runs = [process_speed(root, n, steps, f"{n}-{k}") for k in range(2) for n in (1, 2)]
    figures = {f"{n}_process{'es' if n > 1 else ''}": max((r for r in runs if r["processes"] == n),
                                                          key=lambda r: r["steps_per_s"]) for n in (1, 2)}
    print(json.dumps({"cpus": os.cpu_count(), "steps": steps, "best_of_2": figures, "runs": runs}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--compare-processes", action="store_true", help="steps/s with 1 and 2 processes only")
    args = parser.parse_args()
    if args.compare_processes:
        compare_processes(args.steps if args.steps != 300 else 40)
        return
    root = Path(tempfile.mkdtemp(prefix="lora-bench-"))
    os.environ["DESKTOP_APP_HOME"] = str(root / "home")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from desktop_app import paths
    from desktop_app.engine.loader import load_model
    from desktop_app.training.config import TrainConfig
    from desktop_app.training.originality import mean_distance
    from desktop_app.training.trainer import train

    train_paths = training_images(root / "images")
    seeds = list(range(100, 100 + args.samples))
    trigger, control = "a photo of sks ball", "a photo of a cat"
    pipe = load_model("default", "cpu", torch.float32).pipe
    before = draw(pipe, trigger, seeds, root / "samples", "base")
    control_before = draw(pipe, control, seeds, root / "samples", "control-base")

    step_times: list[float] = []
    started = time.perf_counter()

    def emit(event: dict) -> None:
        if event["event"] == "step":
            step_times.append(time.perf_counter())

    config = TrainConfig(images=str(root / "images"), token="sks", class_word="ball", name="bench",
                         steps=args.steps, rank=args.rank, learning_rate=args.lr, resolution=64,
                         checkpoint_every=100, sample_every=0, crop="random")
    result = train(config, emit)
    total_s = time.perf_counter() - started
    steps_per_s = (len(step_times) - 1) / (step_times[-1] - step_times[0])

    pipe.load_lora_weights(str(paths.loras_dir() / "bench.safetensors"), adapter_name="bench")  # the kohya file
    after = draw(pipe, trigger, seeds, root / "samples", "lora")
    control_after = draw(pipe, control, seeds, root / "samples", "control-lora")
    figures = {
        "threads": torch.get_num_threads(), "steps": args.steps, "rank": args.rank, "lr": args.lr,
        "images": len(train_paths), "resolution": 64,
        "steps_per_s": round(steps_per_s, 2), "training_wall_s": round(total_s, 1),
        "trigger_distance_base": round(mean_distance(before, train_paths), 4),
        "trigger_distance_lora": round(mean_distance(after, train_paths), 4),
        "control_distance_base": round(mean_distance(control_before, train_paths), 4),
        "control_distance_lora": round(mean_distance(control_after, train_paths), 4),
        "max_similarity_to_a_training_image": max(r["similarity"] for r in result["originality"]),
        "samples_folder": str(root / "samples"),
    }
    print(json.dumps(figures, indent=1))
    base, lora = figures["trigger_distance_base"], figures["trigger_distance_lora"]
    print(f"{steps_per_s:.2f} steps/s; trigger samples to the training images: {base}"
          f" (base) -> {lora} (LoRA), {100 * (base - lora) / base:.0f}%"
          f" closer; control prompt {figures['control_distance_base']} -> {figures['control_distance_lora']}")


if __name__ == "__main__":
    main()
