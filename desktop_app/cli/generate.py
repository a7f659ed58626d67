"""``desktop-app generate``: prompt in, PNG files out, each with its recipe and a history row."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from desktop_app.cli import lora as cli_lora
from desktop_app.cli import image_prompt_options
from desktop_app.cli import studio as cli_studio
from desktop_app.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, PROG, BadInput
from desktop_app.cli.options import model_options
from desktop_app.cli.progress import Reporter


def register(commands) -> None:
    from desktop_app.engine.request import SAMPLERS

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
    model_options(gen)
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
    gen.add_argument("--components", metavar="FOLDER",
                     help="a transformer file (Flux, SD3 ... .safetensors or .gguf): the diffusers folder of its "
                          "family whose text encoders, tokenizers and VAE it runs with (default: the one named "
                          "with `models components FAMILY FOLDER`)")
    add_image_options(gen)
    image_prompt_options.add_options(gen)
    gen.add_argument("--weights", choices=("auto", "full", "fp8"), default="auto",
                     help="how the denoiser's weights are stored: fp8 (float8, half the memory of bf16, cast up "
                          "layer by layer as it runs; CUDA and the CPU), full, or auto (fp8 on a GPU the model "
                          "fits only so; the default)")
    gen.add_argument("--no-preview", action="store_true", help="skip the per-step previews (not shown here)")
    gen.add_argument("--json", action="store_true", help="print one JSON object: files, seeds, timings, ...")
    cli_studio.add_options(gen)  # --timeline (plain PIL)
    cli_lora.add_options(gen)


def generate(args: argparse.Namespace) -> int:
    import secrets

    from desktop_app.cli import lora as cli_lora
    from desktop_app.engine.request import MAX_SEED
    from desktop_app.models.model_folder import check_folder
    from desktop_app.models.resolve import check_family
    from desktop_app.models.resolve import DECLARED_FIELDS, resolve

    # 1. the request: the options given, then (the shared resolve step) library names become paths and every
    # field the user left out takes what the model declares (few-step defaults for Turbo, LCM, an LCM-LoRA)
    if args.refiner_switch is not None and args.refiner is None:
        raise BadInput("--refiner-switch needs --refiner (the SDXL refiner that takes over at the switch)")
    options = {"width": args.width, "height": args.height, "steps": args.steps, "guidance_scale": args.guidance,
               "sampler": args.sampler, "upscale": args.upscale, "refiner_switch": args.refiner_switch}
    options = {name: value for name, value in options.items() if value is not None}
    given = set(options) | ({"upscale"} if args.no_upscale else set())  # --no-upscale: None, even if declared
    # the seed is drawn here when not given, so the file names are known before the (long) run
    seed = secrets.randbelow(MAX_SEED + 1) if args.seed is None else args.seed
    request = image_request(args, prompt=args.prompt, negative_prompt=args.negative, seed=seed,
                            batch_size=args.batch, model=args.model, refiner=args.refiner,
                            hires_scale=args.hires_scale, hires_strength=args.hires_strength,
                            preview=bool(args.timeline), loras=cli_lora.loras_from_args(args), **options)
    if request.outpaint is not None:  # the extended picture's size is the start image's plus the borders
        given |= {"width", "height"}
    request = resolve(request, given=given & set(DECLARED_FIELDS))
    check_folder(request.model)  # a missing model is reported before torch loads
    from desktop_app.models import components

    # a transformer file's text encoders and VAE: a complete diffusers folder of its family, found now
    found = components.check_model(request.model, args.components)
    if found is not None:
        components.use_for_run(request.model, found)
    check_family(request)  # and a family this version does not run, or a negative prompt it takes none of
    check_controls(request)  # ControlNets that are not ControlNets, or for another family: before torch loads
    image_prompt_options.check(request)  # an IP-Adapter that is not one, or for another family: the same
    if request.refiner is not None:
        check_folder(request.refiner)
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

    from desktop_app.cli import studio as cli_studio

    # the history (optional: a damaged or locked one costs a warning); what a crash left is recovered here
    history = cli_studio.open_history(PROG, {target.parent for target in targets})
    try:
        # 2. the engine (torch loads here)
        from desktop_app.engine.generate import Engine

        reporter = Reporter(sys.stderr)
        # --timeline: a preview after every step (not paced), kept by the recorder
        recorder = cli_studio.TimelineRecorder(reporter) if args.timeline else None
        engine = (Engine(device=args.device, preview_share=None, weights=args.weights) if recorder
                  else Engine(device=args.device, weights=args.weights))
        result = engine.run(request, recorder or reporter)
        reporter.close()
        if result is None:
            print(f"{PROG}: cancelled", file=sys.stderr)
            return EXIT_INTERRUPTED

        # 3. the files (each with its recipe), then their history rows (the window's gallery lists them)
        kept = cli_studio.keep_files(result, targets, PROG, history)
    finally:
        if found is not None:
            components.end_run(request.model)
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
                          "device": result.recipe.device, "dtype": result.recipe.dtype,
                          "model": result.recipe.model_name, "size": result.recipe.output_size,
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


# ---- image to image and inpainting (issue 17) ---------------------------------------------------------------

_IMAGE_FLAGS = {"init_image": "--init", "strength": "--strength", "mask": "--mask", "mask_blur": "--mask-blur",
                "init_fit": "--init-fit", "outpaint": "--outpaint", "controls": "--control"}


def add_image_options(gen) -> None:
    from desktop_app.engine.request import DEFAULT_MASK_BLUR, DEFAULT_STRENGTH, INIT_FITS

    gen.add_argument("--init", metavar="IMAGE",
                     help="image to image: start from this image (fitted to the size: see --init-fit)")
    gen.add_argument("--strength", type=float, metavar="S",
                     help=f"with --init: how much of the schedule re-draws it, above 0 and up to 1 (default "
                          f"{DEFAULT_STRENGTH:g}; 1 keeps only its layout's trace)")
    gen.add_argument("--mask", metavar="MASK",
                     help="with --init: inpaint where this image is white; elsewhere the start image's pixels "
                          "are kept exactly")
    gen.add_argument("--mask-blur", type=int, metavar="PX",
                     help=f"with --mask: feather the mask outward over PX pixels (default {DEFAULT_MASK_BLUR})")
    gen.add_argument("--init-fit", choices=INIT_FITS,
                     help="with --init: a start image of another shape is scaled to cover the size and its "
                          "overhang cut (crop, the default) or scaled to the size (stretch)")
    gen.add_argument("--outpaint", metavar="L,T,R,B",
                     help="with --init: outpaint, adding L, T, R and B pixels on the left, top, right and bottom "
                          "(one number: the same on every side) and drawing the new area (strength 1 unless "
                          "--strength says; the seam feathered by --mask-blur). Without --width/--height the "
                          "start image keeps its size and the picture is rounded up to the model's multiple "
                          "(the extra pixels go right and bottom); with them, they are the whole picture's size")
    add_control_options(gen)


def image_request(args: argparse.Namespace, **values):
    """The GenerationRequest with the start image's options; their problems named by flag, in one line."""
    from desktop_app.engine.request import GenerationRequest
    from desktop_app.errors import RequestError

    outpaint = getattr(args, "outpaint", None)
    for flag, given in (("--strength", args.strength), ("--mask", args.mask), ("--mask-blur", args.mask_blur),
                        ("--init-fit", args.init_fit), ("--outpaint", outpaint)):
        if given is not None and args.init is None:
            raise BadInput(f"{flag} needs --init (the start image)")
    if args.mask_blur is not None and args.mask is None and outpaint is None:
        raise BadInput("--mask-blur needs --mask (the area to repaint) or --outpaint (the seam to blend)")
    if outpaint is not None and args.mask is not None:
        raise BadInput("--outpaint and --mask cannot be combined: outpainting paints the new area only (inpaint "
                       "the result afterwards)")
    image = {"init_image": _expanded(args.init), "strength": args.strength, "mask": _expanded(args.mask),
             "mask_blur": args.mask_blur, "init_fit": args.init_fit}
    if outpaint is not None:
        values = dict(values, **outpaint_values(outpaint, image["init_image"], values))
        if args.strength is None:
            from desktop_app.engine.request import OUTPAINT_STRENGTH

            image["strength"] = OUTPAINT_STRENGTH
    if getattr(args, "control_pre", None) is not None and not getattr(args, "control", None):
        raise BadInput("--control-pre needs --control (the ControlNet whose image it makes)")
    controls = [control_choice(text, args.control_pre or "none") for text in getattr(args, "control", None) or ()]
    if controls:
        values = dict(values, controls=tuple(controls))
    values = dict(values, **image_prompt_options.values(args))
    try:
        return GenerationRequest(**values, **{name: value for name, value in image.items() if value is not None})
    except RequestError as exc:
        flags = {**_IMAGE_FLAGS, **image_prompt_options.FLAGS}
        if exc.field in flags:
            raise BadInput(f"{flags[exc.field]}{str(exc).removeprefix(exc.field + ':')}") from None
        raise


