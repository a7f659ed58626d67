"""Combo boxes that list files or folders by path, ending in a separator and a "Browse…" item."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox


def path_index(combo: QComboBox, path: str, label: str | None = None) -> int:
    """The index of the item for ``path`` in ``combo``, inserting it (shown as ``label``, its path as the
    tooltip) before the trailing separator and "Browse…" item when it is not listed yet."""
    index = combo.findData(path)
    if index < 0:
        index = combo.count() - 2
        combo.insertItem(index, label or Path(path).name or path, path)
        combo.setItemData(index, path, Qt.ItemDataRole.ToolTipRole)
    return index
