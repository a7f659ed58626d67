"""Section 8, the GPU section (CUDA only): SD1.5 at 512x512 and SDXL at 1024x1024 with random weights.

No download: the architectures are written here (the published configs), the weights are random, the
tokenizer is a byte-level CLIP vocabulary built in code. float16, 20 steps, DPM++ 2M, guidance 7. For each:
seconds per image by our engine (previews every step, events) and by a bare diffusers call on the same
pipeline, alternately; iterations per second of the denoising; the UNet's FLOPs per step against the
measured float16 matrix-multiply rate; the peak GPU memory. Then the same with the fast mode on
(channels_last and torch.compile of the UNet; SDPA attention is diffusers' default in both).

This module needs only torch, diffusers and transformers (``desktop_app.engine`` too for "ours"; without it
the bare figures still come): ``packaging/gpu/bench_gpu.py`` runs it on a CUDA machine with no network.
On a machine without CUDA every key is present and says "skipped: no CUDA device".
"""

from __future__ import annotations

import statistics
import time

SKIPPED = "skipped: no CUDA device"
MODELS = ("sd15_512", "sdxl_1024")
RUN_KEYS = ("ours_s", "bare_s", "ratio", "it_per_s", "unet_flops_per_step", "fraction_of_matmul",
            "peak_gpu_mb", "compile_s")
MODEL_KEYS = ("size", "steps", "dtype", "attention", "standard", "fast", "error")
KEYS = ("status", "device", "matmul_tflops", *MODELS)
STEPS = 20
GUIDANCE = 7.0
PROMPT = "a photograph of an astronaut riding a horse"


def skipped(reason: str = SKIPPED) -> dict:
    """Every key of the section, each saying ``reason``."""

    def model() -> dict:
        return dict.fromkeys(MODEL_KEYS) | {"standard": dict.fromkeys(RUN_KEYS, reason),
                                            "fast": dict.fromkeys(RUN_KEYS, reason), "error": reason}

    return {"status": reason, "device": None, "matmul_tflops": {"float16": reason, "bfloat16": reason},
            **{name: model() for name in MODELS}}


def run(settings) -> dict:
    """The bench's section: on CUDA the full measurement, else every key saying why it was skipped."""
    import torch

    if not torch.cuda.is_available():
        return skipped()
    if str(settings.device) in ("cpu", "mps"):
        return skipped(f"skipped: the bench was asked to run on {settings.device}")
    device = settings.device if str(settings.device).startswith("cuda") else "cuda"
    return measure(device=device, quick=settings.quick)


