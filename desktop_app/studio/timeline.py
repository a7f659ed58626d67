"""The denoising timeline of one generation: the preview frames, one per step that got one, then the final image,
and the animation (WebP or GIF) made of them. Plain PIL: no Qt, no torch.

The engine paces its previews (``engine.preview.PreviewPacer``): on a fast device every step gets one, on a slow
one every second or third, so a timeline holds one frame per step *that had a preview*, in step order. Progress
events without a preview (skipped steps, upscale tiles, hires steps) add nothing. The final image is always the
last frame. The window keeps one Timeline (the last generation), the command line writes it with ``--timeline``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from desktop_app.paths import write_atomically

FORMATS = {".webp": "WEBP", ".gif": "GIF"}
FRAME_MS_TOTAL = 3000  # the steps together play in about this long ...
FRAME_MS_MIN, FRAME_MS_MAX = 60, 250  # ... but each step stays on screen this long at least / at most
FINAL_HOLD_MS = 1500  # the final image is held so the eye can land on it before the loop restarts
MAX_SIDE = 768  # animation frames are at most this large a side (an upscaled 2048x2048 result would be huge)


class TimelineError(ValueError):
    """The animation cannot be written there (bad extension, unwritable place, no frames)."""


@dataclass(frozen=True)
class Frame:
    image: Image.Image
    step: int  # 1-based step of the denoising; for the final frame, the last step
    total: int
    final: bool = False

    @property
    def label(self) -> str:
        text = f"step {self.step} / {self.total}"
        return f"{text} · final image" if self.final else text


class Timeline:
    """Frames of the last generation, in order. Use from one thread."""

    def __init__(self):
        self.frames: list[Frame] = []

    def __len__(self) -> int:
        return len(self.frames)

    def reset(self) -> None:
        self.frames = []

    def add(self, step: int, total: int, preview) -> bool:
        """Keep the preview of ``step`` (a PIL image). None (a step the pacer skipped, an upscale tile) adds
        nothing, and so does anything after ``finish``. True when a frame was kept."""
        if preview is None or self.finished:
            return False
        self.frames.append(Frame(preview.copy(), int(step), int(total)))
        return True

    def finish(self, image, total: int | None = None) -> None:
        """The final image becomes the last frame (labelled with the last step)."""
        if image is None:
            return
        if self.finished:
            self.frames.pop()
        last = self.frames[-1] if self.frames else None
        total = int(total if total is not None else (last.total if last else 1))
        self.frames.append(Frame(image.copy(), total, total, final=True))

    @property
    def finished(self) -> bool:
        return bool(self.frames) and self.frames[-1].final

    def durations(self) -> list[int]:
        return frame_durations(len(self.frames), self.finished)

    def write(self, path: Path | str) -> int:
        """Write the animation; the format follows the extension. Returns the number of frames in the file."""
        return write_animation([frame.image for frame in self.frames], path, self.durations())


def check_path(path: Path | str) -> tuple[Path, str]:
    """(path, Pillow format) for an animation file name, or TimelineError naming what is wrong."""
    path = Path(path).expanduser()
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TimelineError(f"{path}: the timeline is written as an animated .webp or .gif; "
                            f"{path.suffix or 'no extension'} is neither")
    if path.is_dir():
        raise TimelineError(f"{path} is a folder; give a file name ending in .webp or .gif")
    return path, fmt


def frame_durations(count: int, final: bool = True) -> list[int]:
    """Milliseconds per frame: the steps share about FRAME_MS_TOTAL, the final frame is held FINAL_HOLD_MS."""
    steps = count - 1 if final and count else count
    each = min(FRAME_MS_MAX, max(FRAME_MS_MIN, round(FRAME_MS_TOTAL / max(steps, 1))))
    return [each] * steps + ([FINAL_HOLD_MS] if final and count else [])


def write_animation(images: list, path: Path | str, durations: list[int] | None = None) -> int:
    """Write ``images`` (PIL) as an animated WebP or GIF at ``path`` (by its extension), looping forever.

    All frames take the size of the last one (the final image; previews are drawn at the request's size and
    an upscaled result is larger), at most MAX_SIDE a side. Consecutive identical frames become one frame
    holding their summed time: both encoders would merge them anyway, and this way the count returned is
    the count in the file. Written to a temporary file, then renamed: no half-written animation is left.
    Raises TimelineError for a bad name or a place that cannot be written."""
    path, fmt = check_path(path)
    if not images:
        raise TimelineError("the timeline is empty: generate an image first")
    durations = list(durations) if durations is not None else frame_durations(len(images))
    size = _fitted(images[-1].size)
    frames: list[Image.Image] = []
    times: list[int] = []
    for image, ms in zip(images, durations):
        frame = _rgb(image)
        if frame.size != size:
            frame = frame.resize(size, Image.Resampling.LANCZOS if frame.width > size[0] else
                                 Image.Resampling.BILINEAR)
        if frames and frame.tobytes() == frames[-1].tobytes():
            times[-1] += ms
            continue
        frames.append(frame)
        times.append(int(ms))
    options = {"quality": 90, "method": 4} if fmt == "WEBP" else {}
    if fmt == "WEBP":  # the IPTC mark every image of the studio carries (GIF has no XMP)
        from desktop_app.studio.png_recipe import xmp_packet

        options["xmp"] = xmp_packet().encode("utf-8")
    if not path.parent.is_dir():
        raise TimelineError(f"cannot write {path}: the folder {path.parent} does not exist")

    def write(stream) -> None:
        frames[0].save(stream, format=fmt, save_all=True, append_images=frames[1:], duration=times, loop=0,
                       **options)

    try:  # a ".saving-" temporary file, as the PNG files have: the start-up check removes a leftover one
        write_atomically(path, write, prefix=".saving-")
    except OSError as exc:
        raise TimelineError(f"cannot write {path}: {exc.strerror or exc}") from None
    return len(frames)


def _fitted(size: tuple[int, int]) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")
