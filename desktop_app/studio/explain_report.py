"""The explain report written out: ``DIR/index.html`` (self-contained: the figures are data URIs),
``DIR/report.pdf`` (each section a titled page with a short plain-language caption, written with fpdf2), the
figures as PNG, and the numbers behind them (``tokens.json``, ``similarity.json``, ``nearest.json``,
``schedule.json``, ``frames.json`` and ``frames.npz``). Torch-free: it takes the plain data ``engine/explain``
returns (dicts, numpy arrays, PIL images).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from desktop_app.paths import write_atomically
from desktop_app.studio import explain_figures as figures
from desktop_app.studio import similarity_section

PDF_FONT = "Helvetica"


@dataclass
class Section:
    number: int
    title: str
    caption: str
    figures: list[tuple[str, Image.Image]] = field(default_factory=list)  # (file name, picture)


def build_sections(data: dict) -> list[Section]:
    """The eight sections in order, each with its caption (numbers of this run in it) and figures."""
    request, tokens = data["request"], data["tokens"]
    sections = [_tokens(request, tokens), _similarity(data), _noise(data), _forward(data), _reverse(data),
                _guidance(data), _attention(data), _latent(data)]
    return sections


def write_report(data: dict, folder: Path | str, record: dict | None = None) -> list[Path]:
    """Write every file of the report into ``folder`` (made when missing); returns the paths written. ``record``:
    the image's creation record (``creation_record.for_export``), written as ``record.json`` and a page "How
    this image was made: the creation record" in the HTML and the PDF."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sections = build_sections(data)
    written = []
    for section in sections:
        for name, picture in section.figures:
            written.append(_write(folder / name, lambda stream, p=picture: p.save(stream, format="PNG")))
    for name, value in numbers(data).items():
        text = json.dumps(value, indent=1, ensure_ascii=False)
        written.append(_write(folder / name, lambda stream, t=text: stream.write(t.encode("utf-8"))))
    if record is not None:
        text = json.dumps(record, indent=1, ensure_ascii=False, default=str)
        written.append(_write(folder / "record.json", lambda stream: stream.write(text.encode("utf-8"))))
    arrays = frame_arrays(data)
    written.append(_write(folder / "frames.npz", lambda stream: np.savez_compressed(stream, **arrays)))
    page = html_page(data, sections, record)
    written.append(_write(folder / "index.html", lambda stream: stream.write(page.encode("utf-8"))))
    pdf = pdf_bytes(data, sections, record)
    written.append(_write(folder / "report.pdf", lambda stream: stream.write(pdf)))
    return written


def numbers(data: dict) -> dict[str, dict]:
    """The JSON files: name -> content."""
    reverse = data["reverse"]
    frames = {"prediction_type": reverse["prediction_type"], "steps": reverse["steps"],
              "shown": [{key: frame[key] for key in ("step", "timestep", "alpha_bar")} |
                        {"files": ["reverse.png"]} for frame in reverse["frames"]],
              "forward": [{"timestep": item["timestep"], "alpha_bar": item["alpha_bar"]}
                          for item in data["forward"]["items"]],
              "guidance": [{key: item.get(key) for key in ("label", "prompt", "guidance", "negative_prompt")}
                           for item in data["guidance"]],
              "arrays": "frames.npz: x_t, eps, x0 (one row per step), noise, final_latent, forward (one row per "
                        "forward timestep)"}
    found = {"tokens.json": data["tokens"], "schedule.json": data["schedule"], "frames.json": frames,
             "run.json": {"request": data["request"], "timings": data["timings"]},
             **similarity_section.numbers(data)}
    if data.get("compare"):
        compare = data["compare"]
        found["compare.json"] = {"x": compare["x"], "y": compare["y"], "labels": compare["labels"],
                                 "seeds": compare["seeds"], "files": ["compare.png"]}
    return found


