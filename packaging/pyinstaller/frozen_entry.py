"""The frozen app's entry point (PyInstaller runs this file, not desktop_app/__main__.py).

- ``multiprocessing.freeze_support()`` first: a frozen child process (torch DataLoader workers, a resource
  tracker) re-runs this executable, and must not open a second window.
- The fine-tuning panel starts training as ``<python> -m desktop_app.training.run ...`` (a separate process, so
  a crash in training cannot take the window down). Frozen, ``sys.executable`` is this program: it answers
  that call by running the training process instead of the app (``child_module``).
- The hub is off unless the user opts in with ``DESKTOP_APP_ALLOW_HUB=1``: the installed app works offline and
  never phones home on its own. That offline setting is marked as the app's default
  (``DESKTOP_APP_DEFAULT_OFFLINE=1``, as cli.main marks its own), so an explicit download (the Models panel's
  Download, ``models download``) may lift it, as it does outside the bundle; a user's own ``HF_HUB_OFFLINE=1``
  is not marked and still wins.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

ALLOW_HUB = "DESKTOP_APP_ALLOW_HUB"
CHILD_MODULES = ("desktop_app.training.run",)  # what the app itself starts as "<python> -m MODULE"


def child_module(argv: list[str]) -> str | None:
    """The module of a ``-m MODULE ...`` call the app makes of its own executable, else None."""
    if len(argv) >= 3 and argv[1] == "-m" and argv[2] in CHILD_MODULES:
        return argv[2]
    return None


# desktop_app.models.hub_download lifts only an offline so marked
APP_DEFAULT_OFFLINE = "DESKTOP_APP_DEFAULT_OFFLINE"
_TRUE = {"1", "on", "yes", "true"}


def offline_environment(environ) -> None:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE = 1 unless ALLOW_HUB is 1 (then the user's own values stand).
    Unless the user set HF_HUB_OFFLINE=1 themselves, the offline setting is marked as the app's default, which
    an explicit download lifts (for that download only: everything else stays offline)."""
    if environ.get(ALLOW_HUB) == "1":
        return
    users_own = environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE and APP_DEFAULT_OFFLINE not in environ
    environ["HF_HUB_OFFLINE"] = "1"
    environ["TRANSFORMERS_OFFLINE"] = "1"
    if users_own:
        environ.pop(APP_DEFAULT_OFFLINE, None)
    else:
        environ[APP_DEFAULT_OFFLINE] = "1"


if __name__ == "__main__":
    multiprocessing.freeze_support()
    offline_environment(os.environ)
    if child_module(sys.argv) == "desktop_app.training.run":
        from desktop_app.training.run import main as training_main

        sys.exit(training_main(sys.argv[3:]))
    from desktop_app.cli import main

    sys.exit(main())
