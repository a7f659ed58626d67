"""Section 7, fine-tuning: LoRA training steps per second against a bare training loop with the same model,
batch and resolution. Fine-tuning is not built yet, so the section says so (its keys stay in the report)."""

from __future__ import annotations

from .common import NOT_AVAILABLE, Settings

KEYS = ("status", "ours_steps_per_s", "bare_steps_per_s", "ratio", "settings")


def run(settings: Settings) -> dict:
    return {"status": f"{NOT_AVAILABLE}: LoRA fine-tuning is not built yet (no training path to measure)",
            "ours_steps_per_s": None, "bare_steps_per_s": None, "ratio": None, "settings": None}
