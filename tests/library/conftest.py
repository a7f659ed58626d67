"""The library tests read no real Hugging Face cache: each test gets an empty one of its own."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache
