"""Engine events on the terminal."""

from __future__ import annotations

from desktop_app.engine.events import Progress, StageStarted

# what a Progress counts, by its stage (denoising steps are plain numbers, as they always were)
UNITS = {"upscale": " tiles", "hires": " hires steps", "refine": " refiner steps"}


class Reporter:
    """Engine events on stderr: a progress bar on a terminal, plain stage lines otherwise (logs, pipes)."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._bar_open = False

    def __call__(self, event) -> None:
        """Stage lines and the bar; the terminal events (Finished, Cancelled, Failed) are not shown here: the
        command reports the outcome from what the engine returns or raises."""
        if isinstance(event, StageStarted):
            self._end_bar()
            detail = f": {event.detail}" if event.detail else ""
            self.stream.write(f"{event.stage}{detail}\n")
        elif isinstance(event, Progress) and self.tty:
            width = 30
            done = int(width * event.step / max(event.total, 1))
            self.stream.write(f"\r  [{'#' * done}{'.' * (width - done)}] {event.step}/{event.total}"
                              f"{UNITS.get(event.stage, '')} {event.elapsed:.1f}s")
            self._bar_open = True
        else:
            return
        self.stream.flush()

    def _end_bar(self) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False

    def close(self) -> None:
        self._end_bar()
        self.stream.flush()
