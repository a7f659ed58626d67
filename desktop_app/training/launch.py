"""Training on several processes: accelerate's launcher (``python -m accelerate.commands.launch``, torch's
elastic agent underneath) starts ``config.processes`` copies of ``python -m desktop_app.training.run --worker``,
one per GPU, or CPU processes (gloo) where the job trains on the CPU. No torch here.

This process stays the one the window and the command line talk to: it passes the main worker's JSON events on
(one loss curve, one progress bar; the others report nothing but their failure), turns pause and cancel into the
job's control file (the workers agree on it every step, so all of them stop at the same step), and keeps one
last word: the first finished, paused, cancelled or failed event. When a worker crashes the elastic agent stops
the others; a worker without a last word (killed, out of memory) becomes one "failed" line naming it. Workers
leave when this process dies (they watch it), so a killed run leaves nothing behind and resumes from its last
checkpoint. The workers run in their own session: a Ctrl-C on the terminal reaches this process only, which
pauses them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from desktop_app.errors import FailureKind

PARENT_ENV = "DESKTOP_APP_TRAINING_PARENT"  # the pid the workers watch
LAST_WORDS = ("finished", "paused", "cancelled", "failed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(config_file: Path, processes: int, resume: bool, mixed_precision: str) -> list[str]:
    """accelerate's launcher for the workers (``--multi_gpu`` selects torchrun's multi-process launch; on a
    machine without GPUs, or with CUDA hidden, accelerate makes it a gloo CPU group)."""
    mixed = mixed_precision if mixed_precision in ("fp16", "bf16") else "no"
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", mixed, "--dynamo_backend", "no",
            "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()), "--monitor_interval", "0.5",
            "--module", "desktop_app.training.run", "--config", str(config_file), "--worker"] + \
        (["--resume"] if resume else [])


def environment(config) -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # desktop_app importable in the workers, as here
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env[PARENT_ENV] = str(os.getpid())
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    if config.device.split(":", 1)[0] != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""  # CPU processes, even on a machine with a GPU
    if not env.get("OMP_NUM_THREADS"):  # share the cores between the processes
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // config.processes))
    return env


def run_processes(config, config_file: Path, control_file: Path, emit: Callable[[dict], None],
                  control: Callable[[], str | None], resume: bool) -> tuple[int, dict]:
    """Launch the workers and wait for them; (exit code, the last word). Exit codes as the single process's:
    0 finished, paused or cancelled; 2 bad input; 1 failed."""
    flags = {"start_new_session": True} if os.name != "nt" else \
        {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    process = subprocess.Popen(command(config_file, config.processes, resume, config.mixed_precision),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, encoding="utf-8", errors="replace", env=environment(config), **flags)
    last: list[dict] = []
    failures: list[dict] = []
    tail: deque[str] = deque(maxlen=200)

    def relay_events() -> None:
        for line in process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                sys.stderr.write(line)
                continue
            if not isinstance(event, dict) or (last and event.get("event") in LAST_WORDS):
                continue  # one last word
            if event.get("event") == "failed":
                failures.append(event)  # held until the agent says which process failed first
                continue
            if event.get("event") in LAST_WORDS:
                last.append(event)
            emit(event)

    def relay_errors() -> None:
        for line in process.stderr:
            tail.append(line)
            sys.stderr.write(line)

    readers = [threading.Thread(target=relay_events, daemon=True), threading.Thread(target=relay_errors,
                                                                                   daemon=True)]
    for reader in readers:
        reader.start()
    sent = None
    while process.poll() is None:
        word = control()
        if word in ("pause", "cancel") and word != sent:
            tmp = control_file.with_name(f".{control_file.name}.tmp")
            tmp.write_text(word, encoding="utf-8")
            os.replace(tmp, control_file)  # the workers read it whole
            sent = word
        time.sleep(0.2)
    for reader in readers:
        reader.join(timeout=10)
    control_file.unlink(missing_ok=True)
    if last:
        return (0 if process.returncode == 0 else 1), last[0]
    event = first_failure(failures, "".join(tail), config.processes, process.returncode)
    emit(event)
    return (2 if event.get("kind") == FailureKind.BAD_INPUT.value else 1), event


def first_failure(failures: list[dict], errors: str, processes: int, code: int) -> dict:
    """The one "failed" event for the run. The elastic agent names the process that failed first (its "Root
    Cause"): one killed by a signal had no last word, and the others' errors (a peer that vanished in the middle
    of a gradient exchange) only follow from it; one that exited said why itself (a NaN is said by the main
    process for all)."""
    cause = errors.rsplit("Root Cause", 1)[-1] if "Root Cause" in errors else ""
    rank = re.search(r"rank\s*:\s*(\d+)", cause)
    exit_code = re.search(r"exitcode\s*:\s*(-?\d+)", cause)
    killed = exit_code is not None and int(exit_code.group(1)) < 0
    if failures and not killed:
        own = [f for f in failures if rank and f.get("process") == int(rank.group(1)) + 1]
        return (own or failures)[0]
    return {"event": "failed", "kind": FailureKind.ENGINE.value, "reason": "process",
            "message": crash_message(errors, processes, code)}


def crash_message(errors: str, processes: int, code: int) -> str:
    """One line for workers that stopped without a word: which one, how, and what is kept."""
    cause = errors.rsplit("Root Cause", 1)[-1]
    rank = re.search(r"rank\s*:\s*(\d+)", cause)
    exit_code = re.search(r"exitcode\s*:\s*(-?\d+)", cause)
    who = f"training process {int(rank.group(1)) + 1} of {processes}" if rank else "a training process"
    how = f"exit code {exit_code.group(1)}" if exit_code else f"launcher exit code {code}"
    if exit_code and int(exit_code.group(1)) < 0:
        how = f"killed by signal {-int(exit_code.group(1))}"
    return (f"{who} stopped ({how}); the other processes were stopped too. Resume continues from the last "
            "checkpoint.")


def watch_parent() -> None:
    """In a worker: leave at once when the process that launched the run is gone (killed: nothing may keep
    training, or writing checkpoints, behind its back)."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not parent.isdigit():
        return
    import psutil

    try:
        launcher = psutil.Process(int(parent))
    except psutil.Error:
        os._exit(1)

    def alive() -> bool:
        try:  # is_running also compares the start time: a new process with a reused pid is not the parent
            return launcher.is_running() and launcher.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def watch() -> None:
        while alive():
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
