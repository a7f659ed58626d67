"""``desktop-app train``: teach a model a subject from a folder of images (a LoRA, DreamBooth style).

Runs in this process with a progress bar on stderr; Ctrl-C pauses (saves a checkpoint), ``--resume``
continues. The window runs the same trainer in a separate process (desktop_app.training.run).
Exit codes as everywhere: 0 done, 2 bad input, 1 training failed, 130 paused by Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys

from desktop_app.cli.errors import EXIT_INTERRUPTED, EXIT_OK, PROG, BadInput
from desktop_app.errors import printable


def register(commands) -> None:
    train = commands.add_parser(
        "train", help="train a LoRA on your own images (DreamBooth style)",
        description="Teach the model a subject or style from a folder of PNG/JPEG/WebP images (a .txt caption "
                    "beside an image replaces the instance prompt \"a photo of TOKEN CLASS\"). Writes "
                    "NAME.safetensors (kohya format, for AUTOMATIC1111/ComfyUI too) and NAME/ (diffusers format) "
                    "to the LoRA folder; use it with: generate --lora NAME. Defaults come from the device's "
                    "preset.")
    train.add_argument("--images", metavar="DIR", help="the folder of training images")
    train.add_argument("--token", help="the trigger word, a rare one like sks or ohwx")
    train.add_argument("--class-word", default="", metavar="WORD", help="what the subject is (dog, person, style)")
    train.add_argument("--model", default="default", help='"default" (the embedded model) or a diffusers folder')
    train.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    train.add_argument("--steps", type=int, help="training steps")
    train.add_argument("--rank", type=int, help="LoRA rank")
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument("--batch", type=int, help="images per step")
    train.add_argument("--resolution", type=int, metavar="PX", help="training size (default: the model's)")
    train.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    train.add_argument("--crop", choices=("center", "random"), default="center", help="how images are cropped")
    train.add_argument("--out", metavar="NAME", help="the LoRA's name (default: TOKEN)")
    train.add_argument("--resume", action="store_true", help="continue the job NAME from its last checkpoint")
    train.add_argument("--train-text-encoder", action="store_true", help="train a LoRA on the text encoder too")
    train.add_argument("--prior-preservation", action="store_true",
                       help="mix in class images drawn by the base model (needs --class-word)")
    train.add_argument("--snr-gamma", type=float, default=0.0, help="min-SNR weighting gamma (5 is usual; 0 off)")
    train.add_argument("--noise-offset", type=float, default=0.0, help="noise offset (0.05 is usual; 0 off)")
    train.add_argument("--checkpoint-every", type=int, default=50, metavar="N", help="checkpoint every N steps")
    train.add_argument("--sample-every", type=int, default=100, metavar="N", help="sample images every N steps")
    train.add_argument("--accumulate", type=int, metavar="N",
                       help="gradient accumulation: N batches per step (a step then learns from batch x N images)")
    train.add_argument("--processes", type=int, metavar="N",
                       help="training processes (default 1): one per GPU, or N CPU processes on a machine without "
                            "one; a step learns from batch x accumulate x N images")
    train.add_argument("--json", action="store_true", help="print the events as JSON lines on stdout")


def make_config(args: argparse.Namespace):
    """The TrainConfig for the arguments: a resumed job's saved settings, or the device preset plus options."""
    from desktop_app.engine.device import choose_device
    from dataclasses import asdict

    from desktop_app.training.config import TrainConfig, check_job_name, job_path, preset
    from desktop_app.training.support import check_model

    name = args.out if args.out is not None else args.token
    if args.out is not None or (args.resume and name):  # before any file system call: it becomes training/NAME
        check_job_name(name, "out" if args.out is not None else "token (the LoRA name when --out is not given)")
    if args.resume:
        if not name:
            raise BadInput("--resume needs --out NAME (or --token) to know which job to continue")
        saved = job_path(name) / "config.json"
        if saved.is_file():
            config = TrainConfig.load(saved)
            check_model(config.model)
            if args.steps:
                config.steps = args.steps
            for name in ("accumulate", "processes"):  # checked again: TrainConfig's own rules
                if getattr(args, name, None) is not None:
                    config = TrainConfig.from_dict({**asdict(config), name: getattr(args, name)})
            return config
    if not args.images or not args.token:
        raise BadInput("--images DIR and --token TOKEN are needed (see desktop-app train --help)")
    check_model(args.model)  # an SDXL model is refused before the device, the dataset or torch
    from desktop_app.training.config import preset_line
    from desktop_app.training.device_memory import memory_gb

    device = choose_device(args.device)
    memory = memory_gb(str(device))  # a small GPU gets a smaller rank and batch, and accumulates
    values = preset(device.type, memory)
    values.update({k: v for k, v in {"steps": args.steps, "rank": args.rank, "learning_rate": args.lr,
                                     "batch_size": args.batch, "resolution": args.resolution,
                                     "accumulate": getattr(args, "accumulate", None),
                                     "processes": getattr(args, "processes", None)}.items()
                   if v is not None})
    if args.resolution is None:
        values["resolution"] = native_resolution(args.model, values["resolution"])
    given = [name for name in ("steps", "rank", "lr", "batch", "resolution", "accumulate")
             if getattr(args, name, None) is not None]
    # told when training starts (a bad option is one line, before it)
    args.preset_line = preset_line(str(device), memory, values) + (f" (given: {', '.join(given)})" if given
                                                                    else "")
    return TrainConfig(images=args.images, token=args.token, name=name, class_word=args.class_word,
                       model=args.model, device=str(device), seed=args.seed, crop=args.crop,
                       train_text_encoder=args.train_text_encoder, prior_preservation=args.prior_preservation,
                       snr_gamma=args.snr_gamma, noise_offset=args.noise_offset,
                       checkpoint_every=args.checkpoint_every, sample_every=args.sample_every, **values)


