"""``desktop-app edit IMAGE INSTRUCTION --model NAME_OR_PATH --out PATH``: an image changed by an instruction
("make it night") with an edit model (FLUX.1 Kontext, Qwen-Image-Edit, FLUX.2 [klein]), written as a PNG with
its recipe and a history row. Everything that can be checked is checked before torch loads: the image, the
instruction, the model (one that cannot edit is named with its family and the models that can), the output
place."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from desktop_app.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, PROG, BadInput
from desktop_app.cli.progress import Reporter

FLAGS = {"image": "IMAGE", "instruction": "INSTRUCTION", "model": "--model", "seed": "--seed", "steps": "--steps",
         "guidance_scale": "--guidance"}


def register(commands) -> None:
    edit = commands.add_parser(
        "edit", help="change an image by an instruction with an edit model and write a PNG file",
        description="Change IMAGE as INSTRUCTION says (\"make it night\") with an edit model: FLUX.1 Kontext, "
                    "Qwen-Image-Edit (or its Plus) or FLUX.2 [klein]. The result keeps the image's shape, at "
                    "most one megapixel; steps and guidance default to what the model declares.")
    edit.add_argument("image", help="the image to change (PNG, JPEG, WebP ...)")
    edit.add_argument("instruction", help='what to change, e.g. "make it night"')
    edit.add_argument("--model", required=True, metavar="NAME_OR_PATH",
                      help="an edit model: a library name, a diffusers folder, or a transformer file")
    edit.add_argument("--out", required=True, help="the PNG file to write, or a folder (exists, or ends with /)")
    edit.add_argument("--seed", type=int, help="seed (default: a random one, reported)")
    edit.add_argument("--steps", type=int, help="denoising steps")
    edit.add_argument("--guidance", type=float, help="guidance scale")
    edit.add_argument("--components", metavar="FOLDER",
                      help="a transformer file: the diffusers folder of its family whose text encoders, "
                           "tokenizers and VAE it runs with")
    edit.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    edit.add_argument("--json", action="store_true", help="print one JSON object: file, seed, size, timings ...")


def edit(args: argparse.Namespace) -> int:
    import secrets
    from dataclasses import replace

    from desktop_app.engine.request import MAX_SEED
    from desktop_app.errors import printable

    # 1. the request, the model and the output place, before torch loads
    seed = secrets.randbelow(MAX_SEED + 1) if args.seed is None else args.seed
    request = edit_request(args, args.model, seed)
    model = _edit_model(args.model)
    request = replace(request, model=str(model.path))
    target = _output_path(args.out, request.instruction, seed)
    from desktop_app.studio.outputs import OutputProblem, check_output, same_file

    if same_file(request.image, target):
        raise BadInput(f"--out {printable(args.out, 200)} is the input image: writing there would replace the "
                       "original; choose another name")
    try:
        check_output(target, args.out)
    except OutputProblem as exc:
        raise BadInput(str(exc)) from None
    from desktop_app.models import components

    found = components.check_model(str(model.path), args.components)
    if found is not None:
        components.use_for_run(str(model.path), found)
    try:
        # 2. the engine (torch loads here)
        from desktop_app.engine.edit_job import run_edit
        from desktop_app.engine.generate import Engine

        reporter = Reporter(sys.stderr)
        result = run_edit(Engine(device=args.device), request, reporter)
        reporter.close()
    finally:
        if found is not None:
            components.end_run(str(model.path))
    if result is None:
        print(f"{PROG}: cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED

    # 3. the file with its recipe, and its history row
    from desktop_app.cli import studio as cli_studio

    kept = cli_studio.keep_files(result, [target], PROG)
    recipe = result.recipe
    if args.json:
        print(json.dumps({"files": kept.files, "seed": recipe.seed, "size": list(recipe.output_size),
                          "model": recipe.model_name, "family": recipe.family, "pipeline": recipe.pipeline,
                          "timings": result.timings, "fallback": kept.fallback, "not_written": kept.failed}))
    else:
        for path in kept.files:
            note = " (not where asked: see the error below)" if path in kept.fallback else ""
            print(f"wrote {printable(path, 4096)} (seed {recipe.seed}, {recipe.output_size[0]}x"
                  f"{recipe.output_size[1]}){note}")
    sys.stdout.flush()
    failure = kept.problem()
    if failure is not None:
        print(f"{PROG}: error: {failure}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def edit_request(args: argparse.Namespace, model: str, seed: int):
    """The EditRequest of the arguments; a bad value exits 2 naming the argument, in one line."""
    from desktop_app.engine.edit_request import EditRequest
    from desktop_app.errors import RequestError, printable

    image = str(Path(args.image).expanduser().absolute())
    try:
        return EditRequest(image=image, instruction=args.instruction, model=model, seed=seed, steps=args.steps,
                           guidance_scale=args.guidance)
    except RequestError as exc:
        reason = str(exc).removeprefix(f"{exc.field}: ")
        if exc.field == "image" and not reason.startswith(printable(image, 200)):
            reason = f"{printable(image, 200)} {reason}"
        raise BadInput(f"{FLAGS.get(exc.field, exc.field)} {reason}") from None


def _edit_model(name: str):
    """The model named, found and able to edit (models/edit_models.py); ModelError (exit 2) in one line."""
    from desktop_app.models import model_folder
    from desktop_app.models.edit_models import check_edit_model
    from desktop_app.models.model_library import resolve_model

    path = model_folder.check_folder(resolve_model(name))
    return check_edit_model(path, model_folder.display_name(name))


def _output_path(out: str, instruction: str, seed: int) -> Path:
    """The PNG to write: ``out``, or in the folder ``out`` a name made of the instruction and the seed."""
    from desktop_app.errors import printable

    path = Path(out).expanduser()
    if str(out).endswith(("/", os.sep)) or path.is_dir():
        words = "-".join("".join(c if c.isalnum() else " " for c in instruction.lower()).split())[:48].strip("-")
        return path / f"{words or 'edit'}-{seed}.png"
    if path.suffix.lower() not in ("", ".png"):
        raise BadInput(f"--out {printable(out, 200)}: edits are written as PNG (which keeps the recipe); use a "
                       ".png name")
    return path.with_suffix(".png")


run = edit  # the command's entry point, as in every command module
