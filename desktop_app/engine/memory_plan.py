"""The memory plan: where a model's weights live while it runs, chosen before it loads.

On a GPU the weights either all fit with room to work, or they do not and some of them wait in system memory:

    all on device        every component on the GPU: the fastest
    model offload        one component (text encoder, transformer or UNet, VAE) at a time on the GPU
    group offload        the layers of a component go to the GPU in small groups, the next one copied while
                         the current one runs (diffusers' group offloading, leaf level, with a CUDA stream)
    sequential offload   one layer at a time (accelerate): the least memory, the slowest

``choose_plan`` picks the first (heaviest, fastest) plan whose estimate fits in the free memory, from the
weights' size on disk (``weights_on_disk``) and the image size. The CPU and Apple MPS (unified memory: the "GPU"
shares the system's memory) never offload. Torch-free: both functions are plain arithmetic and file reads.
The plan is applied once per loaded pipeline by ``memory.apply_plan``; the out-of-memory fallbacks (memory.py)
still run after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ALL_ON_DEVICE = "all on device"
MODEL_OFFLOAD = "model offload"
GROUP_OFFLOAD = "group offload"
SEQUENTIAL_OFFLOAD = "sequential offload"
PLANS = (ALL_ON_DEVICE, MODEL_OFFLOAD, GROUP_OFFLOAD, SEQUENTIAL_OFFLOAD)  # heaviest (fastest) first

GB = 1024 ** 3  # shown as "GB", as the operating systems and the GPU tools show memory
WEIGHT_MARGIN = 0.20  # on top of the weights on the device: the CUDA context, cuBLAS and attention workspaces
ACTIVATIONS_BASE = GB // 2  # what any run needs for its activations, at a small size
ACTIVATIONS_PER_MEGAPIXEL = int(1.5 * GB)  # and per million pixels of the batch (a 1024x1024 image: 2 GB in all)
GROUP_LAYERS = 2  # group offload at leaf level with a stream: the layer running and the next one, copied ahead
LAYER_GUESS = 0.02  # the largest layer's share of the largest component, when only the components' sizes are known

_FLOAT_TYPES = {"F64", "F32", "F16", "BF16", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4"}
_SKIPPED = {"safety_checker", "feature_extractor", "image_encoder"}  # the loader does not load these
# an original-layout single file: which component each key prefix belongs to
_CHECKPOINT_PARTS = (("model.diffusion_model.", "unet"), ("first_stage_model.", "vae"),
                     ("cond_stage_model.", "text_encoder"), ("conditioner.", "text_encoder"),
                     ("text_encoders.", "text_encoder"), ("vae.", "vae"))
_VARIANT = re.compile(r"^(?P<base>.+?)(?:-\d{5}-of-\d{5})?(?:\.(?P<variant>[A-Za-z0-9_]+))?\.safetensors$")


@dataclass(frozen=True)
class ModelWeights:
    """The bytes each component of a model takes once loaded (``components``), and its largest single tensor
    (what a layer-by-layer offload must hold at once)."""

    components: dict = field(default_factory=dict)  # component name -> bytes
    largest_tensor: int = 0

    @property
    def total(self) -> int:
        return sum(self.components.values())

    @property
    def largest_component(self) -> int:
        return max(self.components.values(), default=0)


@dataclass(frozen=True)
class MemoryPlan:
    name: str  # one of PLANS
    reason: str  # one line with the numbers, in GB
    need_bytes: int = 0  # the device memory the plan is expected to take (0: not counted, CPU and MPS)
    fits: bool = True  # False: even the lightest plan this install has is over the free memory

    @property
    def offloads(self) -> bool:
        return self.name != ALL_ON_DEVICE

    def told(self) -> str:
        """The line the status bar and the recipe's notices show."""
        return f"memory plan: {self.name} ({self.reason})"


def gb(size: float) -> str:
    return f"{size / GB:.1f} GB"


def activation_bytes(width: int = 1024, height: int = 1024, batch_size: int = 1) -> int:
    """The allowance for a run's activations: a fixed part, and a part that grows with the pixels."""
    pixels = max(1, int(width)) * max(1, int(height)) * max(1, int(batch_size))
    return ACTIVATIONS_BASE + ACTIVATIONS_PER_MEGAPIXEL * pixels // (1024 * 1024)


