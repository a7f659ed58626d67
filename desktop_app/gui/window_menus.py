"""The window's menu bar: File, Image, Models, View, Help, and the actions in them. The window connects each
action's ``triggered`` to what it does; the panels get the menus they add to (``image_menu``, ``view_menu``).
Models > Components… opens its dialog here and tells the window through ``components_changed``."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenuBar

THEMES = (("system", "Follow the &System"), ("dark", "&Dark"), ("light", "&Light"))


class WindowMenus(QObject):
    theme_chosen = Signal(str)  # "system", "dark" or "light"
    components_changed = Signal(str)  # a family whose transformer files' components folder was named or forgotten

    def __init__(self, bar: QMenuBar, parent: QObject):
        super().__init__(parent)
        self.generate_action = self._action("&Generate", [QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")],
                                            window=True)
        self.cancel_action = self._action("&Cancel", QKeySequence(Qt.Key.Key_Escape), window=True)
        self.save_action = self._action("&Save As…", QKeySequence.StandardKey.Save, window=True)
        self.save_action.setEnabled(False)
        self.upscale_action = self._action("&Upscale an Image…", QKeySequence("Ctrl+U"))
        self.upscale_action.setToolTip("Enlarge an image file with the upscaler model (Ctrl+U)")
        self.open_folder_action = self._action("Open &Output Folder", QKeySequence("Ctrl+Shift+O"))
        # image to image and inpainting (start_image_wiring.py connects them)
        self.open_start_action = self._action("Open as S&tart Image…", QKeySequence("Ctrl+I"))
        self.open_start_action.setToolTip("Start the next image from an image file (image to image) (Ctrl+I)")
        self.open_mask_action = self._action("Open &Mask…")
        self.open_mask_action.setToolTip("An image file as the inpainting mask: white is repainted")
        self.use_start_action = self._action("Use as S&tart Image", QKeySequence("Ctrl+Shift+I"))
        self.use_start_action.setToolTip("Start the next image from the one on the canvas (Ctrl+Shift+I)")
        self.use_start_action.setEnabled(False)
        # an edit model changes the canvas image (or the start image) by an instruction (edit_wiring.py)
        self.edit_action = self._action("&Edit with an Instruction…")
        self.edit_action.setToolTip("Change the image on the canvas (or the start image) as an instruction says, "
                                    "with an edit model such as FLUX.1 Kontext")
        self.edit_action.setEnabled(False)
        self.choose_folder_action = self._action("Choose Output &Folder…")
        self.quit_action = self._action("&Quit", QKeySequence.StandardKey.Quit)
        self.about_action = self._action("&About")
        self.components_action = self._action("&Components…")
        self.components_action.setToolTip("The diffusers folder whose text encoders and VAE the single "
                                          "transformer files (Flux, SD3 …) of each family run with")
        self.components_action.triggered.connect(lambda _=False: self.open_components())
        self.components_dialog = None  # the open dialog (tests reach it here)

        self.file_menu = bar.addMenu("&File")
        for action in (self.open_start_action, self.open_mask_action, None, self.upscale_action, self.save_action,
                       None, self.open_folder_action,
                       self.choose_folder_action, None, self.quit_action):
            if action is None:
                self.file_menu.addSeparator()
            else:
                self.file_menu.addAction(action)
        self.image_menu = bar.addMenu("&Image")
        self.image_menu.addAction(self.generate_action)
        self.image_menu.addAction(self.cancel_action)
        self.image_menu.addAction(self.use_start_action)
        self.image_menu.addAction(self.edit_action)
        self.models_menu = bar.addMenu("&Models")
        self.models_menu.addAction(self.components_action)
        self.view_menu = bar.addMenu("&View")
        # how the form's image is made (explain_view.py's dock shows itself on it)
        self.explain_action = self._action("&Explain…", QKeySequence("Ctrl+E"))
        self.explain_action.setToolTip("How the form's image is made, section by section (Ctrl+E)")
        self.view_menu.addAction(self.explain_action)
        theme_menu = self.view_menu.addMenu("&Theme")
        self.theme_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        for name, label in THEMES:
            action = QAction(label, parent, checkable=True)
            action.triggered.connect(lambda _=False, name=name: self.theme_chosen.emit(name))
            group.addAction(action)
            theme_menu.addAction(action)
            self.theme_actions[name] = action
        bar.addMenu("&Help").addAction(self.about_action)

    def open_components(self, family: str | None = None) -> None:
        """Models > Components…: the dialog (modeless, one at a time), on ``family`` when given."""
        from desktop_app.gui.components_dialog import ComponentsDialog

        if self.components_dialog is None:
            self.components_dialog = ComponentsDialog(self.parent(), family)
            self.components_dialog.changed.connect(self.components_changed)
        elif family is not None and self.components_dialog.family_combo.findData(family) >= 0:
            self.components_dialog.family_combo.setCurrentIndex(self.components_dialog.family_combo.findData(family))
        self.components_dialog.show()
        self.components_dialog.raise_()

    def _action(self, text: str, shortcut=None, window: bool = False) -> QAction:
        action = QAction(text, self.parent())
        if isinstance(shortcut, list):
            action.setShortcuts(shortcut)
        elif shortcut is not None:
            action.setShortcut(shortcut)
        if window:
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        return action


def name_shortcuts_in_tooltips(*actions: QAction) -> None:
    """"Save As (Ctrl+S)": each action's tooltip names its shortcut."""
    for action in actions:
        shortcut = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        if shortcut:
            action.setToolTip(f"{action.text().replace('&', '').rstrip('…')} ({shortcut})")
