"""The frozen app's entry point (PyInstaller runs this file, not desktop_app/__main__.py).

- ``multiprocessing.freeze_support()`` first: a frozen child process (torch DataLoader workers, a resource
  tracker) re-runs this executable, and must not open a second window.
- The hub is off unless the user opts in with ``DESKTOP_APP_ALLOW_HUB=1``: the installed app works offline and
  never phones home on its own.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

ALLOW_HUB = "DESKTOP_APP_ALLOW_HUB"


def offline_environment(environ) -> None:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE = 1 unless ALLOW_HUB is 1 (then the user's own values stand)."""
    if environ.get(ALLOW_HUB) == "1":
        return
    environ["HF_HUB_OFFLINE"] = "1"
    environ["TRANSFORMERS_OFFLINE"] = "1"


if __name__ == "__main__":
    multiprocessing.freeze_support()
    offline_environment(os.environ)
    from desktop_app.cli import main

    sys.exit(main())