def frame_arrays(data: dict) -> dict[str, np.ndarray]:
    latents = data["reverse"]["latents"]
    return {"x_t": latents["x_t"], "eps": latents["eps"], "x0": latents["x0"],
            "timesteps": np.array([step["timestep"] for step in data["reverse"]["steps"]]),
            "alpha_bar": np.array([step["alpha_bar"] for step in data["reverse"]["steps"]]),
            "noise": data["noise"]["latent"], "final_latent": data["latent"]["latent"],
            "forward": np.stack([item["latent"] for item in data["forward"]["items"]]),
            "forward_timesteps": np.array([item["timestep"] for item in data["forward"]["items"]])}


# ---- the sections ---------------------------------------------------------------------------------------------


def _tokens(request: dict, tokens: dict) -> Section:
    count, room = len(tokens["tokens"]), tokens["room"]
    shape = " x ".join(map(str, tokens["output_shape"]))
    past = (f" This prompt has {count} tokens, more than one window holds: the {len(tokens['truncated'])} past "
            f"the red line would be cut off by a plain pipeline; this app reads them in {tokens['windows']} "
            f"windows and puts the encodings side by side." if tokens["truncated"] else "")
    caption = (f"The prompt is first cut into tokens, pieces of words the model knows by number (the id). Each "
               f"token id picks a list of {tokens['embedding_width']} numbers, its embedding; the strips show the "
               f"first {tokens['strip_dims']} (red above zero, blue below). The text encoder "
               f"({tokens['text_encoder']}) reads up to {room} tokens at a time and turns them, together, into "
               f"{shape} numbers: this, not the words, is what steers the image.{past}")
    return Section(1, "Tokens and embeddings", caption, [("tokens.png", figures.token_figure(tokens))])


def _similarity(data: dict) -> Section:
    title, caption, pictures = similarity_section.section(data)
    return Section(2, title, caption, pictures)


def _noise(data: dict) -> Section:
    noise = data["noise"]["latent"]
    shape = " x ".join(map(str, noise.shape))
    caption = (f"Every image starts as pure random noise, drawn from the seed ({data['noise']['seed']}): "
               f"{shape} numbers (channels x height x width of the latent, a small picture the model works in), "
               f"each from a bell curve around zero. The same seed always gives the same noise, and so the same "
               f"image for the same prompt and settings. There is nothing of any picture in it yet.")
    return Section(3, "The starting noise", caption, [
        ("noise.png", figures.channels_figure(noise, f"the noise of seed {data['noise']['seed']}, channel by "
                                                     "channel")),
        ("noise_histogram.png", figures.histogram_figure(noise, "how the noise values are spread"))])


def _forward(data: dict) -> Section:
    items = data["forward"]["items"]
    schedule = data["schedule"]
    labels = [f"t = {item['timestep']}\nalpha-bar = {item['alpha_bar']:.3f}" for item in items]
    grid = figures.labelled_grid([("", [item["image"] for item in items])], labels,
                                 title="the result, noised by the model's own schedule")
    caption = (f"Training teaches the model the opposite of what generating does: a clean image is mixed with "
               f"noise, x_t = sqrt(alpha-bar) x clean + sqrt(1 - alpha-bar) x noise, and the model learns to "
               f"tell the noise apart. The pictures show this run's result mixed with its seed's noise at a few "
               f"timesteps (the scheduler's add_noise). alpha-bar is the share of signal left: 1 at t = 0, close "
               f"to 0 at the end. The plot draws this model's schedule ({schedule['beta_schedule']}, "
               f"{len(schedule['timesteps'])} timesteps) beside the linear and cosine schedules; the dots are "
               f"the {len(schedule['used_timesteps'])} steps this run took.{_same_curve(schedule)}")
    return Section(4, "Forward diffusion and the noise schedule", caption,
                   [("forward.png", grid), ("schedule.png", figures.schedule_figure(schedule))])


