"""Section 2, preview cost: the same generation with previews off, after every step, and as the app does it.

Measured in one process on one loaded model, the modes in turn each round (ABCDE...):
- ``off``: request.preview=False;
- ``every_step_vae``: a preview after every step from ``make_decoder``'s pick (the model's own VAE when it is
  small, as for the embedded model and the tiny test models; else the published linear factors);
- ``every_step_fitted``: a preview after every step from the linear map fitted to the model's VAE
  (``engine/preview_fit.py``; fitted first if it is not shipped or cached, and the fit is reported). The UNet
  families only: the fit samples with a UNet sampler; for the transformer families it says "not available";
- ``every_step_linear``: a preview after every step from the family's published latent-to-RGB factors (what
  a full-size SD3 or Flux gets: their VAEs are too big for ``make_decoder`` to pick), where it has them;
- ``app_default``: what the window does: ``Engine()``'s default preview mode and rationing.
Then where a preview's time goes: one step, one VAE decode (split into the VAE and the conversion to an
image), one fitted decode, one linear decode, and the top operators of a VAE decode from torch.profiler.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from desktop_app.bench.common import NOT_AVAILABLE, Settings, interleave, median_of, ratio, spread

TARGET = 1.03
KEYS = ("off_s", "every_step_vae_s", "every_step_fitted_s", "every_step_linear_s", "app_default_s",
        "ratio_every_step_vae", "ratio_every_step_fitted", "ratio_every_step_linear", "ratio_app_default",
        "ratio", "target", "meets_target", "decoders", "fit", "profile", "settings")


def run(settings: Settings) -> dict:
    from desktop_app.engine.generate import Engine
    from desktop_app.engine.preview import DEFAULT_PREVIEW_SHARE

    engine = Engine(settings.device)
    model = engine.load(settings.model)

    # 1. the fitted map (fitted and cached when missing), the published factors, and the decoders each mode uses
    fitted, fit_report = fitted_decoder(engine, model)
    linear = linear_decoder(model)
    engine.preview_mode = "vae"
    vae_decoder = engine.preview_decoder(model)

    modes = {  # (preview, preview_mode, preview_share, a decoder of the bench's own or None)
        "off": (False, "auto", None, None),
        "every_step_vae": (True, "vae", None, None),
        "every_step_fitted": (True, "fitted", None, None),
        "every_step_linear": (True, "vae", None, linear),
        "app_default": (True, "auto", DEFAULT_PREVIEW_SHARE, None),
    }
    if fitted is None:
        del modes["every_step_fitted"]
    if linear is None:
        del modes["every_step_linear"]
    counts: dict[str, int] = {}

    def call(name):
        preview, mode, share, decoder = modes[name]
        request = settings.request(preview=preview)

        def one():
            engine.preview_mode, engine.preview_share = mode, share
            if decoder is not None:  # the engine asks preview_decoder(model): this instance answers ``decoder``
                engine.preview_decoder = lambda loaded: decoder
            try:
                shown = []
                engine.run(request, lambda e: shown.append(getattr(e, "preview", None) is not None))
                counts[name] = sum(shown)
            finally:
                vars(engine).pop("preview_decoder", None)
        return one

    calls = {name: call(name) for name in modes}
    for one in calls.values():  # warm-up
        one()
    times = interleave(calls, settings.runs)
    summaries = {name: spread(times[name]) if name in times else NOT_AVAILABLE
                 for name in ("off", "every_step_vae", "every_step_fitted", "every_step_linear", "app_default")}
    off = median_of(summaries["off"])
    ratios = {name: ratio(median_of(summaries[name]), off) if name in times else None
              for name in summaries if name != "off"}
    engine.preview_mode, engine.preview_share = "auto", DEFAULT_PREVIEW_SHARE
    app_decoder = type(engine.preview_decoder(model)).__name__
    every_step = ratios["every_step_fitted"] if app_decoder == "FittedPreview" else ratios["every_step_vae"]
    return {
        "off_s": summaries["off"], "every_step_vae_s": summaries["every_step_vae"],
        "every_step_fitted_s": summaries["every_step_fitted"],
        "every_step_linear_s": summaries["every_step_linear"], "app_default_s": summaries["app_default"],
        "ratio_every_step_vae": ratios["every_step_vae"],
        "ratio_every_step_fitted": ratios["every_step_fitted"],
        "ratio_every_step_linear": ratios["every_step_linear"],
        "ratio_app_default": ratios["app_default"],
        "ratio": every_step, "target": TARGET,
        "meets_target": None if every_step is None else every_step <= TARGET,
        "decoders": {"every_step_vae": type(vae_decoder).__name__,
                     "every_step_fitted": type(fitted).__name__ if fitted is not None else NOT_AVAILABLE,
                     "every_step_linear": type(linear).__name__ if linear is not None else NOT_AVAILABLE,
                     "app_default": app_decoder, "app_default_share": DEFAULT_PREVIEW_SHARE,
                     "previews_shown": counts},
        "fit": fit_report,
        "profile": profile(engine, model, settings, vae_decoder, fitted, linear, summaries["off"]),
        "settings": {"family": model.family, "size": list(settings.size()), "steps": settings.steps(),
                     "sampler": settings.defaults.get("sampler", "DPM++ 2M")},
    }


def fitted_decoder(engine, model):
    """(the fitted map, what was done to get it), fitted now and cached when missing; (None, why) for a model
    without a UNet: the fit collects x0 with a UNet sampler."""
    from desktop_app.engine import preview_fit

    if getattr(model.pipe, "unet", None) is None:
        return None, {"found": f"{NOT_AVAILABLE}: the preview map is fitted for the UNet families only "
                               f"({model.family} is not one)"}
    shipped_or_cached = preview_fit.find(model.path) is not None
    report = {"found": "shipped or cached" if shipped_or_cached else "fitted now"}
    if not shipped_or_cached:
        _, fit = preview_fit.fit_and_cache(model)
        report.update(fit)
    engine.preview_mode = "fitted"
    return engine.preview_decoder(model), report


def linear_decoder(model):
    """A LinearPreview from the published latent-to-RGB factors of the model's family, or None when it has
    none (the embedded model) or they do not fit its latent channels."""
    from desktop_app.engine.families import for_family
    from desktop_app.engine.preview import LINEAR_FACTORS, LinearPreview

    factors = LINEAR_FACTORS.get(model.family) or for_family(model.family).linear_preview
    if factors is None or len(factors[0]) != _latent_channels(model):
        return None
    return LinearPreview(*factors)


def _latent_channels(model) -> int:
    vae = getattr(model.pipe, "vae", None)
    channels = getattr(getattr(vae, "config", None), "latent_channels", None)
    if channels is None:
        channels = model.pipe.unet.config.in_channels
    return int(channels)


def _summary(value) -> dict | None:
    return value if isinstance(value, dict) else None


def profile(engine, model, settings: Settings, vae_decoder, fitted, linear, off_summary) -> dict:
    """Where a preview's time goes, against the time of one denoising step. The decoders get the x0 the engine
    handed them in a run (after the family's unpacking: Flux's tokens, for one)."""
    import torch

    from desktop_app.engine.preview import _to_pil

    width, height = settings.size()
    x0 = engine_x0(engine, settings, vae_decoder)
    repeats = 5 if settings.quick else 20

    def timed(call) -> dict | None:
        call()
        values = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            _sync(engine.device)
            values.append((time.perf_counter() - start) * 1000)
        return spread(values, 3)

    def decoder_ms(decoder):
        if decoder is None or x0 is None:
            return NOT_AVAILABLE
        try:
            return timed(lambda: decoder(x0, (width, height)))
        except Exception as exc:  # noqa: BLE001 - a decoder that does not take these latents: say so
            return f"{NOT_AVAILABLE}: {type(exc).__name__}: {str(exc)[:120]}"

    result = {"vae_preview_ms": decoder_ms(vae_decoder), "fitted_preview_ms": decoder_ms(fitted),
              "linear_preview_ms": decoder_ms(linear)}
    vae = getattr(model.pipe, "vae", None)
    scaling = getattr(getattr(vae, "config", None), "scaling_factor", None)
    if scaling is not None and x0 is not None and x0.ndim == 4:  # the KL VAEs (SD, SD3, Flux), as VaePreview
        latents = x0.to(vae.dtype) / scaling + (getattr(vae.config, "shift_factor", None) or 0)
        with torch.inference_mode():
            decoded = vae.decode(latents, return_dict=False)[0]
            result["vae_decode_only_ms"] = timed(lambda: vae.decode(latents, return_dict=False))
            result["to_image_ms"] = timed(lambda: _to_pil((decoded[0].float() + 1) / 2, (width, height)))
            result["vae_top_ops"] = _top_ops(lambda: vae.decode(latents, return_dict=False))
    step_ms = None
    if off_summary is not None:  # the off runs: the whole run, of which the denoising is most
        request = settings.request(preview=False)
        finished = engine.run(request, lambda e: None)
        step_ms = round(finished.timings["denoise"] / request.steps * 1000, 3)
    result["step_ms"] = step_ms
    result["vae_preview_per_step"] = ratio(median_of(_summary(result["vae_preview_ms"])), step_ms)
    result["linear_preview_per_step"] = ratio(median_of(_summary(result["linear_preview_ms"])), step_ms)
    return result


def engine_x0(engine, settings: Settings, decoder):
    """The last x0 the engine hands its preview decoder in one run with a preview every step (None when the
    model gives none), ``decoder`` (or nothing) making the previews meanwhile."""
    seen = []

    def record(x0, size):
        seen.append(x0)
        return decoder(x0, size) if decoder is not None else None

    share = engine.preview_share
    engine.preview_decoder, engine.preview_share = (lambda loaded: record), None
    try:
        engine.run(settings.request(preview=True), lambda e: None)
    finally:
        vars(engine).pop("preview_decoder", None)
        engine.preview_share = share
    return seen[-1] if seen else None


def _top_ops(call, limit: int = 5) -> list[dict]:
    from torch.autograd.profiler import profile

    try:
        with _stderr_silenced(), profile(use_kineto=False) as prof:
            call()
        rows = sorted(prof.key_averages(), key=lambda row: row.self_cpu_time_total, reverse=True)
        total = sum(row.self_cpu_time_total for row in rows) or 1
        return [{"op": row.key, "self_cpu_ms": round(row.self_cpu_time_total / 1000, 3),
                 "share": round(row.self_cpu_time_total / total, 3)} for row in rows[:limit]]
    except Exception as exc:  # noqa: BLE001 - the profile is a detail; its absence must not stop the report
        return [{"op": f"profiler unavailable: {exc}"}]


@contextmanager
def _stderr_silenced():
    """The profiler's C++ side writes start/stop lines straight to file descriptor 2: hide them."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
