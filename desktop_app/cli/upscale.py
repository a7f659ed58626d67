"""``desktop-app upscale``: an image file through a super-resolution model."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from desktop_app.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, PROG, BadInput
from desktop_app.cli.progress import Reporter


def register(commands) -> None:
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


UPSCALE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
                   ".tiff": "TIFF"}


# the UpscaleRequest's fields, as the options that set them
OPTIONS = {"input": "INPUT", "upscale": "--model", "scale": "--scale", "tile": "--tile"}


def upscale(args: argparse.Namespace) -> int:
    from desktop_app.engine.upscale import open_image
    from desktop_app.errors import printable

    # 1. what can be checked before torch loads: the input, the options, the output's name
    source = Path(args.input).expanduser()
    open_image(source)  # not an image, damaged, too large: exit 2 now, not after loading torch
    request = upscale_request(source, args)
    target = upscale_output_path(args.output)
    if not target.is_dir() and same_file(source, target):
        raise BadInput(f"{printable(args.output, 200)} is the input image: writing there would replace the "
                       "original; choose another output name")

    # 2. the engine (torch loads here)
    from desktop_app.engine.generate import Engine

    reporter = Reporter(sys.stderr)
    engine = Engine(device=args.device)
    result = engine.upscale(request, emit=reporter, cancel=None)
    reporter.close()
    if result is None:
        print(f"{PROG}: cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED

    # 3. the file (never over the input); one that cannot be written goes to the fallback folder
    image, recipe = result.images[0], result.recipe
    kept_recipe = recipe.to_dict()  # what a PNG keeps
    if target.is_dir():
        name = f"{source.stem}-x{recipe.scale:g}"
        target = target / f"{name}.png"
        n = 1
        while same_file(source, target):
            target = target.with_name(f"{name}~{n}.png")
            n += 1
    try:
        written = save_image(image, target, kept_recipe)
    except OSError as exc:
        from desktop_app.studio.outputs import keep_elsewhere

        reason = exc.strerror or str(exc)
        try:
            kept = keep_elsewhere(image, kept_recipe, None, target.name)
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
        print(json.dumps({"file": str(written), "input": str(source), "input_size": recipe.input_size,
                          "output_size": recipe.output_size, "scale": recipe.scale,
                          "upscaler": recipe.upscaler, "tile": recipe.tile, "tiles": recipe.tiles,
                          "device": recipe.device, "dtype": recipe.dtype, "timings": result.timings,
                          "megapixels_per_second": round(rate, 3) if rate else None}))
    else:
        size = "x".join(map(str, recipe.output_size))
        print(f"wrote {written} ({size}, {recipe.scale:g}x with {recipe.upscaler_name})")
    return EXIT_OK


def upscale_request(source: Path, args: argparse.Namespace):
    """The UpscaleRequest the options ask for; a bad value exits 2 naming the option (``--tile 5: ...``)."""
    from desktop_app.engine.request import DEFAULT_TILE, UpscaleRequest
    from desktop_app.errors import RequestError, printable

    if args.scale is not None and not args.scale >= 1:
        raise BadInput(f"--scale {args.scale:g}: choose 1 or more (up to the model's own scale)")
    try:
        return UpscaleRequest(source=source, model=args.model, scale=args.scale,
                              tile=DEFAULT_TILE if args.tile is None else args.tile)
    except RequestError as exc:
        option = OPTIONS.get(exc.field, exc.field)
        given = {"upscale": args.model, "scale": args.scale, "tile": args.tile}.get(exc.field)
        shown = f" {given:g}" if isinstance(given, float) else f" {printable(given, 200)}" if given else ""
        reason = str(exc).removeprefix(f"{exc.field}: ")
        raise BadInput(f"{option}{shown}: {reason}") from None


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
    if fmt == "PNG":  # with its recipe chunk, then signed (C2PA content credentials)
        from desktop_app.studio.outputs import save_png

        return save_png(image, path, recipe)
    if fmt in ("JPEG", "WEBP") and image.mode == "I;16":  # 8 bits: keep the high byte (convert would clip)
        import numpy as np

        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    if fmt in ("JPEG", "WEBP") and image.mode not in ("RGB", "L", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    if fmt == "JPEG" and image.mode == "RGBA":
        image = image.convert("RGB")
    from desktop_app.studio.outputs import save_signed

    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    return save_signed(image, path, fmt, recipe, **options)  # JPEG, WebP: the IPTC XMP mark, then signed


run = upscale  # the command's entry point, as in every command module