def measure(device: str = "cuda", quick: bool = False, tiny: bool = False, fast: bool = True,
            compile_unet: bool = True, models=MODELS) -> dict:
    """The GPU section. ``tiny``: tiny configs and float32 (a plumbing check that runs on a CPU)."""
    import torch

    device = torch.device(device)
    dtype = torch.float32 if tiny else torch.float16
    result = skipped("not run")
    result["status"] = "ran" if not tiny else "ran (tiny configs: a plumbing check, not a measurement)"
    result["device"] = _describe_device(device)
    result["matmul_tflops"] = {
        "float16": _matmul_tflops(device, torch.float16, quick, tiny),
        "bfloat16": _matmul_tflops(device, torch.bfloat16, quick, tiny),
    }
    fp16_rate = (result["matmul_tflops"]["float16"] or {}).get("median") if not tiny else None
    if tiny:  # the fraction is meaningless on tiny models; still exercise the arithmetic against fp32
        fp16_rate = (_matmul_tflops(device, torch.float32, True, True) or {}).get("median")
    pairs = 2 if quick else 5
    for name in models:
        try:
            result[name] = _measure_model(name, device, dtype, pairs, tiny, fast, compile_unet, fp16_rate)
        except Exception as exc:  # noqa: BLE001 - one model failing must not lose the other's figures
            result[name]["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
        finally:
            _free(device)
    return result


# ---- one model --------------------------------------------------------------------------------------------


def _measure_model(name: str, device, dtype, pairs: int, tiny: bool, fast: bool, compile_unet: bool,
                   matmul_tflops: float | None) -> dict:
    size = 64 if tiny else (512 if name == "sd15_512" else 1024)
    pipe = build_pipeline(name, device, dtype, tiny)
    flops = _unet_flops(pipe, size, device)
    out = {"size": [size, size], "steps": STEPS, "dtype": str(dtype).removeprefix("torch."),
           "attention": _attention(pipe.unet), "error": None}
    out["standard"] = _measure_runs(name, pipe, size, device, pairs, flops, matmul_tflops)
    if fast:
        start = time.perf_counter()
        apply_fast_mode(pipe, compile_unet=compile_unet)
        fast_result = _measure_runs(name, pipe, size, device, pairs, flops, matmul_tflops,
                                    warm_up_clock=start)
        fast_result["mode"] = "channels_last" + (" + torch.compile(unet)" if compile_unet else "")
        out["fast"] = fast_result
    else:
        out["fast"] = dict.fromkeys(RUN_KEYS, "not run (--no-fast)")
    del pipe
    _free(device)
    return out


def _measure_runs(name, pipe, size, device, pairs, flops, matmul_tflops, warm_up_clock=None) -> dict:
    import torch

    ours_call, ours_timings = _ours(name, pipe, size, device)
    bare_call = lambda: bare(pipe, size, device)  # noqa: E731
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # warm-up (with the fast mode: compilation), one call of each
    if ours_call is not None:
        ours_call()
    bare_call()
    compile_s = None if warm_up_clock is None else round(time.perf_counter() - warm_up_clock, 1)
    ours_s, bare_s, denoise = [], [], []
    for _ in range(pairs):
        if ours_call is not None:
            ours_s.append(_timed(ours_call, device))
            denoise.append(ours_timings()["denoise"])
        bare_s.append(_timed(bare_call, device))
    it_per_s = STEPS / statistics.median(denoise) if denoise else None
    achieved = None if (flops is None or it_per_s is None) else flops * it_per_s / 1e12
    return {
        "ours_s": _spread(ours_s) if ours_s else "not available: desktop_app.engine is not importable",
        "bare_s": _spread(bare_s),
        "ratio": round(statistics.median(ours_s) / statistics.median(bare_s), 3) if ours_s else None,
        "it_per_s": None if it_per_s is None else round(it_per_s, 2),
        "unet_flops_per_step": flops,
        "fraction_of_matmul": (None if achieved is None or not matmul_tflops
                               else round(achieved / matmul_tflops, 3)),
        "peak_gpu_mb": (round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                        if device.type == "cuda" else None),
        "compile_s": compile_s,
    }


def bare(pipe, size: int, device, seed: int = 0):
    """What a diffusers user writes: the pipeline call, nothing around it."""
    import torch

    generator = torch.Generator(str(device)).manual_seed(seed)
    return pipe(prompt=PROMPT, width=size, height=size, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                generator=generator, output_type="pil").images


def _ours(name: str, pipe, size: int, device):
    """A call running the request through our Engine on this pipeline (injected as the loaded model), and a
    function giving the last run's timings; (None, None) when desktop_app.engine cannot be imported."""
    try:
        from pathlib import Path

        from desktop_app.engine.generate import Engine
        from desktop_app.engine.loader import LoadedModel
        from desktop_app.engine.request import GenerationRequest
    except ImportError:
        return None, None
    engine = Engine(str(device), preview_share=None)
    engine.model = LoadedModel(
        pipe=pipe, name=f"bench:{name}", path=Path(f"<random {name}>"),  # no folder to hash
        family="sdxl" if "sdxl" in name else "sd1",
        device=engine.device, dtype=pipe.unet.dtype, display_name=name,
        index={"_limits": {"min_size": 64, "max_size": 2048}}, base_scheduler_config=pipe.scheduler.config)
    request = GenerationRequest(prompt=PROMPT, width=size, height=size, steps=STEPS, guidance_scale=GUIDANCE,
                                sampler="DPM++ 2M", seed=0, model=f"bench:{name}", preview=True)
    last: dict = {}

    def call():
        finished = engine.run(request, lambda event: None)
        last.update(finished.timings)
        return finished.images

    return call, lambda: dict(last)


def apply_fast_mode(pipe, compile_unet: bool = True) -> None:
    """channels_last for the UNet and VAE, and torch.compile of the UNet (in place: the pipeline keeps its
    UNet object and its config)."""
    import torch

    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    if compile_unet:
        pipe.unet.compile()


# ---- building the random-weight pipelines -----------------------------------------------------------------


def build_pipeline(name: str, device, dtype, tiny: bool = False):
    """A StableDiffusion(XL)Pipeline with random weights, made on ``device`` (fast: no CPU init)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    sdxl = name.startswith("sdxl")
    tokenizer = byte_clip_tokenizer()
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**_unet_config(sdxl, tiny))
        vae = AutoencoderKL(**_vae_config(sdxl, tiny))
        text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config("l", tiny)))
        text_encoder_2 = (CLIPTextModelWithProjection(CLIPTextConfig(**_text_config("g", tiny)))
                          if sdxl else None)
    scheduler = DPMSolverMultistepScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                            num_train_timesteps=1000, steps_offset=1,
                                            timestep_spacing="leading", algorithm_type="dpmsolver++",
                                            solver_order=2)
    parts = [unet, vae, text_encoder] + ([text_encoder_2] if sdxl else [])
    for part in parts:
        part.to(dtype).eval().requires_grad_(False)
    if sdxl:
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                         tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet,
                                         scheduler=scheduler)
    else:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _unet_config(sdxl: bool, tiny: bool) -> dict:
    if tiny:
        base = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                    norm_num_groups=8)
        if sdxl:
            return base | dict(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                               up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                               use_linear_projection=True, addition_embed_type="text_time",
                               addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
                               projection_class_embeddings_input_dim=80, cross_attention_dim=64)
        return base | dict(down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=4,
                           cross_attention_dim=32)
    if sdxl:  # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
        return dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                    block_out_channels=(320, 640, 1280),
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                    cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
    # runwayml/stable-diffusion-v1-5 unet/config.json
    return dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                block_out_channels=(320, 640, 1280, 1280),
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                  "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                cross_attention_dim=768, attention_head_dim=8)


def _vae_config(sdxl: bool, tiny: bool) -> dict:
    if tiny:
        return dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=64, layers_per_block=1,
                    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                    block_out_channels=(8, 8, 8, 8), norm_num_groups=4)
    # the SD / SDXL VAE; SDXL's in float16 without the upcast (as the fp16-fixed SDXL VAE runs)
    return dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=1024 if sdxl else 512,
                layers_per_block=2, block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                scaling_factor=0.13025 if sdxl else 0.18215, force_upcast=False)


def _text_config(which: str, tiny: bool) -> dict:
    base = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    if tiny:
        return base | dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           projection_dim=32, hidden_act="gelu")
    if which == "g":  # OpenCLIP ViT-bigG/14, SDXL's second text encoder
        return base | dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                           num_attention_heads=20, projection_dim=1280, hidden_act="gelu")
    return base | dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       projection_dim=768, hidden_act="quick_gelu")  # CLIP ViT-L/14


def byte_clip_tokenizer(max_length: int = 77):
    """A CLIPTokenizer from a byte-level vocabulary (every byte, with and without </w>): no files needed.
    Prompts become one token per character; the UNet's work does not depend on which tokens they are."""
    from transformers import CLIPTokenizer

    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    extra = [b for b in range(256) if b not in keep]
    chars = [chr(b) for b in keep] + [chr(256 + n) for n in range(len(extra))]
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=max_length)


