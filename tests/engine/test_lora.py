"""LoRAs (diffusers and kohya key formats, several at once, cached, unloaded exactly) and textual-inversion
embeddings, through the real engine on tiny random models."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from tiny_loras import (
    lora_state,
    save_diffusers_lora,
    save_kohya_lora,
    save_sdxl_shaped_lora,
    save_unmatched_lora,
)

from desktop_app.errors import ModelError
from desktop_app.engine.events import StageStarted
from desktop_app.engine.lora import held_loras, read_lora_info
from desktop_app.engine.request import GenerationRequest, LoraChoice


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="session")
def loras(tiny_sd_dir, tmp_path_factory):
    """Two LoRAs for the tiny SD model; the first in both formats (the same weights)."""
    folder = tmp_path_factory.mktemp("loras")
    first = lora_state(tiny_sd_dir / "unet", seed=0)
    second = lora_state(tiny_sd_dir / "unet", seed=1)
    return {
        "diffusers": save_diffusers_lora(first, folder / "first-diffusers"),
        "kohya": save_kohya_lora(first, folder / "first.safetensors",
                                 metadata={"ss_tag_frequency": '{"5_sks": {"sks dog": 12, "dog": 3}}'}),
        "second": save_kohya_lora(second, folder / "second.safetensors"),
        "sdxl": save_sdxl_shaped_lora(folder / "sdxl-style.safetensors"),
        "unmatched": save_unmatched_lora(folder / "unmatched.safetensors", width=32),
    }


@pytest.fixture
def sd_request(tiny_sd_dir):
    def make(*choices, **changes):
        values = {"prompt": "a red cat", "width": 32, "height": 32, "steps": 3, "seed": 42,
                  "guidance_scale": 5.0, "sampler": "Euler", "model": str(tiny_sd_dir), "preview": False,
                  "loras": tuple(LoraChoice(str(path), weight) for path, weight in choices)}
        values.update(changes)
        return GenerationRequest(**values)

    return make


def image_of(generate, request):
    result, _ = generate(request)
    return pixels(result.images[0])


def test_both_key_formats_load_and_give_the_same_image(generate, sd_request, loras):
    base = image_of(generate, sd_request())
    diffusers_format = image_of(generate, sd_request((loras["diffusers"], 1.0)))
    kohya_format = image_of(generate, sd_request((loras["kohya"], 1.0)))
    assert not np.array_equal(base, diffusers_format), "the LoRA changed nothing"
    assert np.abs(diffusers_format - kohya_format).max() <= 1
    assert read_lora_info(loras["kohya"])["layout"] == "kohya"
    assert read_lora_info(loras["diffusers"])["layout"] == "diffusers"


def test_a_run_without_lora_after_one_with_it_gives_the_base_pixels(generate, sd_request, loras, engine):
    before = image_of(generate, sd_request())
    image_of(generate, sd_request((loras["kohya"], 0.8), (loras["second"], 0.5)))
    assert len(held_loras(engine.model.pipe)) == 2
    after = image_of(generate, sd_request())
    assert held_loras(engine.model.pipe) == []
    assert np.array_equal(before, after)
    assert not any("lora" in name for name, _ in engine.model.pipe.unet.named_modules())


def test_the_same_set_is_not_reloaded_and_weights_still_apply(generate, sd_request, loras, engine, monkeypatch):
    base = image_of(generate, sd_request())
    result, events = generate(sd_request((loras["kohya"], 1.0)))
    full = pixels(result.images[0])
    loads = [e.detail for e in events.of(StageStarted) if e.stage == "load" and e.detail.startswith("LoRA")]
    assert loads == [f"LoRA {loras['kohya']} (kohya format)"]
    calls = []
    pipe = engine.model.pipe
    _, events = generate(sd_request((loras["kohya"], 1.0)))
    assert not [e for e in events.of(StageStarted) if e.detail.startswith("LoRA")]  # held: no load stage
    original = pipe.load_lora_weights
    monkeypatch.setattr(pipe, "load_lora_weights", lambda *a, **k: calls.append(a) or original(*a, **k))
    off = image_of(generate, sd_request((loras["kohya"], 0.0)))
    again = image_of(generate, sd_request((loras["kohya"], 1.0)))
    assert calls == []  # same file set: only set_adapters changed the weight
    assert np.array_equal(off, base)  # weight 0 is the base model
    assert np.array_equal(again, full)


def test_two_loras_at_once_each_with_its_weight(generate, sd_request, loras):
    first = image_of(generate, sd_request((loras["kohya"], 1.0)))
    second = image_of(generate, sd_request((loras["second"], 1.0)))
    both = image_of(generate, sd_request((loras["kohya"], 1.0), (loras["second"], 1.0)))
    assert not np.array_equal(both, first) and not np.array_equal(both, second)


def test_a_lora_for_another_family_gets_a_clear_message(generate, sd_request, loras):
    with pytest.raises(ModelError, match=r"is for SDXL \(cross-attention 2048\); the model tiny-sd .*32"):
        generate(sd_request((loras["sdxl"], 1.0)))


def test_a_lora_whose_keys_match_no_layer_is_refused_and_the_model_stays_clean(generate, sd_request, loras):
    base = image_of(generate, sd_request())
    with pytest.raises(ModelError, match="does not fit the model"):
        generate(sd_request((loras["unmatched"], 1.0)))
    assert np.array_equal(image_of(generate, sd_request()), base)


def test_a_pickle_named_safetensors_is_refused(generate, sd_request, tmp_path):
    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(pickle.dumps({"lora_unet_x.lora_down.weight": [1, 2]}))
    with pytest.raises(ModelError, match="(?i)pickle"):
        generate(sd_request((bad, 1.0)))


def test_an_unknown_lora_name_is_a_model_error(generate, sd_request):
    with pytest.raises(ModelError, match="(?i)lora"):
        generate(sd_request(("no-such-lora", 1.0)))


def test_a_lora_in_the_user_folder_is_found_by_name_and_hashed_into_the_recipe(generate, sd_request, loras,
                                                                              tmp_path):
    import shutil

    from desktop_app import paths
    from desktop_app.studio.png_recipe import parameters_text

    shutil.copy(loras["kohya"], paths.loras_dir() / "sks-dog.safetensors")
    request = sd_request(loras=(LoraChoice("sks-dog", 0.7),))
    result, _ = generate(request)
    digest = result.recipe.lora_hashes["sks-dog"]
    assert len(digest) == 10 and int(digest, 16) >= 0
    text = parameters_text(result.recipe.to_dict())
    assert "<lora:sks-dog:0.7>" in text and f'Lora hashes: "sks-dog: {digest}"' in text


def test_the_trigger_word_comes_from_the_metadata(loras):
    assert read_lora_info(loras["kohya"])["trigger"] == "sks dog"
    assert read_lora_info(loras["second"])["trigger"] == ""


def test_a_textual_inversion_embedding_on_a_clip_model(generate, sd_request, engine):
    from safetensors.torch import save_file

    from desktop_app.engine.lora import embeddings_dir

    torch.manual_seed(3)
    save_file({"emb_params": torch.randn(2, 32)}, embeddings_dir() / "shinystyle.safetensors")
    plain = image_of(generate, sd_request(prompt="a cat"))
    styled = image_of(generate, sd_request(prompt="a cat shinystyle"))
    tokenizer = engine.model.pipe.tokenizer
    assert "shinystyle" in tokenizer.get_vocab()  # diffusers adds shinystyle and shinystyle_1 (2 vectors)
    assert not np.array_equal(plain, styled)
    again = image_of(generate, sd_request(prompt="a cat shinystyle"))  # loaded once, used again
    assert np.array_equal(styled, again)


def test_the_embedded_model_says_it_takes_no_embeddings(generate, make_request):
    from safetensors.torch import save_file

    from desktop_app.engine.lora import embeddings_dir

    save_file({"emb_params": torch.randn(1, 384)}, embeddings_dir() / "minilmstyle.safetensors")
    with pytest.raises(ModelError, match="MiniLM.*does not take textual-inversion"):
        generate(make_request(prompt="a minilmstyle cat"))


def test_the_lora_trainers_files_load_in_both_formats_on_the_embedded_model(generate, make_request, engine):
    """The LoRA trainer (desktop_app.training) writes kohya (UNet) and diffusers (UNet + MiniLM text encoder)
    files; both load, the text-encoder part too (diffusers itself converts only CLIP layer names)."""
    import copy

    export = pytest.importorskip("desktop_app.training.export")
    from peft import LoraConfig, inject_adapter_in_model

    from desktop_app import paths

    base = image_of(generate, make_request(preview=False))
    pipe = engine.model.pipe
    unet, text_encoder = copy.deepcopy(pipe.unet), copy.deepcopy(pipe.text_encoder)
    torch.manual_seed(0)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                       target_modules=["query", "key", "value"]), text_encoder)
    files = export.save_lora(paths.loras_dir(), "trained", unet, text_encoder, {"desktop_app_trigger": "sks"},
                             False)
    kohya = image_of(generate, make_request(preview=False, loras=(LoraChoice(files["kohya"], 1.0),)))
    both = image_of(generate, make_request(preview=False, loras=(LoraChoice("trained", 1.0),)))  # the folder
    adapters = pipe.get_list_adapters()
    assert adapters.get("text_encoder") and adapters.get("unet")
    assert not np.array_equal(kohya, base) and not np.array_equal(both, kohya)  # the text encoder part counts
    assert np.array_equal(image_of(generate, make_request(preview=False)), base)
