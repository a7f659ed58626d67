"""Shared test setup: user folders in tmp_path, offline hub, and tiny models built once per session."""

from __future__ import annotations

import pytest
from tiny_models import build_embedded, build_plain_sd


@pytest.fixture(autouse=True)
def user_home(tmp_path, monkeypatch):
    """Settings, logs and outputs go to this test's tmp_path; nothing may reach a model hub."""
    home = tmp_path / "home"
    monkeypatch.setenv("DESKTOP_APP_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random model in the embedded format (MiniLM text encoder from its package, 4x upscaler)."""
    return build_embedded(tmp_path_factory.mktemp("models") / "tiny-embedded")


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    """A tiny random plain diffusers Stable Diffusion folder with its own CLIP text encoder and tokenizer."""
    return build_plain_sd(tmp_path_factory.mktemp("models") / "tiny-sd")
