"""The trainer's accelerate glue: the Accelerator for a job (mixed precision, gradient accumulation, one or
several processes), the commands every process agrees on, and checkpoints through ``save_state``/``load_state``.

Mixed precision: bf16 or fp16 on CUDA ("auto": bf16 where the GPU has it), bf16 on CPUs with AMX or AVX-512
BF16 ("auto" or "bf16"; fp32 elsewhere), fp32 on MPS. Checkpoints keep only the LoRA: the save hook drops the
full U-Net accelerate would write, the load hook skips it, and the trainer puts the LoRA weights back itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from desktop_app.engine.device import cpu_bf16_units  # the same check generation uses
from desktop_app.training import checkpoint

COMMANDS = (None, "pause", "cancel")  # index = the code every process all-reduces (max: cancel wins)


def precision(requested: str, device_type: str) -> str:
    """accelerate's ``mixed_precision`` ("no", "fp16", "bf16") for a job's setting on a device type."""
    if requested == "no" or device_type == "mps":
        return "no"
    if device_type == "cuda":
        if requested == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return requested
    return "bf16" if cpu_bf16_units() else "no"  # the CPU: fp16 autocast is slow there; bf16 only where native


def weight_dtype(mixed: str, device_type: str) -> torch.dtype:
    """The frozen weights' dtype: half on CUDA under mixed precision, float32 elsewhere (CPU autocast casts)."""
    if device_type != "cuda" or mixed == "no":
        return torch.float32
    return torch.bfloat16 if mixed == "bf16" else torch.float16


def reset() -> None:
    """Forget the previous job's accelerate state (the states are process-wide singletons)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def make(device_name: str, mixed_precision: str, accumulate: int):
    """The Accelerator for a job whose config asks for ``device_name``; under accelerate's launcher each process
    gets its own device (cuda:LOCAL_RANK, or the CPU)."""
    from accelerate import Accelerator

    reset()
    device_type = device_name.split(":", 1)[0]
    if device_type == "cuda" and ":" in device_name and torch.cuda.is_available() and \
            int(os.environ.get("WORLD_SIZE", "1")) == 1:
        torch.cuda.set_device(torch.device(device_name))  # one process on a chosen GPU
    accelerator = Accelerator(mixed_precision=precision(mixed_precision, device_type),
                              gradient_accumulation_steps=accumulate, cpu=device_type == "cpu")
    accelerator.register_save_state_pre_hook(lambda models, weights, output_dir: weights.clear())
    accelerator.register_load_state_pre_hook(lambda models, input_dir: models.clear())
    return accelerator


def agree(accelerator, command: str | None) -> str | None:
    """The command all processes act on this step (the strongest any of them read), so they stop together."""
    if accelerator.num_processes == 1:
        return command
    code = torch.tensor([COMMANDS.index(command if command in COMMANDS else None)], device=accelerator.device)
    return COMMANDS[int(accelerator.reduce(code, "max").item())]


def save(accelerator, job_dir: Path, state: dict) -> Path | None:
    """A checkpoint by every process (collective); the main process writes the state file and commits the
    folder. Returns the folder on the main process, None on the others."""
    staged = checkpoint.staging(job_dir) if accelerator.is_main_process else job_dir / checkpoint.FOLDER / \
        checkpoint.STAGING
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staged))
    accelerator.wait_for_everyone()
    folder = checkpoint.commit(job_dir, staged, state) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    return folder


def load(accelerator, folder: Path) -> None:
    """The optimizer, scaler and RNG states of an accelerate checkpoint folder; ModelError (bad input) naming
    the folder when they are damaged or would need unpickling code."""
    import pickle

    try:
        accelerator.load_state(str(folder))
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError, KeyError, TypeError,
            AttributeError, ImportError, IndexError) as exc:
        raise checkpoint.damaged(folder, exc) from None
    accelerator.step = 0  # every optimizer step ends a whole accumulation cycle
