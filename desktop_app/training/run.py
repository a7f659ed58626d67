"""The training process: ``python -m desktop_app.training.run --config job.json [--resume]``.

Events go to stdout as JSON lines (nothing else is written there: stray prints go to stderr). Control comes
by stdin lines or by a file ``control`` in the job folder holding "pause" or "cancel": pause saves a
checkpoint and exits, cancel saves one and exits; ``--resume`` continues from it. A crash or an out-of-memory
here cannot take the window down, and a killed process resumes from its last checkpoint.

Exit codes: 0 finished, paused or cancelled (the last event says which); 2 bad input (a "failed" event with
kind "bad_input"); 1 training failed. A "failed" event's "kind" is a ``FailureKind`` value: "bad_input",
"out_of_memory" (found by the exception's type), "disk", "engine" (a readable stop: a NaN loss, with
"reason": "nan" and the step) or "internal" (a bug; the traceback is on stderr).

With ``processes`` above 1 in the job, this process launches the workers (launch.py: accelerate's launcher
runs this module with ``--worker`` in each) and relays their events; the exit codes and events stay the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import traceback
from pathlib import Path

CONTROL_FILE = "control"
COMMANDS = ("pause", "cancel")


class Control:
    """The latest command from stdin or the control file."""

    def __init__(self, control_file: Path, read_stdin: bool = True, fresh: bool = True):
        self.file = control_file
        self.command: str | None = None
        if fresh:  # a worker keeps it: the process that launched it cleared it, and may have written since
            self.file.unlink(missing_ok=True)  # a command left from an earlier run is not for this one
        if read_stdin and sys.stdin is not None and not sys.stdin.isatty():
            threading.Thread(target=self._read_stdin, daemon=True).start()

    def _read_stdin(self) -> None:
        for line in sys.stdin:
            word = line.strip().lower()
            if word in COMMANDS:
                self.command = word

    def __call__(self) -> str | None:
        if self.command is None and self.file.is_file():
            word = self.file.read_text(encoding="utf-8", errors="replace").strip().lower()
            if word in COMMANDS:
                self.command = word
        return self.command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m desktop_app.training.run")
    parser.add_argument("--config", required=True, help="the job's JSON file (TrainConfig fields)")
    parser.add_argument("--resume", action="store_true", help="continue from the job's checkpoint")
    parser.add_argument("--worker", action="store_true", help="one of several processes (accelerate's launcher)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    events = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    sys.stdout = sys.stderr  # library prints must not break the JSON lines

    def emit(event: dict) -> None:
        events.write(json.dumps(event) + "\n")
        events.flush()

    from desktop_app.errors import EngineError, FailureKind, ModelError, RequestError, failure_kind, one_line
    from desktop_app.training.config import TrainConfig
    from desktop_app.training.dataset import DatasetError, check_ready, scan
    from desktop_app.training.errors import TrainingError

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))

    def failed(kind: FailureKind, message: str) -> None:
        event = {"event": "failed", "kind": kind.value, "message": message}
        if args.worker and world > 1:  # which process said it (the launcher relays the first failure)
            event.update(message=f"training process {rank + 1} of {world}: {message}", process=rank + 1)
        emit(event)

    try:
        config = TrainConfig.load(Path(args.config))
        check_ready(scan(config.images), config.batch_size)  # bad folders answer before torch loads (seconds)
        from desktop_app.training.config import job_path

        if config.processes > 1 and not args.worker:
            from desktop_app.training.launch import run_processes

            job_path(config.name).mkdir(parents=True, exist_ok=True)
            control = Control(job_path(config.name) / CONTROL_FILE)
            return run_processes(config, Path(args.config), control.file, emit, control, args.resume)[0]
        if args.worker:
            from desktop_app.training.launch import watch_parent

            watch_parent()
        from desktop_app.training.trainer import job_dir, train

        control = Control(job_dir(config.name) / CONTROL_FILE, read_stdin=not args.worker, fresh=not args.worker)
        train(config, emit, control, resume=args.resume)
        return 0
    except (RequestError, ModelError, DatasetError) as exc:  # the job's settings, images or base model
        failed(FailureKind.BAD_INPUT, " ".join(str(exc).split()))
        return 2
    except TrainingError as exc:
        if exc.reason != "nan":  # a NaN was emitted where it happened, with the step
            failed(exc.kind, str(exc))
        return 1
    except EngineError as exc:
        failed(failure_kind(exc), " ".join(str(exc).split()))  # OUT_OF_MEMORY for OutOfMemory, else ENGINE
        return 1
    except Exception as exc:  # noqa: BLE001 - the process boundary: every failure becomes an event
        traceback.print_exc(file=sys.stderr)
        failed(failure_kind(exc), one_line(exc, 2000))  # out of memory by type (torch's), a full disk, a bug
        return 1


if __name__ == "__main__":
    sys.exit(main())
