"""Run the sections, gather one report (every key of every section, always), print it as a table or JSON."""

from __future__ import annotations

import json
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from desktop_app.bench import cpu, gpu, memory, overhead, previews, responsiveness, startup, throughput, training
from desktop_app.bench.common import Settings, load_average, machine

SCHEMA = 1
# the numbering; one module per section
SECTIONS = {
    "overhead": overhead, "previews": previews, "responsiveness": responsiveness, "startup": startup,
    "throughput": throughput, "memory": memory, "training": training, "gpu": gpu, "cpu": cpu,
}
TITLES = {
    "overhead": "1 Engine overhead", "previews": "2 Preview cost", "responsiveness": "3 Window responsiveness",
    "startup": "4 Start-up", "throughput": "5 Throughput", "memory": "6 Memory", "training": "7 Fine-tuning",
    "gpu": "8 GPU (CUDA)", "cpu": "9 CPU path (bf16 units, channels-last)",
}


def run_all(settings: Settings, only: list[str] | None = None, progress=None) -> dict:
    """The whole report. A section that fails keeps its keys (None) and says why under "error"."""
    from desktop_app.models.model_folder import check_folder, display_name
    from desktop_app.models.resolve import model_defaults

    check_folder(settings.model)  # a missing model is one clear error before anything runs
    settings.defaults = model_defaults(settings.model) | settings.overrides
    started = time.perf_counter()
    report = {
        "schema": SCHEMA, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": settings.quick, "machine": machine(settings.device),
        "load_average_before": load_average(),
        "model": {"name": display_name(settings.model), "model": settings.model,
                  "defaults": settings.defaults, "overrides": settings.overrides},
        "note": ("--quick: fewer runs and steps, a check of the plumbing rather than a measurement"
                 if settings.quick else "figures are comparable only from an otherwise idle machine "
                                        "(see load_average_before / after)"),
        "sections": {},
    }
    for name, module in SECTIONS.items():
        if only and name not in only:
            report["sections"][name] = complete({}, module.KEYS, "not run (--only)")
            continue
        if progress is not None:
            progress(f"{TITLES[name]}…")
        start = time.perf_counter()
        try:
            result = complete(module.run(settings), module.KEYS)
        except Exception as exc:  # noqa: BLE001 - one section failing must not lose the others
            result = complete({}, module.KEYS)
            result["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
            if progress is not None:
                progress("".join(traceback.format_exception(exc)).rstrip())
        result["section_s"] = round(time.perf_counter() - start, 1)
        report["sections"][name] = result
    report["load_average_after"] = load_average()
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def complete(result: dict, keys, fill=None) -> dict:
    """``result`` with every key of the section present (``fill`` where missing)."""
    return {**{key: fill for key in keys}, **result}


# ---- the table --------------------------------------------------------------------------------------------


def _s(summary, unit: str = "s", digits: int = 3) -> str:
    """'0.912 s [0.901–0.930]' from a spread, or the text it holds, or '—'."""
    if isinstance(summary, dict) and "median" in summary:
        return (f"{summary['median']:.{digits}f} {unit} "
                f"[{summary['min']:.{digits}f}–{summary['max']:.{digits}f}, n={summary['runs']}]")
    if summary is None:
        return "—"
    return str(summary)


def _verdict(value, target, below: bool = True) -> str:
    if value is None:
        return ""
    ok = value <= target if below else value >= target
    return "  ok" if ok else "  MISSED"


def rows(report: dict) -> list[str]:
    sections = report["sections"]
    out = []

    def add(title: str, *lines: str) -> None:
        out.append(title)
        out.extend(f"    {line}" for line in lines)

    def failed(name: str) -> bool:
        section = sections[name]
        if section.get("section_s") is None:
            add(TITLES[name], "not run (--only)")
            return True
        if section.get("error"):
            add(TITLES[name], f"error: {section['error']}")
            return True
        return False

    s = sections["overhead"]
    if not failed("overhead"):
        add(TITLES["overhead"], f"ours {_s(s['ours_s'])}   bare diffusers {_s(s['bare_s'])}",
            f"ratio {s['ratio']} (target ≤ {s['target']}){_verdict(s['ratio'], s['target'])}"
            f"   per-pair ratios {_s(s['pair_ratio'], '', 3)}   same image: {s['images_match']}",
            f"ours with previews off {_s(s.get('ours_no_previews_s'))}  ratio to bare "
            f"{s.get('ratio_no_previews')}   ({(s.get('settings') or {}).get('family')}, previews by "
            f"{(s.get('settings') or {}).get('preview_decoder')})")
    s = sections["previews"]
    if not failed("previews"):
        profile = s.get("profile") or {}
        add(TITLES["previews"], f"off {_s(s['off_s'])}",
            f"every step, {s['decoders'].get('every_step_vae') if s['decoders'] else '?'}: "
            f"{_s(s['every_step_vae_s'])}  ratio {s['ratio_every_step_vae']}",
            f"every step, FittedPreview: {_s(s['every_step_fitted_s'])}  ratio {s['ratio_every_step_fitted']}",
            f"every step, LinearPreview (published factors): {_s(s.get('every_step_linear_s'))}  "
            f"ratio {s.get('ratio_every_step_linear')}",
            f"app default ({(s['decoders'] or {}).get('app_default')}, rationed): {_s(s['app_default_s'])}  "
            f"ratio {s['ratio_app_default']}",
            f"ratio with the app's decoder every step {s['ratio']} (target ≤ {s['target']})"
            f"{_verdict(s['ratio'], s['target'])}",
            f"one step {profile.get('step_ms')} ms; a VAE preview {_s(profile.get('vae_preview_ms'), 'ms', 2)}; "
            f"a fitted preview {_s(profile.get('fitted_preview_ms'), 'ms', 3)}; "
            f"a linear preview {_s(profile.get('linear_preview_ms'), 'ms', 3)}")
    s = sections["responsiveness"]
    if not failed("responsiveness"):
        gen = s.get("generation") or {}
        add(TITLES["responsiveness"],
            f"longest stall while generating {gen.get('max_gap_ms')} ms (p99 {gen.get('p99_gap_ms')} ms, "
            f"{gen.get('runs')} runs; target < {s['target_ms']} ms)"
            f"{_verdict(gen.get('max_gap_ms'), s['target_ms'])}",
            f"while the engine warms up {(s.get('warm_up') or {}).get('max_gap_ms')} ms; "
            f"first run (loads the model) {(s.get('first_run') or {}).get('max_gap_ms')} ms; "
            f"idle {(s.get('idle') or {}).get('max_gap_ms')} ms",
            f"training: {_training_stall(s['training'])}")
    s = sections["startup"]
    if not failed("startup"):
        add(TITLES["startup"],
            f"window shown {_s(s['window_shown_s'])} (target < {s['target_window_s']} s)"
            f"{_verdict((s['window_shown_s'] or {}).get('median'), s['target_window_s'])}",
            f"first image {_s(s['first_image_s'])} (target < {s['target_first_image_s']} s)"
            f"{_verdict((s['first_image_s'] or {}).get('median'), s['target_first_image_s'])}")
    s = sections["throughput"]
    if not failed("throughput"):
        native, upscaled = s["native"] or {}, s["upscaled"]
        up = (f"{upscaled['images_per_s']} images/s at {upscaled['size'][0]}x{upscaled['size'][1]}"
              if isinstance(upscaled, dict) else str(upscaled))
        add(TITLES["throughput"],
            f"{native.get('images_per_s')} images/s at native size {native.get('size')}; upscaled: {up}",
            f"UNet {_gflop(s['unet_flops_per_step'])} per step in {_s(s['step_s'], 's', 4)} = "
            f"{s['achieved_gflops']} GFLOP/s; float32 matmul {_s(s['matmul_gflops'], 'GFLOP/s', 1)}; "
            f"fraction {s['fraction_of_matmul']}")
    s = sections["memory"]
    if not failed("memory"):
        add(TITLES["memory"], f"desktop-app generate peak RSS {_s(s['generate_peak_rss_mb'], 'MB', 0)}",
            f"import torch, diffusers alone {_s(s['import_peak_rss_mb'], 'MB', 0)}; "
            f"window {s['window_peak_rss_mb']} MB; GPU {s['peak_gpu_mb']}")
    s = sections["training"]
    if not failed("training"):
        add(TITLES["training"], str(s["status"]) if s.get("ratio") is None else
            f"ours {_s(s['ours_steps_per_s'], 'steps/s', 2)}, "
            f"bare peft loop {_s(s['bare_steps_per_s'], 'steps/s', 2)}"
            f", ratio {s['ratio']} ({s['settings']})")
    s = sections["gpu"]
    if not failed("gpu"):
        lines = [f"status: {s['status']}"]
        for name in gpu.MODELS:
            model = s.get(name) or {}
            for mode in ("standard", "fast"):
                run = model.get(mode) or {}
                if isinstance(run.get("bare_s"), dict):
                    lines.append(f"{name} {mode}: ours {_s(run.get('ours_s'))} bare {_s(run.get('bare_s'))} "
                                 f"ratio {run.get('ratio')}, {run.get('it_per_s')} it/s, "
                                 f"{run.get('fraction_of_matmul')} of fp16 matmul")
            if model.get("error") and model.get("error") != s["status"]:
                lines.append(f"{name}: {model['error']}")
        add(TITLES["gpu"], *lines)
    if not failed("cpu"):
        add(TITLES["cpu"], *cpu_lines(sections["cpu"]))
    return out


def cpu_lines(s: dict) -> list[str]:
    """The CPU section's lines: the chosen path and why, then each figure with its candidates."""
    lines = [f"chosen: {s['chosen_path']} ({s['why']})",
             "matmul " + ", ".join(f"{name} {_s(rate, 'GFLOP/s', 1)}"
                                   for name, rate in (s.get("matmul_gflops") or {}).items())]
    for key, label in (("sd15", "SD 1.5 UNet step"), ("embedded", "embedded whole image"),
                       ("upscaler", "embedded upscaler")):
        part = s.get(key) or {}
        figure = f"{key}_step_ratio" if key == "sd15" else f"{key}_ratio"
        target = cpu.TARGETS.get(figure)
        paths = "; ".join(f"{name} {_s(run.get('s'))} ratio {run.get('ratio')}"
                          + (f" PSNR {run['psnr_db']} dB" if run.get("psnr_db") is not None else "")
                          for name, run in (part.get("paths") or {}).items())
        lines.append(f"{label}: ratio {s.get(figure)} (target ≤ {target}){_verdict(s.get(figure), target)}"
                     + (f" — {part['status']}" if part.get("status") else "") + f": {paths}")
    sd15 = s.get("sd15") or {}
    lines.append(f"SD 1.5 UNet fraction of matmul: float32 {sd15.get('fraction_fp32')}, "
                 f"{sd15.get('fastest')} {sd15.get('fraction_fastest')}; PSNR of the fast image {s['psnr_db']} dB")
    return lines


def _gflop(flops) -> str:
    return "—" if flops is None else f"{flops / 1e9:.2f} GFLOP"


def format_table(report: dict) -> str:
    m = report["machine"]
    head = [f"desktop-app bench · {report['date']} · {report['model']['name']} on {m['device']} ({m['dtype']})"
            + (" · QUICK" if report["quick"] else ""),
            f"machine: {m['cpu']}, {m['usable_cores']} of {m['cores']} cores, torch {m['torch']} "
            f"({m['torch_threads']} threads), diffusers {m['diffusers']}"
            + (f", GPU {m['gpu']['name']}" if m.get("gpu") else ""),
            f"load average before {report['load_average_before']}, after {report.get('load_average_after')}; "
            f"{report['note']}", ""]
    return "\n".join(head + rows(report) + ["", f"({report['seconds']} s)"])


def write(report: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return path


# ---- docs/PERFORMANCE.md ----------------------------------------------------------------------------------


def _md(summary, unit: str = "s", digits: int = 3) -> str:
    if isinstance(summary, dict) and "median" in summary:
        return (f"{summary['median']:.{digits}f} {unit} [{summary['min']:.{digits}f}–{summary['max']:.{digits}f}]"
                f", {summary['runs']}")
    return "—" if summary is None else str(summary)


def _met(value) -> str:
    return "—" if value is None else ("yes" if value else "**no**")


def markdown(report: dict) -> str:
    """The Results table of docs/PERFORMANCE.md, from a report (``desktop-app bench --json``)."""
    m, sec = report["machine"], report["sections"]
    o, p, r, st, t, mem = (sec[name] for name in ("overhead", "previews", "responsiveness", "startup",
                                                  "throughput", "memory"))
    settings = o.get("settings") or {}
    gen, decoders = r.get("generation") or {}, p.get("decoders") or {}
    profile, native, met = p.get("profile") or {}, t.get("native") or {}, st.get("meets_target") or {}
    up = t.get("upscaled")
    fitted = p.get("ratio_every_step_fitted")
    size = "×".join(map(str, settings.get("size", [])))
    head = (f"Date: {report['date'][:10]} · Machine: {m['cpu']}, {m['usable_cores']} cores, torch {m['torch']} "
            f"({m['torch_threads']} threads) · Device: {m['device']} ({m['dtype']}) · Model: "
            f"{report['model']['name']}, {size}, {settings.get('steps')} steps, {settings.get('sampler')}, "
            f"guidance {settings.get('guidance')} · load average before/after {report['load_average_before']} / "
            f"{report.get('load_average_after')}")
    if report["quick"]:
        head += " · **--quick (not a measurement)**"
    rows = [  # (number, figure, result, target, met)
        (1, f"engine overhead: ours / bare diffusers (previews every step with "
            f"{settings.get('preview_decoder')}, events, no saving)",
         f"{o.get('ratio')} (ours {_md(o.get('ours_s'))}; bare {_md(o.get('bare_s'))})",
         f"≤ {overhead.TARGET}", _met(o.get("meets_target"))),
        (2, f"preview cost, every step / off — with the app's preview decoder ({decoders.get('app_default')})",
         p.get("ratio"), f"≤ {previews.TARGET}", _met(p.get("meets_target"))),
        (2, f"… every step with the model's VAE ({decoders.get('every_step_vae')})",
         f"{p.get('ratio_every_step_vae')} (a preview {_md(profile.get('vae_preview_ms'), 'ms', 2)}; "
         f"a step {profile.get('step_ms')} ms)", "", ""),
        (2, "… every step with the fitted map (FittedPreview)",
         f"{fitted} (a preview {_md(profile.get('fitted_preview_ms'), 'ms', 3)})", f"≤ {previews.TARGET}",
         _met(None if fitted is None else fitted <= previews.TARGET)),
        (2, f"… the app's default (rationed to ≤ {decoders.get('app_default_share')} of the step time)",
         p.get("ratio_app_default"), "", ""),
        (3, "longest event-loop stall while generating (5 ms probe, real window offscreen)",
         f"{gen.get('max_gap_ms')} ms (p99 {gen.get('p99_gap_ms')} ms, {gen.get('runs')} runs)",
         f"< {r.get('target_ms')} ms", _met(r.get("meets_target"))),
        (3, "… while the engine warms up (torch import in the worker) / first run (model load)",
         f"{(r.get('warm_up') or {}).get('max_gap_ms')} ms / {(r.get('first_run') or {}).get('max_gap_ms')} ms",
         "", ""),
        (3, "… while a LoRA trains from the Fine-tune panel (its own process)", _training_stall(r.get("training")),
         f"< {r.get('target_ms')} ms", _met(_training_met(r))),
        (4, "process start → window shown", _md(st.get("window_shown_s")), f"< {st.get('target_window_s')} s",
         _met(met.get("window"))),
        (4, "process start → first finished image (`desktop-app generate`, model defaults)",
         _md(st.get("first_image_s")), f"< {st.get('target_first_image_s')} s", _met(met.get("first_image"))),
        (5, "images/s at native size / with the 4× upscale, previews off",
         f"{native.get('images_per_s')} / {up['images_per_s'] if isinstance(up, dict) else up}", "", ""),
        (5, "UNet GFLOP per step · achieved GFLOP/s · fraction of the fp32 matmul rate",
         f"{_gflop(t.get('unet_flops_per_step'))} · {t.get('achieved_gflops')} · {t.get('fraction_of_matmul')} "
         f"(matmul {_md(t.get('matmul_gflops'), 'GFLOP/s', 1)})", "", ""),
        (6, "peak RSS, `desktop-app generate` · `import torch, diffusers` alone · the window",
         f"{_md(mem.get('generate_peak_rss_mb'), 'MB', 0)} · {_md(mem.get('import_peak_rss_mb'), 'MB', 0)} · "
         f"{mem.get('window_peak_rss_mb')} MB", "", ""),
        (6, "peak GPU memory", mem.get("peak_gpu_mb"), "", ""),
        (7, "LoRA training steps/s, ours / bare loop",
         sec["training"].get("status") if sec["training"].get("ratio") is None else
         f"{_md(sec['training'].get('ours_steps_per_s'), 'steps/s', 2)} / "
         f"{_md(sec['training'].get('bare_steps_per_s'), 'steps/s', 2)} = {sec['training'].get('ratio')}", "", ""),
        (8, "SD1.5 512² and SDXL 1024², fp16, 20 steps (CUDA)", sec["gpu"].get("status"), "", ""),
        *_cpu_rows(sec.get("cpu") or {}),
    ]
    table = ["| # | figure | result (median [min–max], runs) | target | met |", "|---|---|---|---|---|"]
    table += ["| " + " | ".join("—" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return "\n".join([head, "", *table])

def _cpu_rows(c: dict) -> list[tuple]:
    """Section 9's rows: each ratio (fast path / float32 eager) with its target, the fractions and PSNR."""
    sd15 = c.get("sd15") or {}
    rows = [(9, "CPU path chosen", f"{c.get('chosen_path')} ({c.get('why')})", "", "")]
    for key, label in (("sd15_step_ratio", f"SD 1.5 UNet step at {sd15.get('size')} px, batch 2: "
                                           f"{sd15.get('fastest')} / float32"),
                       ("embedded_ratio", "embedded whole image with upscale: the engine's path / float32"),
                       ("upscaler_ratio", "embedded upscaler, 256 px: fastest path / float32")):
        value, target = c.get(key), cpu.TARGETS[key]
        rows.append((9, label, value, f"≤ {target}", _met(None if value is None else value <= target)))
    rows.append((9, "SD 1.5 UNet fraction of matmul: float32 · fastest · PSNR (dB) sd15 / image / upscaler",
                 f"{sd15.get('fraction_fp32')} · {sd15.get('fraction_fastest')} · "
                 + " / ".join(str(v) for v in (c.get("psnr_parts") or {}).values()), "", ""))
    return rows


def _training_stall(training) -> str:
    """The window's longest stall while a training ran, or why it was not measured."""
    if not isinstance(training, dict):
        return str(training)
    return (f"{training.get('max_gap_ms')} ms (p99 {training.get('p99_gap_ms')} ms, "
            f"{training.get('steps')} steps, {training.get('outcome')})")


def _training_met(section: dict):
    training = section.get("training")
    if not isinstance(training, dict) or training.get("max_gap_ms") is None:
        return None
    return training["max_gap_ms"] < section.get("target_ms", 50)



def main(argv: list[str] | None = None) -> int:
    """``python -m desktop_app.bench.report REPORT.json``: the Results table for docs/PERFORMANCE.md."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m desktop_app.bench.report REPORT.json", file=sys.stderr)
        return 2
    print(markdown(json.loads(Path(args[0]).read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

