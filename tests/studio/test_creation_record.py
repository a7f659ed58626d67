"""The creation record (studio/creation_record.py): a chain of decisions saved through the real studio functions
(tests/creation_chain.py), walked back from the last image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from desktop_app.errors import RequestError
from desktop_app.studio import creation_record
from desktop_app.studio.creation_record import build_record, for_export
from tests.creation_chain import Studio, copy_over, make_chain, sha


@pytest.fixture
def studio(tmp_path, monkeypatch):
    made = Studio(tmp_path / "out", monkeypatch)
    yield made
    made.history.close()


@pytest.fixture
def chain(studio):
    return make_chain(studio)


def _names(record):
    return [(event.kind, Path(event.image).name if event.image else None) for event in record.events]


def test_the_record_of_an_upscale_walks_back_to_every_decision_in_order(studio, chain):
    record = build_record(chain["four"], studio.history)
    assert _names(record) == [("attempt", "try.png"), ("attempt", "one.png"), ("attempt", "two.png"),
                              ("favourite", "two.png"), ("start_image", "two.png"), ("mask", "mask.png"),
                              ("attempt", "three.png"), ("upscale", "four.png")]
    first, one, two, _, picked, mask, three, upscale = record.events
    assert 'prompt "a fox", seed 1' in first.description and first.fields["changes"] == []
    assert 'prompt changed from "a fox" to "a red fox in snow"' in one.description
    assert "seed 1 → 3" in one.description
    assert "seed 3 → 7" in two.description and "guidance 7 → 9" in two.description
    assert {change["field"] for change in two.fields["changes"]} == {"seed", "guidance_scale"}
    assert picked.fields["entry_id"] == studio.entry(chain["two"]).id and picked.fields["missing"] is False
    assert picked.fields["sha256"] == sha(chain["two"]) and "strength 0.6" in picked.description
    assert sha(chain["mask"])[:12] in mask.description and mask.fields["mask_sha256"] == sha(chain["mask"])
    assert {change["field"] for change in three.fields["changes"]} == {"init_image", "mask"}
    assert upscale.fields["input"] == str(chain["three"]) and "(32x32)" in upscale.description
    assert "(128x128)" in upscale.description and "tiny-esrgan" in upscale.description
    times = [event.time for event in record.events if event.time is not None]
    assert times == sorted(times)


def test_unrelated_history_entries_are_not_in_the_session(studio, chain):
    record = build_record(chain["one"], studio.history)
    shown = {Path(event.image).name for event in record.events}
    assert shown == {"try.png", "one.png"}  # not old.png (3 hours before), not other.png (another model)
    assert "30 minutes" in record.rule and "same model" in record.rule
    alone = build_record(chain["old"], studio.history)  # nothing within 30 minutes before it
    assert _names(alone) == [("attempt", "old.png")] and 'prompt "a fox, long ago"' in alone.events[0].description


def test_text_markdown_and_json_hold_the_same_events(studio, chain):
    record = build_record(chain["four"], studio.history)
    data = json.loads(record.to_json())
    assert [event["description"] for event in data["events"]] == [e.description for e in record.events]
    assert data["events"][2]["when"] and data["session_rule"] == record.rule
    assert for_export(chain["four"], studio.history)["events"] == data["events"]
    markdown = record.to_markdown()
    assert markdown.count("\n| ") == len(record.events) + 2  # the header, its divider, a row per event
    text = record.to_text()
    positions = [text.index(event.description) for event in record.events]
    assert positions == sorted(positions)


def test_an_entry_of_the_history_is_a_starting_point_too(studio, chain):
    record = build_record(studio.entry(chain["three"]), studio.history)
    assert _names(record)[-1] == ("attempt", "three.png") and ("upscale", "four.png") not in _names(record)


def test_the_user_folders_history_is_read_when_none_is_given(studio, chain):
    record = build_record(chain["four"])
    assert [kind for kind, _ in _names(record)].count("attempt") == 4


def test_an_image_that_is_its_own_start_image_stops(studio):
    target = studio.folder / "self.png"
    Image.new("RGB", (32, 32), "white").save(target)  # a first picture there, used as the start image
    made = studio.save("self.png", studio.now + 60, seed=4, init_image=str(target))
    record = build_record(made, studio.history)
    kinds = [kind for kind, _ in _names(record)]
    assert "cycle" in kinds and kinds.count("attempt") == 1
    assert "not the one used" in next(e for e in record.events if e.kind == "start_image").description


def test_a_start_image_replaced_by_a_later_copy_stops(studio):
    used = studio.folder / "photo.png"
    Image.new("RGB", (32, 32), "yellow").save(used)
    made = studio.save("from-photo.png", studio.now + 600, seed=5, init_image=str(used))
    copy_over(made, used)  # later, the start image's file is overwritten with a copy of the result
    record = build_record(made, studio.history)
    kinds = [kind for kind, _ in _names(record)]
    assert kinds.count("attempt") == 1 and kinds[-1] == "attempt" and "cycle" in kinds


def test_a_missing_start_image_is_named_as_missing(studio):
    gone = studio.folder / "gone.png"
    Image.new("RGB", (32, 32), "blue").save(gone)
    made = studio.save("from-gone.png", studio.now + 60, seed=6, init_image=str(gone))
    gone.unlink()
    record = build_record(made, studio.history)
    picked = next(event for event in record.events if event.kind == "start_image")
    assert picked.fields["missing"] is True and "missing" in picked.description
    assert "gone.png" in picked.description
    assert [kind for kind, _ in _names(record)] == ["start_image", "attempt"]


def test_a_start_image_deleted_after_use_keeps_its_history(studio, chain):
    chain["two"].unlink()
    record = build_record(chain["three"], studio.history)
    picked = next(event for event in record.events if event.kind == "start_image")
    assert picked.fields["missing"] is True and "the history keeps its recipe" in picked.description
    assert ("attempt", "two.png") in _names(record)


def test_the_walk_back_stops_at_the_depth_limit(studio, chain, monkeypatch):
    monkeypatch.setattr(creation_record, "MAX_DEPTH", 1)
    record = build_record(chain["four"], studio.history)
    assert record.events[-1].kind == "upscale" and any(event.kind == "limit" for event in record.events)


def test_a_path_that_is_neither_a_file_nor_in_the_history_is_refused(studio, tmp_path):
    with pytest.raises(RequestError, match="nowhere.png"):
        build_record(tmp_path / "nowhere.png", studio.history)


def test_a_copy_of_a_history_image_is_found_by_its_content(studio, chain, tmp_path):
    copy = tmp_path / "copy.png"
    copy_over(chain["two"], copy)
    record = build_record(copy, studio.history)
    assert _names(record)[-2:] == [("attempt", "two.png"), ("favourite", "two.png")]
    assert any("hashed" in note for note in record.notes)


def test_the_explain_report_gets_a_record_page(studio, chain, tmp_path):
    import pypdfium2 as pdfium

    from desktop_app.studio.explain_report import RECORD_TITLE, write_report
    from tests.studio.test_explain_report import fake_data

    record = for_export(chain["four"], studio.history)
    folder = tmp_path / "report"
    written = write_report(fake_data(), folder, record=record)
    assert folder / "record.json" in written
    assert json.loads((folder / "record.json").read_text(encoding="utf-8")) == json.loads(json.dumps(record))
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert RECORD_TITLE in page and "seed 3 → 7" in page
    pdf = pdfium.PdfDocument(str(folder / "report.pdf"))
    last = pdf[len(pdf) - 1].get_textpage().get_text_range()
    assert last.splitlines()[0].strip() == RECORD_TITLE and "seed 3 -> 7" in last and "four.png" in last
    plain = tmp_path / "plain"
    write_report(fake_data(), plain)
    assert not (plain / "record.json").exists()
    assert len(pdfium.PdfDocument(str(plain / "report.pdf"))) == len(pdf) - 1
