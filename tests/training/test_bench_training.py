"""The bench's fine-tuning section: ours against a bare peft loop, alternately, on a tiny model (plumbing only;
the figures live in the report)."""

from __future__ import annotations

import os

from desktop_app.bench import training
from desktop_app.bench.common import Settings


def test_the_section_measures_both_loops_and_leaves_the_user_folder_alone(tiny_model_dir, user_home):
    result = training.run(Settings(model=str(tiny_model_dir), device="cpu", quick=True,
                                   defaults={"width": 32, "height": 32}))
    assert set(training.KEYS) <= set(result) and result["status"] == "measured"
    for key in ("ours_steps_per_s", "bare_steps_per_s"):
        assert result[key]["runs"] == 2 and result[key]["median"] > 0
    assert result["ratio"] > 0 and result["settings"]["resolution"] == 32
    assert os.environ["DESKTOP_APP_HOME"] == str(user_home)
    assert not (user_home / "loras").exists() or not any((user_home / "loras").iterdir())
