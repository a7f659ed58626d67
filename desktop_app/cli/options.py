"""Options several commands share."""

from __future__ import annotations

import argparse


def model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default",
                        help='"default" (the embedded model) or a diffusers model folder')
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
