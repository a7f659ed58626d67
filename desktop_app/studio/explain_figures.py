"""The explain report's figures, drawn with PIL from plain numbers and images (no torch, no plotting library):
token strips, latent channels, image rows with labels, and the alpha-bar plot."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
FAINT = (150, 150, 150)
CURVES = {"this model": (200, 40, 40), "linear (DDPM)": (40, 90, 200), "cosine (Improved DDPM)": (30, 150, 60)}
TILE = 128  # a picture's side in the figures, in pixels
PAD = 12


def font(size: int = 14):
    return ImageFont.load_default(size=size)


def diverging(values: np.ndarray, limit: float | None = None) -> np.ndarray:
    """Values as RGB: blue below zero, white at zero, red above (``limit``: the value drawn fully saturated)."""
    values = np.asarray(values, dtype=np.float64)
    limit = limit or float(np.abs(values).max()) or 1.0
    v = np.clip(values / limit, -1, 1)[..., None]
    red, blue, white = np.array([200, 40, 40]), np.array([40, 80, 200]), np.array([255, 255, 255])
    rgb = np.where(v >= 0, white + v * (red - white), white - v * (blue - white))
    return rgb.round().astype(np.uint8)


def grey(channel: np.ndarray) -> Image.Image:
    """One latent channel as a grey picture, stretched to its own range."""
    channel = np.asarray(channel, dtype=np.float64)
    low, high = float(channel.min()), float(channel.max())
    scaled = (channel - low) / (high - low) if high > low else np.zeros_like(channel)
    return Image.fromarray((scaled * 255).round().astype(np.uint8)).convert("RGB")


def false_colour(latent: np.ndarray) -> Image.Image:
    """A latent (channels, h, w) seen as colour: its first three channels, each stretched to +-3 std."""
    latent = np.asarray(latent, dtype=np.float64)
    planes = [latent[k] for k in range(min(3, latent.shape[0]))]
    while len(planes) < 3:
        planes.append(planes[-1])
    rgb = np.stack(planes, -1)
    spread = 3 * (rgb.std() or 1.0)
    return Image.fromarray(((np.clip(rgb / spread, -1, 1) + 1) * 127.5).round().astype(np.uint8))


def fit(image: Image.Image, side: int = TILE, smooth: bool = False) -> Image.Image:
    """``image`` scaled so that its longer side is ``side`` (nearest neighbour, so latent cells stay sharp)."""
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    method = Image.Resampling.LANCZOS if smooth else Image.Resampling.NEAREST
    return image.convert("RGB").resize(size, method)


def text_size(text: str, size: int = 14) -> tuple[int, int]:
    left, top, right, bottom = font(size).getbbox(text or " ")
    return right - left, bottom - top


def labelled_grid(rows: list[tuple[str, list[Image.Image]]], column_labels: list[str], side: int = TILE,
                  title: str = "") -> Image.Image:
    """Pictures in rows, each row named at its left and each column at its top (multi-line labels allowed)."""
    label_width = max([text_size(name)[0] for name, _ in rows] + [0]) + PAD
    header = max([len(label.split("\n")) for label in column_labels] + [0]) * 18 + PAD
    top = (26 if title else 0) + header
    columns = max(len(pictures) for _, pictures in rows)
    canvas = Image.new("RGB", (label_width + columns * (side + PAD) + PAD, top + len(rows) * (side + PAD) + PAD),
                       BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((PAD, 6), title, fill=INK, font=font(16))
    for k, label in enumerate(column_labels):
        draw.multiline_text((label_width + PAD + k * (side + PAD), top - header + 4), label, fill=INK,
                            font=font(13), spacing=3)
    for r, (name, pictures) in enumerate(rows):
        y = top + r * (side + PAD)
        draw.text((PAD, y + side // 2 - 8), name, fill=INK, font=font(14))
        for k, picture in enumerate(pictures):
            tile = fit(picture, side)
            canvas.paste(tile, (label_width + PAD + k * (side + PAD) + (side - tile.width) // 2,
                                y + (side - tile.height) // 2))
    return canvas


def token_figure(tokens: dict, max_rows: int = 40) -> Image.Image:
    """One row per token: its position, text and id, and a strip of the first dimensions of its own embedding;
    tokens past the encoder's window greyed; the encoder's output shape below."""
    items = tokens["tokens"][:max_rows]
    dims = tokens["strip_dims"]
    cell, row = 14, 22
    values = np.array(tokens["input_embeddings"][:len(items)] or np.zeros((0, dims)), dtype=np.float64)
    limit = float(min(np.abs(values).max(), 3 * values.std())) if values.size else 1.0  # contrast for the eye
    names = [f"{item['index']:>3}  {item['text']}  #{item['id']}" for item in items]
    text_width = max([text_size(name)[0] for name in names] + [200])
    width = PAD * 3 + text_width + dims * cell
    height = 40 + row * (len(items) + 1) + 70
    canvas = Image.new("RGB", (max(width, 560), height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, 8), f"{len(tokens['tokens'])} tokens; each token's own embedding, first {dims} of "
                        f"{tokens['embedding_width']} values", fill=INK, font=font(15))
    x0 = PAD * 2 + text_width
    for k, item in enumerate(items):
        y = 40 + k * row
        inside = item["in_first_window"]
        draw.text((PAD, y), f"{item['index']:>3}  {item['text']}  #{item['id']}", fill=INK if inside else FAINT,
                  font=font(14))
        strip = diverging(values[k], limit)
        for d in range(dims):
            colour = tuple(int(c) for c in strip[d]) if inside else tuple(int(c * 0.4 + 150) for c in strip[d])
            draw.rectangle([x0 + d * cell, y, x0 + (d + 1) * cell - 2, y + row - 6], fill=colour)
        if k + 1 == tokens["room"] and len(tokens["tokens"]) > tokens["room"]:
            draw.line([PAD, y + row - 2, canvas.width - PAD, y + row - 2], fill=(200, 40, 40), width=2)
    y = 40 + len(items) * row + 8
    if len(tokens["tokens"]) > len(items):
        draw.text((PAD, y - 6), f"... {len(tokens['tokens']) - len(items)} more", fill=FAINT, font=font(13))
        y += 16
    shape = " x ".join(map(str, tokens["output_shape"]))
    draw.text((PAD, y), f"text encoder output: {shape} (images x positions x width)", fill=INK, font=font(14))
    if tokens["truncated"]:
        draw.text((PAD, y + 22), f"the encoder reads {tokens['room']} tokens at a time: {len(tokens['truncated'])}"
                                 f" past the red line go into the next window", fill=(200, 40, 40), font=font(14))
    return canvas


def channels_figure(latent: np.ndarray, title: str, extra: list[tuple[str, Image.Image]] = ()) -> Image.Image:
    """Each channel of a latent as a grey picture, then ``extra`` pictures (name, image) on the same row."""
    latent = np.asarray(latent)
    pictures = [grey(latent[k]) for k in range(latent.shape[0])] + [image for _, image in extra]
    labels = [f"channel {k + 1}" for k in range(latent.shape[0])] + [name for name, _ in extra]
    return labelled_grid([("", pictures)], labels, title=title)


def histogram_figure(values: np.ndarray, title: str, width: int = 520, height: int = 240) -> Image.Image:
    """A histogram of ``values`` with the standard normal density drawn over it."""
    values = np.asarray(values, dtype=np.float64).ravel()
    counts, edges = np.histogram(values, bins=40, range=(-4, 4), density=True)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, 6), title, fill=INK, font=font(15))
    left, right, top, bottom = 40, width - PAD, 34, height - 30
    peak = max(float(counts.max()), 0.45)
    for count, a, b in zip(counts, edges[:-1], edges[1:]):
        xa, xb = left + (a + 4) / 8 * (right - left), left + (b + 4) / 8 * (right - left)
        draw.rectangle([xa, bottom - count / peak * (bottom - top), xb - 1, bottom], fill=(170, 190, 230))
    xs = np.linspace(-4, 4, 200)
    curve = np.exp(-xs ** 2 / 2) / math.sqrt(2 * math.pi)
    draw.line([(left + (x + 4) / 8 * (right - left), bottom - y / peak * (bottom - top))
               for x, y in zip(xs, curve)], fill=(200, 40, 40), width=2)
    draw.line([left, bottom, right, bottom], fill=INK)
    for tick in range(-4, 5, 2):
        x = left + (tick + 4) / 8 * (right - left)
        draw.text((x - 4, bottom + 4), str(tick), fill=INK, font=font(12))
    draw.text((right - 190, top), f"mean {values.mean():+.3f}, std {values.std():.3f}", fill=INK, font=font(12))
    draw.text((right - 190, top + 16), "red: the standard normal", fill=(200, 40, 40), font=font(12))
    return canvas


def schedule_figure(schedule: dict, width: int = 720, height: int = 420) -> Image.Image:
    """alpha-bar against the timestep: the model's own schedule, linear and cosine; the run's steps as dots."""
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, 6), "signal level alpha-bar against the timestep", fill=INK, font=font(16))
    left, right, top, bottom = 60, width - 24, 40, height - 50
    count = max(len(schedule["timesteps"]) - 1, 1)

    def point(t, value):
        return left + t / count * (right - left), bottom - value * (bottom - top)

    draw.rectangle([left, top, right, bottom], outline=INK)
    for value in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = point(0, value)[1]
        draw.line([left - 4, y, left, y], fill=INK)
        draw.line([left, y, right, y], fill=(235, 235, 235))
        draw.text((left - 40, y - 8), f"{value:.2f}", fill=INK, font=font(12))
    for k in range(5):
        t = min(count, round(k * (count + 1) / 4))
        x = point(t, 0)[0]
        draw.line([x, bottom, x, bottom + 4], fill=INK)
        draw.text((x - 12, bottom + 6), str(t), fill=INK, font=font(12))
    draw.text(((left + right) // 2 - 80, bottom + 26), "timestep t (0 = clean, right = pure noise)", fill=INK,
              font=font(12))
    # the model's own curve first and wide, so a comparison curve it equals still shows on top of it
    series = [("this model", schedule["alpha_bar"]), ("linear (DDPM)", schedule["linear_alpha_bar"]),
              ("cosine (Improved DDPM)", schedule["cosine_alpha_bar"])]
    for name, values in series:
        draw.line([point(t, v) for t, v in zip(schedule["timesteps"], values)], fill=CURVES[name],
                  width=7 if name == "this model" else 2)
    for t, value in zip(schedule["used_timesteps"], schedule["used_alpha_bar"]):
        x, y = point(t, value)
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], outline=INK, fill=(255, 255, 255))
    legend = [(f"this model ({schedule['beta_schedule']})", CURVES["this model"])]
    legend += [(name, CURVES[name]) for name, _ in series[1:]] + [("the steps of this run", None)]
    for k, (name, colour) in enumerate(legend):
        y = top + 10 + k * 18
        if colour is None:
            draw.ellipse([right - 242, y + 3, right - 234, y + 11], outline=INK, fill=(255, 255, 255))
        else:
            draw.line([right - 250, y + 7, right - 225, y + 7], fill=colour, width=3)
        draw.text((right - 218, y), name, fill=INK, font=font(12))
    return canvas


def zoom_figure(before: Image.Image, after: Image.Image, name: str) -> Image.Image:
    """The image before and after the upscaler at the same display size, and the centre quarter of each."""
    side = 256
    box = [before.width // 4, before.height // 4, before.width * 3 // 4, before.height * 3 // 4]
    scale = after.width / before.width
    big = [round(v * scale) for v in box]
    rows = [("whole", [fit(before, side), fit(after, side, smooth=True)]),
            ("centre", [fit(before.crop(box), side), fit(after.crop(big), side, smooth=True)])]
    return labelled_grid(rows, [f"before ({before.width}x{before.height})",
                                f"after: {name} ({after.width}x{after.height})"], side=side)


HEAT = np.array([[0, 0, 130], [0, 60, 255], [0, 220, 255], [250, 240, 0], [255, 110, 0], [190, 0, 0]],
                dtype=np.float64)  # "jet", as DAAM draws its maps: dark blue (little attention) to red (most)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Values in 0..1 as RGB along HEAT."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0, 1) * (len(HEAT) - 1)
    low = np.floor(v).astype(int).clip(0, len(HEAT) - 2)
    part = (v - low)[..., None]
    return ((1 - part) * HEAT[low] + part * HEAT[low + 1]).round().astype(np.uint8)


def heat_overlay(image: Image.Image, heat: np.ndarray, strength: float = 0.5) -> Image.Image:
    """``image`` with the map ``heat`` (0..1, any size: stretched to the image) coloured over it."""
    base = image.convert("L").convert("RGB")  # grey, so that the colours read as the map's
    values = np.asarray(Image.fromarray(np.asarray(heat, dtype=np.float32)).resize(base.size,
                                                                                 Image.Resampling.BILINEAR))
    mixed = (1 - strength) * np.asarray(base, dtype=np.float64) + strength * heat_colours(values)
    return Image.fromarray(mixed.round().clip(0, 255).astype(np.uint8))


def attention_figure(image: Image.Image, tokens: list[str], maps: np.ndarray, side: int = TILE,
                     columns: int = 6, max_tokens: int = 48, title: str = "") -> Image.Image:
    """A grid: the image, then per token the image with that token's heat map over it, the token above."""
    shown = list(zip(tokens, maps))[:max_tokens]
    cells = [("the image", image.convert("RGB"))] + [(text, heat_overlay(image, heat)) for text, heat in shown]
    columns = max(1, min(columns, len(cells)))
    label_h, top = 20, (28 if title else 0) + PAD
    rows = math.ceil(len(cells) / columns)
    more = len(tokens) - len(shown)
    height = top + rows * (side + label_h + PAD) + (22 if more else 0)
    canvas = Image.new("RGB", (PAD + columns * (side + PAD), height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((PAD, 8), title, fill=INK, font=font(16))
    for k, (text, picture) in enumerate(cells):
        x, y = PAD + (k % columns) * (side + PAD), top + (k // columns) * (side + label_h + PAD)
        label = text if text_size(text, 14)[0] <= side else text[:max(1, side // 9)] + "..."
        draw.text((x, y), label, fill=INK if k else FAINT, font=font(14))
        canvas.paste(fit(picture, side, smooth=True), (x, y + label_h))
    if more:
        draw.text((PAD, canvas.height - 22), f"... {more} more tokens", fill=FAINT, font=font(13))
    return canvas
