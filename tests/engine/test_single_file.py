"""Single-file checkpoints in the original layout (SD 1.x, 2.x, XL), loaded through the real loader offline."""

from __future__ import annotations

import socket

import pytest
import torch
from original_layout import pipeline_to_original
from tiny_checkpoints import FAMILIES, REFINER, build_tiny_checkpoint

from desktop_app.models import single_file
from desktop_app.errors import ModelError
from desktop_app.engine.loader import load_model

FAMILY_WIDTH = {"sd1": 768, "sd2": 1024, "sdxl": 2048}
# an SD 2 file without the v_pred marker loads as 768 v-prediction, diffusers' own default
REPORTED = {"sd1": "sd1", "sd2": "sd2-v", "sdxl": "sdxl"}


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("single-file")
    return {family: build_tiny_checkpoint(family, root) for family in FAMILIES}


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network blocked in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _forward(family, state, pipe):
    """diffusers' own original-to-diffusers converters, per component."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )

    result = {"unet": convert_ldm_unet_checkpoint(state, pipe.unet.config),
              "vae": convert_ldm_vae_checkpoint(state, pipe.vae.config)}
    if family == "sdxl":
        result["text_encoder"] = convert_ldm_clip_checkpoint(state)
        result["text_encoder_2"] = convert_open_clip_checkpoint(pipe.text_encoder_2, state,
                                                                prefix="conditioner.embedders.1.model.")
    elif family == "sd2":
        result["text_encoder"] = convert_open_clip_checkpoint(pipe.text_encoder, state)
    else:
        result["text_encoder"] = convert_ldm_clip_checkpoint(state)
    return result


def _strip_text_model(state):
    return {k.removeprefix("text_model."): v for k, v in state.items() if not k.endswith("position_ids")}


@pytest.mark.parametrize("family", FAMILIES)
def test_reverse_mapping_round_trips_through_diffusers_converters(tiny_checkpoints, family):
    pipe = tiny_checkpoints[family].pipe
    original = pipeline_to_original(pipe, family)
    assert all(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "conditioner."))
               for k in original)
    converted = _forward(family, original, pipe)
    for name, state in converted.items():
        expected = getattr(pipe, name).state_dict()
        if name.startswith("text_encoder"):
            expected, state = _strip_text_model(expected), _strip_text_model(state)
        assert set(state) == set(expected), f"{name}: {set(state) ^ set(expected)}"
        for key, value in expected.items():
            assert torch.equal(state[key], value), f"{name}.{key} differs after the round trip"


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_checkpoint_loads_through_the_loader_offline(tiny_checkpoints, family, no_network):
    tiny = tiny_checkpoints[family]
    loaded = load_model(str(tiny.checkpoint), "cpu", torch.float32, config_dir=tiny.config_dir)
    assert loaded.family == REPORTED[family]
    assert loaded.path == tiny.checkpoint
    assert loaded.pipe.unet.config.cross_attention_dim == FAMILY_WIDTH[family]
    names = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family == "sdxl" else [])
    for name in names:
        got, want = getattr(loaded.pipe, name).state_dict(), getattr(tiny.pipe, name).state_dict()
        got, want = _strip_text_model(got), _strip_text_model(want)
        assert set(got) == set(want)
        assert all(torch.equal(got[k], want[k]) for k in want), f"{name} weights differ from the source model"
    # the loaded pipeline runs and gives the source pipeline's image for the same seed
    kwargs = dict(prompt="a red cat", num_inference_steps=2, height=32, width=32, output_type="np",
                  guidance_scale=5.0)
    image = loaded.pipe(**kwargs, generator=torch.Generator().manual_seed(3)).images
    tiny.pipe.set_progress_bar_config(disable=True)
    expected = tiny.pipe(**kwargs, generator=torch.Generator().manual_seed(3)).images
    assert image.shape == (1, 32, 32, 3)
    assert (abs(image - expected)).max() < 1e-4


def test_family_from_tensors_not_the_name(tiny_checkpoints, tmp_path):
    renamed = tmp_path / "sdxl-looking-name.safetensors"
    renamed.write_bytes(tiny_checkpoints["sd1"].checkpoint.read_bytes())
    assert single_file.detect_family(renamed) == "sd1"
    assert single_file.detect_family(tiny_checkpoints["sdxl"].checkpoint) == "sdxl"


def test_sd2_config_choice_and_override():
    assert single_file.choose_config("sd2", None) == "sd2-v"  # diffusers' own default for SD 2
    assert single_file.choose_config("sd2", "epsilon") == "sd2"
    assert single_file.choose_config("sd2-v", "epsilon") == "sd2"
    assert single_file.choose_config("sd2-v", None) == "sd2-v"
    assert single_file.choose_config("sd1", "v_prediction") == "sd1"
    assert single_file.normalize_prediction_type("v") == "v_prediction"
    with pytest.raises(ModelError, match="Unknown prediction type"):
        single_file.normalize_prediction_type("x0")


def test_prediction_type_override_reaches_the_scheduler(tiny_checkpoints, no_network):
    tiny = tiny_checkpoints["sd1"]
    loaded = load_model(str(tiny.checkpoint), "cpu", torch.float32, config_dir=tiny.config_dir,
                        prediction_type="v")
    assert loaded.pipe.scheduler.config.prediction_type == "v_prediction"
    assert loaded.base_scheduler_config.prediction_type == "v_prediction"


def test_unsupported_family_and_bad_files_are_clear(tmp_path):
    with pytest.raises(ModelError, match="not supported"):
        single_file.bundled_config("sd3")
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # a pickle named .safetensors
    with pytest.raises(ModelError):
        load_model(str(fake), "cpu", torch.float32)


@pytest.mark.parametrize("family", ["sd1", "sd2", "sd2-v", "sdxl", REFINER])
def test_bundled_config_folder_exists_for_each_family(family):
    folder = single_file.bundled_config(family)
    assert (folder / "model_index.json").is_file()


def test_a_lora_is_not_loaded_as_a_model(tmp_path):
    from safetensors.torch import save_file

    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(320, 4),
               "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight":
                   torch.zeros(4, 768),
               "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight":
                   torch.zeros(320, 4)}, lora)
    with pytest.raises(ModelError, match="style.safetensors is not a model checkpoint: .*LoRA"):
        load_model(str(lora), "cpu", torch.float32)


def test_a_yaml_beside_the_checkpoint_sets_the_prediction_type(tiny_checkpoints, no_network, tmp_path):
    """AUTOMATIC1111's convention (model.yaml beside model.safetensors) is honoured when loading."""
    import shutil

    tiny = tiny_checkpoints["sd1"]
    copy = shutil.copy(tiny.checkpoint, tmp_path / "vpred-finetune.safetensors")
    (tmp_path / "vpred-finetune.yaml").write_text("model:\n  params:\n    parameterization: v\n")
    loaded = load_model(str(copy), "cpu", torch.float32, config_dir=tiny.config_dir)
    assert loaded.pipe.scheduler.config.prediction_type == "v_prediction"
    # told explicitly, the loader's argument wins over the file beside it
    told = load_model(str(copy), "cpu", torch.float32, config_dir=tiny.config_dir, prediction_type="epsilon")
    assert told.pipe.scheduler.config.prediction_type == "epsilon"


