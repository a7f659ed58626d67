"""Shared test setup: user folders in tmp_path, offline hub, tiny models built once per session, a fake hub."""

from __future__ import annotations

import shutil

import pytest
from fake_hub import TINY_SD_REPO, FakeHub
from tiny_models import build_embedded, build_plain_sd


@pytest.fixture(autouse=True)
def user_home(tmp_path, monkeypatch):
    """Settings, logs and outputs go to this test's tmp_path; nothing may reach a model hub."""
    home = tmp_path / "home"
    monkeypatch.setenv("DESKTOP_APP_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return home


@pytest.fixture(scope="session", autouse=True)
def plain_torch_on_the_cpu():
    """Plain torch for the embedded format on the CPU, from the session's start (module fixtures too): an
    OpenVINO conversion per test folder would cost seconds each (tests/engine/test_openvino_path.py asks)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DESKTOP_APP_CPU_PATH", "torch")
        yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random model in the embedded format (MiniLM text encoder from its package, 4x upscaler)."""
    return build_embedded(tmp_path_factory.mktemp("models") / "tiny-embedded")


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    """A tiny random plain diffusers Stable Diffusion folder with its own CLIP text encoder and tokenizer."""
    return build_plain_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture
def tiny_sd_hub(tiny_sd_dir, tmp_path, monkeypatch):
    """A FakeHub serving a copy of the tiny SD folder as TINY_SD_REPO at HF_ENDPOINT, with the environment
    cli.main sets when the user has not set HF_HUB_OFFLINE: offline, marked as the app's default."""
    from huggingface_hub import constants

    folder = tmp_path / "repo"
    shutil.copytree(tiny_sd_dir, folder)
    server = FakeHub(TINY_SD_REPO, folder).start()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DESKTOP_APP_DEFAULT_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # the library lists no real cache
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.stop()
