"""The components of a single transformer file: the text encoders, tokenizers, VAE and scheduler it runs with,
taken from a diffusers folder of the same family. Torch-free (the command line checks them before torch loads).

People download a Flux or SD3 transformer alone (``flux1-dev.safetensors``, ``flux1-dev-Q4_K_S.gguf``); the rest
of the pipeline is the same for every file of a family, so the user names a diffusers folder of the family once
(``desktop-app models components flux FOLDER``: kept in the library file, one folder per family), or for one run
(``generate --components FOLDER``: ``use_for_run``). The folder's transformer subfolder may be missing or hold only
its config.json; every other part its model_index.json names must be there, with .safetensors weights.
"""

from __future__ import annotations

from pathlib import Path

from desktop_app.errors import ModelError, one_line, printable
from desktop_app.models import families, model_folder

SETTING = "components"  # the library file's map: family -> folder
WEIGHT_PARTS = ("text_encoder", "text_encoder_2", "text_encoder_3", "vae")  # need weights, not just configs
_run: dict[str, Path] = {}  # a model file's resolved path -> the folder named for this run (--components)


def use_for_run(model_file, folder) -> None:
    """Use ``folder`` as the components of ``model_file`` in this process (``generate --components``), before
    the library's folder for its family."""
    _run[str(Path(model_file).expanduser().resolve())] = Path(folder).expanduser()


def end_run(model_file) -> None:
    """Forget the folder ``use_for_run`` named for ``model_file`` (the run is over)."""
    _run.pop(str(Path(model_file).expanduser().resolve()), None)


def stored() -> dict[str, str]:
    """The components folder named for each family in the library ({} when none is, or it cannot be read)."""
    from desktop_app.models import model_library

    try:
        value = model_library.setting(SETTING)
    except ModelError:
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def set_for_family(family: str, folder) -> Path:
    """Name ``folder`` (checked: a complete diffusers folder of ``family``) as the family's components."""
    from desktop_app.models import model_library

    if families.get(family) is None or family not in families.SINGLE_FILES:
        runs = ", ".join(sorted(families.SINGLE_FILES))
        raise ModelError(f"{printable(family, 60)} is not a family whose transformer files run with components; "
                         f"those are {runs}.")
    found = check(family, folder)
    value = model_library.setting(SETTING) | {family: str(found)}
    model_library.store_setting(SETTING, value)
    return found


def clear(family: str) -> bool:
    """Forget the family's components folder; False when none was named."""
    from desktop_app.models import model_library

    value = model_library.setting(SETTING)
    if value.pop(family, None) is None:
        return False
    model_library.store_setting(SETTING, value)
    return True


def folder_for(model_file, family: str) -> Path | None:
    """The components folder for ``model_file`` of ``family``: this run's, else the library's, else None."""
    named = _run.get(str(Path(model_file).expanduser().resolve()))
    if named is None:
        folder = stored().get(family)  # library.json, read once
        named = Path(folder) if folder else None
    return named


def check_model(model, named=None) -> Path | None:
    """Before torch loads: for a transformer file ``model`` (a path), its components folder (``named``, else the
    run's or the library's), checked; None for any other model. ModelError, one line, when they are missing.
    ``named`` for a model that is not a transformer file is a mistake, refused too."""
    from desktop_app.models import model_files

    path = Path(str(model)).expanduser()
    info = model_files.inspect(path) if path.is_file() else None
    if info is None or info.kind != model_files.CHECKPOINT or info.family not in families.SINGLE_FILES:
        if named is not None:
            what = info.details if info is not None else "a diffusers folder, which has its own"
            raise ModelError(f"Components apply to a single transformer file (Flux, SD3 ... .safetensors or "
                             f".gguf); {printable(path.name, 200)} is {what[0].lower()}{what[1:]}")
        return None
    folder = Path(named).expanduser() if named is not None else folder_for(path, info.family)
    if folder is None:
        raise ModelError(families.components_message(info.family, printable(path.name, 200)))
    return check(info.family, folder, printable(path.name, 200))


def check(family: str, folder, file_name: str = "") -> Path:
    """``folder`` when it is a complete diffusers folder of ``family``, else a ModelError: with ``file_name``
    (the transformer file), the one line of ``families.components_message``."""
    path = Path(folder).expanduser()
    name = families.FAMILIES[family].name if family in families.FAMILIES else family

    def refuse(problem: str):
        message = families.components_message(family, file_name, problem) if file_name else problem
        return ModelError(message)

    if not path.is_dir() or not (path / "model_index.json").is_file():
        raise refuse(f"{printable(path, 300)} is not a diffusers model folder (no model_index.json)")
    index = model_folder.read_index(path)
    found, _ = families.folder_family(path, index)
    if found != family:
        other = families.FAMILIES[found].name if found in families.FAMILIES else "no known family"
        raise refuse(f"{printable(path, 300)} is {other}, not {name}")
    try:
        lacking = missing(path, index)
    except OSError as exc:  # a part that cannot be read (permissions): one line, not a traceback
        raise refuse(f"{printable(path, 300)} cannot be read: {one_line(exc, 200)}") from None
    if lacking:
        raise refuse(f"{printable(path, 300)} lacks {', '.join(lacking)}")
    return path.resolve()


def missing(folder: Path, index: dict) -> list[str]:
    """The parts (other than the transformer) that ``index`` names and ``folder`` does not hold: a subfolder
    missing, or a text encoder or VAE without .safetensors weights."""
    lacking = [] if "vae" in index else ["vae"]  # every family decodes with one
    for part, value in index.items():
        if part.startswith("_") or part == "transformer" or not isinstance(value, list) or None in value:
            continue
        where = folder / part
        if not where.is_dir() or not any(where.iterdir()):
            lacking.append(part)
        elif part in WEIGHT_PARTS and not any(where.glob("*.safetensors")):
            lacking.append(f"{part} weights (.safetensors)")
    return lacking


def transformer_config(folder: Path) -> Path | None:
    """The components folder when it has its own transformer/config.json (the config the file loads with)."""
    return folder if (folder / "transformer" / "config.json").is_file() else None
