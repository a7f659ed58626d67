"""Engine events on the terminal."""

from __future__ import annotations




class Reporter:
    """Engine events on stderr: a progress bar on a terminal, plain stage lines otherwise (logs, pipes)."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._bar_open = False

    def __call__(self, event) -> None:
        kind = type(event).__name__
        if kind == "StageStarted":
            self._end_bar()
            detail = f": {event.detail}" if event.detail else ""
            self.stream.write(f"{event.stage}{detail}\n")
        elif kind == "Progress" and self.tty:
            width = 30
            done = int(width * event.step / max(event.total, 1))
            self.stream.write(f"\r  [{'#' * done}{'.' * (width - done)}] {event.step}/{event.total} "
                              f"{event.elapsed:.1f}s")
            self._bar_open = True
        self.stream.flush()

    def _end_bar(self) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False

    def close(self) -> None:
        self._end_bar()
        self.stream.flush()
