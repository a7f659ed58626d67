"""Full-size SD 1.5 and SDXL with random weights on a CUDA GPU, in fp16 at their native sizes: speed, memory,
preview overhead, and whether the fp16 path gives finite images. Nothing is downloaded.

    python packaging/gpu/check_families.py [--families sd15,sdxl,sdxl+refiner] [--steps 20] [--json OUT.json]

``sdxl+refiner`` is the app's refiner flow: the SDXL base runs the first 80% of the steps and hands its latents
to the SDXL refiner (resources/configs/sdxl-refiner/unet, sharing the base's VAE), which runs the rest; the
peak memory is that of both UNets loaded together.

Architectures come from resources/configs/<family>/{unet,vae,scheduler}/config.json (the configs the app
bundles for offline single-file loading); where they are missing, from diffusers' defaults with the published
SD 1.5 / SDXL sizes. Text encoders are not built: random prompt embeddings of the right width stand in (the
UNet and VAE are what this measures). Prints, per family: it/s, peak GPU memory, the cost of a linear
latent->RGB preview and of a full VAE preview per step, and whether the fp16 decode was finite (when it was
not: whether a float32 re-decode fixed it, the check the app does after each decode).

Needs only torch, diffusers and transformers. ``--tiny --device cpu`` runs the same code on shrunken
architectures: a plumbing check, not a measurement. ``--dry-run`` only reads and prints the configs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "resources" / "configs"
FAMILIES = {  # name -> (config folder, native size, text width, pooled width or None)
    "sd15": ("sd1", 512, 768, None),
    "sdxl": ("sdxl", 1024, 2048, 1280),
    "sdxl+refiner": ("sdxl", 1024, 2048, 1280),
}
REFINER_SWITCH = 0.8  # the share of the steps the base runs (the app's default)
REFINER_TEXT = 1280  # the refiner reads OpenCLIP bigG alone: its states and its pooled vector are 1280 wide
# the published linear latent->RGB factors (ANCHORS.md; rows: latent channels, columns: R, G, B)
FACTORS = {
    "sd15": [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
             [-0.2120, -0.2616, -0.7177]],
    "sdxl": [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
             [-0.3165, -0.2492, -0.2188]],
}
FACTORS["sdxl+refiner"] = FACTORS["sdxl"]  # the refiner works in the base's latent space
DEFAULT_UNET = {
    "sd15": {"cross_attention_dim": 768, "sample_size": 64},
    "sdxl": {"block_out_channels": [320, 640, 1280], "attention_head_dim": [5, 10, 20],
             "transformer_layers_per_block": [1, 2, 10], "cross_attention_dim": 2048, "sample_size": 128,
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
             "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
             "projection_class_embeddings_input_dim": 2816, "use_linear_projection": True},
}
DEFAULT_UNET["sdxl+refiner"] = DEFAULT_UNET["sdxl"]
DEFAULT_REFINER_UNET = {
    "block_out_channels": [384, 768, 1536, 1536], "attention_head_dim": [6, 12, 24, 24],
    "transformer_layers_per_block": 4, "cross_attention_dim": 1280, "sample_size": 128,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2560, "use_linear_projection": True}
DEFAULT_VAE = {"block_out_channels": [128, 256, 512, 512], "latent_channels": 4, "layers_per_block": 2,
               "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="sd15,sdxl,sdxl+refiner",
                        help="comma-separated: " + ", ".join(FAMILIES))
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    parser.add_argument("--configs", type=Path, default=CONFIGS, help="folder with <family>/unet|vae|scheduler")
    parser.add_argument("--tiny", action="store_true", help="shrunken architectures (a plumbing check)")
    parser.add_argument("--dry-run", action="store_true", help="read and print the configs, build nothing")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    unknown = [f for f in args.families.split(",") if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                     f"choose from {', '.join(FAMILIES)}")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def read_configs(family: str, folder: Path, tiny: bool = False) -> dict:
    """{"unet": ..., "vae": ..., "scheduler": ..., "source": ...} for ``family``."""
    sub = folder / FAMILIES[family][0]
    configs, source = {}, str(sub)
    for part in ("unet", "vae", "scheduler"):
        file = sub / part / ("scheduler_config.json" if part == "scheduler" else "config.json")
        if file.is_file():
            configs[part] = json.loads(file.read_text(encoding="utf-8"))
        else:
            source = "diffusers defaults"
            configs[part] = {"unet": DEFAULT_UNET[family], "vae": DEFAULT_VAE,
                             "scheduler": {"_class_name": "EulerDiscreteScheduler"}}[part]
    if family == "sdxl+refiner":
        file = folder / "sdxl-refiner" / "unet" / "config.json"
        configs["refiner_unet"] = (json.loads(file.read_text(encoding="utf-8")) if file.is_file()
                                   else DEFAULT_REFINER_UNET)
    configs["source"] = source
    return shrink(configs) if tiny else configs


def shrink(configs: dict) -> dict:
    """A tenth of the channels, one layer per block: the same code paths at a plumbing-check size."""
    shrunk = dict(configs)
    for name in ("unet", "refiner_unet"):
        if name not in configs:
            continue
        unet = shrunk[name] = dict(configs[name])
        unet["block_out_channels"] = [max(32, c // 10 // 32 * 32) for c in unet.get("block_out_channels",
                                                                                      [320, 640, 1280, 1280])]
        unet["layers_per_block"] = 1
        depth = unet.get("transformer_layers_per_block")
        if depth is not None:
            unet["transformer_layers_per_block"] = [1] * len(depth) if isinstance(depth, list) else 1
    vae = shrunk["vae"] = dict(configs["vae"])
    vae["block_out_channels"] = [32] * len(vae.get("block_out_channels", [128, 256, 512, 512]))
    vae["layers_per_block"] = 1
    return shrunk


def build(family: str, configs: dict, device, dtype):
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    with torch.device(device):  # random init straight on the GPU: seconds, not minutes
        unet = UNet2DConditionModel.from_config(configs["unet"]).to(dtype).eval()
        vae = AutoencoderKL.from_config(configs["vae"]).to(dtype).eval()
        refiner_unet = (UNet2DConditionModel.from_config(configs["refiner_unet"]).to(dtype).eval()
                        if "refiner_unet" in configs else None)
    scheduler = EulerDiscreteScheduler.from_config(configs["scheduler"])
    if family.startswith("sdxl"):
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None,
                                         tokenizer_2=None, unet=unet, scheduler=scheduler)
    else:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    refiner = None
    if refiner_unet is not None:  # the refiner shares the base's VAE, as the app does
        refiner = StableDiffusionXLImg2ImgPipeline(
            vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None, unet=refiner_unet,
            scheduler=EulerDiscreteScheduler.from_config(configs["scheduler"]), requires_aesthetics_score=True,
            force_zeros_for_empty_prompt=False)
        refiner.set_progress_bar_config(disable=True)
    return pipe, refiner


def prompt_kwargs(family: str, device, dtype, generator, width: int | None = None,
                  pooled: int | None = None) -> dict:
    import torch

    if width is None:
        _, _, width, pooled = FAMILIES[family]
    embeds = torch.randn((1, 77, width), generator=generator, device=device, dtype=dtype)
    kwargs = {"prompt_embeds": embeds, "negative_prompt_embeds": torch.zeros_like(embeds)}
    if pooled:
        pool = torch.randn((1, pooled), generator=generator, device=device, dtype=dtype)
        kwargs.update(pooled_prompt_embeds=pool, negative_pooled_prompt_embeds=torch.zeros_like(pool))
    return kwargs


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def check_family(family: str, args) -> dict:
    import torch

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    configs = read_configs(family, args.configs, args.tiny)
    size = 64 if args.tiny else FAMILIES[family][1]
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    pipe, refiner = build(family, configs, device, dtype)
    params = sum(p.numel() for p in pipe.unet.parameters()) + sum(p.numel() for p in pipe.vae.parameters())
    if refiner is not None:
        params += sum(p.numel() for p in refiner.unet.parameters())
    generator = torch.Generator(device).manual_seed(0)
    common = dict(prompt_kwargs(family, device, dtype, generator), width=size, height=size, guidance_scale=5.0,
                  generator=generator)
    refiner_common = dict(prompt_kwargs(family, device, dtype, generator, REFINER_TEXT, REFINER_TEXT),
                          guidance_scale=5.0, generator=generator)

    def run(steps, callback=None):
        sync(device)
        start = time.perf_counter()
        with torch.inference_mode():
            if refiner is None:
                latents = pipe(**common, num_inference_steps=steps, output_type="latent",
                               callback_on_step_end=callback).images
            else:  # the base to the switch, then the refiner from there, as the app runs them
                latents = pipe(**common, num_inference_steps=steps, denoising_end=REFINER_SWITCH,
                               output_type="latent", callback_on_step_end=callback).images
                latents = refiner(**refiner_common, image=latents, num_inference_steps=steps,
                                  denoising_start=REFINER_SWITCH, output_type="latent",
                                  callback_on_step_end=callback).images
        sync(device)
        return latents, time.perf_counter() - start

    run(2)  # warm-up: kernels, allocator
    latents, seconds = run(args.steps)
    factors = torch.tensor(FACTORS[family], device=device, dtype=torch.float32)
    linear_cost, vae_cost = [], []

    def linear_preview(pipeline, i, t, kwargs):
        sync(device)
        start = time.perf_counter()
        rgb = torch.einsum("bchw,cr->brhw", kwargs["latents"].float(), factors)
        ((rgb + 1) / 2).clamp(0, 1).mul(255).byte().cpu()
        sync(device)
        linear_cost.append(time.perf_counter() - start)
        return {}

    _, with_linear = run(args.steps, linear_preview)
    with torch.inference_mode():
        for _ in range(3):
            sync(device)
            start = time.perf_counter()
            pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample.cpu()
            sync(device)
            vae_cost.append(time.perf_counter() - start)
        # the fp16 path: the decode as the pipeline does it, then the app's check and float32 redo
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
        finite = bool(torch.isfinite(image).all())
        redo_finite = None
        if not finite:
            pipe.vae.to(torch.float32)
            redo = pipe.vae.decode(latents.float() / pipe.vae.config.scaling_factor).sample
            redo_finite = bool(torch.isfinite(redo).all())
            pipe.vae.to(dtype)
    step_seconds = seconds / args.steps
    result = {
        "family": family, "size": size, "dtype": args.dtype, "device": str(device), "configs": configs["source"],
        "parameters_millions": round(params / 1e6, 1), "steps": args.steps,
        "it_per_s": round(args.steps / seconds, 3), "seconds": round(seconds, 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "linear_preview_ms": round(1000 * sum(linear_cost) / max(1, len(linear_cost)), 3),
        "linear_preview_overhead": round(with_linear / seconds - 1, 4),
        "vae_preview_ms": round(1000 * min(vae_cost), 2),
        "vae_preview_share_of_a_step": round(min(vae_cost) / step_seconds, 3),
        "fp16_decode_finite": finite, "float32_redo_finite": redo_finite,
    }
    return result  # the pipeline goes with this frame; main empties the CUDA cache before the next family


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    families = args.families.split(",")
    if args.dry_run:
        for family in families:
            configs = read_configs(family, args.configs, args.tiny)
            unet = configs["unet"]
            print(f"{family}: configs from {configs['source']}; UNet channels {unet.get('block_out_channels')}, "
                  f"cross-attention {unet.get('cross_attention_dim')}, native size {FAMILIES[family][1]} px")
        return 0
    import torch

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: run this on a CUDA machine (or --tiny --device cpu for a plumbing check)",
              file=sys.stderr)
        return 2
    results = []
    for family in families:
        result = check_family(family, args)
        results.append(result)
        if torch.device(args.device).type == "cuda":
            torch.cuda.empty_cache()
        memory = f"{result['peak_memory_gib']} GiB peak" if result["peak_memory_gib"] is not None else "CPU"
        finite = "finite" if result["fp16_decode_finite"] else (
            f"NOT finite (float32 redo {'finite' if result['float32_redo_finite'] else 'also not finite'})")
        print(f"{family} {result['size']}px {result['dtype']}: {result['it_per_s']} it/s, {memory}; "
              f"linear preview {result['linear_preview_ms']} ms/step ({result['linear_preview_overhead']:+.1%}), "
              f"full-VAE preview {result['vae_preview_ms']} ms ({result['vae_preview_share_of_a_step']:.1f} "
              f"steps' time); {args.dtype} decode {finite}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
