"""View → Explain (issue 18): the explain job in its worker, the sections with their figures, Export, Open
report, cancel, and the one line for what explain refuses. A quick fake explain function returns data of the
real shape (engine/explain's return value, built by hand below); one test runs the real engine on the embedded
model."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QSize, Qt, QUrl
from PySide6.QtGui import QColor, QDesktopServices, QImage
from PySide6.QtWidgets import QFileDialog

from desktop_app.engine.events import Progress, StageStarted
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import CancelledError, RequestError
from desktop_app.gui.explain_view import ExplainView, scaled_to_fit
from desktop_app.gui.workers import live_threads
from desktop_app.resources import default_model_dir
from desktop_app.studio.explain_report import build_sections

EMBEDDED_BUILT = (default_model_dir() / "model_index.json").exists()
TRAIN_STEPS = 1000


def fake_data(request: GenerationRequest, steps: int) -> dict:
    """explain()'s return value, of the real shape, from numbers made up here (a 4-channel 4x4 latent)."""
    rng = np.random.default_rng(request.seed or 0)
    seed = 7 if request.seed is None else request.seed

    def latent():
        return rng.standard_normal((4, 4, 4)).astype(np.float32)

    def picture(shade: int) -> Image.Image:
        return Image.new("RGB", (32, 32), (shade % 256, 90, 200))

    alpha_bar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, TRAIN_STEPS))
    timesteps = [TRAIN_STEPS - 1 - k * (TRAIN_STEPS // steps) for k in range(steps)]
    numbers = [{"step": k + 1, "timestep": float(t), "alpha_bar": float(alpha_bar[t]), "x0_from_scheduler": True,
                "x_t_std": 1.0, "eps_std": 1.0, "x0_std": 1.0} for k, t in enumerate(timesteps)]
    frames = [{**n, "x_t_image": picture(30 * k), "x0_image": picture(30 * k + 15), "eps": latent(),
               "x_t": latent(), "x0": latent()} for k, n in enumerate(numbers)]
    words = request.prompt.split()
    image = picture(200)
    return {
        "request": {"prompt": request.prompt, "negative_prompt": "", "seed": seed, "steps": steps,
                    "guidance": request.guidance_scale or 7.5, "sampler": "DPM++ 2M", "model": "fake-model",
                    "family": "sd1", "size": [32, 32], "device": "cpu", "dtype": "float32"},
        "tokens": {"prompt": request.prompt, "tokenizer": "CLIPTokenizer", "text_encoder": "CLIPTextModel",
                   "window": 77, "room": 75,
                   "tokens": [{"index": k, "text": f"{w}</w>", "id": 100 + k, "in_first_window": True}
                              for k, w in enumerate(words)],
                   "truncated": [], "windows": 1, "first_window": {"ids": [], "tokens": []},
                   "output_shape": [1, 77, 32], "embedding_width": 32, "strip_dims": 16,
                   "input_embeddings": rng.standard_normal((len(words), 16)).round(3).tolist(),
                   "encoder_output": rng.standard_normal((77, 16)).round(3).tolist()},
        "noise": {"latent": latent(), "seed": seed},
        "schedule": {"timesteps": list(range(TRAIN_STEPS)), "alpha_bar": alpha_bar.tolist(),
                     "beta_schedule": "linear", "prediction_type": "epsilon",
                     "linear_alpha_bar": alpha_bar.tolist(), "cosine_alpha_bar": alpha_bar[::-1].tolist(),
                     "used_timesteps": [float(t) for t in timesteps],
                     "used_alpha_bar": [float(alpha_bar[t]) for t in timesteps]},
        "forward": {"items": [{"timestep": t, "alpha_bar": float(alpha_bar[t]), "latent": latent(),
                               "image": picture(t)} for t in (0, 250, 999)], "clean": image},
        "reverse": {"frames": frames, "steps": numbers,
                    "latents": {name: np.stack([latent() for _ in numbers]) for name in ("x_t", "eps", "x0")},
                    "prediction_type": "epsilon"},
        "guidance": [{"label": label, "prompt": prompt, "guidance": scale, "image": picture(40 * k)}
                     for k, (label, prompt, scale) in enumerate([("no prompt", "", 1.0),
                                                                 ("prompt, unguided", request.prompt, 1.0),
                                                                 ("prompt (this run)", request.prompt, 7.5),
                                                                 ("prompt, high", request.prompt, 15.0)])],
        "latent": {"latent": latent(), "image": image, "vae_scale_factor": 8, "upscaled": None, "upscaler": None},
        "attention": None,
        "timings": {"total": 0.01},
    }


class FakeExplain:
    """explain(request, engine, emit, cancel=...) without torch: a load stage, ``steps`` Progress events
    (``delay`` seconds each, cancel checked before each), then fake_data, or ``error`` raised."""

    def __init__(self, steps: int = 4, delay: float = 0.0, error: BaseException | None = None):
        self.steps, self.delay, self.error = steps, delay, error
        self.requests: list = []
        self.steps_done = 0
        self.started = threading.Event()

    def __call__(self, request, engine, emit, cancel=None, other_prompts=(), compare=None):
        self.requests.append(request)
        self.other_prompts = list(other_prompts)
        self.compare = compare
        emit(StageStarted("load", "fake-model on cpu (float32)"))
        self.started.set()
        if self.error is not None:
            raise self.error
        for step in range(1, self.steps + 1):
            if cancel is not None and cancel.is_set():
                raise CancelledError("cancelled")
            time.sleep(self.delay)
            self.steps_done = step
            emit(Progress(step, self.steps, None, 0.01 * step, stage="denoise"))
        data = fake_data(request, self.steps)
        if compare is not None:  # run_grid's shape: a picture per cell
            x, y = compare
            data["compare"] = {"x": {"name": x.name, "values": list(x.values)},
                               "y": {"name": y.name, "values": list(y.values)} if y else None,
                               "labels": {"x": [x.label(v) for v in x.values],
                                          "y": [y.label(v) for v in y.values] if y else [""]},
                               "images": [[Image.new("RGB", (32, 32), (20 * k, 30 * j, 90))
                                           for k in range(len(x.values))]
                                          for j in range(len(y.values) if y else 1)],
                               "seeds": [[7] * len(x.values)] * (len(y.values) if y else 1)}
        return data


REQUEST = GenerationRequest(prompt="a red fox in the snow", seed=7, steps=4, guidance_scale=7.5)


@pytest.fixture
def make_view(qtbot, tmp_path):
    """make_view(explain, request_of=..., **ExplainView kwargs) -> a shown ExplainView (its worker on a
    torch-free engine unless told). The views are kept, and shut down after the test: qtbot holds weak
    references, and a view collected with its thread running would take the process down."""
    views = []

    def make(explain, request_of=lambda: REQUEST, **kwargs):
        kwargs.setdefault("engine_factory", lambda device: object())
        view = ExplainView(request_of, lambda: tmp_path / "outputs", explain=explain, **kwargs)
        views.append(view)
        qtbot.addWidget(view)
        view.resize(1200, 620)
        view.show()
        qtbot.waitExposed(view)
        return view

    yield make
    for view in views:
        view.shutdown()


def run_to_end(qtbot, view, timeout=10_000) -> str:
    with qtbot.waitSignal(view.ended, timeout=timeout) as blocker:
        qtbot.mouseClick(view.explain_button, Qt.MouseButton.LeftButton)
    return blocker.args[0]


def shown_figures(qtbot, view) -> list:
    """The figures of the section on screen, once each has been drawn at the room it got."""
    qtbot.waitUntil(lambda: all(not label.pixmap().isNull() for label in view.figure_labels))
    return view.figure_labels


def test_explain_lists_the_sections_and_shows_each_ones_figures(qtbot, make_view):
    fake = FakeExplain()
    view = make_view(fake)
    assert not view.export_button.isEnabled() and not view.open_button.isEnabled()

    assert run_to_end(qtbot, view) == "finished"

    assert fake.requests[0].prompt == REQUEST.prompt and fake.requests[0].seed == 7
    expected = build_sections(fake_data(REQUEST, 4))
    titles = [view.section_list.item(k).text() for k in range(view.section_list.count())]
    assert titles == [f"{s.number}. {s.title}" for s in expected]
    assert len(titles) == 8
    for row, section in enumerate(expected):
        view.section_list.setCurrentRow(row)
        assert view.title_label.text() == f"{section.number}. {section.title}"
        assert view.caption_label.text() == section.caption
        if section.figures:
            labels = shown_figures(qtbot, view)
            assert [label.name for label in labels] == [name for name, _ in section.figures]
            for label in labels:
                assert 0 < label.pixmap().width() <= label.width() and label.pixmap().height() <= label.height()
        else:
            assert view.figure_labels == []
    assert view.show_section_titled("reverse diffusion")
    reverse = shown_figures(qtbot, view)
    assert [label.name for label in reverse] == ["reverse.png"] and reverse[0].isVisible()
    assert "denoise: step 4 of 4 (0.0 s)" in view.progress_lines()
    assert sum(line.startswith("denoise:") for line in view.progress_lines()) == 1  # the steps share a line
    assert view.export_button.isEnabled() and view.open_button.isEnabled()
    assert "seed 7" in view.message()


def test_small_figures_are_enlarged_by_whole_pixels_and_large_ones_shrunk():
    small = QImage(10, 5, QImage.Format.Format_RGB888)
    small.fill(QColor(0, 0, 0))
    small.setPixelColor(0, 0, QColor(255, 0, 0))
    big = scaled_to_fit(small, QSize(35, 100))
    assert (big.width(), big.height()) == (30, 15)  # 3x, not 3.5x: every source pixel is 3x3 screen pixels
    assert all(big.pixelColor(x, y) == QColor(255, 0, 0) for x in range(3) for y in range(3))
    assert big.pixelColor(3, 0) == QColor(0, 0, 0) and big.pixelColor(0, 3) == QColor(0, 0, 0)
    large = QImage(400, 200, QImage.Format.Format_RGB888)
    shrunk = scaled_to_fit(large, QSize(100, 100))
    assert (shrunk.width(), shrunk.height()) == (100, 50)


def test_export_writes_the_report_and_open_report_opens_its_page(qtbot, make_view, tmp_path, monkeypatch):
    view = make_view(FakeExplain())
    assert run_to_end(qtbot, view) == "finished"
    chosen = tmp_path / "Documents"
    chosen.mkdir()
    (chosen / "letter.txt").write_text("not a report")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(chosen))
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)

    with qtbot.waitSignal(view.exported) as blocker:
        qtbot.mouseClick(view.export_button, Qt.MouseButton.LeftButton)

    # a folder with other files in it gets the report in a folder of its own
    folder = chosen / "explain-seed7"
    assert blocker.args == [str(folder)]
    for name in ("index.html", "report.pdf", "reverse.png", "tokens.png", "frames.json", "frames.npz"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    assert (folder / "report.pdf").read_bytes().startswith(b"%PDF")
    assert "Reverse diffusion" in (folder / "index.html").read_text(encoding="utf-8")
    assert sorted(path.name for path in chosen.iterdir()) == ["explain-seed7", "letter.txt"]
    assert str(folder) in view.message()

    qtbot.mouseClick(view.open_button, Qt.MouseButton.LeftButton)
    assert [Path(url.toLocalFile()) for url in opened] == [folder / "index.html"]


def test_open_report_before_any_export_writes_it_into_the_outputs_folder(qtbot, make_view, tmp_path, monkeypatch):
    view = make_view(FakeExplain())
    assert run_to_end(qtbot, view) == "finished"
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)

    assert view.open_report()

    page = Path(opened[0].toLocalFile())
    assert page.name == "index.html" and page.is_file()
    assert page.parent.parent == tmp_path / "outputs" / "explain" and page.parent.name.endswith("-seed7")
    assert (page.parent / "report.pdf").is_file()