def add_control_options(gen) -> None:
    from desktop_app.engine.request import CONTROL_PREPROCESSORS, MAX_CONTROL_WEIGHT

    gen.add_argument("--control", action="append", metavar="NAME_OR_PATH:IMAGE[:WEIGHT[:START:END]]",
                     help="a ControlNet (a diffusers ControlNet folder, or a folder's name in the models folder's "
                          "controlnet/) steering the picture with IMAGE; WEIGHT from 0 to "
                          f"{MAX_CONTROL_WEIGHT:g} (default 1), START and END the share of the steps it steers "
                          "(default 0 and 1). Repeat for several. With --init (and --mask, --outpaint) on SD 1.x, "
                          "2.x and SDXL models")
    gen.add_argument("--control-pre", choices=CONTROL_PREPROCESSORS,
                     help="with --control: make the control images from the images given: canny (OpenCV's edges), "
                          "lineart (dark strokes as white lines), depth (a depth map, near white, by the depth "
                          "model in <user folder>/models/preprocessors/depth/), pose (an OpenPose-style "
                          "skeleton by the ViTPose model in .../preprocessors/pose/) or none (the images as "
                          "they are, the default)")


def control_choice(text: str, preprocessor: str):
    """A ControlChoice from "NAME_OR_PATH:IMAGE[:WEIGHT[:START:END]]" (a name becomes its folder's path). Paths
    may hold colons: the numbers are read from the right, then the rest is split where the image file exists."""
    from desktop_app.engine.request import ControlChoice
    from desktop_app.errors import ModelError, RequestError, printable
    from desktop_app.models.controlnet_folder import resolve_controlnet

    parts = str(text).split(":")
    numbers: list[float] = []
    for count in (3, 1):
        tail = parts[-count:]
        if len(parts) > count + 1 and all(_is_float(part) for part in tail):
            numbers, parts = [float(part) for part in tail], parts[:-count]
            break
    splits = [(":".join(parts[:k]), ":".join(parts[k:])) for k in range(1, len(parts))]
    chosen = next((pair for pair in splits if Path(pair[1]).expanduser().is_file()), splits[0] if splits else None)
    if chosen is None or not chosen[0].strip() or not chosen[1].strip():
        raise BadInput(f"--control {printable(text, 200)}: give NAME_OR_PATH:IMAGE[:WEIGHT[:START:END]]")
    try:
        model = str(resolve_controlnet(chosen[0]))
    except ModelError as exc:
        raise BadInput(f"--control: {exc}") from None
    values = dict(zip(("weight", "start", "end"), numbers))
    try:
        return ControlChoice(model, _expanded(chosen[1]), preprocessor=preprocessor, **values)
    except RequestError as exc:
        raise BadInput(f"--control{str(exc).removeprefix(exc.field + ':')}") from None


