"""``desktop-app explain``: how an image came from the words, as a report (issue 18): DIR/index.html,
DIR/report.pdf, the figures as PNG and the numbers behind them (tokens.json, similarity.json, nearest.json,
schedule.json, frames.json, frames.npz)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from desktop_app.cli.errors import EXIT_OK, BadInput
from desktop_app.cli.progress import Reporter


def register(commands) -> None:
    parser = commands.add_parser(
        "explain", help="write a report of how an image is made from a prompt (HTML, PDF, figures, numbers)",
        description="Generate one image for PROMPT and write, into DIR, a report of how it was made: the tokens "
                    "and their embeddings, texts and images matched by their encodings and the nearest training "
                    "images, the seed's noise, the noise schedule and forward diffusion, the denoising frames, "
                    "guidance compared, where the words landed, the latent and the upscaler. DIR/index.html is "
                    "one self-contained page; DIR/report.pdf has a titled page per section.")
    parser.add_argument("prompt", help="what to draw")
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to write the report into")
    parser.add_argument("--seed", type=int, help="seed (default: a random one, reported)")
    parser.add_argument("--guidance", type=float, help="guidance (CFG) scale (default: the model's)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--model", default="default",
                        help='"default" (the embedded model), a library name or a diffusers model folder '
                             "(Stable Diffusion 1.x, 2.x, XL)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    parser.add_argument("--compare", action="append", default=[], metavar="TEXT",
                        help="a text to match against the images in section 2, beside the prompt (repeatable; "
                             "default: the history's most recent other prompts)")
    parser.add_argument("--x", metavar="AXIS", help="a compare grid in section 6, its columns: NAME=V1,V2,... "
                                                    "(as desktop-app compare --x)")
    parser.add_argument("--y", metavar="AXIS", help="with --x: the compare grid's rows")


def explain(args: argparse.Namespace) -> int:
    import secrets

    from desktop_app.engine.request import MAX_SEED, GenerationRequest
    from desktop_app.errors import printable
    from desktop_app.models.model_folder import check_folder
    from desktop_app.models.resolve import DECLARED_FIELDS, check_family, resolve
    from desktop_app.studio.outputs import OutputProblem, check_output

    began = time.perf_counter()
    # 1. what can be refused before torch loads: the prompt, the folder, the request, the model
    if not args.prompt.strip():
        raise BadInput("the prompt is empty: the report explains how an image follows a prompt, so give one")
    folder = Path(args.out).expanduser()
    try:
        check_output(folder / "index.html", args.out)  # makes the folder, and checks that it takes files
    except OutputProblem as exc:
        raise BadInput(str(exc)) from None
    options = {"steps": args.steps, "guidance_scale": args.guidance}
    options = {name: value for name, value in options.items() if value is not None}
    seed = secrets.randbelow(MAX_SEED + 1) if args.seed is None else args.seed
    request = GenerationRequest(prompt=args.prompt, seed=seed, model=args.model, preview=False, **options)
    request = resolve(request, given=set(options) & set(DECLARED_FIELDS))
    check_folder(request.model)
    check_family(request)
    from desktop_app.engine.compare_grid import parse_axis

    if args.y and not args.x:
        raise BadInput("--y gives the compare grid's rows; give its columns with --x too")
    compare = (parse_axis(args.x, "--x"), parse_axis(args.y, "--y") if args.y else None) if args.x else None
    if compare is not None:
        from desktop_app.engine.compare_grid import plan

        plan(request, *compare, fields=("--x", "--y"))

    # 2. the run and its numbers (torch loads here)
    from desktop_app.engine.explain import explain as gather
    from desktop_app.engine.generate import Engine

    reporter = Reporter(sys.stderr)
    others = [text for text in args.compare if text.strip()] or recent_prompts(request.prompt)
    data = gather(request, Engine(device=args.device, preview_share=None), emit=reporter, other_prompts=others,
                  compare=compare)
    reporter.close()

    # 3. the report
    from desktop_app.studio.explain_report import write_report

    written = write_report(data, folder)
    seconds = time.perf_counter() - began
    figures = sum(path.suffix == ".png" for path in written)
    print(f"wrote {printable(folder / 'index.html', 4096)} and report.pdf, {figures} figures and their numbers "
          f"(seed {data['request']['seed']}) in {seconds:.1f} s")
    return EXIT_OK


def recent_prompts(prompt: str, count: int = 3) -> list[str]:
    """The history's most recent prompts other than ``prompt`` (none when the history cannot be read: the report
    does not need it)."""
    from desktop_app.studio.history import History, default_db_path

    try:
        if not default_db_path().is_file():  # no history yet: none is made for this
            return []
        history = History()
        try:
            entries = history.entries(limit=50)
        finally:
            history.close()
    except Exception:  # a damaged or locked history costs only the other prompts
        return []
    found: list[str] = []
    for entry in entries:
        text = (entry.prompt or "").strip()
        if text and text != prompt.strip() and text not in found:
            found.append(text)
    return found[:count]


run = explain  # the command's entry point, as in every command module