def test_export_into_a_place_that_takes_no_files_is_told_in_one_line(qtbot, make_view, tmp_path):
    view = make_view(FakeExplain())
    assert run_to_end(qtbot, view) == "finished"
    blocker = tmp_path / "a-file"
    blocker.write_text("x")

    assert view.export_to(blocker / "report") is None

    assert view.message().startswith("The report was not written:") and "\n" not in view.message()
    assert view.report_folder is None and not (blocker / "report").exists()


def test_cancel_stops_the_worker(qtbot, make_view):
    fake = FakeExplain(steps=200, delay=0.05)
    view = make_view(fake)
    qtbot.mouseClick(view.explain_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(line.startswith("denoise:") for line in view.progress_lines()), timeout=5000)
    assert view.cancel_button.isEnabled() and not view.explain_button.isEnabled()

    with qtbot.waitSignal(view.ended, timeout=3000) as blocker:
        qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)

    assert blocker.args == ["cancelled"]
    assert fake.steps_done < 200
    assert view.section_list.count() == 0 and view.data is None
    assert view.message().startswith("Cancelled")
    assert view.explain_button.isEnabled() and not view.export_button.isEnabled()
    view.shutdown()
    assert not live_threads()


@pytest.mark.parametrize("error, words", [
    (RequestError("model", "the explain report covers the UNet models (the embedded model, Stable Diffusion "
                           "1.x, 2.x, XL) for now; tiny-flux is flux"), "tiny-flux is flux"),
    (RuntimeError("the engine broke\nsecond line\nthird line"), "the engine broke"),
])
def test_what_explain_refuses_is_one_line(qtbot, make_view, error, words):
    view = make_view(FakeExplain(error=error))

    assert run_to_end(qtbot, view) == "failed"

    message = view.message()
    assert message.startswith("Cannot explain this:") and words in message
    assert "\n" not in message and "Traceback" not in message
    assert view.section_list.count() == 0 and view.explain_button.isEnabled()


