"""Memory and precision guards around one pipeline call.

- ``prepare``: attention slicing on Apple MPS, VAE tiling for large images (over 1024 px on a side), and the
  lighter modes an earlier out-of-memory error switched on (they stay on for that pipeline).
- ``run_with_fallbacks``: an out-of-memory error (``torch.OutOfMemoryError``, of which
  ``torch.cuda.OutOfMemoryError`` is the same class) is caught by type, and the call is run again with the next
  lighter mode, in a fixed order: VAE tiling, attention slicing, model CPU offload (CUDA with accelerate only),
  batch 1. The modes used are returned, so that the result can say so; an error that outlasts the last one
  becomes OutOfMemory, a readable EngineError.
- ``apply_plan``: the memory plan chosen before loading (memory_plan.py), applied once per pipeline: fp8 storage
  of the denoiser's weights (``store_fp8``: CUDA and the CPU), then model, group or sequential offload on CUDA.
  A pipeline that offloads already skips the "cpu_offload" fallback.
- ``decode_guard``: the fp16 VAE black-image problem. A decode that gives NaNs (or an all-black image) is done
  again with the VAE in float32, and the caller is told.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import weakref
from collections.abc import Callable
from contextlib import contextmanager

import torch

from desktop_app.engine import memory_plan
from desktop_app.errors import OutOfMemory, one_line

FALLBACKS = ("vae_tiling", "attention_slicing", "cpu_offload", "batch_1")
FALLBACK_LABELS = {"vae_tiling": "VAE tiling", "attention_slicing": "attention slicing",
                   "cpu_offload": "model CPU offload", "batch_1": "one image at a time"}
TILING_ABOVE = 1024  # pixels on a side: larger images decode tile by tile from the start

# what fp8 storage leaves in the load dtype (regular expressions on module names; only Linear, convolution and
# embedding layers are cast at all, so norm layers stay as they are): the position and patch embeddings and the
# first and last projections, as diffusers' defaults. Unlike diffusers' enable_layerwise_casting, the adaptive
# norms' modulation Linears ("norm1.linear") are stored in fp8 too, as ComfyUI's fp8 weights and the published
# fp8 Flux files do: with them in bf16 the Flux transformer keeps 64% of its bf16 size and SD3.5 67%; without,
# every family's denoiser takes 50% (tests/engine/test_fp8_weights.py measures the published configs)
FP8_KEEP = ("pos_embed", "patch_embed", "^proj_in$", "^proj_out$", "lora_")

# pipeline -> the fallbacks an out-of-memory error switched on (kept while the pipeline lives)
_sticky: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# pipeline -> the memory plan applied to it, as the recipe names it (MemoryPlan.label)
_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError)


def prepare(pipe, device: torch.device, width: int, height: int) -> None:
    """The memory settings for one run, before it starts."""
    sticky = _sticky.get(pipe, set())
    if device.type == "mps" or "attention_slicing" in sticky:
        _call(pipe, "enable_attention_slicing")
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        if max(width, height) > TILING_ABOVE or "vae_tiling" in sticky:
            _call(vae, "enable_tiling")
        else:
            _call(vae, "disable_tiling")


def run_with_fallbacks(call: Callable[[bool], object], pipe, device: torch.device, batch_size: int,
                       notice: Callable[[str], None] | None = None) -> tuple[object, list[str]]:
    """``call(one_at_a_time)`` until it does not run out of memory. Returns (its result, the fallbacks
    switched on for this run, in order)."""
    used: list[str] = []
    one_at_a_time = "batch_1" in _sticky.get(pipe, set()) and batch_size > 1
    remaining = [name for name in FALLBACKS if name not in _sticky.get(pipe, set())]
    while True:
        try:
            return call(one_at_a_time), used
        except torch.OutOfMemoryError as exc:
            error = exc
        free(device)
        while remaining:
            name = remaining.pop(0)
            if _switch_on(name, pipe, device, batch_size):
                used.append(name)
                _sticky.setdefault(pipe, set()).add(name)
                one_at_a_time = one_at_a_time or name == "batch_1"
                if notice is not None:
                    notice(f"out of memory; trying again with {FALLBACK_LABELS[name]}")
                break
        else:
            tried = ", ".join(([plan_of(pipe)] if offloaded(pipe) else [])
                              + [FALLBACK_LABELS[name] for name in FALLBACKS if name in _sticky.get(pipe, ())])
            raise OutOfMemory(
                f"The {device.type.upper() if device.type != 'cpu' else 'CPU'} ran out of memory even with "
                f"{tried or 'every lighter mode'}: choose a smaller image or fewer steps of hires fix, or close "
                f"other programs using the device ({one_line(error, 160)})") from None


def fallback_text(used: list[str]) -> str:
    return ", ".join(FALLBACK_LABELS[name] for name in used)


def _switch_on(name: str, pipe, device: torch.device, batch_size: int) -> bool:
    """Switch on one lighter mode; False when it does not apply here (then the next one is tried)."""
    if name == "vae_tiling":
        vae = getattr(pipe, "vae", None)
        return vae is not None and _call(vae, "enable_tiling")
    if name == "attention_slicing":
        return _call(pipe, "enable_attention_slicing")
    if name == "cpu_offload":
        if device.type != "cuda" or not hasattr(pipe, "enable_model_cpu_offload") or offloaded(pipe):
            return False  # a pipeline the memory plan offloads already holds less than model offload would
        try:
            import accelerate  # noqa: F401 - enable_model_cpu_offload needs it
        except ImportError:
            return False
        pipe.enable_model_cpu_offload(device=device)
        return True
    if name == "batch_1":
        return batch_size > 1
    return False


# ---- the memory plan ------------------------------------------------------------------------------------


def device_free_bytes(device: torch.device) -> int | None:
    """The memory free on a CUDA ``device`` for a model: the driver's free memory and what torch's caching
    allocator holds unused. None on other devices (the plan does not need it there)."""
    if device.type != "cuda":
        return None
    try:
        free_now, _ = torch.cuda.mem_get_info(device)
        return int(free_now + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    except (RuntimeError, AssertionError):
        return None


def available_plans() -> tuple[str, ...]:
    """The plans this install can apply: model and sequential offload need accelerate, group offload a
    diffusers with group offloading (0.33 and later)."""
    plans = [memory_plan.ALL_ON_DEVICE]
    try:
        import accelerate  # noqa: F401

        plans += [memory_plan.MODEL_OFFLOAD]
    except ImportError:
        pass
    from diffusers import DiffusionPipeline

    if hasattr(DiffusionPipeline, "enable_group_offload"):
        plans.append(memory_plan.GROUP_OFFLOAD)
    if memory_plan.MODEL_OFFLOAD in plans:
        plans.append(memory_plan.SEQUENTIAL_OFFLOAD)
    return tuple(plans)


def plan_for(path, device: torch.device, dtype: torch.dtype, width: int = 1024, height: int = 1024,
             batch_size: int = 1, components=None, weights: str = "auto") -> memory_plan.MemoryPlan:
    """The memory plan for the model at ``path`` (a folder or a single file, before it loads) on ``device`` in
    ``dtype``, for images of ``width`` x ``height``, ``batch_size`` at a time; ``components``: a transformer
    file's folder of text encoders and VAE; ``weights``: the weights setting (memory_plan.WEIGHTS). A GGUF
    transformer is quantized already: its weights stay as they are."""
    sizes = memory_plan.weights_on_disk(path, dtype.itemsize, components)
    plans = available_plans() if device.type == "cuda" else (memory_plan.ALL_ON_DEVICE,)
    quantized = str(path).lower().endswith(".gguf")
    plan = memory_plan.choose_plan(sizes, device_free_bytes(device), device.type, width=width, height=height,
                                   batch_size=batch_size, available=plans,
                                   weights="full" if quantized else weights)
    if quantized and weights == "fp8":
        plan = dataclasses.replace(plan, reason=f"{plan.reason}; the GGUF transformer is quantized already: "
                                                "no fp8 storage")
    return plan


def apply_plan(pipe, plan: memory_plan.MemoryPlan, device: torch.device) -> bool:
    """Apply ``plan`` to ``pipe`` (loaded on the CPU when it offloads), once: True when it was applied now,
    False when the pipeline has its plan already. Offloading is done on CUDA only; elsewhere the plan is
    recorded as it is ("all on device")."""
    if pipe in _plans:
        return False
    stored = plan.fp8 and device.type in ("cuda", "cpu") and store_fp8(pipe)  # first: offloading moves fp8
    if plan.name == memory_plan.FP8_WEIGHTS and device.type == "cuda":
        pipe.to(device)  # loaded on the CPU, where the weights became fp8: they go to the device at half size
    elif device.type == "cuda" and plan.name == memory_plan.MODEL_OFFLOAD:
        pipe.enable_model_cpu_offload(device=device)
    elif device.type == "cuda" and plan.name == memory_plan.GROUP_OFFLOAD:
        # leaf level works on any module (block level onloads whole text encoders whose layers are nested);
        # the stream copies the next layer while the current one runs
        pipe.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"),
                                  offload_type="leaf_level", use_stream=True)
    elif device.type == "cuda" and plan.name == memory_plan.SEQUENTIAL_OFFLOAD:
        pipe.enable_sequential_cpu_offload(device=device)
    name = plan.name if device.type == "cuda" else memory_plan.ALL_ON_DEVICE
    if name == memory_plan.FP8_WEIGHTS or (stored and name == memory_plan.ALL_ON_DEVICE):
        name = memory_plan.FP8_WEIGHTS if stored else memory_plan.ALL_ON_DEVICE
    _plans[pipe] = memory_plan.MemoryPlan(name, plan.reason, fp8=stored).label
    return True


def store_fp8(pipe) -> bool:
    """Store the weights of ``pipe``'s denoiser (transformer or UNet) in float8 (e4m3), each layer cast up to the
    denoiser's dtype while it runs (diffusers' layerwise casting), but for FP8_KEEP. False when there is nothing
    to do: no denoiser, or one that is quantized already (GGUF, NF4)."""
    denoiser = getattr(pipe, "transformer", None)
    if denoiser is None:
        denoiser = getattr(pipe, "unet", None)
    if (denoiser is None or getattr(denoiser, "is_quantized", False)
            or not hasattr(denoiser, "enable_layerwise_casting")):
        return False
    if any(p.dtype == torch.float8_e4m3fn for p in denoiser.parameters()):
        return True  # stored so already
    from diffusers.hooks import apply_layerwise_casting

    keep = FP8_KEEP + tuple(getattr(denoiser, "_keep_in_fp32_modules", None) or ())
    compute = denoiser.dtype
    apply_layerwise_casting(denoiser, torch.float8_e4m3fn, compute, skip_modules_pattern=keep)
    for layer in denoiser.modules():
        if any(p.dtype == torch.float8_e4m3fn for p in layer.parameters(recurse=False)):
            # a LoRA loaded later takes its base layer's dtype (peft), which would be float8, unless the layer
            # names another to compute in, as bitsandbytes' layers do: then the LoRA keeps its precision
            layer.compute_dtype = compute
    return True


def plan_of(pipe) -> str | None:
    """The memory plan applied to ``pipe`` as the recipe names it ("model offload, fp8 weights"), or None."""
    return _plans.get(pipe)


def offloaded(pipe) -> bool:
    name = _plans.get(pipe, memory_plan.ALL_ON_DEVICE).split(",")[0]
    return name not in (memory_plan.ALL_ON_DEVICE, memory_plan.FP8_WEIGHTS)


def _call(target, method: str) -> bool:
    function = getattr(target, method, None)
    if function is None:
        return False
    function()
    return True


def free(device: torch.device) -> None:
    """Give freed memory back to the device (after dropping the last references to a model)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


