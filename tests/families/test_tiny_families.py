"""The tiny random model of each family (tests/tiny_families.py), built offline: the folder loads with its
diffusers pipeline class, generates 2 steps at 32x32, and the same seed gives the same image."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_families import FAMILIES, build_family

TESTS = Path(__file__).resolve().parents[1]

PIPELINES = {
    "sd1": "StableDiffusionPipeline", "sd2": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
    "sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline", "flux-schnell": "FluxPipeline",
    "pixart": "PixArtSigmaPipeline", "sana": "SanaPipeline", "sana-sprint": "SanaSprintPipeline",
    "chroma": "ChromaPipeline", "z-image": "ZImagePipeline", "qwen-image": "QwenImagePipeline",
    "flux2-klein": "Flux2KleinPipeline",
}

# What the engine reads from a family: latent channels and the VAE's downscale, as published (the SD builders
# of tiny_models and tiny_checkpoints, older, use a 4x VAE).
LATENTS = {
    "sd1": (4, 4), "sd2": (4, 4), "sdxl": (4, 4), "sd3": (16, 8), "flux": (16, 8), "flux-schnell": (16, 8),
    "pixart": (4, 8), "sana": (32, 32), "sana-sprint": (32, 32), "chroma": (16, 8), "z-image": (16, 8),
    "qwen-image": (16, 8), "flux2-klein": (32, 8),
}


def _latent_layout(pipe) -> tuple[int, int]:
    vae = pipe.vae.config
    if "z_dim" in vae:  # Qwen-Image's Wan-style VAE
        return vae.z_dim, 2 ** len(vae.temperal_downsample)
    blocks = vae.encoder_block_out_channels if "encoder_block_out_channels" in vae else vae.block_out_channels
    return vae.latent_channels, 2 ** (len(blocks) - 1)


@pytest.fixture(scope="session", params=FAMILIES)
def family_pipe(request, tmp_path_factory):
    """(family, folder, the pipeline loaded from the folder): each family built and loaded once."""
    import diffusers

    family = request.param
    folder = build_family(family, tmp_path_factory.mktemp("families") / family)
    with pytest.MonkeyPatch.context() as patch:  # the session fixture runs outside the test's offline patch
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        pipe = getattr(diffusers, PIPELINES[family]).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return family, folder, pipe


def _generate(pipe, seed: int) -> np.ndarray:
    import torch

    # Sana Sprint's resolution binning knows 1024-pixel bins only: 32x32 would run at 1024x1024 (a second)
    extra = {"use_resolution_binning": False} if type(pipe).__name__ == "SanaSprintPipeline" else {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is as fast, and suffers least from a busy machine
    try:
        out = pipe(prompt="a red cat", num_inference_steps=2, height=32, width=32, output_type="np",
                   generator=torch.Generator().manual_seed(seed), **extra)
    finally:
        torch.set_num_threads(threads)
    return out.images[0]


def test_every_family_is_listed():
    assert set(FAMILIES) == set(PIPELINES) == set(LATENTS)


def test_the_folder_names_its_pipeline_and_keeps_the_published_latent_layout(family_pipe):
    family, folder, pipe = family_pipe
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == PIPELINES[family]
    assert type(pipe).__name__ == PIPELINES[family]
    assert _latent_layout(pipe) == LATENTS[family]


def test_two_steps_give_an_image_of_the_asked_size_and_the_seed_reproduces_it(family_pipe):
    family, _, pipe = family_pipe
    first, again, other = _generate(pipe, 7), _generate(pipe, 7), _generate(pipe, 8)
    assert first.shape == (32, 32, 3)
    assert np.isfinite(first).all() and first.std() > 0  # random weights, but not a blank or broken picture
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)  # the seed is what made them equal


def _command_line(*args: str) -> int:
    """Run ``python tests/tiny_models.py ARGS`` in this process (torch is imported already): its exit code."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [str(TESTS / "tiny_models.py"), *args])
        try:
            runpy.run_path(str(TESTS / "tiny_models.py"), run_name="__main__")
        except SystemExit as exit_:
            return exit_.code
    return 0


def test_the_command_line_writes_a_family_and_names_the_families_it_knows(tmp_path, capsys):
    assert _command_line("nope", str(tmp_path / "x")) == 2 and not (tmp_path / "x").exists()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and all(family in lines[0] for family in ("embedded", *FAMILIES))

    assert _command_line("flux-schnell", str(tmp_path / "flux")) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "flux")
    index = json.loads((tmp_path / "flux" / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline" and (tmp_path / "flux" / "tokenizer_2").is_dir()
    assert _command_line("flux-schnell", str(tmp_path / "flux")) == 2  # never writes over a folder in use
