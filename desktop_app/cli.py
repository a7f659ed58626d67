"""The command line: ``desktop-app`` opens the window; ``generate`` and ``selftest`` run the engine alone.

Exit codes: 0 done; 2 bad input (a request field, a missing or damaged model, a bad option), with one line on
stderr; 1 anything else, with one line on stderr and the traceback in the logs folder; 130 interrupted.
torch is imported only inside the commands, so ``desktop-app --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from datetime import datetime
from pathlib import Path

import desktop_app

PROG = "desktop-app"
COMMANDS = ("generate", "selftest", "info", "upscale", "bench", "train", "models")
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class BadInput(Exception):
    """A command-line mistake found after parsing (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + error
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from desktop_app.engine.request import SAMPLERS

    parser = _Parser(prog=PROG, description="Text to image on your own machine, offline. "
                                            "Without a command, opens the window.",
                     epilog=f"{PROG} [--model NAME_OR_FOLDER] [--device DEVICE] opens the window on a model.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {desktop_app.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    gen = commands.add_parser("generate", help="generate image(s) from a prompt and write PNG files",
                              description="Generate image(s) from a prompt. Sizes, steps, guidance, sampler "
                                          "and upscaling default to what the model declares.")
    gen.add_argument("prompt", help="what to draw")
    gen.add_argument("--out", required=True,
                     help="PNG file to write; with --batch N: PATH-1.png ... PATH-N.png, or into PATH when "
                          "it is a folder (exists, or ends with /)")
    gen.add_argument("--negative", default="", help="what to avoid")
    gen.add_argument("--width", type=int, help="image width in pixels (before upscaling)")
    gen.add_argument("--height", type=int, help="image height in pixels (before upscaling)")
    gen.add_argument("--steps", type=int, help="denoising steps")
    gen.add_argument("--guidance", type=float, help="guidance (CFG) scale")
    gen.add_argument("--seed", type=int, help="seed (default: a random one, reported)")
    gen.add_argument("--sampler", choices=SAMPLERS, help="sampler")
    gen.add_argument("--batch", type=int, default=1, help="number of images (seeds seed, seed+1, ...)")
    _model_options(gen)
    upscale = gen.add_mutually_exclusive_group()
    upscale.add_argument("--upscale", nargs="?", const="default", metavar="MODEL",
                         help='upscale the result: "default" (the model\'s own upscaler), an upscaler file '
                              '(.safetensors or .pth), or a file name in the upscalers folder')
    upscale.add_argument("--no-upscale", action="store_true", help="do not upscale, even if the model would")
    gen.add_argument("--hires-scale", type=float, metavar="X",
                     help="hires fix (Stable Diffusion models): enlarge X times (by --upscale MODEL, else "
                          "Lanczos), then re-draw detail with a short img2img pass")
    gen.add_argument("--hires-strength", type=float, default=0.5, metavar="S",
                     help="denoising strength of the hires pass, 0 to 1 (default 0.5)")
    gen.add_argument("--refiner", metavar="NAME_OR_PATH",
                     help="SDXL base models: an SDXL refiner (library name, diffusers folder or .safetensors "
                          "file) that finishes the last part of the steps")
    gen.add_argument("--refiner-switch", type=float, metavar="X",
                     help="with --refiner: the share of the steps the base model runs, between 0 and 1 "
                          "(default 0.8)")
    gen.add_argument("--no-preview", action="store_true", help="skip the per-step previews (not shown here)")
    gen.add_argument("--json", action="store_true", help="print one JSON object: files, seeds, timings, ...")
    from desktop_app import cli_studio  # --timeline (plain PIL)

    cli_studio.add_options(gen)
    from desktop_app import cli_lora

    cli_lora.add_options(gen)

    up = commands.add_parser("upscale", help="upscale an image file with a super-resolution model",
                             description="Upscale INPUT into OUTPUT with a super-resolution model, tile by tile "
                                         "(memory stays bounded). Alpha, greyscale, palette and 16-bit images "
                                         "and EXIF rotation are handled; the model's output may be at most 64 "
                                         "megapixels.")
    up.add_argument("input", help="the image to upscale (PNG, JPEG, WebP, BMP, TIFF, GIF ...)")
    up.add_argument("output", help="the file to write (.png keeps a recipe; .jpg, .webp, .tif also work), or a "
                                   "folder (exists, or ends with /): INPUT-NAME-xSCALE.png in it")
    up.add_argument("--model", default="default",
                    help='"default" (the embedded model\'s 4x upscaler), an upscaler file (.safetensors or .pth '
                         "state dict), or a file name in the upscalers folder")
    up.add_argument("--scale", type=float, metavar="N",
                    help="enlargement (default: the model's own, 4 for the embedded one); smaller than the "
                         "model's own shrinks its result with Lanczos; larger is refused")
    up.add_argument("--tile", type=int, metavar="PIXELS",
                    help="tile side in input pixels, 64 to 4096 (default 512); 0 for no tiles")
    up.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    up.add_argument("--json", action="store_true",
                    help="print one JSON object: file, sizes, scale, upscaler, tiles, timings, ...")

    info = commands.add_parser("info", help="print the recipe stored in an image",
                               description="Print the recipe in a PNG, JPEG or WebP: ours, or the "
                                           "AUTOMATIC1111-style 'parameters' text other tools write (in EXIF "
                                           "UserComment for JPEG and WebP). Exit 2 when the file is not "
                                           "an image or holds no recipe.")
    info.add_argument("image", help="a PNG, JPEG or WebP file")
    info.add_argument("--json", action="store_true",
                      help="print one JSON object: source, request, info, parameters")

    test = commands.add_parser("selftest", help="check offline and headless that everything works",
                               description="Load the model, generate, upscale, open and close the window "
                                           "offscreen. Prints PASS/FAIL per check; exit 0 only if all pass.")
    _model_options(test)
    test.add_argument("--no-window", action="store_true", help="skip the window check")

    bench = commands.add_parser("bench", help="measure speed, responsiveness, start-up and memory",
                                description="Benchmarks (medians and spread over several runs): engine overhead "
                                            "against bare diffusers, preview cost, window responsiveness, "
                                            "start-up, throughput against the device's matmul rate, memory, "
                                            "and on CUDA the SD1.5/SDXL section. Takes minutes; --quick is a "
                                            "short plumbing check.")
    _model_options(bench)
    bench.add_argument("--quick", action="store_true", help="fewer runs and steps (a check, not a measurement)")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    bench.add_argument("--out", metavar="FILE", help="also write the JSON report to FILE")
    bench.add_argument("--only", metavar="SECTIONS",
                       help="comma-separated sections to run (overhead, previews, responsiveness, startup, "
                            "throughput, memory, training, gpu); the others keep their keys, marked not run")
    from desktop_app import cli_models, cli_train

    cli_train.register(commands)
    cli_models.register(commands)
    return parser


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default",
                        help='"default" (the embedded model) or a diffusers model folder')
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # offline by default: nothing here should ever reach a hub unless the user opts in
    if "HF_HUB_OFFLINE" not in os.environ:  # `models download` lifts this default, never the user's own setting
        os.environ["HF_HUB_OFFLINE"] = os.environ["DESKTOP_APP_DEFAULT_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        return open_window(argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            return generate(args)
        if args.command == "info":
            return info(args)
        if args.command == "upscale":
            return upscale(args)
        if args.command == "bench":
            return bench(args)
        if args.command == "models":
            from desktop_app import cli_models

            return cli_models.run(args)
        if args.command == "train":
            from desktop_app import cli_train

            return cli_train.run(args)
        return selftest(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BadInput as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - the one place that turns every failure into an exit code
        return report_failure(exc)


def report_failure(exc: BaseException) -> int:
    from desktop_app.errors import EngineError, ModelError, RequestError

    message = " ".join(str(exc).split())
    if isinstance(exc, (RequestError, ModelError)):
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if isinstance(exc, EngineError):
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_FAILED
    log_file = log_traceback(exc)
    where = f" (details in {log_file})" if log_file else ""
    print(f"{PROG}: failed: {type(exc).__name__}: {message}{where}", file=sys.stderr)
    return EXIT_FAILED


def log_traceback(exc: BaseException) -> Path | None:
    try:
        from desktop_app.paths import logs_dir

        path = logs_dir() / "errors.log"
        with path.open("a", encoding="utf-8") as handle:
            stamp = datetime.now().isoformat(timespec="seconds")
            handle.write(f"--- {stamp} {PROG} {desktop_app.__version__}\n")
            handle.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) + "\n")
        return path
    except OSError:
        return None