# ---- helpers ----------------------------------------------------------------------------------------------


def _unet_flops(pipe, size: int, device) -> int | None:
    """FLOPs of one UNet call as the pipeline makes it (the guidance batch included), inputs captured."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    captured: list = []

    def keep(module, args, kwargs):
        if not captured:
            captured.append((args, kwargs))

    handle = pipe.unet.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        generator = torch.Generator(str(device)).manual_seed(0)
        pipe(prompt=PROMPT, width=size, height=size, num_inference_steps=1, guidance_scale=GUIDANCE,
             generator=generator, output_type="latent")
    finally:
        handle.remove()
    if not captured:
        return None
    args, kwargs = captured[0]
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        pipe.unet(*args, **kwargs)
    return int(counter.get_total_flops())


def _matmul_tflops(device, dtype, quick: bool, tiny: bool) -> dict | str:
    import torch

    n = 512 if tiny else 8192
    try:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        torch.matmul(a, b)
        rates = []
        for _ in range(3 if quick else 10):
            rates.append(2 * n**3 / _timed(lambda: torch.matmul(a, b), device) / 1e12)
        return _spread(rates, 1 if not tiny else 4) | {"n": n}
    except RuntimeError as exc:
        return f"not available: {exc}"


def _timed(call, device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _spread(values, digits: int = 4) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": len(values)}


def _attention(unet) -> str:
    names = {type(p).__name__ for p in unet.attn_processors.values()}
    return ", ".join(sorted(names))


def _describe_device(device) -> dict:
    import torch

    info = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gb=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda)
    try:
        import diffusers
        import transformers

        info.update(diffusers=diffusers.__version__, transformers=transformers.__version__)
    except ImportError:
        pass
    return info


def _free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
