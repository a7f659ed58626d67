"""The optional SDXL refiner: the "ensemble of expert denoisers" the diffusers SDXL guide describes.

The SDXL base runs the first ``refiner_switch`` share of the noise schedule (``denoising_end``) and hands its
latents over undecoded; the refiner, a StableDiffusionXLImg2ImgPipeline whose UNet was trained on the low-noise
end and which reads the prompt through OpenCLIP bigG alone, finishes the same schedule from there
(``denoising_start``) with the same sampler and seeded generators, and decodes. The Engine shows both passes as
one "denoise" stage with one step count, so the progress bar, the previews and the timeline run on across the
switch (see Engine.run).

The refiner shares the base's VAE and text encoder 2 (with its tokenizer) where its own hold the same weights,
as the published refiner 1.0 does (about 1.5 GB less in fp16): a few tensors of each are compared on disk
before loading, so sharing never swaps in different weights. A refiner that stores no VAE uses the base's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from desktop_app.engine.device import describe as describe_device
from desktop_app.errors import ModelError, RequestError
from desktop_app.engine.events import Emit, StageStarted
from desktop_app.engine.loader import LoadedModel, load_model
from desktop_app.models.model_folder import check_folder, display_name

REFINER_FAMILY = "sdxl-refiner"
BASE_FAMILY = "sdxl"
SHARED = {"vae": "VAE", "text_encoder_2": "text encoder"}  # what a refiner may take from its base
SAMPLED_TENSORS = 8  # tensors compared per component of a diffusers folder
# single files: diffusers name -> original (SGM) name of tensors whose values map one to one
_ORIGINAL_VAE = ("encoder.conv_in.weight", "encoder.conv_out.weight", "decoder.conv_in.weight",
                 "decoder.conv_out.weight", "quant_conv.weight", "post_quant_conv.weight")
_ORIGINAL_TEXT_2 = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
                    "text_model.embeddings.position_embedding.weight": "positional_embedding",
                    "text_model.final_layer_norm.weight": "ln_final.weight",
                    "text_model.encoder.layers.0.mlp.fc1.weight": "transformer.resblocks.0.mlp.c_fc.weight",
                    "text_projection.weight": "text_projection"}  # stored transposed in the original layout
_ORIGINAL_PREFIX = {"vae": "first_stage_model.", "text_encoder_2": "conditioner.embedders.0.model."}


@dataclass(frozen=True)
class Split:
    """How many scheduler steps each model runs (a second-order sampler counts each of its two calls)."""

    base: int
    refiner: int

    @property
    def total(self) -> int:
        return self.base + self.refiner


def check_models(request, model: LoadedModel) -> None:
    """The base model's side of a refiner request (and a refiner chosen as the base model)."""
    from desktop_app.models.model_files import FAMILY_NAMES

    if model.family == REFINER_FAMILY:
        raise RequestError("model", f"{model.display_name} is an SDXL refiner: it finishes what an SDXL base "
                                    "model starts. Choose an SDXL base model, and this one as the refiner")
    if request.refiner and model.family != BASE_FAMILY:
        raise RequestError("refiner", f"the refiner works with SDXL base models; {model.display_name} is "
                                      f"{FAMILY_NAMES.get(model.family, model.family)}")


def split_steps(scheduler, steps: int, switch: float) -> Split:
    """Where diffusers divides ``steps`` at ``switch``: the base keeps the timesteps at or above the cut-off
    (StableDiffusionXLPipeline with denoising_end), the refiner those below it (the img2img pipeline's
    get_timesteps with denoising_start, one more for a second-order sampler that would stop mid-step)."""
    probe = type(scheduler).from_config(scheduler.config)
    probe.set_timesteps(steps, device="cpu")
    timesteps = probe.timesteps
    train = probe.config.num_train_timesteps
    cutoff = int(round(train - (switch * train)))
    base = int((timesteps >= cutoff).sum())
    refiner = int((timesteps < cutoff).sum())
    if getattr(probe, "order", 1) == 2 and refiner % 2 == 0:
        refiner += 1
    return Split(base, refiner)


def check_split(request, split: Split) -> None:
    if split.base and split.refiner:
        return
    idle = "base model" if not split.base else "refiner"
    raise RequestError("refiner_switch", f"with {request.steps} steps of {request.sampler}, a switch at "
                                         f"{request.refiner_switch:g} leaves the {idle} no step: use more steps "
                                         "or move the switch")


def describe(request, split: Split, name: str) -> str:
    """The detail of the refiner's "denoise" stage."""
    steps = f"{split.refiner} step{'s' if split.refiner != 1 else ''}"
    return f"refiner {name}: {steps} from {request.refiner_switch:.0%}"


def record(request, split: Split, base: LoadedModel, loaded: LoadedModel) -> dict:
    """The recipe's "refiner_model" entry (the request's "refiner" is the name or path asked for): which
    refiner, its hash, the switch, each model's steps, what it shared with the base."""
    from desktop_app.models.model_hash import model_hash

    entry = {"name": loaded.display_name, "path": str(loaded.path), "switch": request.refiner_switch,
             "steps": [split.base, split.refiner],
             "shared": [name for name in SHARED
                        if getattr(loaded.pipe, name, None) is getattr(base.pipe, name, False)]}
    digest = model_hash(loaded.path)  # hashed once per file, then cached
    if digest:
        entry["hash"] = digest
    return entry


