"""Fetch and prepare the training data of the embedded default model.

The art comes from npm packages fetched into a cache folder outside the repository (never committed):
Noto Emoji (emoji-datasource-google, Apache-2.0 art), Twemoji (emoji-datasource-twitter, CC-BY-4.0 art),
Fluent Emoji flat SVGs (fluentui-emoji, MIT), and CLDR names and tags (emojibase-data, MIT).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGES = {
    "emoji-datasource-google": "16.0.0",
    "emoji-datasource-twitter": "16.0.0",
    "fluentui-emoji": "1.3.0",
    "emojibase-data": "17.0.0",
}
ART_LICENCES = {
    "noto": ("emoji-datasource-google", "Apache-2.0", "Noto Emoji art by Google, Apache License 2.0"),
    "twemoji": ("emoji-datasource-twitter", "CC-BY-4.0",
                "Twemoji graphics by Twitter, Inc and other contributors, licensed under CC-BY 4.0 "
                "(https://creativecommons.org/licenses/by/4.0/)"),
    "fluent": ("fluentui-emoji", "MIT", "Fluent Emoji by Microsoft Corporation, MIT License"),
}
STYLE_WORDS = {"noto": "noto", "twemoji": "twemoji", "fluent": "fluent flat"}
TONES = {1: "light", 2: "medium-light", 3: "medium", 4: "medium-dark", 5: "dark"}
VAL_FRACTION = 0.05


def npm_cache(cache: Path) -> Path:
    """Where the npm packages go: DESKTOP_APP_NPM_CACHE (shared between builds) or cache/npm."""
    return Path(os.environ.get("DESKTOP_APP_NPM_CACHE", cache / "npm"))


def fetch(cache: Path) -> Path:
    """npm-install the pinned packages into the npm cache folder; return its node_modules folder."""
    npm_dir = npm_cache(cache)
    modules = npm_dir / "node_modules"
    if all((modules / name / "package.json").exists() for name in PACKAGES):
        return modules
    npm_dir.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
    print("fetching", " ".join(specs), flush=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(npm_dir),
                    *specs], check=True)
    return modules


def _strip_fe0f(code: str) -> str:
    return "-".join(part for part in code.upper().split("-") if part != "FE0F")


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower().replace("’", "").replace("'", "")).strip("-")


def _composite_white(img: Image.Image, size: int) -> np.ndarray:
    img = img.convert("RGBA")
    if img.size != (size, size):
        img = img.resize((size, size), Image.LANCZOS)
    background = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(background, img).convert("RGB"))


def _svg_renderer():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([])

    def render(path: Path, size: int) -> np.ndarray:
        renderer = QSvgRenderer(str(path))
        if not renderer.isValid():
            raise ValueError(f"bad svg {path}")
        image = QImage(size, size, QImage.Format_RGBA8888)
        image.fill(Qt.white)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.Antialiasing)
        renderer.render(painter)
        painter.end()
        buf = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(size, image.bytesPerLine() // 4, 4)
        return buf[:, :size, :3].copy()

    render.app = app  # keep the application alive
    return render


def _records(modules: Path) -> list[dict]:
    """One record per (emoji, skin tone): label, tags, hexcode, which styles have art and where."""
    datasource = json.loads((modules / "emoji-datasource-google" / "emoji.json").read_text())
    files = {}
    for entry in datasource:
        variants = [entry] + list((entry.get("skin_variations") or {}).values())
        for var in variants:
            key = _strip_fe0f(var["unified"])
            files[key] = (var["image"], var.get("has_img_google"), var.get("has_img_twitter"))
    flat_dir = modules / "fluentui-emoji" / "icons" / "flat"
    flat = {p.stem for p in flat_dir.glob("*.svg")}
    base = json.loads((modules / "emojibase-data" / "en" / "data.json").read_text())
    records = []
    for emoji in base:
        entries = [(emoji, None)] + [(skin, skin.get("tone")) for skin in emoji.get("skins") or []]
        for entry, tone in entries:
            if isinstance(tone, list):  # multi-person mixed tones: skip, too fine-grained for 64 px
                continue
            key = _strip_fe0f(entry["hexcode"])
            styles = {}
            if key in files:
                image, has_google, has_twitter = files[key]
                if has_google:
                    styles["noto"] = f"emoji-datasource-google/img/google/64/{image}"
                if has_twitter:
                    styles["twemoji"] = f"emoji-datasource-twitter/img/twitter/64/{image}"
            slug = _slug(emoji["label"])
            candidates = [f"{slug}-{TONES[tone]}"] if tone else [slug, f"{slug}-default"]
            for cand in candidates:
                if cand in flat:
                    styles["fluent"] = f"fluentui-emoji/icons/flat/{cand}.svg"
                    break
            if not styles:
                continue
            records.append({
                "hexcode": key,
                "base": _strip_fe0f(emoji["hexcode"]),
                "label": entry["label"],
                "base_label": emoji["label"],
                "tags": [t for t in emoji.get("tags", []) if t.lower() not in emoji["label"].lower()][:6],
                "tone": TONES.get(tone) if tone else None,
                "group": emoji.get("group"),
                "styles": styles,
            })
    return records


def _is_val(base_hexcode: str) -> bool:
    digest = hashlib.sha256(base_hexcode.encode()).digest()
    return digest[0] / 256 < VAL_FRACTION


def prepare(cache: Path, limit: int | None = None) -> Path:
    """Write cache/data/dataset.npz (64 px art of every style, 256 px Fluent renders) and meta.json."""
    out_dir = cache / "data"
    done = out_dir / "dataset.npz"
    if done.exists() and (out_dir / "meta.json").exists() and limit is None:
        return out_dir
    modules = fetch(cache)
    records = _records(modules)
    if limit:
        records = records[:: max(1, len(records) // limit)][:limit]
    render_svg = _svg_renderer()
    images, hi_res, items = [], [], []
    for i, rec in enumerate(records):
        split = "val" if _is_val(rec["base"]) else "train"
        for style, rel in sorted(rec["styles"].items()):
            path = modules / rel
            try:
                if style == "fluent":
                    big = render_svg(path, 256)
                    hi_res.append(big)
                    small = np.asarray(Image.fromarray(big).resize((64, 64), Image.BOX))
                else:
                    small = _composite_white(Image.open(path), 64)
            except Exception as exc:  # a broken file is skipped and counted, never fatal
                print("skip", rel, exc)
                continue
            items.append({"index": len(images), "style": style, "split": split, "hi_res": len(hi_res) - 1
                          if style == "fluent" else None, **{k: rec[k] for k in
                          ("hexcode", "base", "label", "base_label", "tags", "tone", "group")}})
            images.append(small)
        if i % 500 == 0:
            print(f"prepared {i}/{len(records)} emoji, {len(images)} images", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "dataset.tmp.npz", images=np.stack(images), hi_res=np.stack(hi_res))
    os.replace(out_dir / "dataset.tmp.npz", done)
    versions = {name: json.loads((modules / name / "package.json").read_text())["version"] for name in PACKAGES}
    counts = {}
    for item in items:
        counts.setdefault(item["style"], {"train": 0, "val": 0})[item["split"]] += 1
    meta = {"items": items, "versions": versions, "counts": counts, "licences": ART_LICENCES}
    (out_dir / "meta.json").write_text(json.dumps(meta))
    print("dataset:", len(images), "images at 64 px,", len(hi_res), "Fluent renders at 256 px;", counts)
    return out_dir


def captions_for(item: dict) -> list[str]:
    """Several caption variants: CLDR name, name with style, tags; skin tone is in the CLDR label."""
    style = STYLE_WORDS[item["style"]]
    label = item["label"]
    caps = [label, f"{label}, {style} style", f"{style} emoji of {label}"]
    if item["tags"]:
        caps.append(f"{label}, {', '.join(item['tags'][:3])}")
    return caps


def load(cache: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    data = np.load(cache / "data" / "dataset.npz")
    meta = json.loads((cache / "data" / "meta.json").read_text())
    return data["images"], data["hi_res"], meta