def test_the_compare_grid_row_asks_for_a_grid_in_the_guidance_section(qtbot, make_view):
    fake = FakeExplain()
    view = make_view(fake)
    qtbot.keyClicks(view.compare_fields.x_edit, "cfg=3, 9")
    qtbot.keyClicks(view.compare_fields.y_edit, 'prompt=red,"grey, dark"')

    assert run_to_end(qtbot, view) == "finished"

    x, y = fake.compare
    assert (x.name, x.values, y.name, y.values) == ("guidance", ("3", "9"), "prompt", ("red", "grey, dark"))
    assert view.show_section_titled("guidance")
    assert [label.name for label in shown_figures(qtbot, view)] == ["guidance.png", "compare.png"]
    assert "compare grid below" in view.caption_label.text()
    view.compare_fields.x_edit.clear()
    view.compare_fields.y_edit.clear()
    assert run_to_end(qtbot, view) == "finished" and fake.compare is None  # empty X: no grid


@pytest.mark.parametrize("x, y, words", [("steps=0,2", "", "compare grid X: steps=0: must be a whole number"),
                                         ("", "seed=1,2", "fill in X"),
                                         ("guidance=3", "prompt=pear,fig", "compare grid Y: prompt=pear: not in")])
def test_a_bad_compare_axis_is_told_before_any_thread_starts(qtbot, make_view, x, y, words):
    fake = FakeExplain()
    view = make_view(fake)
    view.compare_fields.x_edit.setText(x)
    view.compare_fields.y_edit.setText(y)

    assert not view.explain()

    assert words in view.message() and view.worker is None and fake.requests == []


