"""The labels on the right of the window's status bar: the model, the device (and the memory plan when the
model was offloaded), the last run's time, and a quiet "Unsigned images" when content credentials are off."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QStatusBar

from desktop_app.gui import model_info
from desktop_app.studio import credentials


PLAN_TIPS = {  # the engine's memory plans (engine/memory_plan.py) that offload, for a person
    "model offload": "The model did not fit on the GPU with room to work: each part of it (text encoder, "
                     "denoiser, VAE) moved to the GPU only while it ran.",
    "group offload": "The model did not fit on the GPU: its layers moved to the GPU a few at a time.",
    "sequential offload": "The model did not fit on the GPU: its layers moved to the GPU one at a time "
                          "(the slowest way, and the lightest).",
}


class StatusLabels:
    def __init__(self, bar: QStatusBar, controller=None):
        """``controller``: the run controller, whose ``kept`` images are followed by a look at the credentials."""
        self._bar, self._told = bar, set()
        self.credentials_label = QLabel("Unsigned images")  # shown only when credentials are off
        self.credentials_label.setObjectName("credentials_label")
        self.credentials_label.setContentsMargins(8, 0, 8, 0)
        self.credentials_label.hide()
        bar.addPermanentWidget(self.credentials_label)
        self.device_label = QLabel("Device: not loaded yet")
        self.device_label.setObjectName("device_label")
        self.model_label = QLabel()
        self.model_label.setObjectName("model_label")
        self.time_label = QLabel("")
        self.time_label.setObjectName("time_label")
        for label in (self.model_label, self.device_label, self.time_label):
            label.setContentsMargins(8, 0, 8, 0)
            bar.addPermanentWidget(label)
        if controller is not None:
            controller.kept.connect(lambda _files: self.show_credentials())
        QTimer.singleShot(0, self.credentials_label, self.show_credentials)  # after the start-up messages

    def show_credentials(self) -> str | None:
        """Whether the images are signed (``credentials.off_reason``): when not, the label, with the reason as its
        tooltip, and the reason added to the status bar's message the first time it is met. Returns the reason."""
        reason = credentials.off_reason()
        self.credentials_label.setHidden(not reason)
        if not reason:
            self.credentials_label.setToolTip("")
            return None
        line = reason[:1].upper() + reason[1:]
        self.credentials_label.setToolTip(line)
        if reason not in self._told:  # told once; the label stays
            self._told.add(reason)
            current = self._bar.currentMessage()
            self._bar.showMessage(f"{current} · {line}" if current else line)
        return reason

    def show_model(self, model: str) -> None:
        """The form's model, with its folder (or what is wrong with it) as the tooltip."""
        self.model_label.setText(f"Model: {model_info.display_name(model)}")
        folder = model_info.model_dir(model)
        if not model_info.looks_like_model_folder(folder):
            what = "The embedded default model is not installed" if model == "default" else "Not a model folder"
            self.model_label.setToolTip(f"{what}: {folder}")
        else:
            self.model_label.setToolTip(str(folder))

    def show_device(self, ok: bool, text: str) -> None:
        """The engine started on ``text`` ("cpu (float32)"), or could not start (``text`` says why)."""
        if ok:
            if text:
                self.device_label.setText(f"Device: {text}")
                self.device_label.setToolTip("")
        else:
            self.device_label.setText("Device: not available")
            self.device_label.setToolTip(text)

    def show_finished(self, recipe) -> None:
        """What a generation's recipe (engine/recipe.py's Recipe) says it ran on, with its memory plan when the
        weights did not all stay on the device (the plan's own line, with the numbers, is the tooltip)."""
        plan = getattr(recipe, "memory_plan", None)
        offloaded = plan and plan != "all on device"
        self.device_label.setText(f"Device: {recipe.device or '?'} ({recipe.dtype or '?'})"
                                  + (f" · {plan}" if offloaded else ""))
        told = next((line for line in recipe.notices if line.startswith("memory plan:")), "")
        self.device_label.setToolTip(told or (PLAN_TIPS.get(plan, "") if offloaded else ""))
        model_name = recipe.model_name or model_info.display_name(recipe.request.model)
        self.model_label.setText(f"Model: {model_name}")

    def show_time(self, total) -> None:
        """The last run's seconds; None (or nothing known) clears it."""
        self.time_label.setText(f"Last run: {total:.1f} s" if isinstance(total, (int, float)) else "")
