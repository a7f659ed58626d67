"""Rebuild the embedded default model: fetch data, prepare, train each part, evaluate, write the folder and card.

    python packaging/model_recipe/build.py all --minutes-vae 20 --minutes-unet 60 --minutes-sr 10

Every training stage resumes from its checkpoint in the cache folder (default ~/.cache/desktop-app-build, or
DESKTOP_APP_BUILD_CACHE), so the recipe can run in several stretches: run ``unet --minutes-unet 60`` again to
train further, then ``evaluate`` and ``export``. ``--tiny`` runs every stage on a handful of images for a few
steps into a scratch cache (what CI runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parents[1]
DEFAULT_OUT = REPO / "resources" / "models" / "emoji-mini"

import torch  # noqa: E402

import card  # noqa: E402
import data  # noqa: E402
import encode  # noqa: E402
import evaluate  # noqa: E402
import export  # noqa: E402
import train_contrastive  # noqa: E402
import train_sr  # noqa: E402
import train_unet  # noqa: E402
import train_vae  # noqa: E402

STAGES = ("fetch", "prepare", "vae", "encode", "unet", "sr", "contrastive", "evaluate", "export", "preview",
          "grid")
GRID_PROMPTS = [
    "grinning face", "red apple", "fire", "cat face", "rocket", "sunflower", "deer", "red heart",
    "grinning face, noto style", "grinning face, twemoji style", "grinning face, fluent flat style", "ghost",
    "pizza, twemoji style", "banana, noto style", "snowman, fluent flat style", "octopus",
    "a kitten", "a burning flame", "a puppy", "a slice of watermelon",
    "a laughing face with tears", "a bright sun", "a rainbow", "a hot drink in a cup",
    "waving hand: dark skin tone", "waving hand: light skin tone", "thumbs up", "flag: Japan",
    "rainbow flag", "light bulb", "soccer ball", "crescent moon",
]


def ship_preview_map(folder: Path) -> Path:
    """Fit the linear latent-to-RGB preview map on the exported model and write it into its folder, so the
    live previews cost a fraction of a millisecond from the first run (desktop_app.engine.preview_fit)."""
    sys.path.insert(0, str(REPO))
    from desktop_app.engine import preview_fit
    from desktop_app.engine.generate import Engine

    model = Engine("cpu").load(str(folder))
    preview, report = preview_fit.fit_and_cache(model)
    path = preview_fit.save(preview, folder / preview_fit.SHIPPED, preview_fit.vae_key(folder), report)
    print("preview map:", json.dumps(report))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES + ("all",))
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("DESKTOP_APP_BUILD_CACHE",
                                                    Path.home() / ".cache" / "desktop-app-build")))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--minutes-vae", type=float, default=20)
    parser.add_argument("--minutes-unet", type=float, default=60)
    parser.add_argument("--minutes-sr", type=float, default=10)
    parser.add_argument("--minutes-contrastive", type=float, default=25)
    parser.add_argument("--unet-lr", type=float, default=3e-4,
                        help="UNet learning rate (at the start of the stretch)")
    parser.add_argument("--unet-lr-final", type=float, default=None,
                        help="anneal the UNet learning rate to this along a cosine over the stretch")
    parser.add_argument("--sr-lr", type=float, default=5e-4, help="upscaler learning rate (start of the stretch)")
    parser.add_argument("--sr-lr-final", type=float, default=None,
                        help="anneal the upscaler learning rate to this along a cosine over the stretch")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--tiny", action="store_true", help="a handful of images, a few steps (for CI)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    steps = dict(vae=None, unet=None, sr=None, contrastive=None)
    limit = None
    if args.tiny:
        limit, steps = 12, dict(vae=3, unet=3, sr=3, contrastive=3)
    run = STAGES[:-1] if args.stage == "all" else (args.stage,)
    for stage in run:
        print(f"== {stage}", flush=True)
        if stage == "fetch":
            data.fetch(args.cache)
        elif stage == "prepare":
            data.prepare(args.cache, limit=limit)
        elif stage == "vae":
            train_vae.train(args.cache, args.minutes_vae, steps=steps["vae"], batch=4 if args.tiny else 24)
        elif stage == "encode":
            encode.encode(args.cache)
        elif stage == "unet":
            train_unet.train(args.cache, args.minutes_unet, steps=steps["unet"], batch=4 if args.tiny else 64,
                             lr=args.unet_lr, lr_final=args.unet_lr_final)
        elif stage == "sr":
            train_sr.train(args.cache, args.minutes_sr, steps=steps["sr"], batch=2 if args.tiny else 16,
                           lr=args.sr_lr, lr_final=args.sr_lr_final)
        elif stage == "contrastive":
            train_contrastive.train(args.cache, args.minutes_contrastive, steps=steps["contrastive"],
                                    batch=4 if args.tiny else 256)
        elif stage == "evaluate":
            results = evaluate.run(args.cache, quick=args.tiny)
            results["sr"] = train_sr.bicubic_gain(args.cache)
            (args.cache / "eval.json").write_text(json.dumps(results, indent=1))
            card.record_learning_curve(args.cache, results)
        elif stage == "export":
            export.export(args.cache, args.out, card.render(args.cache))
            print("wrote", args.out)
        elif stage == "preview":
            print("wrote", ship_preview_map(args.out))
        elif stage == "grid":
            out = REPO / "docs" / "model-grid.png"
            evaluate.grid(args.cache, out, GRID_PROMPTS, upscaler=train_sr.load_trained(args.cache))
            (REPO / "docs" / "model-grid.txt").write_text("\n".join(GRID_PROMPTS) + "\n")
            print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
