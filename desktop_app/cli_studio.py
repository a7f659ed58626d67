"""What ``desktop-app generate`` keeps besides the PNG files: a history row for each image, exactly as the window
writes it (``outputs.keep_image_as``: same module, same fields), so the gallery lists command-line images too;
and with ``--timeline PATH.webp|PATH.gif`` the denoising animation of the first image. No torch, no Qt here.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from .timeline import Timeline, TimelineError


def add_options(gen: argparse.ArgumentParser) -> None:
    gen.add_argument("--timeline", metavar="PATH",
                     help="also write the denoising steps of the (first) image as an animation: PATH.webp or "
                          "PATH.gif (a preview after every step, then the final image)")


class TimelineRecorder:
    """Passes every event on to ``emit`` and keeps the denoising previews (one per step that has one)."""

    def __init__(self, emit):
        self.emit = emit
        self.timeline = Timeline()

    def __call__(self, event) -> None:
        if type(event).__name__ == "Progress" and getattr(event, "stage", "denoise") == "denoise":
            self.timeline.add(event.step, event.total, event.preview)
        self.emit(event)


def keep_files(result, targets: list[Path], prog: str) -> list[str]:
    """Each image at its target with its recipe, and a history row for it. A history that cannot be opened
    (a damaged or locked database) costs a warning, never the images."""
    from .outputs import keep_image_as

    history = _open_history(prog)
    files = []
    try:
        for image, seed, target in zip(result.images, result.seeds, targets):
            path = keep_image_as(image, result.recipe, seed, target, history)
            if history is not None:
                history.drop_replaced(path)  # --out to an existing name replaced that image
            files.append(str(path))
        return files
    finally:
        if history is not None:
            history.close()


def write_timeline(recorder: TimelineRecorder, path: str, final_image) -> dict:
    """Write the animation; {"file", "frames"}. TimelineError (a bad extension, an unwritable place) names
    the problem; the caller reports it after the PNG files are safe."""
    recorder.timeline.finish(final_image)
    path = Path(path).expanduser()
    frames = recorder.timeline.write(path)
    return {"file": str(path), "frames": frames, "kept": len(recorder.timeline)}


def _open_history(prog: str):
    from .history import History

    try:
        return History()
    except (sqlite3.Error, OSError) as exc:
        print(f"{prog}: warning: the history was not updated ({exc})", file=sys.stderr)
        return None


__all__ = ["TimelineError", "TimelineRecorder", "add_options", "keep_files", "write_timeline"]