# ---- the fp16 VAE black-image problem -----------------------------------------------------------------


def bad_decode(sample: torch.Tensor) -> str | None:
    """"NaNs" when the decoded image has NaN or infinite values, "an all-black image" when every pixel is
    black (the VAE's range is -1..1), else None."""
    if not torch.isfinite(sample).all():
        return "NaNs"
    if sample.numel() and float(sample.max()) <= -0.99:
        return "an all-black image"
    return None


@contextmanager
def decode_guard(vae, notice: Callable[[str], None] | None = None):
    """While installed, ``vae.decode`` checks its result; a bad one is decoded again with the VAE in float32
    (then the VAE goes back to its dtype). ``notice`` hears about it once per decode that was redone."""
    if vae is None:
        yield
        return
    original = vae.decode
    had_own = "decode" in vars(vae)

    @functools.wraps(original)
    def decode(z, *args, **kwargs):
        out = original(z, *args, **kwargs)
        sample = out[0] if isinstance(out, tuple) else out.sample
        problem = bad_decode(sample)
        if problem is None:
            return out
        dtype = vae.dtype
        vae.to(torch.float32)
        try:
            out32 = original(z.to(torch.float32), *args, **kwargs)
        finally:
            vae.to(dtype)
        if notice is not None:
            notice(f"the {str(dtype).removeprefix('torch.')} VAE produced {problem}; decoded again in float32")
        if isinstance(out32, tuple):
            return tuple(t.to(sample.dtype) if torch.is_tensor(t) else t for t in out32)
        out32.sample = out32.sample.to(sample.dtype)
        return out32

    vae.decode = decode
    try:
        yield
    finally:
        if had_own:
            vae.decode = original
        else:
            del vae.decode