def test_a_bad_form_value_is_told_before_any_thread_starts(qtbot, make_view):
    def bad_form():
        raise RequestError("steps", "must be between 1 and 150, got 0")

    fake = FakeExplain()
    view = make_view(fake, request_of=bad_form)

    assert not view.explain()

    assert "steps: must be between 1 and 150" in view.message()
    assert view.worker is None and fake.requests == []


def test_view_explain_in_the_window_explains_the_forms_request(qtbot, open_fake_window, tmp_path):
    window = open_fake_window()
    fake = FakeExplain()
    window.explain_view.explain_function = fake
    assert not window.explain_dock.isVisible()
    form = window.form
    form.prompt_edit.setPlainText("a lighthouse at night")
    form.random_check.setChecked(False)
    form.seed_spin.setValue(1234)
    form.steps_spin.setValue(6)
    form.guidance_spin.setValue(5.5)
    history = window.controller.history
    for k, prompt in enumerate(["a cat", "a lighthouse at night", "a dog", "a cat"]):  # oldest first
        history.commit(history.begin(tmp_path / f"{k}.png", {"prompt": prompt}, k), tmp_path / f"{k}.png")

    window.menus.explain_action.trigger()
    qtbot.waitUntil(window.explain_dock.isVisible)
    with qtbot.waitSignal(window.explain_view.ended, timeout=10_000) as blocker:
        qtbot.mouseClick(window.explain_view.explain_button, Qt.MouseButton.LeftButton)

    assert blocker.args == ["finished"]
    request = fake.requests[0]
    assert (request.prompt, request.seed, request.steps, request.guidance_scale) == \
           ("a lighthouse at night", 1234, 6, 5.5)
    assert fake.other_prompts == ["a cat", "a dog"], "section 2 matches the history's other recent prompts"
    assert window.explain_view.section_list.count() == 8
    assert window.explain_dock.height() >= window.height() * 0.3  # room for the figures


@pytest.mark.skipif(not EMBEDDED_BUILT, reason="the embedded model is not built")
def test_the_real_engine_explains_the_embedded_model(qtbot, make_view, tmp_path):
    start = tmp_path / "start.png"
    Image.new("RGB", (64, 64), (10, 120, 200)).save(start)
    requests = [GenerationRequest(prompt="a red fox in the snow", seed=7, steps=4, init_image=str(start)),
                GenerationRequest(prompt="a red fox in the snow", seed=7, steps=4)]
    view = make_view(None, lambda: requests.pop(0), device="cpu", engine_factory=None)  # the real explain

    # a start image is refused in one line, before the model loads
    assert run_to_end(qtbot, view, timeout=120_000) == "failed"
    assert "start image" in view.message() and "\n" not in view.message()

    began = time.perf_counter()
    assert run_to_end(qtbot, view, timeout=180_000) == "finished", view.message()
    seconds = time.perf_counter() - began
    assert view.section_list.count() == 8
    assert view.data["request"]["seed"] == 7 and len(view.data["reverse"]["steps"]) == 4
    assert view.show_section_titled("Reverse diffusion")
    assert [label.name for label in shown_figures(qtbot, view)] == ["reverse.png"]
    assert any(line.startswith("denoise: step 4 of 4") for line in view.progress_lines())
    index = view.export_to(tmp_path / "report")
    assert index is not None and index.is_file() and (tmp_path / "report" / "report.pdf").is_file()
    print(f"explain in the view on the embedded model, 4 steps: {seconds:.1f} s")
