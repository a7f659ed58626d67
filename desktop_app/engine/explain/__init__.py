"""The numbers and pictures of the explain report (issue 18), from one real run on the user's prompt, model and
seed, and a few runs beside it (guidance). ``explain(request)`` returns plain data (numpy arrays, PIL images,
dicts) that ``studio/explain_report.py`` writes as HTML, PDF, PNG and JSON; nothing here writes files.

The run is the engine's own: the steps of ``Engine.run`` (run_steps.GenerationRun: load, text, noise, denoise),
with the scheduler's ``step`` recorded (recorder.py), so the report shows the image that ``generate`` makes with
the same request, and the tokens, noise, latents and predictions that made it.

Sections (numbered as in the issue): 1 tokens and embeddings, 3 the starting noise, 4 forward diffusion and the
schedule, 5 reverse diffusion, 6 guidance, 7 where the words landed (cross-attention maps, attention_maps.py,
recorded during the same run), 8 the latent and the upscaler; 2, texts and images matched by the dot product of
their encodings and the result's nearest training images (similarity.py, with the embedded model's contrastive
pair), once the run's pictures are made.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from desktop_app.engine.attention_maps import record_attention
from desktop_app.engine.compare_grid import plan, run_grid
from desktop_app.engine.events import Emit, StageStarted
from desktop_app.engine.explain.numbers import (
    LatentDecoder,
    chosen_timesteps,
    forward_diffusion,
    schedule_numbers,
    token_numbers,
)
from desktop_app.engine.explain.recorder import record_steps
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import RequestError

FRAMES = 8  # reverse-diffusion frames shown (every step's numbers are kept)
HIGH_GUIDANCE = 2.0  # the "high" guidance column: this many times the run's own (at most 30)


def explain(request: GenerationRequest, engine=None, emit: Emit | None = None, frames: int = FRAMES,
            cancel: threading.Event | None = None, attention: bool = True,
            other_prompts: Sequence[str] = (), compare: tuple | None = None) -> dict:
    """Run ``request`` (one image, text to image) and gather every section's data. ``engine``: an
    ``Engine`` to reuse (one on "auto" by default); ``attention``: record the cross-attention maps (section 7);
    ``other_prompts``: texts to match beside the prompt in section 2 (the history's recent prompts);
    ``compare``: (x, y) compare_grid Axes (y may be None) for a compare grid in section 6.
    RequestError for what the report cannot explain."""
    from desktop_app.engine.generate import Engine, check_request
    from desktop_app.engine.run_steps import GenerationRun

    emit = emit or _ignore
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    if request.init_image or request.refiner:
        raise RequestError("init_image" if request.init_image else "refiner",
                           "the explain report follows a text-to-image run; leave out the start image and refiner")
    request = dataclasses.replace(request, batch_size=1, upscale=None, hires_scale=None, preview=False)
    if compare is not None:
        plan(request, *compare)  # a bad axis value is told before the model loads
    engine = engine or Engine(preview_share=None)

    # 1. load the model, and check the request and the family against it
    model = engine.load(request.model, emit, (request.width, request.height, 1))
    check_request(request, model)
    if getattr(model.pipe, "unet", None) is None:
        raise RequestError("model", f"the explain report covers the UNet models (the embedded model, Stable "
                                    f"Diffusion 1.x, 2.x, XL) for now; {model.display_name} is {model.family}")
    run = GenerationRun(request, emit, cancel, engine.device, None)
    run.set_model(model, None)
    run.apply_loras()
    timings["load"] = time.perf_counter() - clock
    pipe = run.pipe

    with torch.inference_mode():
        # 2. text: tokens, their embeddings, the encoder's output
        run.encode_text()
        tokens = token_numbers(pipe, request.prompt, run.text_kwargs["prompt_embeds"])

        # 3. noise: this seed's starting latent
        run.make_noise()
        noise = run.noise["latents"][0].float().cpu().numpy()

        # 4. denoise, every scheduler step recorded (and, asked, the cross-attention maps of the prompt's tokens)
        size = (request.width, request.height)
        maps = record_attention(pipe, request.prompt, size) if attention else nullcontext(None)
        with record_steps(pipe.scheduler) as recorder, maps as attended:
            run.denoise(None)
        timings["run"] = run.timings.get("denoise", 0.0) + run.timings.get("decode", 0.0)
        image = run.images[0]

        # 5. the pictures of the run's latents, and forward diffusion of its result
        emit(StageStarted("explain", "decoding the frames and the noised results"))
        began = time.perf_counter()
        decode = LatentDecoder(pipe.vae, size)
        shown = _frame_indices(len(recorder.steps), frames)
        reverse = [_frame(recorder.steps[k], decode) for k in shown]
        used = [(step.timestep, step.alpha_bar) for step in recorder.steps]
        schedule = schedule_numbers(model.base_scheduler_config, used)
        forward = forward_diffusion(model.base_scheduler_config, recorder.final, noise,
                                    chosen_timesteps(len(schedule["timesteps"])))
        for item in forward:
            item["image"] = decode(item["latent"])
        timings["decode"] = time.perf_counter() - began

    # 6. guidance: the same seed with no prompt, with the prompt unguided, at this run's guidance, and high
    began = time.perf_counter()
    guidance = _guidance_row(engine, request, image, emit, cancel)
    grid = None
    if compare is not None:  # the compare grid over two settings; the run's own cell is not made again
        seeded = dataclasses.replace(request, seed=run.seeds[0])
        grid = run_grid(engine, seeded, *compare, emit=emit, cancel=cancel, done={seeded: image})
    timings["guidance"] = time.perf_counter() - began

    # 7. the latent, and the upscaler's before and after
    began = time.perf_counter()
    upscaled = None
    if model.upscaler is not None:
        from desktop_app.engine.upscale import upscale_image

        upscaled = upscale_image(model.upscaler, image, cancel=cancel)
    timings["upscale"] = time.perf_counter() - began

    # 8. texts and images matched by their encodings, and the nearest training images
    began = time.perf_counter()
    emit(StageStarted("explain", "matching texts and images"))
    similarity = _similarity(request.prompt, image, guidance, other_prompts, model)
    timings["similarity"] = time.perf_counter() - began
    timings["total"] = time.perf_counter() - clock
    return {
        "request": {"prompt": request.prompt, "negative_prompt": request.negative_prompt, "seed": run.seeds[0],
                    "steps": request.steps, "guidance": request.guidance_scale, "sampler": request.sampler,
                    "model": model.display_name, "family": model.family, "size": list(size),
                    "device": str(engine.device), "dtype": str(model.dtype).removeprefix("torch.")},
        "tokens": tokens,
        "noise": {"latent": noise, "seed": run.seeds[0]},
        "schedule": schedule,
        "forward": {"items": forward, "clean": image},
        "reverse": {"frames": reverse, "steps": [_numbers(step) for step in recorder.steps],
                    "latents": {name: np.stack([getattr(step, name) for step in recorder.steps])
                                for name in ("x_t", "eps", "x0")},
                    "prediction_type": recorder.prediction_type},
        "guidance": guidance,
        "compare": grid,
        "latent": {"latent": recorder.final, "image": image, "vae_scale_factor": model.vae_scale_factor,
                   "upscaled": upscaled,
                   "upscaler": _upscaler_name(model.upscaler)},
        "similarity": similarity,
        "attention": _attention_numbers(attended.result()) if attended is not None else None,
        "timings": {name: round(value, 3) for name, value in timings.items()},
    }


def _similarity(prompt: str, image, guidance: list[dict], other_prompts, model) -> dict:
    """Section 2's data, or {"missing": reason} when the contrastive pair or the index cannot be read."""
    from desktop_app.engine.explain.similarity import similarity_numbers
    from desktop_app.errors import ModelError
    from desktop_app.resources import default_model_dir

    others = [(item["label"], item["image"]) for item in guidance if item["image"] is not image]
    embedded = Path(model.path).resolve() == default_model_dir().resolve()  # the pair's own model
    try:
        return similarity_numbers(prompt, image, others, list(other_prompts), embedded)
    except ModelError as exc:
        return {"missing": str(exc)}


def _frame_indices(count: int, wanted: int) -> list[int]:
    """``wanted`` step indices spread evenly from the first step to the last."""
    if count <= wanted:
        return list(range(count))
    return sorted({round(k * (count - 1) / (wanted - 1)) for k in range(wanted)})


def _frame(step, decode) -> dict:
    return {**_numbers(step), "x_t_image": decode(step.x_t), "x0_image": decode(step.x0), "eps": step.eps,
            "x_t": step.x_t, "x0": step.x0}


def _numbers(step) -> dict:
    return {"step": step.index + 1, "timestep": step.timestep, "alpha_bar": step.alpha_bar,
            "x0_from_scheduler": step.x0_from_scheduler,
            "x_t_std": float(step.x_t.std()), "eps_std": float(step.eps.std()), "x0_std": float(step.x0.std())}


def _guidance_row(engine, request: GenerationRequest, image, emit: Emit, cancel) -> list[dict]:
    """The same seed four ways; the run's own image is the third (not run again); with a negative prompt, a
    fifth: the run without it."""
    high = min(30.0, max(request.guidance_scale * HIGH_GUIDANCE, request.guidance_scale + 1))
    negative = request.negative_prompt
    settings = [("no prompt", "", 1.0, ""), ("prompt, unguided", request.prompt, 1.0, negative),
                ("prompt (this run)", request.prompt, request.guidance_scale, negative),
                ("prompt, high", request.prompt, high, negative)]
    if negative:
        settings.append(("without the negative prompt", request.prompt, request.guidance_scale, ""))
    row = []
    for label, prompt, scale, negative_prompt in settings:
        if prompt == request.prompt and scale == request.guidance_scale and negative_prompt == negative:
            picture = image
        else:
            emit(StageStarted("explain", f"guidance: {label} ({scale:g})"))
            finished = engine.run(dataclasses.replace(request, prompt=prompt, guidance_scale=scale,
                                                      negative_prompt=negative_prompt), _ignore, cancel)
            if finished is None:
                from desktop_app.errors import CancelledError

                raise CancelledError("cancelled")
            picture = finished.images[0]
        row.append({"label": label, "prompt": prompt, "guidance": scale, "negative_prompt": negative_prompt,
                    "image": picture})
    return row


def _attention_numbers(found) -> dict:
    """Section 7's data: the prompt's tokens and, per token, its map at image size (0..1 over its own range)."""
    tokens = [{"index": t.index, "text": t.text, "id": t.id, "position": t.position} for t in found.tokens]
    return {"tokens": tokens,
            "maps": found.maps, "steps": found.steps, "layers": len(found.layers),
            "seconds": round(found.seconds, 3)}


def _upscaler_name(descriptor) -> str | None:
    if descriptor is None:
        return None
    name = getattr(getattr(descriptor, "architecture", None), "name", None) or type(descriptor).__name__
    return f"{name} {int(getattr(descriptor, 'scale', 1))}x"


def _ignore(event) -> None:
    pass
