"""Which device runs the model (CUDA, then Apple MPS, then the CPU) and in which dtype."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from desktop_app.errors import RequestError

CHOICES = ("auto", "cpu", "cuda", "mps")


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
    model is checked good there; the CPU has no fast half precision at all.
    """
    if device.type != "cuda":
        return torch.float32
    try:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    except (RuntimeError, AssertionError):
        return torch.float16


def resolve(name: str | None = "auto") -> DeviceChoice:
    device = choose_device(name)
    return DeviceChoice(device, choose_dtype(device))


def describe(device: torch.device | str, dtype: torch.dtype) -> str:
    """Like "cpu (float32)" or "cuda:0 (float16)"."""
    return f"{device} ({str(dtype).removeprefix('torch.')})"
