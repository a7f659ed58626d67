"""The explain report's files (studio/explain_report.py), written from plain data as engine/explain returns it:
the PDF rendered back to pages with the section titles, the HTML self-contained, the numbers as given."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from desktop_app.studio.explain_report import build_sections, write_report

TITLES = ["1. Tokens and embeddings", "2. Text and image encodings", "3. The starting noise",
          "4. Forward diffusion and the noise schedule", "5. Reverse diffusion", "6. Guidance",
          "7. Where the words landed (not available yet)", "8. Latent and upscale"]


def _picture(colour, size=(32, 32)):
    return Image.new("RGB", size, colour)


def fake_data(prompt="a red cat", steps=4, with_upscaler=True) -> dict:
    """What engine/explain returns, made up: a linear schedule, random latents, flat pictures."""
    rng = np.random.default_rng(0)
    betas = np.linspace(1e-4, 0.02, 1000)
    alpha_bar = np.cumprod(1 - betas)
    used = [999, 749, 499, 249][:steps]
    latents = {name: rng.standard_normal((steps, 4, 8, 8)).astype(np.float32) for name in ("x_t", "eps", "x0")}
    step_rows = [{"step": k + 1, "timestep": float(t), "alpha_bar": float(alpha_bar[t]), "x0_from_scheduler": True,
                  "x_t_std": 1.0, "eps_std": 1.0, "x0_std": 1.0} for k, t in enumerate(used)]
    ids = [320, 736, 2368]
    image = _picture((200, 60, 40))
    return {
        "request": {"prompt": prompt, "negative_prompt": "", "seed": 5, "steps": steps, "guidance": 7.5,
                    "sampler": "Euler", "model": "tiny", "family": "sd1", "size": [32, 32], "device": "cpu",
                    "dtype": "float32"},
        "tokens": {"prompt": prompt, "tokenizer": "CLIPTokenizer", "text_encoder": "CLIPTextModel", "window": 5,
                   "room": 3, "tokens": [{"index": k, "text": t, "id": i, "in_first_window": True}
                                         for k, (t, i) in enumerate(zip(["a</w>", "red</w>", "cat</w>"], ids))],
                   "truncated": [], "windows": 1, "first_window": {"ids": [0, *ids, 1], "tokens": []},
                   "output_shape": [1, 5, 32], "embedding_width": 32, "strip_dims": 16,
                   "input_embeddings": rng.standard_normal((3, 16)).round(4).tolist(),
                   "encoder_output": rng.standard_normal((5, 16)).round(4).tolist()},
        "noise": {"latent": rng.standard_normal((4, 8, 8)).astype(np.float32), "seed": 5},
        "schedule": {"timesteps": list(range(1000)), "alpha_bar": alpha_bar.tolist(), "beta_schedule": "linear",
                     "prediction_type": "epsilon", "linear_alpha_bar": alpha_bar.tolist(),
                     "cosine_alpha_bar": np.linspace(1, 0, 1000).tolist(),
                     "used_timesteps": [float(t) for t in used],
                     "used_alpha_bar": [float(alpha_bar[t]) for t in used]},
        "forward": {"items": [{"timestep": t, "alpha_bar": float(alpha_bar[t]),
                               "latent": rng.standard_normal((4, 8, 8)).astype(np.float32),
                               "image": _picture((t // 4, 100, 100))} for t in (0, 500, 999)], "clean": image},
        "reverse": {"frames": [{**row, "x_t_image": _picture((0, 0, 200)), "x0_image": _picture((0, 200, 0)),
                                "eps": latents["eps"][k], "x_t": latents["x_t"][k], "x0": latents["x0"][k]}
                               for k, row in enumerate(step_rows)],
                    "steps": step_rows, "latents": latents, "prediction_type": "epsilon"},
        "guidance": [{"label": label, "prompt": p, "guidance": g, "image": _picture(c)} for label, p, g, c in (
            ("no prompt", "", 1.0, "grey"), ("prompt, unguided", prompt, 1.0, "pink"),
            ("prompt (this run)", prompt, 7.5, "red"), ("prompt, high", prompt, 15.0, "darkred"))],
        "latent": {"latent": latents["x0"][-1], "image": image, "vae_scale_factor": 4,
                   "upscaled": _picture((200, 60, 40), (128, 128)) if with_upscaler else None,
                   "upscaler": "RealESRGAN 4x" if with_upscaler else None},
        "attention": None,
        "similarity": fake_similarity(prompt, image, rng),
        "timings": {"total": 1.5},
    }


def fake_similarity(prompt, image, rng) -> dict:
    """What engine/explain/similarity.py returns, made up: 3 texts x 4 images, 3 nearest training images."""
    matrix = rng.uniform(-0.2, 0.9, (3, 4)).round(4)
    nearest = [{"rank": k, "label": f"emoji {k}", "style": "noto", "similarity": s, "source": "pkg 1.0",
                "licence": "Apache-2.0", "credit": "Noto", "thumbnail": _picture((40 * k, 90, 90))}
               for k, s in ((1, 0.91), (2, 0.85), (3, 0.8))]
    return {"texts": [prompt, "a green pear", "emoji 1, noto style"],
            "text_kinds": ["prompt", "other prompt", "training caption"],
            "images": ["this result", "no prompt", "prompt, high", "training: emoji 1 (noto)"],
            "pictures": [image, _picture("grey"), _picture("darkred"), nearest[0]["thumbnail"]],
            "matrix": matrix.tolist(), "best": matrix.argmax(axis=1).tolist(), "nearest": nearest,
            "nearest_percentile": 42.0, "typical": {"p5": 0.7, "median": 0.9, "p95": 0.97},
            "training_images": 100, "histogram": {"low": 0.5, "high": 1.0, "counts": list(range(60))},
            "embedded": False, "retrieval": {"count": 100, "text_to_image_top1": 0.3, "text_to_image_top5": 0.6,
                                             "image_to_text_top1": 0.25}}


@pytest.fixture
def report(tmp_path):
    data = fake_data()
    folder = tmp_path / "report"
    written = write_report(data, folder)
    return data, folder, written


def _pdf_pages(path):
    """(text, rendered picture, [(pixel size, picture rendered where it sits)] of each image) per page."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    pdf = pdfium.PdfDocument(str(path))
    pages = []
    for k in range(len(pdf)):
        page = pdf[k]
        rendered = page.render(scale=1).to_pil().convert("RGB")
        height = page.get_size()[1]
        images = []
        for item in page.get_objects(filter=[raw.FPDF_PAGEOBJ_IMAGE]):
            left, bottom, right, top = item.get_bounds()
            images.append((tuple(item.get_px_size()), rendered.crop((round(left), round(height - top),
                                                                     round(right), round(height - bottom)))))
        pages.append((page.get_textpage().get_text_range(), rendered, images))
    return pages


