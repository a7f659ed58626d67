"""What ``desktop-app generate`` keeps: the PNG files, and a history row for each image, exactly as the window
writes it (``outputs.keep_image_as``: same module, same fields), so the gallery lists command-line images too;
and with ``--timeline PATH.webp|PATH.gif`` the denoising animation of the first image. No torch, no Qt here.

The images come first: a history that cannot be opened or written (damaged, locked) costs a warning line;
an image that cannot be written where asked (a full disk) goes to a fallback folder that the message names.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path

from desktop_app.engine.events import Progress
from desktop_app.errors import printable
from desktop_app.studio.timeline import Timeline, TimelineError

RECOVER_AGE = 300  # seconds: a younger "saving" row or temp file may belong to a save still running


def add_options(gen: argparse.ArgumentParser) -> None:
    gen.add_argument("--timeline", metavar="PATH",
                     help="also write the denoising steps of the (first) image as an animation: PATH.webp or "
                          "PATH.gif (a preview after every step, then the final image)")


class TimelineRecorder:
    """Passes every event on to ``emit`` and keeps the denoising previews (one per step that has one; the
    hires and upscale stages' progress is not part of the animation)."""

    def __init__(self, emit):
        self.emit = emit
        self.timeline = Timeline()

    def __call__(self, event) -> None:
        if isinstance(event, Progress) and event.stage == "denoise":
            self.timeline.add(event.step, event.total, event.preview)
        self.emit(event)


@dataclass
class Kept:
    """What ``keep_files`` did: every file written (where asked, or in a fallback folder), in order."""

    files: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)  # the files written to a fallback folder
    failed: list[str] = field(default_factory=list)  # the targets that could not be written
    lost: int = 0  # images written nowhere (the fallback folders failed too)
    error: OSError | None = None  # the first error writing where asked
    fallback_error: OSError | None = None

    def problem(self) -> str | None:
        """One line for stderr when an image did not land where asked; None when all did."""
        if not self.failed:
            return None
        reason = self.error.strerror or str(self.error) if self.error is not None else "unknown error"
        first = printable(self.failed[0], 160)
        what = f"could not write {first}" + (f" and {len(self.failed) - 1} more" if len(self.failed) > 1 else "")
        line = f"{what} ({reason})"
        if self.fallback:
            folders = sorted({str(Path(path).parent) for path in self.fallback})
            line += (f"; {len(self.fallback)} image(s) were written to {printable(', '.join(folders), 200)} "
                     "instead")
        if self.lost:
            extra = self.fallback_error.strerror or str(self.fallback_error) if self.fallback_error else ""
            line += f"; {self.lost} image(s) could not be written anywhere ({extra})"
        return line


def open_history(prog: str, folders=()):
    """The history for this run, with what a crash left behind recovered (rows stuck in "saving", stale
    ``.saving-*`` files in ``folders``), or None with a warning line on stderr. A damaged database is moved
    aside and a new one started (the warning names where it went)."""
    from desktop_app.studio.history import History, is_damaged, move_aside

    try:
        history, notice = History.open_checked(thorough=False)
    except (sqlite3.Error, OSError, ValueError) as exc:
        _warn(prog, f"the history is not updated ({_reason(exc)})")
        return None
    if notice:
        _warn(prog, notice)
    try:
        history.recover(list(folders), min_age=RECOVER_AGE)
    except (sqlite3.Error, OSError, ValueError) as exc:
        history.close()
        if not is_damaged(exc):
            _warn(prog, f"the history is not updated ({_reason(exc)})")
            return None
        try:
            from desktop_app.studio.history import damaged_notice

            aside = move_aside(history.path)
            history = History(history.path)
            _warn(prog, damaged_notice(str(exc), aside))
        except (sqlite3.Error, OSError, ValueError) as again:
            _warn(prog, f"the history is damaged and is not updated ({_reason(again)})")
            return None
    return history


def keep_files(result, targets: list[Path], prog: str, history=None) -> Kept:
    """Each image at its target with its recipe, and a history row for it. The history is optional: an
    error from it costs one warning line, never an image. An image that cannot be written at its target
    (a full disk) is written to a fallback folder (``outputs.keep_elsewhere``) and reported in ``Kept``."""
    from desktop_app.studio.outputs import keep_elsewhere, keep_image_as

    own = history is None
    if own:
        history = open_history(prog, {Path(target).parent for target in targets})
    kept = Kept()
    errors: list = []
    recipe = result.recipe.to_dict()  # what each PNG and history row keeps
    try:
        for image, seed, target in zip(result.images, result.seeds, targets):
            if errors and history is not None:  # once is enough: the rest are saved without a history
                history = _drop_history(history, errors[0], prog)
            try:
                path = keep_image_as(image, recipe, seed, target, history, errors)
            except OSError as exc:
                kept.error = kept.error or exc
                kept.failed.append(str(target))
                try:
                    path = keep_elsewhere(image, recipe, seed, Path(target).name)
                except OSError as again:
                    kept.fallback_error = kept.fallback_error or again
                    kept.lost += 1
                    continue
                kept.fallback.append(str(path))
            else:
                if history is not None and not errors:
                    try:
                        history.drop_replaced(path)  # --out to an existing name replaced that image
                    except (sqlite3.Error, ValueError) as exc:
                        errors.append(exc)
            kept.files.append(str(path))
            kept.seeds.append(seed)
        if errors and history is not None:
            history = _drop_history(history, errors[0], prog)
        return kept
    finally:
        if history is not None:
            history.close()


def _drop_history(history, exc: BaseException, prog: str):
    from desktop_app.studio.history import damaged_notice, is_damaged, move_aside

    history.close()
    if is_damaged(exc):
        try:
            aside = move_aside(history.path)
            _warn(prog, damaged_notice(str(exc), aside) + " The images are saved.")
            return None
        except OSError:
            pass
    _warn(prog, f"the history was not updated ({_reason(exc)}); the images are saved")
    return None


def _warn(prog: str, text: str) -> None:
    print(f"{prog}: warning: {' '.join(text.split())}", file=sys.stderr)


def _reason(exc: BaseException) -> str:
    return " ".join((getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).split())


def write_timeline(recorder: TimelineRecorder, path: str, final_image) -> dict:
    """Write the animation; {"file", "frames"}. TimelineError (a bad extension, an unwritable place) names
    the problem; the caller reports it after the PNG files are safe."""
    recorder.timeline.finish(final_image)
    path = Path(path).expanduser()
    frames = recorder.timeline.write(path)
    return {"file": str(path), "frames": frames, "kept": len(recorder.timeline)}


__all__ = ["Kept", "TimelineError", "TimelineRecorder", "add_options", "keep_files", "open_history",
           "write_timeline"]