def check_controls(request) -> None:
    """The request's ControlNets read and checked against its model, torch-free (BadInput, one line)."""
    if not request.controls:
        return
    from desktop_app.errors import ModelError
    from desktop_app.models.controlnet_folder import check_controls as check
    from desktop_app.models.model_folder import display_name

    try:
        check(request.controls, request.model, display_name(request.model))
    except ModelError as exc:
        raise BadInput(f"--control: {exc}") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def outpaint_values(text: str, start: str, values: dict) -> dict:
    """The request's outpaint (from "L,T,R,B", or "N" for every side) and, where --width or --height was not
    given, that side of the picture: the start image's own plus the borders, rounded up to the model's multiple
    (the extra pixels added to the right or bottom border). BadInput names --outpaint (or --init) in one line."""
    from desktop_app.engine.request import MAX_OUTPAINT, image_size, outpaint_size

    parts = [part.strip() for part in str(text).split(",")]
    parts = parts * 4 if len(parts) == 1 else parts
    if len(parts) != 4 or not all(part.isdigit() and int(part) <= MAX_OUTPAINT for part in parts):
        raise BadInput(f"--outpaint {text!r}: give the pixels to add as L,T,R,B (or one number for every side), "
                       f"each a whole number from 0 to {MAX_OUTPAINT}")
    outpaint = tuple(int(part) for part in parts)
    if not any(outpaint):
        raise BadInput(f"--outpaint {text}: adds no pixel; give at least one side above 0")
    if "width" in values and "height" in values:
        return {"outpaint": outpaint}
    from desktop_app.engine.request import _check_image_file
    from desktop_app.errors import RequestError, printable

    try:
        _check_image_file("init_image", start)
        size = image_size(start)
    except RequestError as exc:
        raise BadInput(f"--init{str(exc).removeprefix(exc.field + ':')}") from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"--init {printable(start, 200)} cannot be read as an image "
                       f"({type(exc).__name__})") from None
    multiple, largest = _size_rules(str(values.get("model") or ""))
    width, height, extended = outpaint_size(size, outpaint, multiple)
    found = {"width": width, "height": height}
    if "width" in values:  # a given side is the picture's: that side's borders stay as asked
        found, extended = {"height": height}, (outpaint[0], extended[1], outpaint[2], extended[3])
    elif "height" in values:
        found, extended = {"width": width}, (extended[0], outpaint[1], extended[2], outpaint[3])
    for name, value in found.items():
        if value > largest:
            raise BadInput(f"--outpaint {text}: the start image {size[0]}x{size[1]} extended is {value} pixels "
                           f"in {name}; the model draws up to {largest}: give --width and --height (the whole "
                           "picture; the start image is fitted into it less the borders)")
    return {**found, "outpaint": extended}


