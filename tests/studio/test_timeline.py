"""The timeline store and its animation writer (plain PIL): frames per step, the final frame, WebP and GIF."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from desktop_app.studio import timeline
from desktop_app.studio.timeline import Timeline, TimelineError


def shade(k: int, size=(16, 16)) -> Image.Image:
    return Image.new("RGB", size, (40 * k % 256, 90, 255 - 40 * k % 256))


def paced_timeline(steps=6, every=2) -> Timeline:
    """What a paced run gives: a preview on some steps only (the others None), then the final image."""
    store = Timeline()
    for step in range(1, steps + 1):
        store.add(step, steps, shade(step) if step % every == 1 or every == 1 else None)
    store.finish(shade(9, (64, 64)))
    return store


def read_frames(path):
    with Image.open(path) as image:
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            image.load()  # WebP sets the frame's duration when it decodes it
            durations.append(image.info.get("duration"))
        return image.n_frames, image.size, getattr(image, "is_animated", False), durations


def test_only_steps_with_a_preview_are_kept_and_the_final_image_is_last():
    store = paced_timeline(steps=6, every=2)
    assert [f.step for f in store.frames] == [1, 3, 5, 6]
    assert [f.final for f in store.frames] == [False, False, False, True]
    assert store.frames[-1].label == "step 6 / 6 · final image" and store.frames[1].label == "step 3 / 6"
    store.add(7, 6, shade(1))
    assert len(store) == 4, "nothing is added after the final image"
    store.reset()
    assert len(store) == 0 and not store.finished


@pytest.mark.parametrize("suffix", [".webp", ".gif"])
def test_the_animation_has_one_frame_per_kept_frame(tmp_path, suffix):
    store = paced_timeline(steps=8, every=1)
    path = tmp_path / f"steps{suffix}"
    assert store.write(path) == len(store) == 9
    count, size, animated, durations = read_frames(path)
    assert count == 9 and animated
    assert size == (64, 64), "every frame takes the final image's size"
    assert durations[-1] == timeline.FINAL_HOLD_MS and durations[-1] > durations[0] > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".saving-")]


def test_identical_frames_are_merged_and_counted_as_written(tmp_path):
    frames = [shade(1), shade(1), shade(2)]
    assert timeline.write_animation(frames, tmp_path / "a.gif", [100, 100, 500]) == 2
    count, _, _, durations = read_frames(tmp_path / "a.gif")
    assert count == 2 and durations == [200, 500]


def test_a_large_final_image_is_scaled_down():
    assert timeline._fitted((2048, 1024)) == (timeline.MAX_SIDE, timeline.MAX_SIDE // 2)
    assert timeline._fitted((64, 32)) == (64, 32)


def test_durations_share_the_play_time_and_hold_the_final_frame():
    assert timeline.frame_durations(21) == [150] * 20 + [timeline.FINAL_HOLD_MS]
    assert timeline.frame_durations(3) == [timeline.FRAME_MS_MAX] * 2 + [timeline.FINAL_HOLD_MS]
    assert timeline.frame_durations(151)[:-1] == [timeline.FRAME_MS_MIN] * 150
    assert timeline.frame_durations(4, final=False) == [timeline.FRAME_MS_MAX] * 4


def test_bad_names_and_places_are_refused_clearly(tmp_path):
    store = paced_timeline()
    with pytest.raises(TimelineError, match=r"\.webp or \.gif.*\.png is neither"):
        store.write(tmp_path / "a.png")
    with pytest.raises(TimelineError, match="does not exist"):
        store.write(tmp_path / "missing" / "a.gif")
    with pytest.raises(TimelineError, match="is a folder"):
        (tmp_path / "d.gif").mkdir()
        store.write(tmp_path / "d.gif")
    with pytest.raises(TimelineError, match="empty"):
        Timeline().write(tmp_path / "a.webp")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a folder that cannot be written")
def test_an_unwritable_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(TimelineError, match="cannot write"):
            paced_timeline().write(locked / "a.webp")
    finally:
        locked.chmod(0o700)
    assert list(locked.iterdir()) == []


def test_a_full_disk_leaves_no_file_behind(tmp_path, monkeypatch):
    import errno

    real_save = Image.Image.save

    def full_disk(self, fp, *args, **kwargs):
        if kwargs.get("format") == "WEBP":  # the animation (written into an open temporary file)
            fp.write(b"RIFF partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(TimelineError, match="cannot write .*No space left on device"):
        paced_timeline().write(tmp_path / "a.webp")
    assert list(tmp_path.iterdir()) == []


def test_an_animated_webp_carries_the_iptc_mark(tmp_path):
    store = paced_timeline(steps=4, every=1)
    path = tmp_path / "steps.webp"
    store.write(path)
    with Image.open(path) as image:
        assert b"trainedAlgorithmicMedia" in image.info.get("xmp", b"")
