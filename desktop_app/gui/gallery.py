"""The gallery: every kept image from the history, newest first, with search, favourites, delete, open folder.

A file the user moved or deleted outside the app shows as "missing" with a placeholder; it never breaks the
list, and neither does a history that cannot be read. Deleting moves the file to the system trash where there
is one (QFile.moveToTrash); where there is none, the person is asked before the file is deleted for good.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QIcon, QImage, QKeySequence, QPainter, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from desktop_app.gui.buttons import action_button
from desktop_app.studio.history import Entry, History

THUMB = 96
ENTRY_ROLE = Qt.ItemDataRole.UserRole


def move_to_trash(path: Path) -> bool:
    """To the system trash when there is one. True when the file is gone (moved, or already not there);
    False when there is no trash (or it refused): the caller asks before deleting for good."""
    from PySide6.QtCore import QFile

    if not path.exists():
        return True
    try:
        return bool(QFile.moveToTrash(str(path)))
    except (TypeError, RuntimeError):  # bindings differ in what moveToTrash returns
        return not path.exists()


def delete_for_good(path: Path) -> bool:
    try:
        path.unlink(missing_ok=True)
        return True
    except OSError:
        return False


def ask_delete_for_good(parent: QWidget, path: Path) -> bool:
    answer = QMessageBox.question(
        parent, "Delete for good?",
        f"{path.name} cannot be moved to a trash here (there is none, or it refused). Delete it permanently? "
        "This cannot be undone.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


HISTORY_ERRORS = (sqlite3.Error, OSError, ValueError)


def open_folder(folder: Path) -> bool:
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


class GalleryPanel(QWidget):
    recipe_chosen = Signal(object)  # an Entry: the person wants its recipe in the form
    image_chosen = Signal(object)  # an Entry: show it on the canvas
    changed = Signal()

    # replaceable in tests: nothing of theirs should land in the real trash or open a file manager
    trash = staticmethod(move_to_trash)
    opener = staticmethod(open_folder)
    confirm_delete_for_good = staticmethod(ask_delete_for_good)
    unlink = staticmethod(delete_for_good)

    def __init__(self, history: History, folder_of=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("gallery")
        self.history = history
        self._folder_of = folder_of  # () -> the current output folder, for "Open folder" with no selection
        self._icons: dict[tuple[int, str], QIcon] = {}

        self.search_edit = QLineEdit()
        self.search_edit.setObjectName("gallery_search")
        self.search_edit.setPlaceholderText("Search prompts…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self.refresh)
        self.favourites_check = QCheckBox("★ only")
        self.favourites_check.setToolTip("Show only favourites")
        self.favourites_check.toggled.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(self.search_edit, 1)
        top.addWidget(self.favourites_check)

        self.list = QListWidget()
        self.list.setObjectName("gallery_list")
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setGridSize(QSize(THUMB + 16, THUMB + 36))
        self.list.setUniformItemSizes(True)
        self.list.setWordWrap(True)
        self.list.itemActivated.connect(self._on_activated)
        self.list.currentItemChanged.connect(lambda *_: self._update_buttons())

        self.favourite_button = action_button("★ Favourite", "Mark or unmark as favourite (F)",
                                              self.toggle_favourite)
        self.use_button = action_button("Use recipe", "Put this image's settings into the form (Enter)",
                                        self._use_recipe)
        self.delete_button = action_button(
            "Delete", "Move the image to the trash and remove it from the history (Del)", self.delete_selected)
        self.folder_button = action_button("Open folder", "Show the folder that holds the image",
                                           self.open_selected_folder)
        buttons = QHBoxLayout()
        for button in (self.favourite_button, self.use_button, self.delete_button, self.folder_button):
            buttons.addWidget(button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(top)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        for key, slot in ((QKeySequence.StandardKey.Delete, self.delete_selected),
                          (QKeySequence("F"), self.toggle_favourite)):
            shortcut = QShortcut(key, self.list)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(slot)
        self.refresh()

    # ---- contents ------------------------------------------------------------------------------

    def refresh(self) -> None:
        try:
            selected = self.selected()
        except HISTORY_ERRORS:
            selected = None
        self.list.clear()
        try:
            entries = self.history.entries(self.search_edit.text(), self.favourites_check.isChecked())
        except HISTORY_ERRORS as exc:  # a damaged or locked database: say so, never break the window
            self.list.setToolTip(f"The history could not be read: {exc}")
            entries = []
        else:
            self.list.setToolTip("")
        for entry in entries:
            missing = entry.missing
            star = "★ " if entry.favourite else ""
            label = f"{star}{entry.prompt[:40] or '(no prompt)'}"
            if missing:
                label = f"{label}\n(missing)"
            item = QListWidgetItem(self._icon(entry, missing), label)
            item.setData(ENTRY_ROLE, entry.id)
            item.setToolTip(f"{entry.prompt}\nseed {entry.seed} · {entry.model}\n{entry.path}"
                            + ("\nThe file is missing: it was moved or deleted outside the app" if missing
                               else ""))
            self.list.addItem(item)
            if selected is not None and entry.id == selected.id:
                self.list.setCurrentItem(item)
        self._update_buttons()
        self.changed.emit()

    def entries_shown(self) -> list[Entry]:
        return [self.history.get(self.list.item(row).data(ENTRY_ROLE)) for row in range(self.list.count())]

    def selected(self) -> Entry | None:
        item = self.list.currentItem()
        if item is None or item.data(ENTRY_ROLE) is None:
            return None
        try:
            return self.history.get(item.data(ENTRY_ROLE))
        except HISTORY_ERRORS:
            return None

    def select_row(self, row: int) -> None:
        self.list.setCurrentRow(row)

    # ---- commands ------------------------------------------------------------------------------

    def toggle_favourite(self) -> None:
        entry = self.selected()
        if entry is not None:
            self.history.set_favourite(entry.id, not entry.favourite)
            self._icons.pop((entry.id, "ok"), None)
            self.refresh()

    def delete_selected(self) -> None:
        entry = self.selected()
        if entry is None:
            return
        if not entry.missing and not self.trash(entry.path):
            # no trash here: deleting would be for good, so ask first
            if not self.confirm_delete_for_good(self, entry.path) or not self.unlink(entry.path):
                return  # kept (or it could not be removed): its row stays so that it stays findable
        try:
            self.history.delete(entry.id)
        except HISTORY_ERRORS:
            pass
        self.refresh()

    def open_selected_folder(self) -> None:
        entry = self.selected()
        folder = entry.path.parent if entry is not None else (self._folder_of() if self._folder_of else None)
        if folder is not None:
            self.opener(Path(folder))

    def _use_recipe(self) -> None:
        entry = self.selected()
        if entry is not None:
            self.recipe_chosen.emit(entry)

    def _on_activated(self, item: QListWidgetItem) -> None:
        entry = self.history.get(item.data(ENTRY_ROLE))
        if entry is not None:
            self.image_chosen.emit(entry)

    def _update_buttons(self) -> None:
        entry = self.selected()
        for button in (self.favourite_button, self.use_button, self.delete_button):
            button.setEnabled(entry is not None)

    def _icon(self, entry: Entry, missing: bool) -> QIcon:
        key = (entry.id, "missing" if missing else "ok")
        icon = self._icons.get(key)
        if icon is None:
            image = QImage() if missing else QImage(str(entry.path))
            icon = QIcon(_thumbnail(image))
            self._icons[key] = icon
        return icon


def _thumbnail(image: QImage) -> QPixmap:
    if image.isNull():  # missing or unreadable: a grey square with a question mark
        pixmap = QPixmap(THUMB, THUMB)
        pixmap.fill(QColor("#3a3d44"))
        painter = QPainter(pixmap)
        painter.setPen(QColor("#9aa0a8"))
        font = painter.font()
        font.setPointSize(28)
        painter.setFont(font)
        painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, "?")
        painter.end()
        return pixmap
    mode = Qt.TransformationMode.FastTransformation if max(image.width(), image.height()) <= 128 \
        else Qt.TransformationMode.SmoothTransformation
    return QPixmap.fromImage(image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, mode))
