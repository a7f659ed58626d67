"""The stage strip above the canvas: the steps of a diffusion run, the current one highlighted.

It explains what the model is doing: the prompt becomes tokens and text vectors, a latent of pure noise is
drawn, the denoiser removes noise step by step guided by the text, the VAE decodes latents to pixels, the
upscaler enlarges the result. Below the chips: the tokens the prompt was split into, when the engine
reports them.
"""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

# (engine stage name, label, what it does)
STAGES = (
    ("text", "Tokens & text encoding",
     "The prompt is split into tokens; the text encoder turns them into vectors the denoiser attends to."),
    ("noise", "Noise",
     "A small latent image of pure random noise is drawn from the seed: the same seed gives the same start."),
    ("denoise", "Guided denoising",
     ("Step by step the denoiser predicts and removes noise. Guidance pushes each step towards the prompt "
      "and away from the negative prompt. The canvas shows the predicted clean image after each step.")),
    ("decode", "Decode",
     "The VAE decoder turns the finished latent into pixels."),
    ("upscale", "Upscale",
     "The upscaler model enlarges the image 4x, adding detail instead of blur."),
)
STAGE_NAMES = tuple(name for name, _, _ in STAGES)
MAX_TOKENS_SHOWN = 40  # a long prompt must not push the canvas down

_CHIP_STYLE = {
    "pending": "color: #6b7079; background: transparent; border: 1px solid #3a3d44;",
    "current": "color: white; background: #2f6fde; border: 1px solid #2f6fde; font-weight: 600;",
    "done": "color: #9fd7a5; background: #243a2a; border: 1px solid #2f5a38;",
    "skipped": "color: #4a4e56; background: transparent; border: 1px dashed #3a3d44;",
    "failed": "color: white; background: #a33a3a; border: 1px solid #a33a3a;",
}


def parse_tokens(detail: str) -> list[str]:
    """The tokens in a "text" stage detail: a JSON list, or "tokens: a | b | c", or space-separated words."""
    text = (detail or "").strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list):
            return [str(token) for token in value]
    if ":" in text and text.split(":", 1)[0].strip().lower() in ("tokens", "token"):
        text = text.split(":", 1)[1].strip()
    for separator in (" | ", "|", ", "):
        if separator in text:
            return [part.strip() for part in text.split(separator) if part.strip()]
    return text.split()


class StageStrip(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("stage_strip")
        self._chips: dict[str, QLabel] = {}
        self._states: dict[str, str] = {}
        self._current: str | None = None

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        for index, (name, label, tip) in enumerate(STAGES):
            if index:
                arrow = QLabel("›")
                arrow.setStyleSheet("color: #6b7079; font-size: 15px;")
                row.addWidget(arrow)
            chip = QLabel(label)
            chip.setObjectName(f"stage_{name}")
            # wide enough for the widest state ("✓ " + label, bold) so the strip never jumps or clips
            bold = chip.font()
            bold.setBold(True)
            chip.setMinimumWidth(QFontMetrics(bold).horizontalAdvance(f"✓ {label}") + 2 * 10 + 6)
            chip.setToolTip(tip)
            chip.setAlignment(Qt.AlignmentFlag.AlignCenter)
            chip.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
            row.addWidget(chip)
            self._chips[name] = chip
        row.addStretch(1)

        self.tokens_label = QLabel()
        self.tokens_label.setObjectName("tokens")
        self.tokens_label.setTextFormat(Qt.TextFormat.RichText)
        self.tokens_label.setWordWrap(True)
        self.tokens_label.setToolTip("How the text encoder's tokenizer split the prompt")

        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(6)
        column.addLayout(row)
        column.addWidget(self.tokens_label)
        self.reset(upscale=True)

    # ---- state ---------------------------------------------------------------------------------

    def reset(self, upscale: bool = True) -> None:
        self._current = None
        for name in STAGE_NAMES:
            self._set(name, "skipped" if name == "upscale" and not upscale else "pending")
        self.set_tokens([])

    def reset_upscale_only(self) -> None:
        """An upscale job of its own: only the upscale stage runs; the others are skipped."""
        self.reset(upscale=True)
        for name in STAGE_NAMES:
            if name != "upscale":
                self._set(name, "skipped")

    def set_stage(self, name: str) -> None:
        """Highlight ``name``; the stages before it count as done. Other names ("load", "save") are
        ignored."""
        if name not in self._chips:
            return
        reached = False
        for stage in reversed(STAGE_NAMES):
            if stage == name:
                reached = True
                self._set(stage, "current")
            elif reached and self._states[stage] != "skipped":
                self._set(stage, "done")
        self._current = name

    def finish(self) -> None:
        for name in STAGE_NAMES:
            if self._states[name] != "skipped":
                self._set(name, "done")
        self._current = None

    def fail(self) -> None:
        if self._current is not None:
            self._set(self._current, "failed")
        self._current = None

    def current(self) -> str | None:
        return self._current

    def state(self, name: str) -> str:
        return self._states[name]

    def set_tokens(self, tokens: list[str]) -> None:
        self._tokens = list(tokens)
        if not tokens:
            self.tokens_label.setText(
                "<span style='color:#6b7079'>Tokens appear here when the prompt is encoded</span>")
            return
        shown = tokens[:MAX_TOKENS_SHOWN]
        chips = " ".join(
            "<span style='background:#2a2d33; color:#d7dae0; padding:1px 4px;'>&nbsp;"
            f"{_escape(token)}&nbsp;</span>" for token in shown)
        more = f" <span style='color:#8a8f98'>… and {len(tokens) - len(shown)} more</span>" \
            if len(tokens) > len(shown) else ""
        self.tokens_label.setText(f"<span style='color:#8a8f98'>{len(tokens)} tokens:</span> {chips}{more}")
        self.tokens_label.setToolTip(" ".join(tokens))

    def tokens(self) -> list[str]:
        return list(self._tokens)

    def _set(self, name: str, state: str) -> None:
        self._states[name] = state
        chip = self._chips[name]
        label = next(label for stage, label, _ in STAGES if stage == name)
        chip.setText(("✓ " if state == "done" else "") + label)
        chip.setStyleSheet(f"QLabel {{ {_CHIP_STYLE[state]} border-radius: 10px; padding: 3px 10px; }}")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
