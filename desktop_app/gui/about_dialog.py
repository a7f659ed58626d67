"""Help → About: the version, and whose work the embedded model is built on."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTextBrowser, QVBoxLayout, QWidget

import desktop_app

from desktop_app.gui import model_info

APP_NAME = "Desktop Studio"


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"About {APP_NAME}")
        self.setObjectName("about_dialog")
        self.resize(560, 420)

        title = QLabel(f"<h2 style='margin-bottom:0'>{APP_NAME}</h2>"
                       f"<p>Version {desktop_app.__version__}</p>"
                       "<p>Text to image, offline, on your own device.</p>")
        title.setObjectName("about_title")
        title.setTextFormat(Qt.TextFormat.RichText)

        heading = QLabel(f"<b>Embedded model ({model_info.DEFAULT_MODEL_NAME}): attributions</b>")
        self.attributions = QTextBrowser()
        self.attributions.setObjectName("attributions")
        self.attributions.setOpenExternalLinks(True)
        self.attributions.setMarkdown(model_info.read_attributions())

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(heading)
        layout.addWidget(self.attributions, 1)
        layout.addWidget(buttons)