def load(name: str, base: LoadedModel, emit: Emit | None = None) -> LoadedModel:
    """The SDXL refiner ``name`` (a library name, a diffusers folder or a single file) on the base's device and
    dtype, sharing the base's components where they are the same. RequestError("refiner") when it is
    missing or not a refiner; ModelError for an unsafe or damaged file."""
    from desktop_app.models import model_files
    from desktop_app.models.model_library import resolve_model

    # 1. what it is, from its content: a missing model or another family is refused before anything loads
    try:
        path = resolve_model(name)
        where = check_folder(path)
    except ModelError as exc:
        raise RequestError("refiner", str(exc)) from None
    info = model_files.inspect(where)
    if info.family != REFINER_FAMILY:
        raise RequestError("refiner", f"{where.name} is not an SDXL refiner: it holds {info.family_name}. "
                                      "Choose an SDXL refiner (sd_xl_refiner_1.0 or a fine-tune of it)")
    # 2. which of the base's components it can use instead of its own
    shared = shared_components(where, base.pipe)
    if emit is not None:
        names = [label for name, label in SHARED.items() if name in shared]
        sharing = f", sharing the base model's {' and '.join(names)}" if names else ""
        shown = where.stem if where.is_file() else display_name(path)
        emit(StageStarted("load", f"refiner {shown} on {describe_device(base.device, base.dtype)}{sharing}"))
    # 3. load it like any model, with those components passed in
    loaded = load_model(path, base.device, base.dtype, components=shared)
    if loaded.family != REFINER_FAMILY:
        raise RequestError("refiner", f"{loaded.display_name} loaded as {type(loaded.pipe).__name__}, not as "
                                      "an SDXL refiner")
    return loaded


def shared_components(where: Path, pipe) -> dict:
    """{"vae": ..., "text_encoder_2": ..., "tokenizer_2": ...}: the base pipeline's modules the refiner at
    ``where`` can use, because it stores none of its own or the same weights."""
    shared = {}
    for name in SHARED:
        module = getattr(pipe, name, None)
        if module is None:
            continue
        stored = _stored_tensors(where, name, module)
        if stored is None or _same_weights(module, stored):
            shared[name] = module
    if "text_encoder_2" in shared and getattr(pipe, "tokenizer_2", None) is not None:
        shared["tokenizer_2"] = pipe.tokenizer_2
    return shared


def _stored_tensors(where: Path, component: str, module) -> dict | None:
    """{diffusers name: a function reading the refiner's own tensor} for a sample of ``component``, or None
    when the refiner stores no such component."""
    from safetensors import safe_open

    if where.is_dir():
        files = sorted((where / component).glob("*.safetensors"))
        if not files:
            return None
        names = {}
        for file in files:
            with safe_open(file, "pt") as handle:
                names.update({key: file for key in handle.keys()})
        mine = list(module.state_dict())
        wanted = [mine[i] for i in range(0, len(mine), max(1, len(mine) // SAMPLED_TENSORS))]
        found = {name: _stored_name(name, names) for name in wanted}
        return {name: _reader(names[key], key) for name, key in found.items() if key is not None}
    with safe_open(where, "pt") as handle:
        keys = set(handle.keys())
    prefix = _ORIGINAL_PREFIX[component]
    if not any(key.startswith(prefix) for key in keys):
        return None
    if component == "vae":
        pairs = {name: name for name in _ORIGINAL_VAE}
    else:
        last = module.config.num_hidden_layers - 1
        pairs = dict(_ORIGINAL_TEXT_2, **{f"text_model.encoder.layers.{last}.mlp.fc2.weight":
                                          f"transformer.resblocks.{last}.mlp.c_proj.weight"})
    return {name: _reader(where, prefix + original, transpose=original == "text_projection")
            for name, original in pairs.items() if prefix + original in keys}


def _stored_name(name: str, names: dict) -> str | None:
    # transformers 5.6 dropped CLIPTextModel's "text_model." level: a folder saved earlier may differ by it
    for candidate in (name, name.removeprefix("text_model."), "text_model." + name):
        if candidate in names:
            return candidate
    return None


def _reader(file: Path, key: str, transpose: bool = False):
    def read() -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(file, "pt") as handle:
            tensor = handle.get_tensor(key)
        return tensor.T if transpose else tensor

    return read


def _same_weights(module, stored: dict) -> bool:
    """Whether every sampled tensor the refiner stores equals the base's (to fp16 rounding: the two may have
    been saved in different precisions)."""
    state = module.state_dict()
    compared = 0
    for name, read in stored.items():
        key = _stored_name(name, state)
        if key is None:
            continue
        mine, theirs = state[key].detach().float().cpu(), read().float()
        if mine.shape != theirs.shape or not torch.allclose(mine, theirs, rtol=2e-3, atol=1e-5):
            return False
        compared += 1
    return compared > 0
