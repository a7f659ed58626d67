"""Which device runs the model (CUDA, then Apple MPS, then the CPU) and in which dtype.

On the CPU the dtype depends on the processor and the model (``dtype_for_model``): bfloat16 where the CPU has
bf16 matrix units (AMX, AVX-512 BF16, Arm BF16) and the model is large enough to be bound by arithmetic, else
float32. ``DESKTOP_APP_CPU_DTYPE`` (auto, float32, bfloat16) overrides the choice. ``DESKTOP_APP_CPU_PATH``
(auto, torch, openvino) says whether the embedded model's UNet runs through OpenVINO (``openvino_for``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from desktop_app.errors import RequestError

CHOICES = ("auto", "cpu", "cuda", "mps")
CPU_DTYPE_ENV = "DESKTOP_APP_CPU_DTYPE"
CPU_DTYPES = {"auto": None, "float32": torch.float32, "fp32": torch.float32,
              "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
# bfloat16 pays on the CPU only when the model is bound by arithmetic: an SD 1.5 UNet step (860 M parameters,
# 64x64 latents) took 0.26 of its float32 time with bf16 weights on an AMX CPU, the embedded model's UNet
# (14 M parameters, 16x16 latents, bound by per-operation overhead) 0.97. Below this size (its largest
# component, counted at 4 bytes a number) a model stays in float32.
BF16_MIN_BYTES = 400 * 2**20
# which runtime runs the embedded model's UNet on the CPU: torch (eager) or openvino (engine/openvino_path.py)
CPU_PATH_ENV = "DESKTOP_APP_CPU_PATH"
CPU_PATHS = ("auto", "torch", "openvino")
# auto's choice for the embedded model, from docs/PERFORMANCE.md's measurement (section 9)
OPENVINO_DEFAULT = True


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    dtype: torch.dtype

    @property
    def name(self) -> str:
        return str(self.device)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def describe(self) -> str:
        return describe(self.device, self.dtype)


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def choose_device(name: str | None = "auto") -> torch.device:
    """"auto" picks CUDA, then MPS, then CPU. Asking for a device that is not there is a RequestError."""
    name = (name or "auto").strip().lower()
    kind = name.split(":", 1)[0]
    if kind not in CHOICES:
        raise RequestError("device", f"unknown device {name!r}; choose one of: {', '.join(CHOICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RequestError("device", "CUDA was asked for, but no CUDA GPU is available to this torch "
                                         f"build (torch {torch.__version__}); use --device cpu or auto")
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise RequestError("device", f"bad device {name!r}: {exc}") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RequestError("device", f"there is no {name}; this machine has {torch.cuda.device_count()} "
                                         "CUDA device(s)")
        return device
    if kind == "mps":
        if not mps_available():
            raise RequestError("device", "Apple MPS was asked for, but it is not available here; "
                                         "use --device cpu or auto")
        return torch.device("mps")
    return torch.device("cpu")


def choose_dtype(device: torch.device) -> torch.dtype:
    """Half precision on CUDA: bfloat16 where the GPU has it (Ampere and later), else float16.

    Half precision halves memory and doubles speed on CUDA. bfloat16 keeps float32's range: float16 overflows
    where SD VAEs make NaNs (black images) and where Euler starts from sigma ~2e4 (the embedded model's cosine
    schedule: noise * 2e4 passes float16's 65504). MPS has gaps in half kernels, so it stays float32 until a
    model is checked good there. The CPU: float32 here (bfloat16 only when ``DESKTOP_APP_CPU_DTYPE`` forces
    it); ``dtype_for_model`` moves a large model to bfloat16 on a CPU with bf16 units.
    """
    if device.type == "cpu":
        forced = cpu_dtype_setting()
        return torch.bfloat16 if forced == torch.bfloat16 else torch.float32
    if device.type != "cuda":
        return torch.float32
    try:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    except (RuntimeError, AssertionError):
        return torch.float16


def cpu_dtype_setting() -> torch.dtype | None:
    """What ``DESKTOP_APP_CPU_DTYPE`` forces on the CPU: float32, bfloat16, or None (auto, or unset).
    Another value is a RequestError naming the variable."""
    value = os.environ.get(CPU_DTYPE_ENV, "").strip().lower() or "auto"
    if value not in CPU_DTYPES:
        raise RequestError(CPU_DTYPE_ENV, f"unknown CPU dtype {value!r}; choose one of: auto, float32, bfloat16")
    return CPU_DTYPES[value]


def cpu_path_setting() -> str:
    """What ``DESKTOP_APP_CPU_PATH`` asks for: "auto" (unset), "torch" or "openvino". Another value is a
    RequestError naming the variable."""
    value = os.environ.get(CPU_PATH_ENV, "").strip().lower() or "auto"
    if value not in CPU_PATHS:
        raise RequestError(CPU_PATH_ENV, f"unknown CPU path {value!r}; choose one of: {', '.join(CPU_PATHS)}")
    return value


def openvino_for(device: torch.device, dtype: torch.dtype, family: str) -> bool:
    """Whether the model's UNet runs through OpenVINO: on the CPU in float32, the embedded model only (the one
    measured), when ``DESKTOP_APP_CPU_PATH`` is openvino or auto (see OPENVINO_DEFAULT)."""
    if torch.device(device).type != "cpu" or dtype != torch.float32 or family != "embedded":
        return False
    setting = cpu_path_setting()
    return setting == "openvino" or (setting == "auto" and OPENVINO_DEFAULT)


def cpu_bf16_units() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware: AMX or AVX-512 BF16 on x86 (torch's own checks,
    as oneDNN uses them), the BF16 extension on Arm (``/proc/cpuinfo``). Without them oneDNN's bf16 runs
    on a reference path, two orders of magnitude slower than float32 (0.9 against 160 GFLOP/s measured on
    an AVX2-only EPYC)."""
    cpu = getattr(torch, "cpu", None)
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(cpu, name, None)
        if check is not None:
            try:
                if check():
                    return True
            except (RuntimeError, AttributeError):
                pass
    return bool(_cpuinfo_flags() & {"amx_bf16", "avx512_bf16", "bf16"})


