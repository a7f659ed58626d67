"""A panel as a dock on the window's right, tabbed with another dock (the gallery), with a View menu entry."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu, QWidget


def add_side_dock(window: QMainWindow, panel: QWidget, title: str, object_name: str, menu_text: str,
                  view_menu: QMenu | None = None, menu_position: int | None = None,
                  tab_with: QDockWidget | None = None) -> tuple[QDockWidget, QAction]:
    """Dock ``panel`` (named ``object_name`` so the saved layout restores it) on the right, tabbed with
    ``tab_with`` (which stays in front); its show/hide action, named ``menu_text``, goes into ``view_menu`` at
    ``menu_position``, or last."""
    dock = QDockWidget(title, window)
    dock.setObjectName(object_name)
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    if tab_with is not None:
        window.tabifyDockWidget(tab_with, dock)
        tab_with.raise_()
    action = dock.toggleViewAction()
    action.setText(menu_text)
    if view_menu is not None:
        actions = view_menu.actions()
        before = actions[menu_position] if menu_position is not None and len(actions) > menu_position else None
        view_menu.insertAction(before, action)
    return dock, action
