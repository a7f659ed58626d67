"""Section 1, engine overhead: our whole generation path against a bare diffusers call doing the same work.

Ours: ``Engine(preview_share=None).run`` with a preview after every step, every event delivered to a
callback, no saving. Bare: ``pipe(prompt, ...)`` on the same loaded pipeline, with the same sampler, steps,
size and seed. Alternately (ABAB...) in one process, after one warm-up call of each.
"""

from __future__ import annotations

import numpy as np

from desktop_app.bench.common import Settings, alternate, median_of, ratio, spread

TARGET = 1.05
KEYS = ("ours_s", "bare_s", "ratio", "pair_ratio", "target", "meets_target", "images_match", "settings")


def bare_call(pipe, request, base_scheduler_config, device):
    """What a diffusers user would write for the same request."""
    import torch

    from desktop_app.engine.samplers import make_scheduler

    pipe.scheduler = make_scheduler(request.sampler, base_scheduler_config)
    generator = torch.Generator("cpu" if device.type == "mps" else str(device)).manual_seed(request.seed)
    return pipe(prompt=request.prompt, negative_prompt=request.negative_prompt or None, width=request.width,
                height=request.height, num_inference_steps=request.steps,
                guidance_scale=request.guidance_scale, generator=generator, output_type="pil").images


def run(settings: Settings) -> dict:
    from desktop_app.engine.generate import Engine

    engine = Engine(settings.device, preview_share=None)  # a preview after every step, whatever it costs
    request = settings.request(preview=True)
    events: list = []
    model = engine.load(settings.model)

    def ours():
        events.clear()
        return engine.run(request, events.append).images

    def bare():
        return bare_call(model.pipe, request, model.base_scheduler_config, engine.device)

    first, second = ours(), bare()  # warm-up, and the check that both make the same picture
    difference = np.abs(np.asarray(first[0], dtype=np.int16) - np.asarray(second[0], dtype=np.int16)).max()
    ours_s, bare_s = alternate(ours, bare, settings.runs)
    pairs = [a / b for a, b in zip(ours_s, bare_s)]
    result_ratio = ratio(median_of(spread(ours_s)), median_of(spread(bare_s)))
    return {
        "ours_s": spread(ours_s), "bare_s": spread(bare_s), "ratio": result_ratio,
        "pair_ratio": spread(pairs, 3), "target": TARGET,
        "meets_target": None if result_ratio is None else result_ratio <= TARGET,
        "images_match": bool(difference <= 2),  # a pixel level or two: float summation order
        "settings": {"size": [request.width, request.height], "steps": request.steps,
                     "sampler": request.sampler, "guidance": request.guidance_scale,
                     "previews": "every step", "preview_decoder": type(engine.preview_decoder(model)).__name__,
                     "events_per_run": len(events), "saving": "off"},
    }