def test_the_pdf_renders_back_to_a_titled_page_per_section(report):
    data, folder, _ = report
    pages = _pdf_pages(folder / "report.pdf")
    assert len(pages) == 1 + len(TITLES)  # a title page, then the sections
    assert pages[0][0].startswith("How this image was made") and "a red cat" in pages[0][0]
    for (text, _, _), title in zip(pages[1:], TITLES):
        assert text.splitlines()[0].strip() == title
        assert len(text) > len(title) + 100  # a caption in words under the title
    figures = {1: ["tokens"], 2: ["similarity", "nearest"], 3: ["noise", "noise_histogram"],
               4: ["forward", "schedule"], 5: ["reverse"],
               6: ["guidance"], 8: ["latent", "upscale"]}
    for k, names in figures.items():  # each figure on its section's page, drawn where it sits
        sizes = [Image.open(folder / f"{name}.png").size for name in names]
        assert [size for size, _ in pages[k][2]] == sizes, TITLES[k - 1]
        for _, drawn in pages[k][2]:
            ink = np.asarray(drawn.convert("L"))
            assert (ink < 200).mean() > 0.01, TITLES[k - 1]
    for k in (7,):  # not available yet: words only
        assert "Not available yet" in pages[k][0] and pages[k][2] == []


def test_the_html_is_one_self_contained_page_with_every_figure(report):
    _, folder, written = report
    page = (folder / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]+)"', page)
    figures = sorted(path.name for path in written if path.suffix == ".png")
    assert len(sources) == len(figures) == 11
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert "href=" not in page and "<script" not in page
    alts = re.findall(r'alt="([^"]+)"', page)
    for alt, source in zip(alts, sources):  # each embedded picture is the PNG written beside it
        embedded = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
        with Image.open(folder / alt) as written_png:
            assert np.array_equal(np.asarray(embedded), np.asarray(written_png))
    for title in TITLES:
        assert title.split(". ", 1)[1].replace("(", "").split(" ")[0] in page


def test_the_numbers_behind_the_figures_are_written_as_given(report):
    data, folder, _ = report
    tokens = json.loads((folder / "tokens.json").read_text())
    assert [item["id"] for item in tokens["tokens"]] == [320, 736, 2368]
    schedule = json.loads((folder / "schedule.json").read_text())
    assert set(schedule) >= {"timesteps", "alpha_bar"}
    np.testing.assert_allclose(schedule["alpha_bar"], data["schedule"]["alpha_bar"])
    frames = json.loads((folder / "frames.json").read_text())
    assert [row["timestep"] for row in frames["steps"]] == [999.0, 749.0, 499.0, 249.0]
    arrays = np.load(folder / "frames.npz")
    np.testing.assert_array_equal(arrays["x0"], data["reverse"]["latents"]["x0"])
    np.testing.assert_array_equal(arrays["noise"], data["noise"]["latent"])
    np.testing.assert_array_equal(arrays["forward_timesteps"], [0, 500, 999])


