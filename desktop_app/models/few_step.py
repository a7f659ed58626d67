"""Defaults for the few-step families (SD-Turbo, SDXL-Turbo, LCM models, LCM-LoRAs), which look wrong with
the usual 20-30 steps at guidance 5-7. Torch-free: it reads the model folder's scheduler config and names.

The kind is chosen from the model folder's scheduler class (LCMScheduler: an LCM model; Euler with "trailing"
timestep spacing, as SD-Turbo and SDXL-Turbo ship: a Turbo model) or from an LCM LoRA among the LoRAs.
"""

from __future__ import annotations

import json
from pathlib import Path

# kind -> the defaults the model makers publish (SD-Turbo/SDXL-Turbo: 1-4 steps without guidance;
# LCM and LCM-LoRA: 4-8 steps, guidance 1-1.5, the LCM sampler)
FEW_STEP_DEFAULTS = {
    "turbo": {"steps": 2, "guidance_scale": 0.0, "sampler": "Euler a"},
    "lcm": {"steps": 6, "guidance_scale": 1.0, "sampler": "LCM"},
}


def few_step_kind(model_path: str | Path | None, lora_names=()) -> str | None:
    """"turbo", "lcm" or None (an ordinary model)."""
    if any("lcm" in Path(str(name)).name.lower() for name in lora_names):
        return "lcm"
    if model_path is None:
        return None
    path = Path(str(model_path))
    config = _scheduler_config(path)
    name = path.name.lower()
    cls = str(config.get("_class_name", ""))
    if cls == "LCMScheduler" or "lcm" in name:
        return "lcm"
    if "turbo" in name or (cls.startswith("Euler") and config.get("timestep_spacing") == "trailing"):
        return "turbo"
    return None


def few_step_defaults(model_path: str | Path | None, lora_names=()) -> dict:
    """The defaults for ``model_path`` (and the LoRAs) when it is a few-step model, else {}."""
    kind = few_step_kind(model_path, lora_names)
    return dict(FEW_STEP_DEFAULTS[kind]) if kind else {}


def _scheduler_config(path: Path) -> dict:
    file = path / "scheduler" / "scheduler_config.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
