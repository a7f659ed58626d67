"""Filling the generation form from a recipe (a PNG's, the history's, the last run's): each value checked against
what the form offers, the ones it cannot use named."""

from __future__ import annotations

from pathlib import Path

from desktop_app.engine.request import MAX_SEED
from desktop_app.resources import DEFAULT_MODEL
from desktop_app.gui.weights_choice import set_weights


def fill_form(form, values: dict) -> list[str]:
    """Fill the form from GenerationRequest fields (a recipe read back from an image, or the last run).
    Fields that are absent keep their value; returns the names of values that could not be used."""
    skipped = []
    model = values.get("model")
    if model:
        if model == DEFAULT_MODEL or Path(str(model)).expanduser().exists():
            form.select_model(str(model))  # first: a model's defaults must not overwrite the recipe
        else:
            skipped.append("model")
    # the LoRAs before the numbers: ticking an LCM-LoRA sets few-step defaults, which the recipe then overrides
    if "loras" in values and (form.lora_picker.set_choices(values["loras"])
                              or (values["loras"] and not form.lora_picker.taken)):
        skipped.append("loras")  # a LoRA of the recipe that this machine does not have, or the model takes none
    if "prompt" in values:
        form.prompt_edit.setPlainText(str(values["prompt"] or ""))
    if "negative_prompt" in values:
        form.negative_edit.setPlainText(str(values["negative_prompt"] or ""))
    for key, spin in (("width", form.width_spin), ("height", form.height_spin), ("steps", form.steps_spin),
                      ("batch_size", form.batch_spin)):
        value = values.get(key)
        if isinstance(value, (int, float)) and spin.minimum() <= value <= spin.maximum():
            spin.setValue(int(value))
        elif value is not None:
            skipped.append(key)
    guidance = values.get("guidance_scale")
    if isinstance(guidance, (int, float)):
        form.guidance_spin.setValue(float(guidance))
    sampler = values.get("sampler")
    if sampler in form._samplers():
        form.sampler_combo.setCurrentText(sampler)
    elif sampler:
        skipped.append("sampler")
    if "seed" in values:
        seed = values["seed"]
        if isinstance(seed, int) and 0 <= seed <= MAX_SEED:
            form.random_check.setChecked(False)
            form.seed_spin.setValue(seed)
        else:
            form.random_check.setChecked(True)
    if "upscale" in values and form.upscale_check.isEnabled():
        form.upscale_check.setChecked(bool(values["upscale"]))
        if values["upscale"] and values["upscale"] != form.UPSCALE_DEFAULT:
            if Path(str(values["upscale"])).expanduser().is_file():
                form.select_upscaler(str(values["upscale"]))
            else:
                skipped.append("upscale")
    hires = values.get("hires_scale")
    if form.hires_spin.isEnabled() and (hires is None or isinstance(hires, (int, float))):
        form.hires_spin.setValue(float(hires or 1.0))
    strength = values.get("hires_strength")
    if isinstance(strength, (int, float)) and 0 <= strength <= 1:
        form.hires_strength_spin.setValue(float(strength))
    skipped += form.refiner_choice.apply(values)
    skipped += form.start_box.apply(values)  # image to image: the start image and mask, when still there (named)
    if "controls" in values:  # the rows back; the ControlNet folders and images missing here, named
        skipped += form.control_rows.apply(values["controls"])
    skipped += form.image_prompt_row.apply(values)  # the image and IP-Adapter when still there (named)
    if "weights" in values and not set_weights(form.weights_combo, values["weights"]):
        skipped.append("weights")  # the last run's (run_controller.remember keeps it with the request)
    return skipped
