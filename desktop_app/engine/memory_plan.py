"""The memory plan: where a model's weights live while it runs, chosen before it loads.

On a GPU the weights either all fit with room to work, or they do not and some of them wait in system memory:

    all on device        every component on the GPU: the fastest
    model offload        one component (text encoder, transformer or UNet, VAE) at a time on the GPU
    group offload        the layers of a component go to the GPU in small groups, the next one copied while
                         the current one runs (diffusers' group offloading, leaf level, with a CUDA stream)
    sequential offload   one layer at a time (accelerate): the least memory, the slowest

and, between the first two, "fp8 weights": all on the device, with the denoiser's (transformer's or UNet's)
weights stored as float8 and each layer cast up to the compute dtype while it runs (diffusers' layerwise
casting): half the memory of bfloat16 for the largest component, at a small cost in quality. The weights
setting (WEIGHTS) decides whether it is offered: "auto" (when the model does not fit on the GPU in full
precision but does in fp8), "full" (never), "fp8" (always, on CUDA and the CPU, with an offload plan too
when even fp8 does not fit).

``choose_plan`` picks the first (heaviest, fastest) plan whose estimate fits in the free memory, from the
weights' size on disk (``weights_on_disk``) and the image size. The CPU and Apple MPS (unified memory: the "GPU"
shares the system's memory) never offload. Torch-free: both functions are plain arithmetic and file reads.
The plan is applied once per loaded pipeline by ``memory.apply_plan``; the out-of-memory fallbacks (memory.py)
still run after it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ALL_ON_DEVICE = "all on device"
MODEL_OFFLOAD = "model offload"
GROUP_OFFLOAD = "group offload"
SEQUENTIAL_OFFLOAD = "sequential offload"
PLANS = (ALL_ON_DEVICE, MODEL_OFFLOAD, GROUP_OFFLOAD, SEQUENTIAL_OFFLOAD)  # heaviest (fastest) first
FP8_WEIGHTS = "fp8 weights"  # all on device, the denoiser stored in float8: tried after ALL_ON_DEVICE
ORDER = (ALL_ON_DEVICE, FP8_WEIGHTS, MODEL_OFFLOAD, GROUP_OFFLOAD, SEQUENTIAL_OFFLOAD)  # the order tried
WEIGHTS = ("auto", "full", "fp8")  # the weights setting: fp8 storage when needed, never, always
DENOISERS = ("transformer", "unet", "weights")  # the component fp8 storage applies to ("weights": a file's)

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
    number_bytes: int = 2  # the bytes per number the floating-point weights are counted at

    @property
    def denoiser(self) -> str:
        """The denoiser's component name (the transformer or UNet; a single file's "weights"), else the
        largest component's."""
        named = next((name for name in DENOISERS if name in self.components), None)
        return named or max(self.components, key=self.components.get, default="weights")

    def in_fp8(self) -> ModelWeights:
        """The same model with its denoiser stored in float8: one byte a number (its norms and embeddings stay
        as they are in diffusers' layerwise casting: a fraction of a percent at full size)."""
        name = self.denoiser
        if name not in self.components or self.number_bytes <= 1:
            return self
        stored = self.components[name] // self.number_bytes
        return ModelWeights({**self.components, name: stored}, self.largest_tensor, 1)  # largest: maybe not its

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
    fp8: bool = False  # the denoiser's weights stored in float8 (FP8_WEIGHTS, or an offload plan with them)

    @property
    def offloads(self) -> bool:
        return self.name not in (ALL_ON_DEVICE, FP8_WEIGHTS)

    @property
    def label(self) -> str:
        """The plan's name as the recipe records it: "model offload, fp8 weights" for an offload with fp8."""
        return f"{self.name}, {FP8_WEIGHTS}" if self.fp8 and self.name != FP8_WEIGHTS else self.name

    def told(self) -> str:
        """The line the status bar and the recipe's notices show."""
        return f"memory plan: {self.label} ({self.reason})"


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
    fp8 = with_margin(weights.in_fp8().total)
    return {ALL_ON_DEVICE: all_on + activations, FP8_WEIGHTS: fp8 + activations,
            MODEL_OFFLOAD: model + activations, GROUP_OFFLOAD: group + activations,
            SEQUENTIAL_OFFLOAD: sequential + activations}


