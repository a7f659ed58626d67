"""``desktop-app compare``: the compare grid (the X/Y plot of other studios): one prompt made over every pair of
values of two settings, written as one labelled PNG (engine/compare_grid.py makes the cells)."""

from __future__ import annotations

import argparse
import sys
import time

from desktop_app.cli import lora as cli_lora
from desktop_app.cli.errors import EXIT_OK, BadInput
from desktop_app.cli.options import model_options
from desktop_app.cli.progress import Reporter

AXIS_HELP = ("NAME=V1,V2,... with NAME one of guidance, steps, sampler, seed, lora (the first LoRA's weight), "
             "negative, prompt (search and replace: the first value is the piece of the prompt the others "
             "replace); quote a value that holds a comma")


def register(commands) -> None:
    from desktop_app.engine.request import SAMPLERS

    parser = commands.add_parser(
        "compare", help="make a prompt over the values of one or two settings, as one labelled grid PNG",
        description="Make PROMPT once for every pair of values of two settings (the X/Y plot), everything else "
                    "kept, and write the pictures as one labelled grid, e.g. --x guidance=3,7,12 --y "
                    "steps=10,20.")
    parser.add_argument("prompt", help="what to draw")
    parser.add_argument("--x", required=True, metavar="AXIS", help=f"the columns: {AXIS_HELP}")
    parser.add_argument("--y", metavar="AXIS", help="the rows (optional), written as --x")
    parser.add_argument("--out", required=True, help="the grid's PNG file")
    parser.add_argument("--negative", default="", help="what to avoid")
    parser.add_argument("--width", type=int, help="image width in pixels")
    parser.add_argument("--height", type=int, help="image height in pixels")
    parser.add_argument("--steps", type=int, help="denoising steps")
    parser.add_argument("--guidance", type=float, help="guidance (CFG) scale")
    parser.add_argument("--seed", type=int, help="seed of every cell (default: a random one, reported)")
    parser.add_argument("--sampler", choices=SAMPLERS, help="sampler")
    model_options(parser)
    cli_lora.add_options(parser)


def compare(args: argparse.Namespace) -> int:
    import secrets

    from desktop_app.engine.compare_grid import parse_axis, plan
    from desktop_app.engine.request import MAX_SEED, GenerationRequest
    from desktop_app.errors import printable
    from desktop_app.models.model_folder import check_folder
    from desktop_app.models.resolve import DECLARED_FIELDS, check_family, resolve
    from desktop_app.studio.outputs import OutputProblem, check_output

    began = time.perf_counter()
    # 1. the axes, the request and every cell's request, the output place: all checked before torch loads
    x = parse_axis(args.x, "--x")
    y = parse_axis(args.y, "--y") if args.y else None
    options = {"width": args.width, "height": args.height, "steps": args.steps, "guidance_scale": args.guidance,
               "sampler": args.sampler}
    options = {name: value for name, value in options.items() if value is not None}
    seed = secrets.randbelow(MAX_SEED + 1) if args.seed is None else args.seed
    request = GenerationRequest(prompt=args.prompt, negative_prompt=args.negative, seed=seed, model=args.model,
                                loras=cli_lora.loras_from_args(args), preview=False, upscale=None, **options)
    request = resolve(request, given=(set(options) | {"upscale"}) & set(DECLARED_FIELDS))
    check_folder(request.model)
    check_family(request)
    cells = plan(request, x, y, ("--x", "--y"))
    try:
        out = check_output(args.out, args.out)
    except OutputProblem as exc:
        raise BadInput(str(exc)) from None

    # 2. the cells (torch loads here)
    from desktop_app.engine.compare_grid import run_grid
    from desktop_app.engine.generate import Engine

    reporter = Reporter(sys.stderr)
    try:
        grid = run_grid(Engine(device=args.device, preview_share=None), request, x, y, emit=reporter)
    finally:
        reporter.close()

    # 3. the grid
    from desktop_app.studio.explain_report import compare_figure
    from desktop_app.studio.outputs import save_signed

    picture = compare_figure(grid, seed)
    save_signed(picture, out, "PNG")
    count = sum(len(row) for row in cells)
    print(f"wrote {printable(out, 4096)}: {count} images, {x.name}"
          + (f" x {y.name}" if y else "") + f", seed {seed}, in {time.perf_counter() - began:.1f} s")
    return EXIT_OK


run = compare  # the command's entry point, as in every command module