# ---- the window ----------------------------------------------------------------------------------------


def display_available() -> bool:
    """False on Linux with no X11/Wayland display and no Qt platform chosen (a server, a container, ssh)."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def open_window(argv: list[str]) -> int:
    if not display_available():
        print(f"{PROG}: no display to open the window on (DISPLAY and WAYLAND_DISPLAY are not set).\n"
              f'Generate from the command line instead:  {PROG} generate "a prompt" --out image.png\n'
              f"or run the window without a screen:  QT_QPA_PLATFORM=offscreen {PROG}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from desktop_app.gui import system_libraries

    missing = system_libraries.problem()
    if missing:  # Qt would abort with its generic plugin message and a core dump
        print(f"{PROG}: {missing}", file=sys.stderr)
        return EXIT_FAILED
    try:
        from desktop_app.gui import app
    except ImportError as exc:
        print(f"{PROG}: the window cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return int(app.main(argv) or 0)


# ---- generate ------------------------------------------------------------------------------------------


def generate(args: argparse.Namespace) -> int:
    import secrets

    from desktop_app import cli_lora
    from desktop_app.models.model_folder import check_folder
    from desktop_app.models.resolve import model_defaults
    from desktop_app.engine.request import MAX_SEED, GenerationRequest
    from desktop_app.models.model_library import resolve_model

    # 1. the request: options first, then what the model declares, then the request's own defaults
    args.model = resolve_model(args.model)  # "default", a library name, or a path
    check_folder(args.model)  # a missing model is reported before torch loads
    refiner = {}
    if args.refiner is not None:
        refiner["refiner"] = resolve_model(args.refiner)
        check_folder(refiner["refiner"])
    if args.refiner_switch is not None:
        if args.refiner is None:
            raise BadInput("--refiner-switch needs --refiner (the SDXL refiner that takes over at the switch)")
        refiner["refiner_switch"] = args.refiner_switch
    from desktop_app.models.few_step import few_step_defaults

    # a few-step model (Turbo, LCM) or an LCM-LoRA: its published steps, guidance and sampler
    declared = few_step_defaults(args.model, args.lora) | model_defaults(args.model)
    values = {
        "width": args.width, "height": args.height, "steps": args.steps, "guidance_scale": args.guidance,
        "sampler": args.sampler,
    }
    for key, value in list(values.items()):
        if value is None:
            value = declared.get(key)
        if value is None:
            del values[key]
        else:
            values[key] = value
    upscale = None if args.no_upscale else (args.upscale or declared.get("upscale"))
    # the seed is drawn here when not given, so the file names are known before the (long) run
    seed = secrets.randbelow(MAX_SEED + 1) if args.seed is None else args.seed
    request = GenerationRequest(prompt=args.prompt, negative_prompt=args.negative, seed=seed,
                                batch_size=args.batch, model=args.model, upscale=upscale,
                                hires_scale=args.hires_scale, hires_strength=args.hires_strength,
                                preview=bool(args.timeline), loras=cli_lora.loras_from_args(args),
                                **refiner, **values)
    targets = output_paths(args.out, [(seed + k) % (MAX_SEED + 1) for k in range(request.batch_size)],
                           request.prompt)
    # the output place is checked (and its folder made) before minutes of work, not after them
    from desktop_app.studio.outputs import OutputProblem, check_output
    from desktop_app.errors import printable

    try:
        for target in targets:
            check_output(target, args.out if len(targets) == 1 else target)
    except OutputProblem as exc:
        raise BadInput(str(exc)) from None

    from desktop_app import cli_studio

    # the history (optional: a damaged or locked one costs a warning); what a crash left is recovered here
    history = cli_studio.open_history(PROG, {target.parent for target in targets})
    try:
        # 2. the engine (torch loads here)
        from desktop_app.engine.generate import Engine

        reporter = Reporter(sys.stderr)
        # --timeline: a preview after every step (not paced), kept by the recorder
        recorder = cli_studio.TimelineRecorder(reporter) if args.timeline else None
        engine = Engine(device=args.device, preview_share=None) if recorder else Engine(device=args.device)
        result = engine.run(request, recorder or reporter)
        reporter.close()
        if result is None:
            print(f"{PROG}: cancelled", file=sys.stderr)
            return EXIT_INTERRUPTED

        # 3. the files (each with its recipe), then their history rows (the window's gallery lists them)
        kept = cli_studio.keep_files(result, targets, PROG, history)
    finally:
        if history is not None:
            history.close()
    timeline, problem = None, None
    if recorder is not None and kept.files:
        try:
            timeline = cli_studio.write_timeline(recorder, args.timeline, result.images[0])
        except cli_studio.TimelineError as exc:
            problem = exc  # reported (exit 2) once the PNG files are listed: they are saved
    if args.json:
        print(json.dumps({"files": kept.files, "seeds": kept.seeds, "timings": result.timings,
                          "device": result.recipe["device"], "dtype": result.recipe["dtype"],
                          "model": result.recipe["model_name"], "size": result.recipe.get("output_size"),
                          "timeline": timeline, "fallback": kept.fallback, "not_written": kept.failed}))
    else:
        fallback = set(kept.fallback)
        for path, seed in zip(kept.files, kept.seeds):
            note = " (not where asked: see the error below)" if path in fallback else ""
            print(f"wrote {printable(path, 4096)} (seed {seed}){note}")
        if timeline:
            print(f"wrote {timeline['file']} ({timeline['frames']} frames)")
    sys.stdout.flush()
    failure = kept.problem()
    if failure is not None:  # a full disk mid-batch: a real failure, and the message says where they are
        print(f"{PROG}: error: {failure}", file=sys.stderr)
        return EXIT_FAILED
    if problem is not None:
        raise BadInput(f"--timeline {problem} (the images were saved)")
    return EXIT_OK


def output_paths(out: str | Path, seeds: list[int], prompt: str) -> list[Path]:
    """Where each image goes. A folder (existing, or written with a trailing /) gets prompt-seed names;
    a file gets -1, -2 ... before the extension when there are several images."""
    folder = str(out).endswith(("/", os.sep))  # Path() would drop the trailing slash
    out = Path(out).expanduser()
    if folder or out.is_dir():
        words = "-".join("".join(c if c.isalnum() else " " for c in prompt.lower()).split())[:48].strip("-")
        return [out / f"{words or 'image'}-{seed}.png" for seed in seeds]
    if out.suffix.lower() not in ("", ".png"):
        raise BadInput(f"--out {out}: images are written as PNG (which keeps the recipe); use a .png name")
    out = out.with_suffix(".png")
    if len(seeds) == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{k}{out.suffix}") for k in range(1, len(seeds) + 1)]


class Reporter:
    """Engine events on stderr: a progress bar on a terminal, plain stage lines otherwise (logs, pipes)."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._bar_open = False

    def __call__(self, event) -> None:
        kind = type(event).__name__
        if kind == "StageStarted":
            self._end_bar()
            detail = f": {event.detail}" if event.detail else ""
            self.stream.write(f"{event.stage}{detail}\n")
        elif kind == "Progress" and self.tty:
            width = 30
            done = int(width * event.step / max(event.total, 1))
            self.stream.write(f"\r  [{'#' * done}{'.' * (width - done)}] {event.step}/{event.total} "
                              f"{event.elapsed:.1f}s")
            self._bar_open = True
        self.stream.flush()

    def _end_bar(self) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False

    def close(self) -> None:
        self._end_bar()
        self.stream.flush()