def _same_curve(schedule: dict) -> str:
    own, cosine = np.array(schedule["alpha_bar"]), np.array(schedule["cosine_alpha_bar"])
    if own.shape == cosine.shape and np.abs(own - cosine).max() < 0.01:
        return " This model was trained on the cosine schedule: its curve and the cosine one coincide."
    return ""


def _reverse(data: dict) -> Section:
    frames = data["reverse"]["frames"]
    labels = [f"step {frame['step']}\nt = {frame['timestep']:.0f}" for frame in frames]
    rows = [("noisy x_t", [frame["x_t_image"] for frame in frames]),
            ("predicted clean", [frame["x0_image"] for frame in frames]),
            ("predicted noise", [figures.false_colour(frame["eps"]) for frame in frames])]
    total = len(data["reverse"]["steps"])
    caption = (f"Generating runs the mixing backwards in {total} steps. At each step the model looks at the noisy "
               f"latent x_t (top row, shown through the decoder) and predicts the noise in it (bottom row, the "
               f"latent's first three channels as colour); removing that noise gives its current guess of the "
               f"clean image (middle row): x0 = (x_t - sqrt(1 - alpha-bar) x noise) / sqrt(alpha-bar). The "
               f"sampler then steps to a slightly less noisy x_t, and the guess sharpens step by step. The "
               f"image is made by this denoising, not pasted from stored pictures.")
    return Section(5, "Reverse diffusion", caption, [("reverse.png", figures.labelled_grid(rows, labels))])


def _guidance(data: dict) -> Section:
    row = data["guidance"]
    labels = [f"{item['label']}\nguidance {item['guidance']:g}" for item in row]
    ways = "four ways" if len(row) == 4 else f"{len(row)} ways"
    grid = figures.labelled_grid([("", [item["image"] for item in row])], labels, side=160,
                                 title=f"seed {data['request']['seed']}, {ways}")
    negative = data["request"].get("negative_prompt") or ""
    caption = (f"The same seed, so the same starting noise, {ways}. Without a prompt the model draws "
               "whatever its training makes likely. With the prompt but no guidance it follows the words "
               "loosely. Guidance (classifier-free) runs the model twice per step, with and without the prompt, "
               "and pushes the result further in the direction the prompt adds; higher guidance follows the "
               "prompt more strongly, at some cost to variety and naturalness. The prompt is what turns the "
               "same noise into this image.")
    if negative:
        caption += (f" The negative prompt (\"{negative}\") takes the place of the empty prompt in that second "
                    "pass, so guidance pushes away from it too; the last picture is this run without it.")
    found = [("guidance.png", grid)]
    compare = data.get("compare")
    if compare:
        found.append(("compare.png", compare_figure(compare, data["request"]["seed"])))
        caption += (f" The compare grid below makes the same request over {compare['x']['name']} (across)"
                    + (f" and {compare['y']['name']} (down)" if compare["y"] else "")
                    + ", everything else kept, as the X/Y plot of other studios does.")
    return Section(6, "Guidance", caption, found)


def compare_figure(compare: dict, seed) -> Image.Image:
    """The compare grid's pictures with their axis values as column and row headings."""
    import textwrap

    columns = ["\n".join(textwrap.wrap(label, 20)[:3]) for label in compare["labels"]["x"]]
    rows = list(zip(compare["labels"]["y"], compare["images"]))
    title = f"{compare['x']['name']}" + (f" x {compare['y']['name']}" if compare["y"] else "") + f", seed {seed}"
    return figures.labelled_grid(rows, columns, side=128, title=title)


def _attention(data: dict) -> Section:
    found = data.get("attention")
    if found and "maps" in found:
        return _attention_maps(data, found)
    if found:
        return Section(7, "Where the words landed", found["caption"], list(found.get("figures", [])))
    return Section(7, "Where the words landed (not available yet)",
                   "Not available yet. Per-token cross-attention maps need hooks on the UNet's attention layers "
                   "that record, at every step, how strongly each image position attends to each token; that "
                   "recorder is not part of this version, so this page shows nothing rather than a guess.")


