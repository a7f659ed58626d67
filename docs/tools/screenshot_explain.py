"""The screenshot of View → Explain for the docs: the window, a real explain run on the embedded model, the
reverse diffusion section showing.

    QT_QPA_PLATFORM=offscreen python docs/tools/screenshot_explain.py docs/screenshot-explain.png --steps 4

Exit status 0 when the run finished and the capture was taken.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QTimer

from desktop_app import paths
from desktop_app.gui import app as gui_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="screenshot_explain.py")
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompt", default="a red fox in the snow")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--section", default="Reverse diffusion", help="the section to show (words of its title)")
    parser.add_argument("--x", default="", help="the Compare grid row's X (e.g. guidance=1,3,7,12)")
    parser.add_argument("--y", default="", help="the Compare grid row's Y")
    args = parser.parse_args(argv)

    with paths.temporary_home("desktop-app-screenshot-"):  # never the user's own settings and history
        return _capture(args)


def _capture(args) -> int:
    qt = gui_app.application()
    window = gui_app.MainWindow(model=args.model)
    window.resize(1500, 900)
    window.show()
    form = window.form
    form.prompt_edit.setPlainText(args.prompt)
    form.steps_spin.setValue(args.steps)
    form.random_check.setChecked(False)
    form.seed_spin.setValue(args.seed)
    view = window.explain_view
    view.compare_fields.x_edit.setText(args.x)
    view.compare_fields.y_edit.setText(args.y)
    status = {"code": 1}

    def on_end(how: str) -> None:
        print(f"explain {how}: {view.message()}", flush=True)
        if how == "finished" and view.show_section_titled(args.section):
            status["code"] = 0

        def capture() -> None:
            QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            window.grab().save(str(args.out))
            print(f"wrote {args.out}", flush=True)
            window.close()

        QTimer.singleShot(400, capture)

    view.ended.connect(on_end)
    QTimer.singleShot(200, window.menus.explain_action.trigger)
    QTimer.singleShot(500, view.explain)
    QTimer.singleShot(300_000, window.close)
    qt.exec()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
