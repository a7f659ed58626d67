"""PIL images to Qt images, without torch. QImage (not QPixmap) so that it is safe off the UI thread."""

from __future__ import annotations

from PySide6.QtGui import QImage


def pil_to_qimage(image) -> QImage:
    """A deep copy of a PIL image as a QImage (RGB888 or RGBA8888)."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I"):  # 16-bit grey: show the high byte (convert would clip)
        import numpy as np
        from PIL import Image

        image = Image.fromarray((np.clip(np.asarray(image), 0, 65535) >> 8).astype(np.uint8))
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    fmt = QImage.Format.Format_RGBA8888 if image.mode == "RGBA" else QImage.Format.Format_RGB888
    channels = 4 if image.mode == "RGBA" else 3
    data = image.tobytes()
    # QImage does not own `data`: copy() detaches it before the bytes go away
    return QImage(data, image.width, image.height, image.width * channels, fmt).copy()