def plan_needs(weights: ModelWeights | Mapping | int, width: int = 1024, height: int = 1024,
               batch_size: int = 1) -> dict[str, int]:
    """Each plan's estimate of the device memory it takes: the weights it holds on the device at once (plus
    WEIGHT_MARGIN) and the activations. Never lighter for an earlier plan than for a later one."""
    weights = as_weights(weights)
    activations = activation_bytes(width, height, batch_size)
    with_margin = lambda size: int(size * (1 + WEIGHT_MARGIN))  # noqa: E731
    all_on = with_margin(weights.total)
    model = min(all_on, with_margin(weights.largest_component))
    group = min(model, with_margin(GROUP_LAYERS * weights.largest_tensor))
    sequential = min(group, with_margin(weights.largest_tensor))
    return {ALL_ON_DEVICE: all_on + activations, MODEL_OFFLOAD: model + activations,
            GROUP_OFFLOAD: group + activations, SEQUENTIAL_OFFLOAD: sequential + activations}


def choose_plan(weights_bytes: ModelWeights | Mapping | int, free_bytes: int | None, device_type: str, *,
                width: int = 1024, height: int = 1024, batch_size: int = 1,
                available: Iterable[str] = PLANS) -> MemoryPlan:
    """The memory plan for a model of ``weights_bytes`` (a ModelWeights, a mapping of component -> bytes, or
    one total) on a device of type ``device_type`` ("cuda", "mps", "cpu") with ``free_bytes`` free (None:
    unknown), for images of ``width`` x ``height``, ``batch_size`` at a time. ``available``: the plans this
    install can apply (model and sequential offload need accelerate, group offload diffusers 0.33 or later).

    The first plan of PLANS (the fastest) whose estimate (``plan_needs``) fits in the free memory; when none
    fits, the lightest available one, with ``fits`` False. The CPU and MPS always keep all on the device."""
    weights = as_weights(weights_bytes)
    size = gb(weights.total)
    if device_type == "cpu":
        return MemoryPlan(ALL_ON_DEVICE, f"{size} of weights in system memory; the CPU does not offload")
    if device_type == "mps":
        return MemoryPlan(ALL_ON_DEVICE, f"{size} of weights; Apple GPUs share the system's memory, so "
                                         "offloading would save none")
    if device_type != "cuda":
        return MemoryPlan(ALL_ON_DEVICE, f"{size} of weights; offloading is for CUDA GPUs")
    if free_bytes is None:
        return MemoryPlan(ALL_ON_DEVICE, f"{size} of weights; the device's free memory is not known")
    needs = plan_needs(weights, width, height, batch_size)
    offered = [name for name in PLANS if name == ALL_ON_DEVICE or name in set(available)]
    free = gb(free_bytes)
    for name in offered:
        if needs[name] <= free_bytes:
            return MemoryPlan(name, _reason(name, weights, needs[name], free), needs[name])
    lightest = offered[-1]
    return MemoryPlan(lightest, f"{_reason(lightest, weights, needs[lightest], free)}; it may still run out of "
                                "memory", needs[lightest], fits=False)


def _reason(name: str, weights: ModelWeights, need: int, free: str) -> str:
    held = {ALL_ON_DEVICE: "all of them", MODEL_OFFLOAD: f"the largest part ({gb(weights.largest_component)})",
            GROUP_OFFLOAD: "a few layers at a time", SEQUENTIAL_OFFLOAD: "one layer at a time"}[name]
    return f"{gb(weights.total)} of weights, {held} on the device: needs about {gb(need)}, {free} free"


def as_weights(value: ModelWeights | Mapping | int) -> ModelWeights:
    """A ModelWeights for a mapping of component -> bytes or a total (its largest layer guessed as
    LAYER_GUESS of the largest component: diffusion transformers and text encoders have dozens of layers)."""
    if isinstance(value, ModelWeights):
        return value
    components = ({str(name): max(0, int(size)) for name, size in value.items()} if isinstance(value, Mapping)
                  else {"weights": max(0, int(value))})
    return ModelWeights(components, int(max(components.values(), default=0) * LAYER_GUESS))


