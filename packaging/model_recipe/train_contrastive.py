"""Stage: the contrastive image tower (issue 18, section 2), and the index of the training images.

An image tower (a small ResNet, ``desktop_app/engine/contrastive.py``) and two heads learn, with the symmetric
contrastive loss of CLIP, to put each training image near the encodings of its captions; the text encoder stays
the frozen MiniLM that the embedded model reads prompts with, so its pooled caption states are computed once.

- Batches hold one image of each of ``batch`` different base emoji (so no two rows of a batch are the same
  emoji in another style or skin tone, which the loss would otherwise count as a wrong match); each image is
  shifted and scaled a little, its caption drawn from the caption variants the UNet trains on (data.captions_for).
- Held out: the validation emoji of the data split (data.VAL_FRACTION, by base emoji, fixed before any training).
  ``evaluate`` picks 100 images of 100 different names (seeded; ``held_out``) and reports top-1 and top-5
  retrieval with their CLDR names: text to image (which of the 100 images has the highest dot product with the
  name) and image to text. Chance is 0.01 and 0.05. Nothing is tuned on it: the settings below were set once.
- ``export_into(folder)`` writes the pair (config.json, model.safetensors) and the training set's index
  (index.npz: unit-length encodings in fp16, each image's nearest-other-image similarity, 32 px thumbnails;
  index.json: each image's name, style, and the art's source and licence).

    python packaging/model_recipe/build.py contrastive --minutes-contrastive 25
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import checkpoints
import data
from loop import Loop

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from desktop_app.engine import contrastive  # noqa: E402

TOWER = dict(num_channels=3, embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 2, 1],
             layer_type="basic", downsample_in_first_stage=False)
PROJECTION = 128
TEXT_MAX_LENGTH = 32
IMAGE_SIZE = 64
EVAL_COUNT = 100
THUMB = 32


def _features(cache: Path, meta: dict) -> tuple[torch.Tensor, list[list[int]]]:
    """Pooled MiniLM states of every caption variant of every item (cached), and each item's caption rows."""
    path = cache / "contrastive_text.pt"
    if path.exists():
        saved = torch.load(path, weights_only=False)
        return saved["features"], saved["rows"]
    captions, rows = [], []
    for item in meta["items"]:
        variants = data.captions_for(item)
        rows.append(list(range(len(captions), len(captions) + len(variants))))
        captions.extend(variants)
    tokenizer, encoder = contrastive.load_text_encoder()
    print(f"contrastive: encoding {len(captions)} captions", flush=True)
    features = contrastive.text_features(tokenizer, encoder, captions, TEXT_MAX_LENGTH)
    checkpoints.save(path, features=features, rows=rows)
    return features, rows


