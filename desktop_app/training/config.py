"""One training job's settings (a JSON file the training process reads) and the per-device presets."""

from __future__ import annotations

import json
import math
import re
import sys
import unicodedata
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from desktop_app.errors import RequestError
from desktop_app.models.safe_names import UnsafeName, check_name
from desktop_app.errors import printable

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RARE_TOKENS = ("sks", "ohwx", "zwx", "qxj", "vpt")  # rare in text encoders' vocabularies: a blank slate

# Out-of-the-box settings per device. CPU is for the embedded model (64 px); CUDA for SD1.5-size models.
PRESETS = {
    "cpu": {"resolution": 64, "rank": 4, "learning_rate": 5e-4, "steps": 300, "batch_size": 1,
            "mixed_precision": "no", "gradient_checkpointing": False, "use_8bit_adam": False},
    "cuda": {"resolution": 512, "rank": 8, "learning_rate": 1e-4, "steps": 500, "batch_size": 1,
             "mixed_precision": "auto", "gradient_checkpointing": True, "use_8bit_adam": True},
    "mps": {"resolution": 512, "rank": 8, "learning_rate": 1e-4, "steps": 500, "batch_size": 1,
            "mixed_precision": "no", "gradient_checkpointing": True, "use_8bit_adam": False},
}


