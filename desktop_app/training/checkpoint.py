"""Training state on disk: LoRA weights, optimizer, RNG and step in one safetensors file, written atomically (a
temporary file, then os.replace), so a kill while saving leaves the previous checkpoint whole.

safetensors, not a pickle: a checkpoint someone hands over (or one put into the job folder) cannot run code
when it is loaded, and a damaged one is refused with a message that says so. The tensors are stored flat
under numbered keys; everything else (step, losses, the optimizer's param groups, the Python RNG state) is
JSON in the file's metadata, with a placeholder where each tensor was. Checkpoints of earlier versions
(``checkpoint.pt``, a torch pickle) are still read, with ``torch.load(weights_only=True)`` (which refuses code),
and any refusal is reported as a damaged or unsafe checkpoint: never with torch's advice to turn the check off.
torch is imported inside the functions: the Fine-tune panel asks ``exists`` without loading it.

Since the trainer runs on accelerate, a checkpoint is a folder ``checkpoints/step-NNNNNN-STAMP/`` written by
``Accelerator.save_state`` (the optimizer, the gradient scaler and each process's RNG, loaded back with
``torch.load(weights_only=True)``, which refuses code) plus ``training_state.safetensors`` (the LoRA weights, the
step, the losses: the layout above). It is made in ``checkpoints/.staging`` and renamed into place once whole;
the older folders go after that, so a kill at any moment leaves one whole checkpoint. A folder without its
state file is not a checkpoint. The single files above are still read (a job paused before the change).
"""

from __future__ import annotations

import json
import random
import shutil
import time
import warnings
from pathlib import Path

from desktop_app.errors import ModelError
from desktop_app.errors import printable
from desktop_app.paths import write_atomically

FILE_NAME = "checkpoint.safetensors"
LEGACY_NAME = "checkpoint.pt"  # before safetensors: read on resume, never written
STATE_KEY = "desktop_app_training_state"
MAX_STATE = 64 * 2**20  # the metadata of a real checkpoint is kilobytes (losses: ~20 bytes a step)
FOLDER = "checkpoints"  # accelerate's save_state folders live here
STAGING = ".staging"
STATE_FILE = "training_state.safetensors"


def path_in(job_dir: Path) -> Path:
    return job_dir / FILE_NAME


def existing(job_dir: Path) -> Path | None:
    """The checkpoint resume would read (an accelerate folder first, then the older files), or None."""
    folder = latest_folder(job_dir)
    if folder is not None:
        return folder
    for name in (FILE_NAME, LEGACY_NAME):
        if (job_dir / name).is_file():
            return job_dir / name
    return None


def exists(job_dir: Path) -> bool:
    return existing(job_dir) is not None


def save(job_dir: Path, state: dict) -> Path:
    """``state`` holds tensors, numbers, strings, None, lists, tuples and dicts (str or int keys) only."""
    import torch
    from safetensors.torch import save as to_bytes

    target = path_in(job_dir)
    state = dict(state, rng={"torch": torch.get_rng_state(), "python": list(_python_state()),
                             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []})
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _pack(state, tensors)
    data = to_bytes(tensors, metadata={STATE_KEY: json.dumps(skeleton)})  # a LoRA's state: megabytes
    write_atomically(target, lambda stream: stream.write(data), prefix=f".{FILE_NAME}-")
    (job_dir / LEGACY_NAME).unlink(missing_ok=True)  # the new file supersedes an old-format one
    return target


def read(job_dir: Path) -> dict | None:
    """The saved state without side effects, or None when there is no checkpoint. ModelError (bad input,
    exit 2) for a damaged or unsafe file, naming it."""
    target = existing(job_dir)
    if target is None:
        return None
    if target.name == LEGACY_NAME:
        return _read_legacy(target)
    if target.is_dir():
        target = target / STATE_FILE
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(target), framework="pt") as handle:
            metadata = handle.metadata() or {}
            text = metadata.get(STATE_KEY)
            if not isinstance(text, str) or len(text) > MAX_STATE:
                raise ValueError("it holds no training state")
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        state = _unpack(json.loads(text), tensors)
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise ValueError("its training state has no step")
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise _damaged(target, exc) from None
    return state


