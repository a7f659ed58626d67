"""Stage 6: the bars of the model card, measured through the same diffusers pipeline the app runs.

Prompt adherence: for a prompt that names emoji E, generate an image and compare its 16x16 colour layout with
E's art and with 40 random other emoji (distance = best over the styles each emoji is drawn in). The score of one
prompt is the fraction of those 40 that are farther from the image than E is; 0.5 is chance.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
from PIL import Image

import data
import encode
import train_unet
import train_vae

DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 10.0  # the model's default: a guidance sweep chose it (see the model card)
COMPARE_GUIDANCE = 5.0  # the earlier default, reported beside it
N_NAMES = 100
N_OTHERS = 40

# Prompts that do not use the emoji's name, each with the CLDR name of the emoji it means.
PARAPHRASES = [
    ("a kitten", "cat face"), ("a burning flame", "fire"), ("a puppy", "dog face"),
    ("a glowing yellow star", "star"), ("a red heart", "red heart"), ("a slice of watermelon", "watermelon"),
    ("a ripe banana", "banana"), ("a bunch of purple grapes", "grapes"), ("a juicy red apple", "red apple"),
    ("a green pear", "pear"), ("a tall pine tree", "evergreen tree"), ("a sunflower in bloom", "sunflower"),
    ("a fast rocket", "rocket"), ("a fire engine", "fire engine"), ("a police car", "police car"),
    ("a laughing face with tears", "face with tears of joy"), ("a smiling face", "grinning face"),
    ("an angry red face", "enraged face"), ("a ghost", "ghost"), ("a skull", "skull"),
    ("a pile of poo", "pile of poo"), ("a hot drink in a cup", "hot beverage"), ("a slice of pizza", "pizza"),
    ("a hamburger", "hamburger"), ("a glass of beer", "beer mug"), ("a snowman", "snowman without snow"),
    ("a bright sun", "sun"), ("a crescent moon", "crescent moon"), ("a rainbow", "rainbow"),
    ("a pink flower", "cherry blossom"), ("a frog", "frog"), ("a penguin", "penguin"), ("an octopus", "octopus"),
    ("a tropical fish", "tropical fish"), ("a blue whale spouting water", "spouting whale"),
    ("a green turtle", "turtle"), ("a red lobster", "lobster"), ("an orange carrot", "carrot"),
    ("a lit light bulb", "light bulb"), ("a soccer ball", "soccer ball"),
]


def pipeline(cache: Path, unet=None) -> StableDiffusionPipeline:
    vae, _ = train_vae.load_trained(cache)
    vae.config.scaling_factor = torch.load(cache / "encoded.pt", weights_only=False)["scaling"]
    vae.register_to_config(scaling_factor=vae.config.scaling_factor)
    if unet is None:
        unet, _ = train_unet.load_trained(cache)
    tok, te = encode.text_encoder()
    sched = DPMSolverMultistepScheduler(**train_unet.SCHEDULER_CONFIG)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts: list[str], guidance: float, seed: int = 0, steps: int = DEFAULT_STEPS) -> np.ndarray:
    out = []
    for i in range(0, len(prompts), 32):
        chunk = prompts[i:i + 32]
        gens = [torch.Generator().manual_seed(seed + i + j) for j in range(len(chunk))]
        imgs = pipe(chunk, height=64, width=64, num_inference_steps=steps, guidance_scale=guidance,
                    generator=gens, output_type="np").images
        out.append((imgs * 255).round().astype(np.uint8))
    return np.concatenate(out)


def _layout(images: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return torch.nn.functional.avg_pool2d(t, 4).flatten(1).numpy()


class Adherence:
    def __init__(self, cache: Path):
        images, _, meta = data.load(cache)
        self.meta = meta
        by_label: dict[str, list[int]] = {}
        for it in meta["items"]:
            by_label.setdefault(it["label"], []).append(it["index"])
        self.labels = sorted(by_label)
        self.layouts = _layout(images)
        self.by_label = by_label
        base = [lab for lab in self.labels if ":" not in lab or "skin tone" not in lab]
        self.base_labels = base

    def distance(self, gen_layout: np.ndarray, label: str) -> float:
        return float(np.min(np.linalg.norm(self.layouts[self.by_label[label]] - gen_layout, axis=1)))

    def score(self, gen_images: np.ndarray, labels: list[str], seed: int = 0) -> float:
        if not labels:
            return float("nan")
        rng = np.random.default_rng(seed)
        layouts = _layout(gen_images)
        scores = []
        for lay, label in zip(layouts, labels):
            pool = min(N_OTHERS + 1, len(self.base_labels))
            others = [lab for lab in rng.choice(self.base_labels, pool, replace=False) if lab != label]
            d_true = self.distance(lay, label)
            scores.append(np.mean([self.distance(lay, o) > d_true for o in others[:N_OTHERS]]))
        return float(np.mean(scores))

    def name_prompts(self, split: str, n: int = N_NAMES, seed: int = 0) -> list[str]:
        labels = sorted({it["label"] for it in self.meta["items"] if it["split"] == split and not it["tone"]})
        rng = np.random.default_rng(seed)
        return list(rng.choice(labels, min(n, len(labels)), replace=False))


def run(cache: Path, quick: bool = False) -> dict:
    pipe = pipeline(cache)
    adh = Adherence(cache)
    n = 12 if quick else N_NAMES
    train_names = adh.name_prompts("train", n)
    val_names = adh.name_prompts("val", n // 2)
    para = [(p, lab) for p, lab in PARAPHRASES if lab in adh.by_label][: (8 if quick else None)]
    results = {"guidance_default": DEFAULT_GUIDANCE, "steps": DEFAULT_STEPS}
    for guidance, key in ((DEFAULT_GUIDANCE, "cfg"), (1.0, "no_cfg")):
        if not val_names:
            val_names = train_names[:2]
        results[f"names_{key}"] = adh.score(generate(pipe, train_names, guidance), train_names)
        results[f"heldout_emoji_names_{key}"] = adh.score(generate(pipe, val_names, guidance), val_names)
        results[f"paraphrases_{key}"] = adh.score(generate(pipe, [p for p, _ in para], guidance),
                                                  [lab for _, lab in para])
    # the earlier default guidance, for the learning curve across model versions
    results["names_cfg5"] = adh.score(generate(pipe, train_names, COMPARE_GUIDANCE), train_names)
    results["paraphrases_cfg5"] = adh.score(generate(pipe, [p for p, _ in para], COMPARE_GUIDANCE),
                                            [lab for _, lab in para])
    results.update(n_names=len(train_names), n_heldout=len(val_names), n_paraphrases=len(para))
    # Reference points for the scale: the real art of another style of the same emoji.
    results.update(speed(pipe))
    print(json.dumps(results, indent=1))
    return results


def speed(pipe) -> dict:
    times = []
    for i in range(5):
        start = time.perf_counter()
        pipe("a red apple", height=64, width=64, num_inference_steps=DEFAULT_STEPS,
             guidance_scale=DEFAULT_GUIDANCE,
             generator=torch.Generator().manual_seed(i))
        times.append(time.perf_counter() - start)
    return {"seconds_per_64px_image": float(np.median(times))}


def grid(cache: Path, out: Path, prompts: list[str], guidance: float = DEFAULT_GUIDANCE, upscaler=None) -> Path:
    pipe = pipeline(cache)
    imgs = generate(pipe, prompts, guidance, seed=42)
    cells = []
    for img in imgs:
        im = Image.fromarray(img)
        if upscaler is not None:
            with torch.no_grad():
                t = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
                im = Image.fromarray((upscaler(t)[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round()
                                     .astype(np.uint8))
        cells.append(im.resize((128, 128), Image.LANCZOS))
    cols = 8
    rows = (len(cells) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * 128, rows * 128), "white")
    for i, cell in enumerate(cells):
        sheet.paste(cell, ((i % cols) * 128, (i // cols) * 128))
    sheet.save(out)
    return out
