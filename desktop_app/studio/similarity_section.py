"""Section 2 of the explain report in words and numbers: its title, its plain-language caption (with this run's
figures in it), its figures (``similarity_figures``), and the JSON behind them (``similarity.json`` as the issue
names it: ``{"texts", "images", "matrix"}``, and ``nearest.json``). Torch-free: it reads the plain data that
``engine/explain/similarity.py`` returns."""

from __future__ import annotations

from PIL import Image

from desktop_app.studio import similarity_figures

TITLE = "Text and image encodings"


def section(data: dict) -> tuple[str, str, list[tuple[str, Image.Image]]]:
    """(title, caption, figures) of section 2."""
    found = data.get("similarity")
    if not found or "missing" in found:
        why = found["missing"] if found else "this report was made without it"
        return (f"{TITLE} (not available)",
                f"Not available here: {why}. Matching texts and images by the dot product of their encodings "
                f"needs the contrastive image tower that ships with the embedded model.", [])
    best_texts = [found["images"][k] for k in found["best"]]
    own = (f"The prompt's best match is {_quote(best_texts[0])}." if best_texts else "")
    shared = ("" if found["embedded"] else
              f" This run's model ({data['request']['model']}) ships no image encoder of its own, so the pair "
              f"trained for the embedded model is used here: it knows emoji-like pictures best.")
    retrieval = found.get("retrieval") or {}
    figure = ""
    if retrieval.get("count"):
        figure = (f" Trained on the embedded model's image-caption pairs with the text encoder frozen, the image "
                  f"tower picks the right one of {retrieval['count']} held-out images from its name "
                  f"{retrieval['text_to_image_top1']:.0%} of the time (top 5: "
                  f"{retrieval['text_to_image_top5']:.0%}; chance: {1 / retrieval['count']:.0%}).")
    nearest = found["nearest"]
    near = ""
    if nearest:
        top = nearest[0]
        near = (f" Below, the {len(nearest)} training images nearest to this result: the closest is "
                f"{_quote(top['label'])} ({top['style']}, {top['licence']}) at {top['similarity']:.2f}. Among "
                f"the {found['training_images']} training images, each one's nearest other training image lies "
                f"at a median of {found['typical']['median']:.2f}; this result is closer to its nearest than "
                f"{found['nearest_percentile']:.0f}% of training images are to theirs. A similarity near 1 "
                f"would mean a near copy; the model's pictures are made by denoising, not looked up.")
    caption = ("The text encoder turns a text into a list of numbers, its encoding; an image encoder trained "
               "together with it turns a picture into a list in the same space, so that a caption and its "
               "picture point the same way. Their dot product then says how well a text and an image match "
               "(1: the same direction). The matrix compares the prompt, other prompts and training captions "
               f"with this result, the guidance pictures and training images; each row's best is outlined. "
               f"{own}{figure}{shared}{near}")
    result = found["pictures"][0]
    return TITLE, caption, [("similarity.png", similarity_figures.matrix_figure(found)),
                            ("nearest.png", similarity_figures.nearest_figure(found, result))]


def numbers(data: dict) -> dict[str, dict]:
    """``similarity.json`` and ``nearest.json`` (nothing when the section is not available)."""
    found = data.get("similarity")
    if not found or "missing" in found:
        return {}
    nearest = [{key: value for key, value in item.items() if key != "thumbnail"} for item in found["nearest"]]
    return {"similarity.json": {"texts": found["texts"], "images": found["images"], "matrix": found["matrix"],
                                "best": found["best"], "text_kinds": found["text_kinds"],
                                "encoders": "embedded model's contrastive pair (MiniLM text, trained image tower)",
                                "model_is_embedded": found["embedded"], "retrieval": found.get("retrieval")},
            "nearest.json": {"nearest": nearest, "percentile": found["nearest_percentile"],
                             "training_nearest_other": found["typical"],
                             "training_images": found["training_images"]}}


def _quote(text: str) -> str:
    return f"\u201c{text}\u201d"