def load(job_dir: Path) -> dict | None:
    """``read``, then the RNG states are restored (the resumed run draws what the uninterrupted one would)."""
    import torch

    state = read(job_dir)
    if state is None:
        return None
    target = existing(job_dir)
    try:
        rng = state.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if rng.get("python"):
            version, internal, gauss = rng["python"]
            random.setstate((version, tuple(internal), gauss))
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    except (ValueError, TypeError, RuntimeError, AttributeError) as exc:
        raise _damaged(target, exc) from None
    return state


def latest_folder(job_dir: Path) -> Path | None:
    """The newest whole accelerate checkpoint folder (it has its state file), or None."""
    root = job_dir / FOLDER
    if not root.is_dir():
        return None
    whole = [p for p in root.iterdir() if p.name.startswith("step-") and (p / STATE_FILE).is_file()]
    return max(whole, key=lambda p: p.name, default=None)


def staging(job_dir: Path) -> Path:
    """An empty folder for ``Accelerator.save_state`` (the main process makes it before the others write)."""
    folder = job_dir / FOLDER / STAGING
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def commit(job_dir: Path, staged: Path, state: dict) -> Path:
    """Write ``state`` (LoRA tensors, step, losses...) into the staged folder, rename it into place, then remove
    the older checkpoints (folders and files). Returns the new folder."""
    from safetensors.torch import save as to_bytes

    tensors: dict = {}
    skeleton = _pack(state, tensors)
    data = to_bytes(tensors, metadata={STATE_KEY: json.dumps(skeleton)})
    write_atomically(staged / STATE_FILE, lambda stream: stream.write(data), prefix=f".{STATE_FILE}-")
    target = job_dir / FOLDER / f"step-{int(state['step']):06d}-{time.time_ns():020d}"
    staged.rename(target)
    for old in (job_dir / FOLDER).iterdir():
        if old != target and old.name.startswith("step-"):
            shutil.rmtree(old, ignore_errors=True)
    for name in (FILE_NAME, LEGACY_NAME):
        (job_dir / name).unlink(missing_ok=True)
    return target


def damaged(target: Path, exc: BaseException) -> ModelError:
    """The one message for a checkpoint that cannot be used (see ``_damaged``)."""
    return _damaged(target, exc)


def saved_step(job_dir: Path) -> int | str:
    """The step of the checkpoint, for messages; "?" when it cannot be read."""
    try:
        return int((read(job_dir) or {})["step"])
    except (ModelError, KeyError, TypeError, ValueError):
        return "?"


# ---- the layout --------------------------------------------------------------------------------------------


def _pack(value, tensors: dict):
    """A JSON skeleton of ``value``; tensors move to ``tensors`` (contiguous CPU copies) under numbered keys."""
    import torch

    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().to("cpu").contiguous().clone()  # clone: shared storage is refused
        return {"t": key}
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"checkpoint keys must be text or whole numbers, not {type(key).__name__}")
        return {"d": [[key, _pack(item, tensors)] for key, item in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"l": [_pack(item, tensors) for item in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"v": value}
    raise TypeError(f"a checkpoint cannot hold a {type(value).__name__}")


def _unpack(node, tensors: dict):
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError("its training state is malformed")
    (tag, value), = node.items()
    if tag == "t":
        return tensors[value]
    if tag == "d":
        return {key: _unpack(item, tensors) for key, item in value}
    if tag == "l":
        return [_unpack(item, tensors) for item in value]
    if tag == "v" and (value is None or isinstance(value, (bool, int, float, str))):
        return value
    raise ValueError("its training state is malformed")


def _python_state():
    version, internal, gauss = random.getstate()
    return version, list(internal), gauss


def _read_legacy(target: Path) -> dict:
    import pickle

    import torch

    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol: the message below says enough
            warnings.simplefilter("ignore")
            state = torch.load(target, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "step" not in state:
            raise ValueError("it holds no training state")
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError, KeyError, TypeError,
            AttributeError, ImportError, IndexError, UnicodeDecodeError, RecursionError, MemoryError) as exc:
        raise _damaged(target, exc) from None
    return state


def _damaged(target: Path, exc: BaseException) -> ModelError:
    """The one message for a checkpoint that cannot be used. The library's own text is not passed on: for a
    pickle that would run code, torch suggests turning its safety check off, which must never reach a user."""
    reason = str(exc) if isinstance(exc, ValueError) and str(exc).startswith(("it ", "its ")) else \
        "it is not a training checkpoint this app wrote, or it is cut short"
    return ModelError(f"the training checkpoint {printable(target, 200)} is damaged or unsafe ({reason}); it was "
                      "not loaded. Move it away to start the job again from step 0.")
