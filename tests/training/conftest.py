"""Training fixtures: a small generated image folder and an event recorder."""

from __future__ import annotations

import pytest
from training_helpers import Events, make_images


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    make_images(folder, 3)
    return folder


@pytest.fixture
def events():
    return Events()
