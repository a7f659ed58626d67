"""Render resources/icons/desktop-app.svg into the icon files the installers need.

    .venv/bin/python packaging/make_icons.py

writes, next to the SVG: desktop-app.png (256 px, the window and the Linux menu), desktop-app-512.png,
desktop-app.ico (Windows: 16 to 256 px) and desktop-app.icns (macOS). The outputs are committed, so a build
does not need to run this; run it again after editing the SVG.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"
SOURCE = ICONS / "desktop-app.svg"


def render_svg(source: Path, size: int):
    """The SVG drawn at size x size by Qt's SVG renderer, as a PIL image."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 - QImage painting needs one
    renderer = QSvgRenderer(str(source))
    if not renderer.isValid():
        raise ValueError(f"{source}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return Image.open(io.BytesIO(bytes(data))).convert("RGBA")


def main() -> int:
    big = render_svg(SOURCE, 1024)
    big.resize((256, 256), resample=3).save(ICONS / "desktop-app.png")
    big.resize((512, 512), resample=3).save(ICONS / "desktop-app-512.png")
    big.save(ICONS / "desktop-app.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128),
                                                (256, 256)])
    big.save(ICONS / "desktop-app.icns")
    for name in ("desktop-app.png", "desktop-app-512.png", "desktop-app.ico", "desktop-app.icns"):
        print(f"wrote {ICONS / name} ({(ICONS / name).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