# ---- upscale -------------------------------------------------------------------------------------------

UPSCALE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
                   ".tiff": "TIFF"}


def upscale(args: argparse.Namespace) -> int:
    from desktop_app.engine.upscale import DEFAULT_TILE, check_tile, open_image
    from desktop_app.errors import printable

    # 1. what can be checked before torch loads: the input, the options, the output's name
    source = Path(args.input).expanduser()
    open_image(source)  # not an image, damaged, too large: exit 2 now, not after loading torch
    tile = check_tile(DEFAULT_TILE if args.tile is None else args.tile)
    if args.scale is not None and not args.scale >= 1:
        raise BadInput(f"--scale {args.scale:g}: choose 1 or more (up to the model's own scale)")
    target = upscale_output_path(args.output)
    if not target.is_dir() and same_file(source, target):
        raise BadInput(f"{printable(args.output, 200)} is the input image: writing there would replace the "
                       "original; choose another output name")

    # 2. the engine (torch loads here)
    from desktop_app.engine.generate import Engine

    reporter = Reporter(sys.stderr)
    engine = Engine(device=args.device)
    result = engine.upscale(source, args.model, scale=args.scale, tile=tile, emit=reporter)
    reporter.close()
    if result is None:
        print(f"{PROG}: cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED

    # 3. the file (never over the input); one that cannot be written goes to the fallback folder
    image, recipe = result.images[0], result.recipe
    if target.is_dir():
        name = f"{source.stem}-x{recipe['scale']:g}"
        target = target / f"{name}.png"
        n = 1
        while same_file(source, target):
            target = target.with_name(f"{name}~{n}.png")
            n += 1
    try:
        written = save_image(image, target, recipe)
    except OSError as exc:
        from desktop_app.studio.outputs import keep_elsewhere

        reason = exc.strerror or str(exc)
        try:
            kept = keep_elsewhere(image, recipe, None, target.name)
        except OSError as again:
            print(f"{PROG}: error: could not write {printable(target, 200)} ({reason}), nor keep the image in "
                  f"a fallback folder ({again.strerror or again})", file=sys.stderr)
            return EXIT_FAILED
        print(f"wrote {printable(kept, 4096)} (not where asked: see the error below)")
        sys.stdout.flush()
        print(f"{PROG}: error: could not write {printable(target, 200)} ({reason}); the upscaled image was "
              f"written to {printable(kept, 400)} instead", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        seconds = result.timings.get("upscale") or 0.0
        rate = image.width * image.height / 1e6 / seconds if seconds else None
        print(json.dumps({"file": str(written), "input": str(source), "input_size": recipe["input_size"],
                          "output_size": recipe["output_size"], "scale": recipe["scale"],
                          "upscaler": recipe["upscaler"], "tile": recipe["tile"], "tiles": recipe["tiles"],
                          "device": recipe["device"], "dtype": recipe["dtype"], "timings": result.timings,
                          "megapixels_per_second": round(rate, 3) if rate else None}))
    else:
        size = "x".join(map(str, recipe["output_size"]))
        print(f"wrote {written} ({size}, {recipe['scale']:g}x with {recipe['upscaler']['name']})")
    return EXIT_OK


def upscale_output_path(out: str) -> Path:
    """The file to write, or the folder to write INPUT-NAME-xSCALE.png into (created when missing). Checked
    before the work: a name that is not text, a parent that is a file, a folder that cannot be written."""
    from desktop_app.studio.outputs import OutputProblem, check_output
    from desktop_app.errors import printable

    folder = str(out).endswith(("/", os.sep))
    path = Path(out).expanduser()
    try:
        if folder or path.is_dir():
            check_output(path / "upscaled.png", out, what="output")  # makes the folder
            return path
        if path.suffix.lower() not in UPSCALE_FORMATS:
            raise BadInput(f"{printable(out, 200)}: write .png (keeps the recipe), .jpg, .webp or .tif")
        return check_output(path, out, what="output")
    except OutputProblem as exc:
        raise BadInput(str(exc)) from None


def same_file(a: Path, b: Path) -> bool:
    from desktop_app.studio.outputs import same_file as same

    return same(a, b)


def save_image(image, path: Path, recipe: dict) -> Path:
    """PNG with the recipe (atomic); other formats through PIL, converted to what they can hold."""
    from PIL import Image

    fmt = UPSCALE_FORMATS[path.suffix.lower()]
    if fmt == "PNG":
        from desktop_app.studio.png_recipe import save_png

        return save_png(image, path, recipe)
    if fmt in ("JPEG", "WEBP") and image.mode == "I;16":  # 8 bits: keep the high byte (convert would clip)
        import numpy as np

        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    if fmt in ("JPEG", "WEBP") and image.mode not in ("RGB", "L", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    if fmt == "JPEG" and image.mode == "RGBA":
        image = image.convert("RGB")
    import tempfile

    from desktop_app.studio.png_recipe import TEMP_PREFIX, new_file_mode

    mode = new_file_mode(path)
    handle, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        image.save(temp, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
        os.chmod(temp, mode)  # the user's umask, not mkstemp's 0600
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


# ---- info ----------------------------------------------------------------------------------------------


def info(args: argparse.Namespace) -> int:
    from desktop_app.studio.png_recipe import NoRecipe, describe, read_recipe

    try:
        found = read_recipe(Path(args.image).expanduser())
    except NoRecipe as exc:
        raise BadInput(str(exc)) from None
    if args.json:
        print(json.dumps(found, sort_keys=True, default=str))
    else:
        print(describe(found))
    return EXIT_OK


# ---- bench ---------------------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> int:
    from desktop_app.bench import report  # lazy: the bench loads torch, and Qt in its child processes only
    from desktop_app.bench.common import Settings

    only = [name.strip() for name in (args.only or "").split(",") if name.strip()]
    unknown = sorted(set(only) - set(report.SECTIONS))
    if unknown:
        raise BadInput(f"--only: unknown section(s) {', '.join(unknown)}; choose from "
                       f"{', '.join(report.SECTIONS)}")
    from desktop_app.engine.device import choose_device

    choose_device(args.device)  # a device that is not there: exit 2 before minutes of work
    settings = Settings(model=args.model, device=args.device, quick=args.quick)
    result = report.run_all(settings, only=only or None,
                            progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.out:
        report.write(result, Path(args.out).expanduser())
    print(json.dumps(result) if args.json else report.format_table(result))
    return EXIT_OK


# ---- selftest ------------------------------------------------------------------------------------------


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
        check("load", False, _one_line(exc))
        check("generate", False, "skipped: no model")
        return
    try:
        declared = model.defaults
        request = GenerationRequest(
            prompt="a red apple", seed=0, model=args.model, width=int(declared.get("width", 64)),
            height=int(declared.get("height", 64)), steps=min(int(declared.get("steps", 20)), 20),
            guidance_scale=float(declared.get("guidance_scale", 5.0)), preview=True,
            sampler=declared.get("sampler", "DPM++ 2M"))
        previews = []
        result = engine.run(request, lambda e: previews.append(e) if type(e).__name__ == "Progress" else None)
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
        check("generate", False, _one_line(exc))
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
        check("upscale", False, _one_line(exc))


def _run_window_check(check) -> None:
    try:
        from desktop_app.gui.app import selftest_window
    except ImportError as exc:
        check("window", False, f"the window module is missing: {exc}")
        return
    try:
        ok, detail = selftest_window()
    except Exception as exc:  # noqa: BLE001
        ok, detail = False, _one_line(exc)
    check("window", bool(ok), detail)


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