def train_processes(config, emit, control, resume: bool) -> dict:
    """The job on ``config.processes`` processes through accelerate's launcher (training/launch.py); the last
    event (finished, paused, cancelled or failed). The dataset is checked here first (seconds, no torch)."""
    from desktop_app.training.config import job_path
    from desktop_app.training.dataset import check_ready, scan
    from desktop_app.training.launch import run_processes
    from desktop_app.training.run import CONTROL_FILE

    check_ready(scan(config.images), config.batch_size)
    folder = job_path(config.name)
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "job.json"
    config.save(config_file)
    (folder / CONTROL_FILE).unlink(missing_ok=True)
    return run_processes(config, config_file, folder / CONTROL_FILE, emit, control, resume)[1]


def shell_quote(text: str) -> str:
    """``text`` as one argument that a copy-paste into the user's shell passes on as it is: nothing in it is
    run (``$(...)``, backquotes) or expanded (``$HOME``, ``*``)."""
    if os.name == "nt":
        return subprocess.list2cmdline([text])  # cmd.exe and PowerShell: double quotes, backslash rules
    return shlex.quote(text)


def native_resolution(model: str, fallback: int) -> int:
    """The model's default width (64 for the embedded model), else ``fallback``."""
    from desktop_app.models import model_folder

    folder = model_folder.check_folder(model)
    width = model_folder.defaults(model_folder.read_index(folder)).get("width")
    return int(width) if isinstance(width, int) else fallback


class Bar:
    """Training events on stderr: a progress bar (loss, elapsed, ETA) on a terminal, a line now and then
    elsewhere."""

    def __init__(self, stream, as_json: bool, preset: str = ""):
        self.stream, self.as_json, self.preset = stream, as_json, preset  # preset: told after "started"
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def __call__(self, event: dict) -> None:
        if self.as_json:
            print(json.dumps(event), flush=True)
        kind = event["event"]
        if kind == "step":
            step, total = event["step"], event["total"]
            eta = f"{event['eta']:.0f}s" if event.get("eta") is not None else "?"
            text = f"  step {step}/{total} loss {event['loss']:.4f} elapsed {event['elapsed']:.0f}s eta {eta}"
            if self.tty:
                done = int(30 * step / max(total, 1))
                self.stream.write(f"\r  [{'#' * done}{'.' * (30 - done)}]{text}")
            elif step in (1, total) or step % max(total // 10, 1) == 0:
                self.stream.write(text.strip() + "\n")
        elif kind == "started":
            where = "resuming at step " + str(event["step"]) if event["resumed"] else "starting"
            self.stream.write(f"train: {event['images']} image(s), {where}, {event['total']} steps on "
                              f"{event['device']} ({event['dtype']}); prompt \"{event['instance_prompt']}\"\n")
            if self.preset and not event["resumed"]:
                self.stream.write(f"train: {self.preset}\n")
        elif kind in ("unusable", "warning"):
            text = f"{event['path']}: {event['reason']}" if kind == "unusable" else event["message"]
            text = printable(text, 1000)  # file names from the images folder: no terminal escapes
            self.stream.write(f"{PROG} train: skipped {text}\n" if kind == "unusable" else f"warning: {text}\n")
        elif kind == "class_image":
            self.stream.write(f"  class image {event['index']}/{event['total']}\n")
        elif kind in ("paused", "cancelled"):
            self.stream.write(f"\n{kind} at step {event['step']}; checkpoint {event['checkpoint']}\n")
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from desktop_app.errors import ModelError, RequestError
    from desktop_app.training import originality
    from desktop_app.training.dataset import DatasetError
    from desktop_app.training.trainer import TrainingError, train

    try:
        config = make_config(args)
    except (RequestError, ModelError, DatasetError) as exc:
        raise BadInput(" ".join(str(exc).split())) from None
    command: list[str | None] = [None]

    def on_interrupt(signum, frame):
        command[0] = "pause"  # the loop saves a checkpoint and stops at the end of this step

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        if config.processes > 1:
            event = train_processes(config, Bar(sys.stderr, args.json, getattr(args, "preset_line", "")),
                                    lambda: command[0], args.resume)
            if event["event"] == "failed":
                print(f"\n{PROG}: error: {' '.join(str(event['message']).split())}", file=sys.stderr)
                return 2 if event.get("kind") == "bad_input" else 1
        else:
            event = train(config, Bar(sys.stderr, args.json, getattr(args, "preset_line", "")), lambda: command[0],
                          resume=args.resume)
    except (RequestError, ModelError, DatasetError) as exc:
        raise BadInput(" ".join(str(exc).split())) from None
    except TrainingError as exc:
        print(f"\n{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.kind.exit_code  # DISK or ENGINE (a NaN loss): 1
    finally:
        signal.signal(signal.SIGINT, previous)
    if event["event"] == "paused":
        print(f"{PROG}: paused; continue with: {PROG} train --out {shell_quote(config.name)} --resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if event["event"] == "cancelled":
        return EXIT_INTERRUPTED
    out = sys.stderr if args.json else sys.stdout
    print(f"\nLoRA {config.name}: {event['files']['kohya']} (kohya) and {event['files']['diffusers']} (diffusers)",
          file=out)
    prompt = " ".join(f"a photo of {config.token} {config.class_word}".split())
    print(f"use it with: {PROG} generate {shell_quote(prompt)} --lora {shell_quote(config.name + ':1.0')}",
          file=out)
    print("originality (nearest training image per sample; similarity 1.0 = a copy):", file=out)
    for entry in event["originality"]:
        print("  " + originality.describe(entry), file=out)
    return EXIT_OK