@dataclass
class TrainConfig:
    images: str
    token: str
    name: str
    class_word: str = ""
    model: str = "default"
    device: str = "cpu"
    steps: int = 300
    rank: int = 4
    learning_rate: float = 5e-4
    batch_size: int = 1
    resolution: int = 64
    seed: int = 0
    crop: str = "center"  # or "random"
    train_text_encoder: bool = False
    prior_preservation: bool = False
    class_images: int = 8
    prior_weight: float = 1.0
    snr_gamma: float = 0.0  # 0: off; 5 is the min-SNR paper's value
    noise_offset: float = 0.0
    checkpoint_every: int = 50
    sample_every: int = 100
    sample_prompt: str = ""  # empty: the instance prompt
    sample_steps: int = 20
    mixed_precision: str = "no"  # "no", "auto" (bf16 where the GPU has it, else fp16), "fp16", "bf16"
    gradient_checkpointing: bool = False
    use_8bit_adam: bool = False
    accumulate: int = 1  # micro-batches per optimizer step; a step's batch: batch_size x accumulate x processes
    processes: int = 1  # training processes (accelerate's launcher): one per GPU, or CPU processes without one
    inject_nan_at: int = 0  # tests only: make the loss NaN at this step

    def __post_init__(self) -> None:
        _check(isinstance(self.token, str) and len(self.token.split()) == 1
               and not any(unicodedata.category(char)[0] == "C" for char in self.token),
               "token", f"must be one word of printable characters, like {RARE_TOKENS[0]!r}, "
                        f"got {printable(self.token, 60)}")
        _check(isinstance(self.class_word, str)
               and not any(unicodedata.category(char)[0] == "C" for char in self.class_word),
               "class_word", f"must be plain words, got {printable(self.class_word, 60)}")
        check_job_name(self.name)
        _check(_int(self.steps) and 1 <= self.steps <= 100_000, "steps",
               f"must be 1 to 100000, got {self.steps!r}")
        _check(_int(self.rank) and 1 <= self.rank <= 256, "rank", f"must be 1 to 256, got {self.rank!r}")
        _check(_num(self.learning_rate) and 0 < self.learning_rate <= 1e-1, "lr",
               f"must be above 0 and at most 0.1, got {self.learning_rate!r}")
        _check(_int(self.batch_size) and 1 <= self.batch_size <= 64, "batch",
               f"must be 1 to 64, got {self.batch_size!r}")
        _check(_int(self.resolution) and 32 <= self.resolution <= 2048 and self.resolution % 8 == 0, "resolution",
               f"must be a multiple of 8 from 32 to 2048, got {self.resolution!r}")
        _check(_int(self.seed) and 0 <= self.seed < 2**32, "seed", f"must be 0 to 2^32-1, got {self.seed!r}")
        _check(self.crop in ("center", "random"), "crop", f"must be center or random, got {self.crop!r}")
        _check(not self.prior_preservation or self.class_word.strip() != "", "class_word",
               "prior preservation needs a class word (like 'dog')")
        _check(_int(self.class_images) and 1 <= self.class_images <= 1000, "class_images",
               f"must be 1 to 1000, got {self.class_images!r}")
        for name in ("snr_gamma", "noise_offset", "prior_weight"):
            value = getattr(self, name)
            _check(_num(value) and 0 <= value <= 100, name, f"must be a number from 0 to 100, got {value!r}")
        for name in ("checkpoint_every", "sample_every"):
            value = getattr(self, name)
            _check(_int(value) and value >= 0, name, f"must be a whole number, 0 for never, got {value!r}")
        _check(_int(self.accumulate) and 1 <= self.accumulate <= 256, "accumulate",
               f"must be 1 to 256, got {self.accumulate!r}")
        _check(_int(self.processes) and 1 <= self.processes <= 64, "processes",
               f"must be 1 to 64, got {self.processes!r}")
        # accelerate's launcher starts "<python> -m ..." processes: the packaged app is no Python to start
        _check(self.processes == 1 or not getattr(sys, "frozen", False), "processes",
               "several training processes need the app installed from source (make run) in this version; "
               "the packaged app trains on one")
        _check(self.mixed_precision in ("no", "auto", "fp16", "bf16"), "mixed_precision",
               f"must be no, auto, fp16 or bf16, got {self.mixed_precision!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RequestError("config", f"unknown setting(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RequestError("config", f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise RequestError("config", f"{path} does not hold a JSON object")
        return cls.from_dict(data)


def check_job_name(name: object, what: str = "out") -> str:
    """``name`` as a job and LoRA name (it becomes ``training/NAME/`` and ``loras/NAME.safetensors``), checked
    before any file system call: RequestError(``what``) naming the problem. safe_names.check_name refuses
    paths, '..', control characters and reserved names; the pattern keeps names that every tool reads."""
    try:
        check_name(name, "LoRA name")
    except UnsafeName as exc:
        raise RequestError(what, str(exc)) from None
    if not NAME_PATTERN.fullmatch(name):
        raise RequestError(what, f"LoRA name must be letters, digits, '_', '-' or '.', at most 64, "
                                 f"got {printable(name, 60)}")
    return name


def job_path(name: str) -> Path:
    """``training/NAME`` in the user folder for a checked name (nothing is created here; no torch)."""
    from desktop_app import paths
    from desktop_app.models.safe_names import inside

    try:
        return inside(paths.home() / "training", check_job_name(name), "LoRA name")
    except UnsafeName as exc:  # a symlink in the training folder that leads out
        raise RequestError("out", str(exc)) from None


# what a GPU's memory changes in its preset (LoRA of an SD 1.x/2.x UNet at 512 px; kohya's and the diffusers
# examples' settings for such cards): (at least this many GB of memory, the changes), the largest that fits wins.
# Every card learns from the same images a step (EFFECTIVE_BATCH): a small one by accumulating micro-batches.
EFFECTIVE_BATCH = 4
MEMORY_TIERS = {
    "cuda": ((0, {"rank": 4, "batch_size": 1, "accumulate": 4}),
             (7.5, {"rank": 8, "batch_size": 2, "accumulate": 2}),
             (11.5, {"rank": 16, "batch_size": 2, "accumulate": 2}),
             (19.5, {"rank": 16, "batch_size": 4, "accumulate": 1, "gradient_checkpointing": False})),
    "mps": ((0, {"batch_size": 1, "accumulate": 4}), (23.5, {"batch_size": 2, "accumulate": 2})),
}


def preset(device: str, memory_gb: float | None = None, check_8bit: bool = True) -> dict:
    """The preset for a device name ("cpu", "cuda", "cuda:1", "mps") with ``memory_gb`` of memory (a GPU's own,
    or the unified memory of a Mac; None: the kind's base preset). 8-bit Adam only where bitsandbytes imports
    (never on MPS or the CPU); ``check_8bit`` False leaves that to the training process (the window: importing
    bitsandbytes imports torch)."""
    kind = device.split(":", 1)[0]
    values = dict(PRESETS.get(kind, PRESETS["cpu"]))
    tier: dict = {}
    for least, changes in MEMORY_TIERS.get(kind, ()) if memory_gb is not None else ():
        if memory_gb >= least:
            tier = changes
    values.update(tier)
    if check_8bit and values["use_8bit_adam"] and not bitsandbytes_available():
        values["use_8bit_adam"] = False
    return values


def preset_line(device: str, memory_gb: float | None, values: dict) -> str:
    """The preset told in one line: what was chosen, and from what."""
    memory = f" with {memory_gb:.1f} GB" if memory_gb is not None else ""
    accumulate = int(values.get("accumulate", 1))
    batch = f"batch {values['batch_size']}" + (f" x accumulate {accumulate} ({values['batch_size'] * accumulate} "
                                               "images a step)" if accumulate > 1 else "")
    extras = [name for name, on in (("gradient checkpointing", values.get("gradient_checkpointing")),
                                    ("8-bit Adam", values.get("use_8bit_adam"))) if on]
    return (f"preset for {device}{memory}: {values['resolution']} px, rank {values['rank']}, {batch}"
            + "".join(f", {extra}" for extra in extras) + f", {values['steps']} steps")


def bitsandbytes_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken CUDA setup raises more than ImportError
        return False
    return True


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise RequestError(field_name, message)
