"""A throw-away user folder for runs that must not touch the user's own: ``desktop-app selftest`` opens the real
window, which reads and writes settings and history, and the engine caches model hashes in the user folder.

``temporary_home()`` points DESKTOP_APP_HOME (see ``paths.home``) at a fresh temporary folder for the duration of
a ``with`` block, then restores the variable as it was and deletes the folder. No Qt, no torch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VARIABLE = "DESKTOP_APP_HOME"


@contextmanager
def temporary_home(prefix: str = "desktop-app-selftest-") -> Iterator[Path]:
    previous = os.environ.get(VARIABLE)
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ[VARIABLE] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop(VARIABLE, None)
        else:
            os.environ[VARIABLE] = previous
        shutil.rmtree(folder, ignore_errors=True)  # best effort: a handle still open on Windows keeps a file