def _attention_maps(data: dict, found: dict) -> Section:
    """The image with each prompt token's cross-attention map over it (engine/attention_maps.py)."""
    texts = [token["text"] for token in found["tokens"]]
    image = data["latent"]["image"]
    caption = (f"Where each word of the prompt steered the picture. At every step, every image position of the "
               f"model's {found['layers']} cross-attention layers looks at the prompt's tokens and takes a share "
               f"of each (the attention weights, softmax of query times key). Summed over the layers, their "
               f"heads and the {found['steps']} steps of this run, and scaled so that each token's strongest "
               f"place is brightest, the weights show where each token's meaning went into the image (as "
               f"DAAM does). These are the model's own weights in this run, recorded while it ran; they show "
               f"where a word was read, which is not always where a person would point.")
    if not texts:
        return Section(7, "Where the words landed", caption + " This prompt has no tokens to show.")
    grid = figures.attention_figure(image, texts, found["maps"],
                                    title="the image, and where each token was attended to (bright: most)")
    return Section(7, "Where the words landed", caption, [("attention.png", grid)])


def _latent(data: dict) -> Section:
    latent = data["latent"]
    image, factor = latent["image"], latent["vae_scale_factor"]
    channels = latent["latent"].shape[0]
    shape = " x ".join(map(str, latent["latent"].shape))
    pictures = [("latent.png", figures.channels_figure(latent["latent"], "the final latent, and its decode",
                                                       [("decoded", image)]))]
    up = ""
    if latent["upscaled"] is not None:
        pictures.append(("upscale.png", figures.zoom_figure(image, latent["upscaled"], latent["upscaler"])))
        up = (f" Last, the model's upscaler ({latent['upscaler']}) enlarges the {image.width}x{image.height} "
              f"result to {latent['upscaled'].width}x{latent['upscaled'].height}, drawing plausible fine detail.")
    caption = (f"The model never works on pixels: it denoises a latent of {shape} numbers ({channels} channels, "
               f"{factor} times smaller a side than the image). The VAE's decoder turns the final latent into "
               f"the {image.width}x{image.height} image.{up}")
    return Section(8, "Latent and upscale", caption, pictures)


# ---- HTML and PDF ---------------------------------------------------------------------------------------------


def html_page(data: dict, sections: list[Section], record: dict | None = None) -> str:
    request = data["request"]
    head = (f"<h1>How this image was made</h1><p class=meta>{html.escape(_summary(request))}</p>"
            f"<p class=meta>made in {data['timings'].get('total', 0):.1f} s</p>")
    parts = []
    for section in sections:
        images = "".join(f'<figure><img alt="{html.escape(name)}" src="{_data_uri(picture)}"></figure>'
                         for name, picture in section.figures)
        parts.append(f"<section id=s{section.number}><h2>{section.number}. {html.escape(section.title)}</h2>"
                     f"<p>{html.escape(section.caption)}</p>{images}</section>")
    if record is not None:
        parts.append(_record_html(record))
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "figure{margin:1em 0}img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}"
             ".meta{color:#555}section{margin-bottom:3em}")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>Explain: "
            f"{html.escape(request['prompt'][:80])}</title><style>{style}</style></head><body>{head}"
            f"{''.join(parts)}</body></html>")


