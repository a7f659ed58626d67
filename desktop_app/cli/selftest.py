"""``desktop-app selftest``: offline and headless, on a throw-away user folder."""

from __future__ import annotations

import argparse
import os

import desktop_app
from desktop_app.cli.errors import EXIT_FAILED, EXIT_OK, PROG
from desktop_app.errors import one_line
from desktop_app.cli.options import model_options


def register(commands) -> None:
    test = commands.add_parser("selftest", help="check offline and headless that everything works",
                               description="Load the model, generate, upscale, open and close the window "
                                           "offscreen. Prints PASS/FAIL per check; exit 0 only if all pass.")
    model_options(test)
    test.add_argument("--no-window", action="store_true", help="skip the window check")


def selftest(args: argparse.Namespace) -> int:
    from desktop_app.paths import temporary_home

    with temporary_home():  # the window and the engine write settings, history, caches: never the user's
        return _selftest(args)


def _selftest(args: argparse.Namespace) -> int:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    results: list[tuple[str, bool | None, str]] = []

    def check(name: str, ok: bool | None, detail: str) -> bool:
        results.append((name, ok, detail))
        label = {True: "PASS", False: "FAIL", None: "SKIP"}[ok]
        print(f"{label}  {name}: {detail}", flush=True)
        return bool(ok)

    print(f"{PROG} {desktop_app.__version__} self-test (offline, headless)", flush=True)
    _run_engine_checks(args, check)
    if args.no_window:
        check("window", None, "skipped (--no-window)")
    else:
        _run_window_check(check)
    failed = [name for name, ok, _ in results if ok is False]
    summary = f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed else "all checks passed"
    print(summary, flush=True)
    return EXIT_OK if not failed else EXIT_FAILED


def _run_engine_checks(args: argparse.Namespace, check) -> None:
    import time

    try:
        import numpy as np

        from desktop_app.engine.generate import Engine
        from desktop_app.engine.request import GenerationRequest
        from desktop_app.engine.upscale import upscale_image

        engine = Engine(device=args.device)
        start = time.perf_counter()
        model = engine.load(args.model)
        check("load", True, f"{model.display_name} ({model.family}) on {engine.describe_device()} "
                            f"in {time.perf_counter() - start:.1f}s")
    except Exception as exc:  # noqa: BLE001 - a self-test reports every failure and goes on
        check("load", False, one_line(exc))
        check("generate", False, "skipped: no model")
        return
    try:
        declared = model.defaults
        request = GenerationRequest(
            prompt="a red apple", seed=0, model=args.model, width=int(declared.get("width", 64)),
            height=int(declared.get("height", 64)), steps=min(int(declared.get("steps", 20)), 20),
            guidance_scale=float(declared.get("guidance_scale", 5.0)), preview=True,
            sampler=declared.get("sampler", "DPM++ 2M"))
        from desktop_app.engine.events import Progress

        previews: list[Progress] = []

        def keep(event) -> None:  # the denoising steps (the terminal Finished is ignored: run returns it)
            if isinstance(event, Progress) and event.stage == "denoise":
                previews.append(event)

        result = engine.run(request, keep)
        image = result.images[0]
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        right_size = image.size == (request.width, request.height)
        expected = "" if right_size else f", expected {request.width}x{request.height}"
        check("generate", right_size,
              f"{image.size[0]}x{image.size[1]} in {result.timings['total']:.1f}s{expected}")
        std = float(pixels.std())
        check("not blank", bool(np.isfinite(pixels).all() and std > 2.0), f"pixel std {std:.1f} (needs > 2)")
        shown = sum(p.preview is not None for p in previews)
        check("previews", len(previews) == request.steps and shown > 0,
              f"{len(previews)} steps reported, {shown} with a preview image")
    except Exception as exc:  # noqa: BLE001
        check("generate", False, one_line(exc))
        return
    if model.upscaler is None:
        check("upscale", None, "the model has no embedded upscaler")
        return
    try:
        big = upscale_image(model.upscaler, image)
        scale = model.upscaler.scale
        ok = big.size == (image.width * scale, image.height * scale)
        check("upscale", ok, f"{image.width}x{image.height} -> {big.width}x{big.height} ({scale}x)")
    except Exception as exc:  # noqa: BLE001
        check("upscale", False, one_line(exc))


def _run_window_check(check) -> None:
    try:
        from desktop_app.gui.app import selftest_window
    except ImportError as exc:
        check("window", False, f"the window module is missing: {exc}")
        return
    try:
        ok, detail = selftest_window()
    except Exception as exc:  # noqa: BLE001
        ok, detail = False, one_line(exc)
    check("window", bool(ok), detail)


run = selftest  # the command's entry point, as in every command module
