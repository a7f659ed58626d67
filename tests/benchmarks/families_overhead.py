"""Engine overhead and preview cost on tiny Flux and SD3 models (issue 16, Figures: ours / bare diffusers <= 1.05,
previews <= 1.03).

    .venv/bin/python tests/benchmarks/families_overhead.py [--size 256] [--steps 8] [--families flux,sd3]
                                                           [--threads N] [--quick] [--out FOLDER]

Builds each family's tiny random diffusers folder (tests/tiny_families.py) in a temporary folder, then runs
``desktop-app bench --sections overhead,previews --model FOLDER --width S --height S --steps N --json`` on it,
one process per family (medians of interleaved repeats, measured side by side in that process), and prints
per family the two figures with what explains them: ours / bare with previews every step and with previews
off, and previews every step / off with the app's decoder and with the family's published linear factors
(the decoder a full-size Flux or SD3 gets: its VAE is too big for a preview every step). Not collected by
pytest (a benchmark, not a test); takes about a minute per family on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"


def build(family: str, folder: Path) -> Path:
    """The tiny folder, written by a child process (tests/ on its path; quiet)."""
    code = f"from tiny_families import build_family; build_family({family!r}, {str(folder)!r})"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]), HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return folder


def bench(folder: Path, size: int, steps: int, quick: bool, home: Path, out: Path, threads: int | None) -> dict:
    args = [sys.executable, "-m", "desktop_app", "bench", "--sections", "overhead,previews", "--json",
            "--model", str(folder), "--device", "cpu", "--width", str(size), "--height", str(size),
            "--steps", str(steps), "--out", str(out)] + (["--quick"] if quick else [])
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", DESKTOP_APP_HOME=str(home))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(args, env=env, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"bench on {folder.name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def _median(summary) -> str:
    return f"{summary['median']:.3f} s" if isinstance(summary, dict) else str(summary)


def _ms(summary) -> str:
    return f"{summary['median']:.2f} ms" if isinstance(summary, dict) else str(summary)


def summary(family: str, report: dict) -> list[str]:
    o, p = report["sections"]["overhead"], report["sections"]["previews"]
    for name, section in (("overhead", o), ("previews", p)):
        if section.get("error"):
            return [f"{family}: {name} failed: {section['error']}"]
    profile, decoders = p["profile"], p["decoders"]

    def verdict(value, target):
        return "—" if value is None else ("meets" if value <= target else "MISSES")

    return [
        f"{family} ({o['settings']['size'][0]}x{o['settings']['size'][1]}, {o['settings']['steps']} steps, "
        f"{o['settings']['sampler']}, guidance {o['settings']['guidance']}):",
        f"  overhead, ours / bare, previews every step ({o['settings']['preview_decoder']}): {o['ratio']} "
        f"[{verdict(o['ratio'], o['target'])} <= {o['target']}]  (ours {_median(o['ours_s'])}, "
        f"bare {_median(o['bare_s'])}; same image: {o['images_match']})",
        f"  overhead, ours / bare, previews off: {o['ratio_no_previews']} "
        f"[{verdict(o['ratio_no_previews'], o['target'])} <= {o['target']}]  "
        f"(ours {_median(o['ours_no_previews_s'])})",
        f"  previews every step / off, the app's decoder ({decoders['app_default']}): {p['ratio']} "
        f"[{verdict(p['ratio'], p['target'])} <= {p['target']}]",
        f"  previews every step / off, published linear factors ({decoders['every_step_linear']}): "
        f"{p['ratio_every_step_linear']} [{verdict(p['ratio_every_step_linear'], p['target'])} <= {p['target']}]",
        f"  previews as the app rations them (<= {decoders['app_default_share']} of the step time): "
        f"{p['ratio_app_default']}",
        f"  one step {profile['step_ms']} ms; a VAE preview {_ms(profile['vae_preview_ms'])} "
        f"(the VAE alone {_ms(profile.get('vae_decode_only_ms'))}, "
        f"to an image {_ms(profile.get('to_image_ms'))}); "
        f"a linear preview {_ms(profile['linear_preview_ms'])}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="width and height (default 256)")
    parser.add_argument("--steps", type=int, default=8, help="denoising steps (default 8)")
    parser.add_argument("--families", default="flux,sd3", help="comma-separated (default flux,sd3)")
    parser.add_argument("--threads", type=int, help="torch threads (OMP_NUM_THREADS) of the measured process; "
                                                    "1 keeps a busy machine's figures steadier")
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a check, not a measurement")
    parser.add_argument("--out", type=Path, help="keep each family's JSON report here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="families-overhead-") as tmp:
        tmp = Path(tmp)
        out = args.out or tmp
        out.mkdir(parents=True, exist_ok=True)
        for family in [name.strip() for name in args.families.split(",") if name.strip()]:
            folder = build(family, tmp / family)
            report = bench(folder, args.size, args.steps, args.quick, tmp / "home", out / f"{family}.json",
                           args.threads)
            print("\n".join(summary(family, report)), flush=True)
        machine = report["machine"]
        print(f"\n{machine['cpu']}, {machine['usable_cores']} of {machine['cores']} cores, torch "
              f"{machine['torch']} ({machine['torch_threads']} threads), diffusers {machine['diffusers']}; "
              f"load average before {report['load_average_before']}, after {report['load_average_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
