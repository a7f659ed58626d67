"""``desktop-app generate``: prompt in, PNG files out, each with its recipe and a history row."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from desktop_app.cli import lora as cli_lora
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
    request = resolve(request, given=given & set(DECLARED_FIELDS))
    check_folder(request.model)  # a missing model is reported before torch loads
    from desktop_app.models import components

    # a transformer file's text encoders and VAE: a complete diffusers folder of its family, found now
    found = components.check_model(request.model, args.components)
    if found is not None:
        components.use_for_run(request.model, found)
    check_family(request)  # and a family this version does not run, or a negative prompt it takes none of
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
        engine = Engine(device=args.device, preview_share=None) if recorder else Engine(device=args.device)
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
                "init_fit": "--init-fit"}


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


def image_request(args: argparse.Namespace, **values):
    """The GenerationRequest with the start image's options; their problems named by flag, in one line."""
    from desktop_app.engine.request import GenerationRequest
    from desktop_app.errors import RequestError

    for flag, given in (("--strength", args.strength), ("--mask", args.mask), ("--mask-blur", args.mask_blur),
                        ("--init-fit", args.init_fit)):
        if given is not None and args.init is None:
            raise BadInput(f"{flag} needs --init (the start image)")
    if args.mask_blur is not None and args.mask is None:
        raise BadInput("--mask-blur needs --mask (the area to repaint)")
    image = {"init_image": _expanded(args.init), "strength": args.strength, "mask": _expanded(args.mask),
             "mask_blur": args.mask_blur, "init_fit": args.init_fit}
    try:
        return GenerationRequest(**values, **{name: value for name, value in image.items() if value is not None})
    except RequestError as exc:
        if exc.field in _IMAGE_FLAGS:
            raise BadInput(f"{_IMAGE_FLAGS[exc.field]}{str(exc).removeprefix(exc.field + ':')}") from None
        raise


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