def _size_rules(model: str) -> tuple[int, int]:
    """(the multiple a side must be, the largest side) for ``model`` (a library name or a path), torch-free: 16
    for the families whose latents are packed 2x2 (and a model of no known family), else 8; the folder's declared
    largest size, else the request's."""
    from desktop_app.engine.request import MAX_SIZE
    from desktop_app.errors import ModelError
    from desktop_app.models import families, model_folder
    from desktop_app.models.model_library import resolve_model
    from desktop_app.resources import DEFAULT_MODEL

    try:
        path = model_folder.check_folder(str(resolve_model(model or DEFAULT_MODEL)))
        if path.is_file():
            from desktop_app.models import model_files

            family, index = model_files.inspect(path).family or "unknown", {}
        else:
            index = model_folder.read_index(path)
            family, _ = families.folder_family(path, index)
    except ModelError:
        return 16, MAX_SIZE  # the loader reports the model properly; 16 is a multiple of 8 too
    declared = families.FAMILIES.get(family)
    multiple = 8 if family == "embedded" or (declared is not None and not declared.packed) else 16
    return multiple, min(MAX_SIZE, int(model_folder.limits(index).get("max_size", MAX_SIZE)))


def _expanded(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser())


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


run = generate  # the command's entry point, as in every command module
