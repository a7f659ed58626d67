"""The ControlNet preprocessors that read a model the user has (issue 17), each a transformers folder as
save_pretrained writes it (config.json, model.safetensors, preprocessor_config.json) in
``<user folder>/models/preprocessors/KIND/``: the folder named by KIND's environment variable (a path, or a name
in that folder), else the first one there by name.

- "depth": a depth-estimation model (Depth Anything or DPT), AutoModelForDepthEstimation; its map at the
  image's size, normalised to 0..255 with the nearest white (the models give relative inverse depth).
- "pose": a ViTPose model (VitPoseForPoseEstimation), the whole image as the one person box; its 17 COCO
  keypoints drawn as an OpenPose-style skeleton (coloured limbs and joints on black), at the image's size.

Loaded with local files only, on the CPU, once per process (per folder and weights' time); only .safetensors
weights, a folder of pickles is refused in one line. torch and transformers are imported when a map is made,
never when this module is.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from desktop_app import paths
from desktop_app.errors import RequestError

ENV = {"depth": "DESKTOP_APP_DEPTH_MODEL", "pose": "DESKTOP_APP_POSE_MODEL"}
DEPTH_ENV, POSE_ENV = ENV["depth"], ENV["pose"]
WHAT = {"depth": "Depth Anything or DPT", "pose": "ViTPose"}
PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# the COCO skeleton (keypoint pairs: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles) and
# OpenPose's limb colours; a keypoint scoring under POSE_MIN_SCORE is not drawn, nor are its limbs
COCO_LIMBS = ((0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12),
              (11, 12), (11, 13), (13, 15), (12, 14), (14, 16))
LIMB_COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
                (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
                (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
POSE_MIN_SCORE = 0.3
_lock = threading.Lock()
_cache: dict[tuple[str, str, int], tuple] = {}  # (kind, folder, weights' mtime) -> (model, image processor)


def _is_model(folder: Path) -> bool:
    return folder.is_dir() and (folder / "config.json").is_file()


def model_folder(kind: str) -> Path:
    """The ``kind`` model's folder; RequestError ("controls") saying where to put one when there is none."""
    library = paths.preprocessors_dir(kind)
    named = os.environ.get(ENV[kind], "").strip()
    if named:
        folder = Path(named).expanduser()
        folder = folder if folder.is_absolute() else library / named
        if not _is_model(folder):
            raise RequestError("controls", f"{ENV[kind]} names {named!r}, which is no {kind} model folder "
                                           f"(config.json, model.safetensors, preprocessor_config.json)")
        return folder
    found = sorted(f for f in library.iterdir() if _is_model(f))
    if not found:
        raise RequestError("controls", f"the {kind} preprocessor needs a {kind} model: put a transformers "
                                       f"{WHAT[kind]} folder (config.json, model.safetensors, "
                                       f"preprocessor_config.json) in {library}")
    return found[0]


def depth_folder() -> Path:
    return model_folder("depth")


def _weights(folder: Path, kind: str) -> Path:
    safe = sorted(folder.glob("*.safetensors"))
    if safe:
        return safe[0]
    if any(f.suffix in PICKLES for f in folder.iterdir()):
        raise RequestError("controls", f"{kind} model {folder.name!r} has only pickle weights; only .safetensors "
                                       f"are loaded (save it with save_pretrained(safe_serialization=True))")
    raise RequestError("controls", f"{kind} model {folder.name!r} has no .safetensors weights")


def _load(kind: str) -> tuple:
    folder = model_folder(kind)
    weights = _weights(folder, kind)
    key = (kind, str(folder.resolve()), weights.stat().st_mtime_ns)
    with _lock:
        if key not in _cache:
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation, VitPoseForPoseEstimation

            kind_class = AutoModelForDepthEstimation if kind == "depth" else VitPoseForPoseEstimation
            try:
                model = kind_class.from_pretrained(folder, local_files_only=True, use_safetensors=True)
                processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise RequestError("controls", f"{kind} model {folder.name!r} cannot be loaded: {first}") from exc
            for old in [k for k in _cache if k[0] == kind]:  # one model of a kind at a time
                del _cache[old]
            _cache[key] = (model.to("cpu").eval(), processor)
        return _cache[key]


def depth(image: Image.Image) -> Image.Image:
    """The depth model's estimate for ``image``, at its size, normalised to 0..255 with the nearest white (the
    models give relative inverse depth: larger is nearer), as an RGB image."""
    import torch

    model, processor = _load("depth")
    inputs = processor(images=image.convert("RGB"), return_tensors="pt")
    with torch.inference_mode():
        predicted = model(**inputs).predicted_depth
    resized = torch.nn.functional.interpolate(predicted.reshape(1, 1, *predicted.shape[-2:]).float(),
                                              size=(image.height, image.width), mode="bicubic",
                                              align_corners=False)[0, 0].numpy()
    low, high = float(resized.min()), float(resized.max())
    scaled = (resized - low) / (high - low) * 255 if high > low else np.zeros_like(resized)
    grey = scaled.round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB")


def keypoints(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The pose model's 17 COCO keypoints (x, y in the image's pixels) and their scores, the whole image as the
    one person box."""
    import torch

    model, processor = _load("pose")
    boxes = [[[0.0, 0.0, float(image.width), float(image.height)]]]  # COCO boxes: x, y, width, height
    inputs = processor(images=image.convert("RGB"), boxes=boxes, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    person = processor.post_process_pose_estimation(outputs, boxes=boxes)[0][0]
    return person["keypoints"].float().numpy(), person["scores"].float().numpy()


def draw_skeleton(points: np.ndarray, scores: np.ndarray, size: tuple[int, int],
                  min_score: float | None = None) -> Image.Image:
    """``points`` (17 COCO keypoints, x and y) drawn OpenPose-style on black at ``size`` (width, height): each
    limb whose two ends score at least ``min_score`` (POSE_MIN_SCORE) a coloured line, each such joint a dot."""
    import cv2

    least = POSE_MIN_SCORE if min_score is None else min_score
    width, height = size
    canvas = np.zeros((height, width, 3), np.uint8)
    thick = max(1, round(min(width, height) / 128))
    seen = [bool(s >= least) for s in scores]
    where = [(int(round(float(x))), int(round(float(y)))) for x, y in points]
    for colour, (a, b) in zip(LIMB_COLOURS, COCO_LIMBS):
        if seen[a] and seen[b]:
            cv2.line(canvas, where[a], where[b], colour, 2 * thick, cv2.LINE_AA)
    for k, point in enumerate(where):
        if seen[k]:
            cv2.circle(canvas, point, 2 * thick, LIMB_COLOURS[k % len(LIMB_COLOURS)], -1, cv2.LINE_AA)
    return Image.fromarray(canvas, "RGB")


def pose(image: Image.Image) -> Image.Image:
    """The pose model's skeleton of the person filling ``image``, OpenPose-style on black, at its size."""
    points, scores = keypoints(image)
    return draw_skeleton(points, scores, image.size)