def test_a_tiny_refiner_file_loads_with_a_config_dir(tmp_path, no_network):
    """An SDXL refiner in the original layout (OpenCLIP as conditioner.embedders.0, no CLIP-L) is recognised
    by its tensors and loads as a StableDiffusionXLImg2ImgPipeline with the aesthetic-score conditioning."""
    from diffusers import StableDiffusionXLImg2ImgPipeline
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_open_clip_checkpoint

    tiny = build_tiny_checkpoint(REFINER, tmp_path)
    original = pipeline_to_original(tiny.pipe, REFINER)
    assert not any(k.startswith(("conditioner.embedders.1.", "conditioner.embedders.0.transformer."))
                   for k in original)
    assert single_file.detect_family(tiny.checkpoint) == REFINER
    # the reverse mapping round-trips through diffusers' own converters
    converted = convert_open_clip_checkpoint(tiny.pipe.text_encoder_2, original,
                                             prefix="conditioner.embedders.0.model.")
    expected = tiny.pipe.text_encoder_2.state_dict()
    assert _strip_text_model(converted).keys() == _strip_text_model(expected).keys()
    unet = convert_ldm_unet_checkpoint(original, tiny.pipe.unet.config)
    assert all(torch.equal(unet[k], v) for k, v in tiny.pipe.unet.state_dict().items())

    loaded = load_model(str(tiny.checkpoint), "cpu", torch.float32, config_dir=tiny.config_dir)
    assert loaded.family == REFINER and isinstance(loaded.pipe, StableDiffusionXLImg2ImgPipeline)
    assert loaded.pipe.text_encoder is None and loaded.pipe.config.requires_aesthetics_score
    assert loaded.pipe.unet.config.cross_attention_dim == 1280
    for name in ("unet", "vae", "text_encoder_2"):
        got, want = getattr(loaded.pipe, name).state_dict(), getattr(tiny.pipe, name).state_dict()
        got, want = _strip_text_model(got), _strip_text_model(want)
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want), name
    # it refines a latent as the source pipeline does
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    kwargs = dict(prompt="a red cat", image=latents, num_inference_steps=4, denoising_start=0.5,
                  output_type="np")
    tiny.pipe.set_progress_bar_config(disable=True)
    image = loaded.pipe(**kwargs, generator=torch.Generator().manual_seed(3)).images
    expected = tiny.pipe(**kwargs, generator=torch.Generator().manual_seed(3)).images
    assert image.shape == (1, 32, 32, 3) and abs(image - expected).max() < 1e-4