def pdf_bytes(data: dict, sections: list[Section], record: dict | None = None) -> bytes:
    """A title page, then one page per section: its title, caption and figures (scaled to fit); then the creation
    record when given."""
    from fpdf import FPDF

    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(_latin("Explain: " + data["request"]["prompt"][:80]))
    pdf.set_creator("desktop-app explain")
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_font(PDF_FONT, "B", 22)
    pdf.cell(0, 14, "How this image was made", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(PDF_FONT, "", 11)
    pdf.multi_cell(0, 6, _latin(_summary(data["request"])), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.image(data["latent"]["image"].convert("RGB").resize((512, 512), Image.Resampling.NEAREST), w=90)
    for section in sections:
        pdf.add_page()
        pdf.start_section(_latin(f"{section.number}. {section.title}"))
        pdf.set_font(PDF_FONT, "B", 18)
        pdf.cell(0, 12, _latin(f"{section.number}. {section.title}"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(PDF_FONT, "", 11)
        pdf.multi_cell(0, 5.5, _latin(section.caption), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        room_h = pdf.h - pdf.b_margin - pdf.get_y() - 10
        for _, picture in section.figures:
            height = room_h / len(section.figures) - 4
            width = min(pdf.epw, picture.width / picture.height * height)
            pdf.image(picture.convert("RGB"), w=width, h=width * picture.height / picture.width)
            pdf.ln(3)
    if record is not None:
        _record_pdf(pdf, record)
    return bytes(pdf.output())


# ---- the creation record (studio/creation_record.py) -----------------------------------------------------------

RECORD_TITLE = "How this image was made: the creation record"
RECORD_CAPTION = ("The decisions a person made on the way to this image, as the studio's history and the images' "
                  "own recipes keep them: the prompts tried, the seeds and settings changed between attempts, the "
                  "images picked as start images, the masks painted and the upscales, in the order they happened.")


def _record_rows(record: dict) -> list[tuple[str, str]]:
    return [(str(event.get("when") or "time not recorded"), str(event.get("description", "")))
            for event in record.get("events", [])]


def _record_html(record: dict) -> str:
    notes = "".join(f"<p class=meta>{html.escape(str(note))}</p>" for note in record.get("notes", []))
    rows = "".join(f"<li><span class=meta>{html.escape(time)}</span> {html.escape(text)}</li>"
                   for time, text in _record_rows(record))
    return (f"<section id=record><h2>{html.escape(RECORD_TITLE)}</h2><p>{html.escape(RECORD_CAPTION)}</p>"
            f"<p class=meta>Image: {html.escape(str(record.get('image', '')))}. "
            f"{html.escape(str(record.get('session_rule', '')))}</p>{notes}<ol>{rows}</ol></section>")


def _record_pdf(pdf, record: dict) -> None:
    """One page (more when the record is long) with the decisions listed in order."""
    pdf.add_page()
    pdf.start_section(RECORD_TITLE)
    pdf.set_auto_page_break(True, margin=15)
    pdf.set_font(PDF_FONT, "B", 18)
    pdf.multi_cell(0, 9, RECORD_TITLE, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(PDF_FONT, "", 11)
    pdf.multi_cell(0, 5.5, RECORD_CAPTION, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(PDF_FONT, "", 9)
    for line in [f"Image: {record.get('image', '')}", str(record.get("session_rule", "")),
                 *map(str, record.get("notes", []))]:
        pdf.multi_cell(0, 4.5, _latin(line.replace("\u2192", "->")), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for number, (time, text) in enumerate(_record_rows(record), 1):
        pdf.set_font(PDF_FONT, "B", 10)
        pdf.cell(0, 5.5, _latin(f"{number}. {time}"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(PDF_FONT, "", 10)
        pdf.multi_cell(0, 5, _latin(text.replace("\u2192", "->")), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)
    pdf.set_auto_page_break(False)


def _summary(request: dict) -> str:
    return (f'"{request["prompt"]}" - model {request["model"]}, seed {request["seed"]}, {request["steps"]} steps '
            f'of {request["sampler"]}, guidance {request["guidance"]:g}, '
            f'{request["size"][0]}x{request["size"][1]}, '
            f'on {request["device"]} ({request["dtype"]})')


def _latin(text: str) -> str:
    """PDF core fonts hold Latin-1 only: other characters become '?'."""
    return text.encode("latin-1", "replace").decode("latin-1")


def _data_uri(picture: Image.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _write(path: Path, fill) -> Path:
    return write_atomically(path, fill)