def _cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def dtype_for_model(choice: DeviceChoice, largest_component_bytes: int | None) -> torch.dtype:
    """The dtype a model runs in on ``choice``: the choice's own except on the CPU, where (unless
    ``DESKTOP_APP_CPU_DTYPE`` forces one) bfloat16 when the CPU has bf16 units and the model's largest
    component (its denoiser; bytes at float32, None: not known) is at least ``BF16_MIN_BYTES``, else
    float32. See BF16_MIN_BYTES for why small models stay in float32."""
    if choice.device.type != "cpu":
        return choice.dtype
    forced = cpu_dtype_setting()
    if forced is not None:
        return forced
    big = largest_component_bytes is not None and largest_component_bytes >= BF16_MIN_BYTES
    return torch.bfloat16 if big and cpu_bf16_units() else torch.float32


def cpu_path() -> dict:
    """Which CPU path runs and why, for ``desktop-app bench`` and ``info``."""
    forced = cpu_dtype_setting()
    units = cpu_bf16_units()
    if forced is not None:
        why = f"{CPU_DTYPE_ENV}={os.environ.get(CPU_DTYPE_ENV, '').strip()} forces it"
    elif units:
        why = (f"bf16 matrix units: bfloat16 for models from {BF16_MIN_BYTES // 2**20} MB at float32, float32 "
               "below (small models are bound by per-operation overhead, not arithmetic)")
    else:
        why = "no bf16 matrix units (AMX, AVX-512 BF16, Arm BF16): bfloat16 would run on a slow reference path"
    small = forced or torch.float32
    large = forced or (torch.bfloat16 if units else torch.float32)
    return {"bf16_units": units, "forced": None if forced is None else str(forced).removeprefix("torch."),
            "small_models": str(small).removeprefix("torch."), "large_models": str(large).removeprefix("torch."),
            "why": why}


def resolve(name: str | None = "auto") -> DeviceChoice:
    device = choose_device(name)
    return DeviceChoice(device, choose_dtype(device))


def describe(device: torch.device | str, dtype: torch.dtype) -> str:
    """Like "cpu (float32)" or "cuda:0 (float16)"."""
    return f"{device} ({str(dtype).removeprefix('torch.')})"
