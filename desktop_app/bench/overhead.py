"""Section 1, engine overhead: our whole generation path against a bare diffusers call doing the same work.

Ours: ``Engine(preview_share=None).run`` with a preview after every step, every event delivered to a
callback, no saving. Bare: ``pipe(prompt, ...)`` on the same loaded pipeline, with the same sampler, steps,
size and seed: what a diffusers user writes for the model's family (``bare_call``). Beside them, ours with
previews off, which tells the engine's own overhead apart from the previews' cost. In turn (ABC...) in one
process, after one warm-up call of each.
"""

from __future__ import annotations

import numpy as np

from desktop_app.bench.common import Settings, interleave, median_of, ratio, spread

TARGET = 1.05
KEYS = ("ours_s", "bare_s", "ratio", "pair_ratio", "target", "meets_target", "images_match", "ours_no_previews_s",
        "ratio_no_previews", "settings")


def bare_call(pipe, request, base_scheduler_config, device, family: str = "sd"):
    """What a diffusers user would write for the same request: the family's scheduler for the sampler, one
    seeded generator, the prompt as text, no callback. The UNet families take a negative prompt (None when
    empty); the transformer families take the text arguments the family passes its pipeline (the prompt; a
    negative prompt only where the family has one; PixArt's and Sana's caption as written), and the family's
    own call options (Qwen-Image's true guidance)."""
    import torch

    from desktop_app.engine.families import for_family

    code = for_family(family)
    pipe.scheduler = code.make_scheduler(request.sampler, base_scheduler_config)
    generator = torch.Generator("cpu" if device.type == "mps" else str(device)).manual_seed(request.seed)
    kwargs = dict(prompt=request.prompt, width=request.width, height=request.height,
                  num_inference_steps=request.steps, guidance_scale=request.guidance_scale,
                  generator=generator, output_type="pil")
    if code.key == "sd":  # the UNet families, and the embedded model (the engine passes them embeddings)
        kwargs["negative_prompt"] = request.negative_prompt or None
    else:
        kwargs.update(code.encode_text(pipe, request, device))
    kwargs.update(code.call_options(pipe, request))
    return pipe(**kwargs).images


def run(settings: Settings) -> dict:
    from desktop_app.engine.generate import Engine

    engine = Engine(settings.device, preview_share=None)  # a preview after every step, whatever it costs
    request = settings.request(preview=True)
    quiet = settings.request(preview=False)
    events: list = []
    model = engine.load(settings.model)

    def ours():
        events.clear()
        return engine.run(request, events.append).images

    def ours_no_previews():
        return engine.run(quiet, lambda event: None).images

    def bare():
        return bare_call(model.pipe, request, model.base_scheduler_config, engine.device, model.family)

    first, second = ours(), bare()  # warm-up, and the check that both make the same picture
    ours_no_previews()
    difference = np.abs(np.asarray(first[0], dtype=np.int16) - np.asarray(second[0], dtype=np.int16)).max()
    times = interleave({"ours": ours, "bare": bare, "quiet": ours_no_previews}, settings.runs)
    ours_s, bare_s = times["ours"], times["bare"]
    pairs = [a / b for a, b in zip(ours_s, bare_s)]
    result_ratio = ratio(median_of(spread(ours_s)), median_of(spread(bare_s)))
    return {
        "ours_s": spread(ours_s), "bare_s": spread(bare_s), "ratio": result_ratio,
        "pair_ratio": spread(pairs, 3), "target": TARGET,
        "meets_target": None if result_ratio is None else result_ratio <= TARGET,
        "images_match": bool(difference <= 2),  # a pixel level or two: float summation order
        "ours_no_previews_s": spread(times["quiet"]),
        "ratio_no_previews": ratio(median_of(spread(times["quiet"])), median_of(spread(bare_s))),
        "settings": {"family": model.family, "size": [request.width, request.height], "steps": request.steps,
                     "sampler": request.sampler, "guidance": request.guidance_scale,
                     "previews": "every step", "preview_decoder": type(engine.preview_decoder(model)).__name__,
                     "events_per_run": len(events), "saving": "off"},
    }
