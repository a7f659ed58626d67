"""Fit the linear preview map of a model's VAE (desktop_app/engine/preview_fit.py) and cache it, or ship it in the
model folder with --ship:  python packaging/model_recipe/fit_preview.py [MODEL] [--ship] [--device cpu]."""

from __future__ import annotations

import argparse
import json

from desktop_app.engine import preview_fit
from desktop_app.engine.generate import Engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fit_preview.py",
                                     description="Fit the linear preview map of a model's VAE.")
    parser.add_argument("model", nargs="?", default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ship", action="store_true",
                        help=f"write it into the model folder ({preview_fit.SHIPPED}) instead of the user's cache")
    args = parser.parse_args(argv)
    model = Engine(args.device).load(args.model)
    preview, report = preview_fit.fit_and_cache(model)
    if args.ship:
        target = model.path / preview_fit.SHIPPED
        report["saved"] = str(preview_fit.save(preview, target, preview_fit.vae_key(model.path), report))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