def held_out(meta: dict, count: int = EVAL_COUNT, split: str = "val") -> list[dict]:
    """``count`` items of ``split`` with ``count`` different names, chosen with seed 0: first one toneless image
    of each base emoji (the validation split has fewer than 100 base emoji), then skin-tone forms of others."""
    by_base: dict[str, list[dict]] = {}
    for item in meta["items"]:
        if item["split"] == split:
            by_base.setdefault(item["base"], []).append(item)
    rng = np.random.default_rng(0)
    bases = sorted(by_base)
    first = [bases[k] for k in sorted(rng.choice(len(bases), size=min(count, len(bases)), replace=False))]
    picked = []
    for base in first:
        plain = [item for item in by_base[base] if item["tone"] is None] or by_base[base]
        picked.append(plain[int(rng.integers(len(plain)))])
    names = {item["hexcode"] for item in picked}
    toned = sorted({item["hexcode"]: item for base in bases for item in by_base[base]
                    if item["hexcode"] not in names}.values(), key=lambda item: item["hexcode"])
    extra = rng.permutation(len(toned))[:max(0, count - len(picked))]
    return picked + [toned[k] for k in sorted(extra)]


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift by up to 6 px and scale by 0.8-1.1, padding with white (the art's background)."""
    n = x.shape[0]
    scale = 0.8 + 0.3 * torch.rand(n, generator=gen)
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * (12 / IMAGE_SIZE)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return 1 - F.grid_sample(1 - x, grid, align_corners=False, padding_mode="zeros")


def _pixels(images: np.ndarray, indices) -> torch.Tensor:
    return torch.from_numpy(images[indices]).permute(0, 3, 1, 2).float() / 255


def train(cache: Path, minutes: float, steps: int | None = None, batch: int = 256, lr: float = 1e-3,
          lr_final: float | None = 1e-5) -> Path:
    images, _, meta = data.load(cache)
    features, rows = _features(cache, meta)
    items = meta["items"]
    by_base: dict[str, list[int]] = {}
    for k, item in enumerate(items):
        if item["split"] == "train":
            by_base.setdefault(item["base"], []).append(k)
    bases = [by_base[b] for b in sorted(by_base)]
    batch = min(batch, len(bases))
    pair = contrastive.ContrastivePair(TOWER, PROJECTION)
    opt = torch.optim.AdamW(pair.parameters(), lr=lr, weight_decay=0.05)
    loop = Loop("contrastive", cache, pair, opt, seed=3000, log_every=50, lr=lr, lr_final=lr_final,
                save_every=120, formats={"acc": ".3f"})
    print(f"contrastive: {sum(p.numel() for p in pair.parameters()) / 1e6:.2f}M parameters, "
          f"{sum(map(len, bases))} images of {len(bases)} base emoji, batch {batch}", flush=True)

    def train_step(gen: torch.Generator):
        chosen = torch.randperm(len(bases), generator=gen)[:batch].tolist()
        picked = [bases[b][int(torch.randint(len(bases[b]), (1,), generator=gen))] for b in chosen]
        caps = [rows[k][int(torch.randint(len(rows[k]), (1,), generator=gen))] for k in picked]
        image_codes = pair.embed_images(_augment(_pixels(images, picked), gen))
        text_codes = pair.embed_text_features(features[caps])
        logits = pair.logit_scale.clamp(max=np.log(100)).exp() * image_codes @ text_codes.T
        target = torch.arange(len(picked))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        acc = (logits.argmax(1) == target).float().mean()
        return loss, {"acc": acc}

    return loop.run(train_step, minutes, steps, evaluate=lambda: evaluate(cache, pair))


def load_trained(cache: Path) -> tuple[contrastive.ContrastivePair, dict]:
    state = checkpoints.load(cache / "ckpt" / "contrastive.pt")
    if state is None:
        raise SystemExit("no contrastive checkpoint: run the contrastive stage first")
    pair = contrastive.ContrastivePair(TOWER, PROJECTION)
    pair.load_state_dict(state["model"])
    return pair.eval(), state


@torch.no_grad()
def _retrieval(pair, images: np.ndarray, picked: list[dict]) -> dict:
    if not picked:
        return {"count": 0}
    tokenizer, encoder = contrastive.load_text_encoder()
    names = [item["label"] for item in picked]
    texts = pair.embed_text_features(contrastive.text_features(tokenizer, encoder, names, TEXT_MAX_LENGTH))
    codes = pair.embed_images(_pixels(images, [item["index"] for item in picked]))
    sims = texts @ codes.T
    target = torch.arange(len(picked))
    top5 = sims.topk(min(5, len(picked)), dim=1).indices
    return {"count": len(picked), "text_to_image_top1": round(float((sims.argmax(1) == target).float().mean()), 3),
            "text_to_image_top5": round(float((top5 == target[:, None]).any(1).float().mean()), 3),
            "image_to_text_top1": round(float((sims.argmax(0) == target).float().mean()), 3)}


def evaluate(cache: Path, pair=None) -> dict:
    """Retrieval among 100 held-out images (and, for comparison, among 100 training images)."""
    images, _, meta = data.load(cache)
    if pair is None:
        pair, _ = load_trained(cache)
    pair.eval()
    results = {"held_out": _retrieval(pair, images, held_out(meta)),
               "train": _retrieval(pair, images, held_out(meta, split="train"))}
    pair.train()
    print("contrastive retrieval:", json.dumps(results), flush=True)
    return results


@torch.no_grad()
def export_into(cache: Path, folder: Path) -> Path:
    """The pair and the training set's index, into ``folder`` (the model folder's ``contrastive/``)."""
    from PIL import Image

    pair, state = load_trained(cache)
    images, _, meta = data.load(cache)
    results = {key: state[key] for key in ("held_out", "train") if key in state} or evaluate(cache, pair)
    config = {"text_package": contrastive.TEXT_PACKAGE, "text_max_length": TEXT_MAX_LENGTH, "pooling": "mean",
              "image_size": IMAGE_SIZE, "projection_dim": PROJECTION, "image_tower": TOWER,
              "training": {"steps": state["step"], "cpu_minutes": round(state["seconds"] / 60, 1)},
              "retrieval": results}
    contrastive.save(pair, folder, config)
    train_items = [item for item in meta["items"] if item["split"] == "train"]
    codes = torch.cat([pair.embed_images(_pixels(images, [it["index"] for it in train_items[s:s + 512]]))
                       for s in range(0, len(train_items), 512)])
    nearest_other = np.empty(len(codes), np.float32)
    for start in range(0, len(codes), 1024):
        sims = codes[start:start + 1024] @ codes.T
        rows = torch.arange(start, min(start + 1024, len(codes)))
        sims[rows - start, rows] = -2  # not itself
        nearest_other[start:start + len(rows)] = sims.max(1).values.numpy()
    thumbs = np.stack([np.asarray(Image.fromarray(images[it["index"]]).resize((THUMB, THUMB), Image.BOX))
                       for it in train_items])
    np.savez_compressed(folder / "index.npz", embeddings=codes.numpy().astype(np.float16),
                        nearest_other=nearest_other, thumbnails=thumbs)
    sources = {style: {"package": package, "version": meta["versions"].get(package), "licence": licence,
                       "credit": credit}
               for style, (package, licence, credit) in meta["licences"].items()}
    index = {"count": len(train_items), "thumbnail_size": THUMB, "sources": sources,
             "items": [{"label": it["label"], "style": it["style"], "hexcode": it["hexcode"]}
                       for it in train_items]}
    (folder / "index.json").write_text(json.dumps(index, ensure_ascii=False) + "\n")
    print(f"contrastive: wrote {folder} ({len(train_items)} training images indexed)", flush=True)
    return folder
