"""The "depth" ControlNet preprocessor (issue 17) with a tiny random Depth Anything model saved as the user
would (save_pretrained, safetensors, an image processor config) in <user folder>/models/preprocessors/depth/:
the map's size, mode and levels, near is white, it is the same twice, a missing model and a folder of pickles
are refused in one line naming "controls", the request check stays torch-free, and a tiny SD 1.x run with a
ControlNet reading a depth map finishes and records the preprocessor."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tiny_controlnets import build_sd_with_controlnets, control_picture

from desktop_app import paths
from desktop_app.engine import control_models
from desktop_app.engine.control_images import control_image
from desktop_app.engine.request import ControlChoice, GenerationRequest
from desktop_app.errors import RequestError


def build_tiny_depth(out):
    """A tiny random Depth Anything (a 2-layer DINOv2 backbone, 56 px input), its weights spread so that the
    map is not flat, saved with safetensors beside a DPT image processor config."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            patch_size=14, image_size=56, out_features=["stage1", "stage2"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16, neck_hidden_sizes=[8, 16],
                                 fusion_hidden_size=8, head_hidden_size=8, reassemble_factors=[2, 1],
                                 patch_size=14)
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    model.save_pretrained(out, safe_serialization=True)
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=False, ensure_multiple_of=14,
                      do_pad=False).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_depth(tmp_path_factory):
    return build_tiny_depth(tmp_path_factory.mktemp("depth") / "tiny-depth-anything")


@pytest.fixture
def installed(tiny_depth):
    """The tiny depth model copied into this test's user folder, where the preprocessor looks."""
    return shutil.copytree(tiny_depth, paths.preprocessors_dir("depth") / tiny_depth.name)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    return control_picture(tmp_path_factory.mktemp("depth-picture") / "picture.png", size=48)


def test_the_depth_map_is_rgb_at_the_request_size_normalised_and_the_same_twice(installed, picture):
    image, sha = control_image(str(picture), "depth", (40, 24))
    assert image.mode == "RGB" and image.size == (40, 24) and len(sha) == 64
    pixels = np.asarray(image)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all()
    assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) > 16
    again, _ = control_image(str(picture), "depth", (40, 24))
    assert np.array_equal(np.asarray(again), pixels)


def test_near_is_white_the_model_s_largest_value_is_255(installed, picture):
    import torch
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    fitted = Image.open(picture).convert("RGB").resize((32, 32))
    made = np.asarray(control_models.depth(fitted))[..., 0].astype(np.float32)
    model = AutoModelForDepthEstimation.from_pretrained(installed, local_files_only=True)
    inputs = AutoImageProcessor.from_pretrained(installed, local_files_only=True)(images=fitted,
                                                                                  return_tensors="pt")
    with torch.no_grad():
        raw = model(**inputs).predicted_depth
    raw = torch.nn.functional.interpolate(raw[:, None], size=(32, 32), mode="bicubic")[0, 0].numpy()
    expected = (raw - raw.min()) / (raw.max() - raw.min()) * 255
    assert np.abs(made - expected).max() <= 1.0
    assert made.flat[raw.argmax()] == 255 and made.flat[raw.argmin()] == 0


def test_a_missing_depth_model_says_where_to_put_one(picture):
    with pytest.raises(RequestError) as caught:
        control_image(str(picture), "depth", (32, 32))
    assert caught.value.field == "controls" and "\n" not in str(caught.value)
    assert "depth model" in str(caught.value) and str(paths.preprocessors_dir("depth")) in str(caught.value)


def test_a_folder_of_pickles_is_refused_in_one_line(tiny_depth, picture):
    folder = paths.preprocessors_dir("depth") / "pickled"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(tiny_depth / name, folder / name)
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(RequestError, match="only pickle weights; only .safetensors") as caught:
        control_image(str(picture), "depth", (32, 32))
    assert caught.value.field == "controls" and "\n" not in str(caught.value)


def test_the_environment_variable_names_the_folder(installed, picture, monkeypatch, tmp_path):
    monkeypatch.setenv(control_models.DEPTH_ENV, installed.name)
    assert control_models.depth_folder() == installed
    monkeypatch.setenv(control_models.DEPTH_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(RequestError, match=control_models.DEPTH_ENV):
        control_image(str(picture), "depth", (32, 32))


def test_the_request_check_of_depth_stays_torch_free_and_transformers_waits_for_a_map():
    code = ("import sys; from desktop_app.engine.request import ControlChoice; "
            "ControlChoice('m', 'i.png', preprocessor='depth'); print('torch' in sys.modules); "
            "import desktop_app.engine.control_images, desktop_app.engine.control_models; "
            "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_controlnet_run_reads_the_depth_map_and_records_it(generate, installed, tmp_path):
    tiny = build_sd_with_controlnets(tmp_path / "sd", names=("depth-a",))
    image = control_picture(tmp_path / "scene.png")
    request = GenerationRequest(prompt="a red cat", width=32, height=32, steps=2, seed=5, model=str(tiny["model"]),
                                controls=(ControlChoice(str(tiny["depth-a"]), str(image), preprocessor="depth"),))
    result, _events = generate(request)
    assert result is not None and result.images[0].size == (32, 32)
    record, = result.recipe.control_models
    assert record["preprocessor"] == "depth" and record["name"] == "depth-a"
    assert result.recipe.request.controls[0].preprocessor == "depth"