# ---- the weights' size on disk -------------------------------------------------------------------------


def weights_on_disk(path: str | Path, dtype_bytes: int | None = None,
                    components: str | Path | None = None) -> ModelWeights:
    """The memory each component of the model at ``path`` takes once loaded: a diffusers folder (the
    components model_index.json names, from their .safetensors files) or one original-layout .safetensors file
    (split by its key prefixes). ``dtype_bytes``: the bytes per number of the dtype the model loads in (2 for
    float16 and bfloat16); floating-point tensors count at that size. None: as stored. Reads only the files'
    headers; a file whose header cannot be read counts its size on disk. ``components``: the diffusers folder a
    transformer file takes its text encoders and VAE from (counted too, all but its transformer)."""
    path = Path(path).expanduser()
    if path.is_file():
        weights = _single_file(path, dtype_bytes)
        if components is None:
            return weights
        others = _folder(Path(components).expanduser(), dtype_bytes, skip={"transformer"})
        return ModelWeights({**others.components, **weights.components},
                            max(weights.largest_tensor, others.largest_tensor))
    return _folder(path, dtype_bytes)


def _folder(path: Path, dtype_bytes: int | None, skip: set = frozenset()) -> ModelWeights:
    from desktop_app.models.model_folder import read_index

    components, largest = {}, 0
    for name, value in read_index(path).items():
        folder = path / name
        if (name.startswith("_") or name in _SKIPPED or name in skip or not isinstance(value, list)
                or not folder.is_dir()):
            continue
        size = 0
        for file in _weight_files(folder):
            counted, biggest = _file_bytes(file, dtype_bytes)
            size, largest = size + counted, max(largest, biggest)
        if size:
            components[name] = size
    return ModelWeights(components, largest)


def _weight_files(folder: Path) -> list[Path]:
    """The .safetensors files the loader reads from a component folder: those without a variant
    ("model.fp16.safetensors") when there are any, else the smallest variant's."""
    groups: dict[str, list[Path]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        match = _VARIANT.match(file.name)
        if file.is_file() and match:
            groups.setdefault(match["variant"] or "", []).append(file)
    if "" in groups or not groups:
        return groups.get("", [])
    return min(groups.values(), key=lambda files: sum(f.stat().st_size for f in files))


def _file_bytes(file: Path, dtype_bytes: int | None) -> tuple[int, int]:
    """(the file's tensors' bytes once loaded, its largest tensor's bytes)."""
    tensors = _header(file)
    if tensors is None:
        size = file.stat().st_size
        return size, size
    sizes = [_tensor_bytes(entry, dtype_bytes) for entry in tensors.values()]
    return sum(sizes), max(sizes, default=0)


def _single_file(file: Path, dtype_bytes: int | None) -> ModelWeights:
    tensors = _header(file)
    if tensors is None:
        size = file.stat().st_size
        return ModelWeights({"weights": size}, size)
    components: dict[str, int] = {}
    largest = 0
    for key, entry in tensors.items():
        part = next((name for prefix, name in _CHECKPOINT_PARTS if key.startswith(prefix)), "weights")
        size = _tensor_bytes(entry, dtype_bytes)
        components[part] = components.get(part, 0) + size
        largest = max(largest, size)
    return ModelWeights(components, largest)


def _header(file: Path) -> dict | None:
    from desktop_app.errors import ModelError
    from desktop_app.models.model_files import read_header

    try:
        return read_header(file)
    except (ModelError, OSError):
        return None


def _tensor_bytes(entry: dict, dtype_bytes: int | None) -> int:
    from desktop_app.models.model_files import DTYPE_BITS

    count = 1
    for side in entry.get("shape") or ():
        count *= int(side)
    dtype = entry.get("dtype")
    if dtype_bytes is not None and dtype in _FLOAT_TYPES:
        return count * dtype_bytes
    return (count * DTYPE_BITS.get(dtype, 32) + 7) // 8