def choose_plan(weights_bytes: ModelWeights | Mapping | int, free_bytes: int | None, device_type: str, *,
                width: int = 1024, height: int = 1024, batch_size: int = 1,
                available: Iterable[str] = PLANS, weights: str = "full") -> MemoryPlan:
    """The memory plan for a model of ``weights_bytes`` (a ModelWeights, a mapping of component -> bytes, or
    one total) on a device of type ``device_type`` ("cuda", "mps", "cpu") with ``free_bytes`` free (None:
    unknown), for images of ``width`` x ``height``, ``batch_size`` at a time. ``available``: the plans this
    install can apply (model and sequential offload need accelerate, group offload diffusers 0.33 or later).
    ``weights``: the weights setting (WEIGHTS; the engine passes its own, "auto" unless the user chose).

    The first plan of ORDER (the fastest) whose estimate (``plan_needs``) fits in the free memory, FP8_WEIGHTS
    only with ``weights`` "auto"; with "fp8", the plans of PLANS on the weights with the denoiser in fp8. When
    none fits, the lightest available one, with ``fits`` False. The CPU and MPS always keep all on the device
    (the CPU in fp8 when asked; Apple GPUs have no float8)."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    model = as_weights(weights_bytes)
    fp8 = weights == "fp8" and device_type in ("cuda", "cpu")
    size = gb(model.total)
    whole = FP8_WEIGHTS if fp8 else ALL_ON_DEVICE
    stored = f", {gb(model.in_fp8().total)} with the {model.denoiser}'s in fp8 as asked," if fp8 else ""
    if device_type == "cpu":
        return MemoryPlan(whole, f"{size} of weights{stored} in system memory; the CPU does not offload", fp8=fp8)
    if device_type == "mps":
        unable = "; fp8 weights were asked for, but Apple GPUs have no float8" if weights == "fp8" else ""
        return MemoryPlan(ALL_ON_DEVICE, f"{size} of weights; Apple GPUs share the system's memory, so "
                                         f"offloading would save none{unable}")
    if device_type != "cuda":
        return MemoryPlan(ALL_ON_DEVICE, f"{size} of weights; offloading is for CUDA GPUs")
    if free_bytes is None:
        return MemoryPlan(whole, f"{size} of weights{stored}; the device's free memory is not known", fp8=fp8)
    needs = plan_needs(model.in_fp8() if fp8 else model, width, height, batch_size)
    if fp8:
        needs[ALL_ON_DEVICE] = needs[FP8_WEIGHTS]
    offered = [name for name in ORDER if name == ALL_ON_DEVICE or name in set(available)
               or (name == FP8_WEIGHTS and weights == "auto")]
    free = gb(free_bytes)
    for name in offered:
        if needs[name] <= free_bytes:
            return _plan(name, model, needs[name], free, fp8)
    lightest = _plan(offered[-1], model, needs[offered[-1]], free, fp8)
    return dataclasses.replace(lightest, reason=f"{lightest.reason}; it may still run out of memory", fits=False)


def _plan(name: str, weights: ModelWeights, need: int, free: str, fp8: bool) -> MemoryPlan:
    """The plan ``name`` (ALL_ON_DEVICE becomes FP8_WEIGHTS when ``fp8`` was asked for) with its reason."""
    if fp8 and name == ALL_ON_DEVICE:
        name = FP8_WEIGHTS
    reason = _reason(name, weights, need, free)
    if name == FP8_WEIGHTS or fp8:
        denoiser = weights.denoiser
        reason += (f"; the {denoiser}'s weights stored in fp8 ({gb(weights.components.get(denoiser, 0))} -> "
                   f"{gb(weights.in_fp8().components.get(denoiser, 0))}){' as asked' if fp8 else ''}")
    return MemoryPlan(name, reason, need, fp8=fp8 or name == FP8_WEIGHTS)


def _reason(name: str, weights: ModelWeights, need: int, free: str) -> str:
    held = {ALL_ON_DEVICE: "all of them", FP8_WEIGHTS: "all of them",
            MODEL_OFFLOAD: f"the largest part ({gb(weights.largest_component)})",
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
        if components is not None:
            others = _folder(Path(components).expanduser(), dtype_bytes, skip={"transformer"})
            weights = ModelWeights({**others.components, **weights.components},
                                   max(weights.largest_tensor, others.largest_tensor))
    else:
        weights = _folder(path, dtype_bytes)
    return dataclasses.replace(weights, number_bytes=dtype_bytes or 2)  # as stored: counted as half precision


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
