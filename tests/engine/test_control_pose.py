"""The "pose" ControlNet preprocessor (issue 17) with a tiny random ViTPose saved as the user would
(save_pretrained, safetensors, an image processor config) in <user folder>/models/preprocessors/pose/: the
skeleton is RGB at the request's size, coloured limbs on black where the model's keypoints are, the same twice;
the drawing itself (limbs only between joints that score enough); a missing model and pickles refused in one
line; and a tiny SD 1.x ControlNet run reading a pose records the preprocessor."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from tiny_controlnets import build_sd_with_controlnets, control_picture

from desktop_app import paths
from desktop_app.engine import control_models
from desktop_app.engine.control_images import control_image
from desktop_app.engine.request import ControlChoice, GenerationRequest
from desktop_app.errors import RequestError


def build_tiny_pose(out):
    """A tiny random ViTPose (2 layers, 64x48 input, 17 heatmaps) with its image processor config."""
    import torch
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessor

    torch.manual_seed(0)
    backbone = VitPoseBackboneConfig(image_size=[64, 48], patch_size=[16, 16], hidden_size=16, num_hidden_layers=2,
                                     num_attention_heads=2, mlp_ratio=2, out_indices=[2])
    model = VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=17)).eval()
    model.save_pretrained(out, safe_serialization=True)
    VitPoseImageProcessor(size={"height": 64, "width": 48}).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory):
    return build_tiny_pose(tmp_path_factory.mktemp("pose") / "tiny-vitpose")


@pytest.fixture
def installed(tiny_pose, monkeypatch):
    """The tiny pose model in this test's user folder; every keypoint drawn (a random model scores low)."""
    monkeypatch.setattr(control_models, "POSE_MIN_SCORE", float("-inf"))
    return shutil.copytree(tiny_pose, paths.preprocessors_dir("pose") / tiny_pose.name)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    return control_picture(tmp_path_factory.mktemp("pose-picture") / "picture.png", size=48)


def test_the_skeleton_is_rgb_at_the_request_size_where_the_keypoints_are(installed, picture):
    image, _sha = control_image(str(picture), "pose", (64, 48))
    assert image.mode == "RGB" and image.size == (64, 48)
    pixels = np.asarray(image)
    assert (pixels.max(axis=2) == 0).mean() > 0.3  # mostly black
    coloured = pixels.max(axis=2) > 0
    assert coloured.any()
    fitted = control_image(str(picture), "none", (64, 48))[0]
    points, _scores = control_models.keypoints(fitted)
    assert points.shape == (17, 2)
    for x, y in points:  # a dot at every keypoint inside the picture
        x, y = int(round(float(x))), int(round(float(y)))
        if 0 <= x < 64 and 0 <= y < 48:
            assert coloured[y, x]
    again, _ = control_image(str(picture), "pose", (64, 48))
    assert np.array_equal(np.asarray(again), pixels)


def test_limbs_join_only_joints_that_score_enough():
    points = np.array([[10 + 4 * k, 10 + 2 * k] for k in range(17)], np.float32)
    scores = np.zeros(17, np.float32)
    scores[[5, 7]] = 0.9  # left shoulder and elbow: one limb, colour LIMB_COLOURS[5]
    image = np.asarray(control_models.draw_skeleton(points, scores, (128, 96)))
    colours = {tuple(c) for c in image.reshape(-1, 3) if c.any()}
    assert control_models.LIMB_COLOURS[5] in colours
    mid = ((points[5] + points[7]) / 2).round().astype(int)
    assert image[mid[1], mid[0]].any()
    assert not image[int(points[0][1]), int(points[0][0])].any()  # the nose scored 0: not drawn
    assert not np.asarray(control_models.draw_skeleton(points, np.zeros(17), (128, 96))).any()


def test_a_missing_pose_model_says_where_to_put_one(picture):
    with pytest.raises(RequestError) as caught:
        control_image(str(picture), "pose", (32, 32))
    assert caught.value.field == "controls" and "\n" not in str(caught.value)
    assert "pose model" in str(caught.value) and str(paths.preprocessors_dir("pose")) in str(caught.value)


def test_a_pose_folder_of_pickles_is_refused_in_one_line(tiny_pose, picture):
    folder = paths.preprocessors_dir("pose") / "pickled"
    folder.mkdir()
    shutil.copy(tiny_pose / "config.json", folder / "config.json")
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(RequestError, match="only pickle weights; only .safetensors"):
        control_image(str(picture), "pose", (32, 32))


def test_a_controlnet_run_reads_the_pose_and_records_it(generate, installed, tmp_path):
    tiny = build_sd_with_controlnets(tmp_path / "sd", names=("pose-a",))
    image = control_picture(tmp_path / "person.png")
    request = GenerationRequest(prompt="a dancer", width=32, height=32, steps=2, seed=5, model=str(tiny["model"]),
                                controls=(ControlChoice(str(tiny["pose-a"]), str(image), preprocessor="pose"),))
    result, _events = generate(request)
    assert result is not None and result.images[0].size == (32, 32)
    record, = result.recipe.control_models
    assert record["preprocessor"] == "pose" and record["name"] == "pose-a"
