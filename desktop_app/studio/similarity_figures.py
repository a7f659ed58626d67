"""Section 2's figures, drawn with PIL: the text-image similarity matrix (the explainer's figure 2: each cell the
dot product of a text's and an image's encodings, the best image of each text outlined) and the result beside its
nearest training images, with where that similarity sits among the training images' own nearest neighbours."""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw

from desktop_app.studio.explain_figures import BACKGROUND, FAINT, INK, PAD, diverging, fit, font, text_size

CELL = 84
ROW = 34
BEST = (20, 20, 20)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def matrix_figure(similarity: dict) -> Image.Image:
    """Rows: texts; columns: images (pictured above); cells coloured by similarity (red high, blue low) with
    the number; each row's best image outlined."""
    texts, labels, pictures = similarity["texts"], similarity["images"], similarity["pictures"]
    matrix = np.asarray(similarity["matrix"], dtype=np.float64)
    names = [_short(text, 42) for text in texts]
    left = max([text_size(name)[0] for name in names] + [120]) + 2 * PAD
    wrapped = ["\n".join(textwrap.wrap(label, 13)[:3]) for label in labels]
    header = CELL + 3 * 13 + PAD
    width = left + len(labels) * CELL + PAD
    height = 30 + header + len(texts) * ROW + 30
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, 6), "texts (rows) and images (columns): the dot product of their encodings", fill=INK,
              font=font(15))
    top = 30
    for k, (picture, label) in enumerate(zip(pictures, wrapped)):
        tile = fit(picture, CELL - 12, smooth=True)
        x = left + k * CELL
        canvas.paste(tile, (x + (CELL - tile.width) // 2, top + (CELL - 12 - tile.height) // 2))
        draw.multiline_text((x + 4, top + CELL - 6), label, fill=INK, font=font(11), spacing=2)
    colours = diverging(matrix, limit=1.0)
    y0 = top + header
    for r, name in enumerate(names):
        y = y0 + r * ROW
        draw.text((PAD, y + ROW // 2 - 8), name, fill=INK, font=font(13))
        for k in range(matrix.shape[1]):
            x = left + k * CELL
            draw.rectangle((x + 2, y + 2, x + CELL - 3, y + ROW - 3), fill=tuple(int(c) for c in colours[r, k]))
            draw.text((x + CELL // 2 - 18, y + ROW // 2 - 8), f"{matrix[r, k]:+.2f}", fill=INK, font=font(13))
        best = similarity["best"][r]
        x = left + best * CELL
        draw.rectangle((x + 1, y + 1, x + CELL - 2, y + ROW - 2), outline=BEST, width=3)
    draw.text((PAD, height - 24), "outlined: the image each text matches best (cosine similarity, -1 to 1)",
              fill=FAINT, font=font(12))
    return canvas


def nearest_figure(similarity: dict, result: Image.Image) -> Image.Image:
    """The result, its nearest training images (name, style, similarity), and a histogram of the training images'
    similarities to their own nearest other training image with the result's nearest similarity marked."""
    nearest = similarity["nearest"]
    side = 112
    width = PAD + (len(nearest) + 1) * (side + PAD) + PAD
    hist_top = 36 + side + 60
    height = hist_top + 150
    canvas = Image.new("RGB", (max(width, 640), height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, 6), "this result and its nearest training images (by the image tower's encodings)", fill=INK,
              font=font(15))
    canvas.paste(fit(result, side, smooth=True), (PAD, 36))
    draw.text((PAD, 40 + side), "this result", fill=INK, font=font(12))
    for k, item in enumerate(nearest, 1):
        x = PAD + k * (side + PAD)
        canvas.paste(fit(item["thumbnail"], side, smooth=True), (x, 36))
        label = "\n".join(textwrap.wrap(f"{item['label']} ({item['style']})", 18)[:2])
        draw.multiline_text((x, 40 + side), f"{label}\nsimilarity {item['similarity']:.3f}", fill=INK,
                            font=font(11), spacing=2)
    _percentile_strip(draw, similarity, (PAD, hist_top, max(width, 640) - PAD, height - 24))
    return canvas


def _percentile_strip(draw: ImageDraw.ImageDraw, similarity: dict, box: tuple[int, int, int, int]) -> None:
    """The histogram of the training images' nearest-other similarities, the median in blue, the result's red."""
    typical, nearest = similarity["typical"], similarity["nearest"]
    marked = nearest[0]["similarity"] if nearest else None
    histogram = similarity["histogram"]
    low, high, counts = histogram["low"], histogram["high"], histogram["counts"]
    left, top, right, bottom = box
    bars_top = top + 32
    draw.line((left, bottom, right, bottom), fill=FAINT)

    def x_of(value: float) -> float:
        return left + (min(high, max(low, value)) - low) / (high - low) * (right - left)

    tallest = max(counts) or 1
    width = (right - left) / len(counts)
    for k, count in enumerate(counts):
        if count:
            x = left + k * width
            draw.rectangle((x, bottom - (bottom - bars_top) * count / tallest, x + max(1.0, width - 1), bottom),
                           fill=(150, 170, 210))
    draw.line((x_of(typical["median"]), bars_top, x_of(typical["median"]), bottom), fill=(40, 80, 200), width=2)
    draw.text((left, top), f"training images' similarity to their nearest other training image (of "
                           f"{similarity['training_images']}); blue: the median, {typical['median']:.2f}",
              fill=INK, font=font(12))
    if marked is not None:
        draw.line((x_of(marked), bars_top - 6, x_of(marked), bottom), fill=(200, 40, 40), width=3)
        draw.text((left, top + 15), f"red: this result's nearest, {marked:.3f}, closer than "
                                    f"{similarity['nearest_percentile']:.0f}% of training images are to theirs",
                  fill=(200, 40, 40), font=font(12))
    steps = 4
    for k in range(steps + 1):
        value = low + (high - low) * k / steps
        draw.text((x_of(value) - 10, bottom + 4), f"{value:.2f}", fill=FAINT, font=font(11))
