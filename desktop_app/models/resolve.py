"""What a request's model declares, resolved before any weights load: the one place the command line and the window
ask for a model's own defaults (steps, guidance, sampler, size, its upscaler). Torch-free."""

from __future__ import annotations

from desktop_app.errors import ModelError
from desktop_app.models import model_folder, single_file


def model_defaults(name_or_path: str) -> dict:
    """The defaults a model declares, plus "upscale": "default" when it carries an upscaler. {} when the
    folder cannot be read (the loader reports that properly later)."""
    path = model_folder.resolve(name_or_path)
    if path.is_file():
        return single_file.file_defaults(path)
    try:
        folder = model_folder.check_folder(name_or_path)
        index = model_folder.read_index(folder)
    except ModelError:
        return {}
    result = model_folder.defaults(index)
    if "upscale" not in result and model_folder.upscaler_path(folder) is not None:
        result["upscale"] = "default"
    return result
