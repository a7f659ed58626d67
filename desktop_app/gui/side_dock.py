"""A panel as a dock on the window's right, tabbed with the gallery, with a View menu entry to show it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMainWindow, QWidget


def add_side_dock(window: QMainWindow, panel: QWidget, title: str, object_name: str, menu_text: str,
                  menu_position: int | None = None) -> tuple[QDockWidget, QAction]:
    """Dock ``panel`` (named ``object_name`` so the saved layout restores it) beside the gallery; its View menu
    action goes at ``menu_position`` in that menu, or last."""
    dock = QDockWidget(title, window)
    dock.setObjectName(object_name)
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    gallery = getattr(window, "gallery_dock", None)
    if gallery is not None:
        window.tabifyDockWidget(gallery, dock)
        gallery.raise_()
    action = dock.toggleViewAction()
    action.setText(menu_text)
    view = next((a.menu() for a in window.menuBar().actions() if a.text() == "&View" and a.menu()), None)
    if view is not None:
        actions = view.actions()
        before = actions[menu_position] if menu_position is not None and len(actions) > menu_position else None
        view.insertAction(before, action)
    return dock, action