def test_a_prompt_outside_latin1_and_a_model_without_upscaler(tmp_path):
    data = fake_data(prompt="猫 on a chair 🐱", with_upscaler=False)
    written = write_report(data, tmp_path / "out")
    names = {path.name for path in written}
    assert "upscale.png" not in names and "latent.png" in names
    pages = _pdf_pages(tmp_path / "out" / "report.pdf")
    assert "on a chair" in pages[0][0]
    assert "猫 on a chair 🐱" in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")


def test_a_long_prompt_shows_the_window_line(tmp_path):
    from desktop_app.studio.explain_figures import token_figure

    data = fake_data()
    tokens = data["tokens"]
    tokens["room"] = 2
    tokens["truncated"] = ["cat</w>"]
    tokens["tokens"][2]["in_first_window"] = False
    def full_red_rows(figure):  # rows that are red across most of the width: the window's line
        figure = np.asarray(figure)
        red = (figure[..., 0] > 180) & (figure[..., 1] < 70) & (figure[..., 2] < 70)
        return int((red.mean(axis=1) > 0.8).sum())

    assert full_red_rows(token_figure(tokens)) >= 1
    assert full_red_rows(token_figure(fake_data()["tokens"])) == 0


def test_section_two_says_what_matched_and_writes_the_numbers(report):
    data, folder, _ = report
    found = data["similarity"]
    saved = json.loads((folder / "similarity.json").read_text(encoding="utf-8"))
    assert (saved["texts"], saved["images"], saved["matrix"]) == (found["texts"], found["images"], found["matrix"])
    assert saved["best"] == np.asarray(found["matrix"]).argmax(axis=1).tolist()
    nearest = json.loads((folder / "nearest.json").read_text(encoding="utf-8"))
    assert [item["label"] for item in nearest["nearest"]] == ["emoji 1", "emoji 2", "emoji 3"]
    assert nearest["percentile"] == 42.0 and "thumbnail" not in nearest["nearest"][0]
    section = build_sections(data)[1]
    best = found["images"][found["best"][0]]
    assert f"best match is \u201c{best}\u201d" in section.caption
    assert "30% of the time" in section.caption and "ships no image encoder of its own" in section.caption
    assert "closer to its nearest than 42% of training images" in section.caption


def test_section_two_without_the_image_tower_says_why_in_words(tmp_path):
    data = fake_data()
    data["similarity"] = {"missing": "the contrastive image tower is missing: config.json not in /x"}
    section = build_sections(data)[1]
    assert section.title == "Text and image encodings (not available)" and section.figures == []
    assert "config.json not in /x" in section.caption
    written = write_report(data, tmp_path / "r")
    assert not {"similarity.json", "nearest.json"} & {path.name for path in written}


def test_a_compare_grid_is_drawn_in_section_six_with_its_numbers(tmp_path):
    from desktop_app.studio.explain_report import build_sections, write_report

    data = fake_data()
    cells = [[_picture((40 * k + 90 * j) % 256) for k in range(3)] for j in range(2)]
    data["compare"] = {"x": {"name": "guidance", "values": ["1", "5", "9"]},
                       "y": {"name": "prompt", "values": ["red", "green"]},
                       "labels": {"x": ["guidance 1", "guidance 5", "guidance 9"], "y": ["red", "green"]},
                       "images": cells, "seeds": [[5, 5, 5], [5, 5, 5]]}
    data["request"]["negative_prompt"] = "blurry"
    section = build_sections(data)[5]
    assert [name for name, _ in section.figures] == ["guidance.png", "compare.png"]
    assert "over guidance (across) and prompt (down)" in section.caption and '"blurry"' in section.caption
    write_report(data, tmp_path)
    grid = Image.open(tmp_path / "compare.png").convert("RGB")
    assert grid.width > 3 * 128 and grid.height > 2 * 128
    colours = {tuple(int(v) for v in c) for c in np.asarray(grid).reshape(-1, 3)}
    for row in cells:  # every cell's colour is in the grid
        for cell in row:
            assert tuple(cell.getpixel((0, 0))) in colours
    numbers = json.loads((tmp_path / "compare.json").read_text())
    assert numbers["x"]["values"] == ["1", "5", "9"] and numbers["y"]["name"] == "prompt"
    assert numbers["labels"]["y"] == ["red", "green"] and numbers["files"] == ["compare.png"]
