"""What every section shares: the run settings, medians with their spread, the machine, subprocess helpers."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

NOT_AVAILABLE = "not available"


@dataclass
class Settings:
    """What the sections run on. ``quick``: fewer runs and steps (a plumbing check, not a measurement)."""

    model: str = "default"
    device: str = "auto"
    quick: bool = False
    prompt: str = "a red apple"
    seed: int = 1
    defaults: dict = field(default_factory=dict)  # what the model folder declares, with the overrides
    overrides: dict = field(default_factory=dict)  # what the command line sets instead (width, height, steps)
    shared: dict = field(default_factory=dict)  # figures one section measures and another reuses

    @property
    def runs(self) -> int:
        """Repeats (or ABAB pairs) per figure."""
        return 3 if self.quick else 7

    @property
    def process_runs(self) -> int:
        """Repeats for figures that each start a process."""
        return 2 if self.quick else 5

    def size(self) -> tuple[int, int]:
        return int(self.defaults.get("width", 64)), int(self.defaults.get("height", 64))

    def steps(self) -> int:
        steps = int(self.defaults.get("steps", 20))
        return min(steps, 8) if self.quick else steps

    def request(self, **changes):
        """The model's own defaults (size, steps, guidance, sampler), no upscale unless asked, seeded."""
        from desktop_app.engine.request import GenerationRequest

        width, height = self.size()
        values = dict(prompt=self.prompt, seed=self.seed, model=self.model, width=width, height=height,
                      steps=self.steps(), guidance_scale=float(self.defaults.get("guidance_scale", 5.0)),
                      sampler=self.defaults.get("sampler", "DPM++ 2M"), upscale=None)
        values.update(changes)
        return GenerationRequest(**values)


def spread(values, digits: int = 4) -> dict | None:
    """{"median", "min", "max", "runs"} of the values, or None when there are none."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": len(values)}


def ratio(a, b, digits: int = 3) -> float | None:
    if a is None or b is None or not b:
        return None
    return round(a / b, digits)


def median_of(summary: dict | None) -> float | None:
    return None if summary is None else summary["median"]


def alternate(first, second, pairs: int) -> tuple[list[float], list[float]]:
    """Time ``first()`` and ``second()`` alternately, ``pairs`` times each (ABAB...): seconds per call."""
    times = interleave({"a": first, "b": second}, pairs)
    return times["a"], times["b"]


def interleave(calls: dict, rounds: int) -> dict[str, list[float]]:
    """Time each call once per round, in turn (ABCABC...): {name: seconds per call}."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine(device: str = "auto") -> dict:
    """The machine the figures come from: CPU, cores, torch and its threads, the device and dtype."""
    import torch

    from desktop_app.engine import device as devices

    try:
        choice = devices.resolve(device)
        device_name, dtype = str(choice.device), choice.dtype_name
    except Exception as exc:  # noqa: BLE001 - the description must not stop the report
        device_name, dtype = f"unavailable ({exc})", None
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
               "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    import diffusers

    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "diffusers": diffusers.__version__, "python": platform.python_version(),
        "platform": platform.platform(terse=True), "device": device_name, "dtype": dtype, "gpu": gpu,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def child_env(**changes) -> dict:
    """The environment for a measured child process: this one's, offline, with the package importable."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.update({k: v for k, v in changes.items() if v is not None})
    return env


@dataclass
class ChildResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # process start (just before the fork) to exit
    started: float  # time.time() just before the fork
    peak_rss_mb: float | None  # the child's own peak resident memory


def run_child(args: list[str], env: dict | None = None, timeout: float = 300) -> ChildResult:
    """Run ``python args...`` and measure it: wall time from just before the start, and its peak RSS.

    The peak RSS is the child's VmHWM from /proc, read while it runs: ``ru_maxrss`` would not do, because
    Linux carries the forking parent's resident size into the child's across exec (the bench itself holds
    torch and a model, so every child would report at least that). Where there is no /proc (macOS), the
    child's ``ru_maxrss`` from os.wait4 stands in, with that caveat."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=err, env=env or child_env(),
                                text=True)
        peak = hwm = None
        status_file = Path(f"/proc/{proc.pid}/status")
        if hasattr(os, "wait4"):
            deadline = start + timeout
            polls = 0
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    # ru_maxrss: kilobytes on Linux, bytes on macOS
                    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024
                    peak = round(usage.ru_maxrss * scale, 1)
                    break
                if polls % 5 == 0:
                    hwm = _vm_hwm_mb(status_file) or hwm
                polls += 1
                if time.perf_counter() > deadline:
                    proc.kill()
                    proc.wait()
                    raise TimeoutError(f"{' '.join(args[:3])} ran past {timeout:.0f} s")
                time.sleep(0.002)
        else:
            proc.wait(timeout=timeout)
        if hwm is not None:
            peak = hwm
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return ChildResult(proc.returncode, out.read(), err.read(), seconds, started, peak)


def _vm_hwm_mb(status_file: Path) -> float | None:
    """The process's peak resident size so far (VmHWM), in MB, or None."""
    try:
        for line in status_file.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def last_line(text: str, limit: int = 300) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
