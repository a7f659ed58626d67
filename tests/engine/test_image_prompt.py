"""Image prompts through an IP-Adapter (issue 17) on tiny random SD 1.x and SDXL models with tiny adapters made
for their UNets (tests/tiny_ip_adapters.py): weight 0 gives the plain picture, a weight changes it, the UNet gets
its own attention back without an image prompt, image to image and a batch take it, an adapter for another family
or a model with no UNet is refused in one line before its weights load, the request's checks, the adapter file
checks, and the recipe round-trips."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from tiny_checkpoints import build_tiny_pipeline
from tiny_ip_adapters import build_image_encoder, build_ip_adapter, prompt_picture

from desktop_app.engine import image_prompt
from desktop_app.engine.events import Progress, StageStarted
from desktop_app.engine.recipe import Recipe
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import ModelError, RequestError
from desktop_app.models import ip_adapter_files


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ip-adapter")
    sd1 = build_tiny_pipeline("sd1")
    sd1.save_pretrained(root / "tiny-sd1")
    xl = build_tiny_pipeline("sdxl")
    xl.save_pretrained(root / "tiny-sdxl")
    return {"model": root / "tiny-sd1", "xl": root / "tiny-sdxl",
            "adapter": build_ip_adapter(sd1.unet, root / "sd1"),
            "xl-adapter": build_ip_adapter(xl.unet, root / "sdxl", seed=3),
            "picture": prompt_picture(root / "prompt.png"), "other": prompt_picture(root / "other.png", 40)}


@pytest.fixture(scope="module")
def sd_request(tiny):
    def make(weight=None, **changes):
        values = dict(prompt="a red cat", width=32, height=32, steps=4, seed=11, model=str(tiny["model"]))
        if weight is not None:
            values.update(image_prompt=str(tiny["picture"]), image_prompt_weight=weight,
                          ip_adapter=str(tiny["adapter"]))
        return GenerationRequest(**(values | changes))

    return make


@pytest.fixture(scope="module")
def plain(engine, sd_request):
    return engine.run(sd_request(), lambda event: None).images[0]


def levels(a: Image.Image, b: Image.Image) -> int:
    """The largest difference of one channel of one pixel, in levels (0..255)."""
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def test_weight_zero_gives_the_plain_picture_and_a_weight_changes_it(generate, sd_request, plain):
    result, events = generate(sd_request(weight=0))
    assert levels(result.images[0], plain) <= 1
    steered, events = generate(sd_request(weight=1.0))
    assert levels(steered.images[0], plain) > 8
    progress = events.of(Progress)
    assert [p.step for p in progress] == [1, 2, 3, 4] and all(p.preview is not None for p in progress)
    denoise = [e.detail for e in events.of(StageStarted) if e.stage == "denoise"]
    assert "image prompt ip-adapter_tiny (weight 1)" in denoise[0]
    # the same adapter again is not loaded again, and the same request makes the same picture
    again, events = generate(sd_request(weight=1.0))
    assert levels(again.images[0], steered.images[0]) == 0
    assert not [e for e in events.of(StageStarted) if e.stage == "load" and "IP-Adapter" in e.detail]
    # a stronger weight, another image: another picture
    assert levels(generate(sd_request(weight=2.0))[0].images[0], steered.images[0]) > 4


def test_another_image_steers_another_way(generate, sd_request, tiny):
    first = generate(sd_request(weight=1.0))[0].images[0]
    second = generate(sd_request(weight=1.0, image_prompt=str(tiny["other"])))[0].images[0]
    assert levels(first, second) > 4


def test_a_run_without_an_image_prompt_gives_the_unet_its_own_attention_back(engine, generate, sd_request, plain):
    generate(sd_request(weight=1.0))
    unet = engine.model.pipe.unet
    kinds = {type(p).__name__ for p in unet.attn_processors.values()}
    assert "IPAdapterAttnProcessor2_0" in kinds and unet.encoder_hid_proj is not None
    result, _ = generate(sd_request())
    assert levels(result.images[0], plain) == 0
    assert "IPAdapterAttnProcessor2_0" not in {type(p).__name__ for p in unet.attn_processors.values()}
    assert unet.encoder_hid_proj is None and unet.config.encoder_hid_dim_type is None


def test_the_adapter_is_installed_again_after_attention_slicing(engine, generate, sd_request):
    steered = generate(sd_request(weight=1.0))[0].images[0]
    engine.model.pipe.enable_attention_slicing()  # what the out-of-memory fallback (and MPS) switch on
    try:
        again = generate(sd_request(weight=1.0))[0].images[0]
    finally:
        engine.model.pipe.disable_attention_slicing()
    assert levels(again, steered) <= 1


def test_the_recipe_records_the_image_prompt_and_round_trips(generate, sd_request, tiny, tmp_path):
    from desktop_app.studio.png_recipe import read_recipe, save_png

    result, _ = generate(sd_request(weight=0.7))
    data = json.loads(json.dumps(result.recipe.to_dict()))
    assert (data["image_prompt"], data["image_prompt_weight"], data["ip_adapter"]) == (
        str(tiny["picture"]), 0.7, str(tiny["adapter"]))
    assert Recipe.from_dict(data).request == result.recipe.request
    path = save_png(result.images[0], tmp_path / "out.png", result.recipe.to_dict())
    again = GenerationRequest.from_dict(read_recipe(path)["request"])
    assert (again.image_prompt, again.image_prompt_weight, again.ip_adapter) == (
        str(tiny["picture"]), 0.7, str(tiny["adapter"]))
    assert levels(generate(again)[0].images[0], result.images[0]) <= 1


def test_the_recipe_records_the_image_sha256_and_the_adapter(generate, sd_request, tiny):
    result, _ = generate(sd_request(weight=0.7))
    record = result.recipe.image_prompt_model
    assert record["image_sha256"] == hashlib.sha256(tiny["picture"].read_bytes()).hexdigest()
    assert record["name"] == "ip-adapter_tiny" and len(record["hash"]) == 10 and record["weight"] == 0.7
    assert record["encoder"] == "image_encoder"
    assert Recipe.from_dict(json.loads(json.dumps(result.recipe.to_dict()))).image_prompt_model == record


def test_image_to_image_without_guidance_and_a_batch_take_an_image_prompt(generate, sd_request, tiny):
    start = dict(init_image=str(tiny["other"]), strength=0.8)
    plain, _ = generate(sd_request(**start))
    steered, _ = generate(sd_request(weight=1.0, **start))
    assert levels(steered.images[0], plain.images[0]) > 4
    unguided, _ = generate(sd_request(weight=1.0, guidance_scale=1.0))  # no unconditional half
    assert levels(unguided.images[0], generate(sd_request(guidance_scale=1.0))[0].images[0]) > 4
    batch, _ = generate(sd_request(weight=1.0, batch_size=2))
    alone, _ = generate(sd_request(weight=1.0, seed=12))
    assert len(batch.images) == 2 and levels(batch.images[1], alone.images[0]) <= 1


def test_an_sdxl_adapter_steers_an_sdxl_model(generate, tiny):
    def xl(weight=None):
        values = dict(prompt="a red cat", width=32, height=32, steps=4, seed=11, sampler="Euler",
                      model=str(tiny["xl"]))
        if weight is not None:
            values.update(image_prompt=str(tiny["picture"]), image_prompt_weight=weight,
                          ip_adapter=str(tiny["xl-adapter"]))
        return GenerationRequest(**values)

    plain = generate(xl())[0].images[0]
    assert levels(generate(xl(0))[0].images[0], plain) <= 1
    assert levels(generate(xl(1.0))[0].images[0], plain) > 8


def test_an_adapter_for_another_family_is_refused_before_it_loads(engine, sd_request, tiny, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the adapter's weights were loaded")

    monkeypatch.setattr(image_prompt, "build", never)
    with pytest.raises(ModelError) as caught:
        engine.run(sd_request(weight=1.0, ip_adapter=str(tiny["xl-adapter"])), lambda event: None)
    message = str(caught.value)
    assert "\n" not in message and "is for SDXL (2048 wide)" in message and "Stable Diffusion 1.x" in message
    with pytest.raises(ModelError, match="is for SDXL"):  # the torch-free check the command line makes
        ip_adapter_files.check_image_prompt(str(tiny["xl-adapter"]), str(tiny["model"]), "tiny-sd1")


def test_the_embedded_model_and_a_model_with_no_unet_are_refused(engine, tiny, tiny_model_dir):
    request = GenerationRequest(prompt="a red cat", width=32, height=32, steps=2, seed=1,
                                model=str(tiny_model_dir), image_prompt=str(tiny["picture"]),
                                ip_adapter=str(tiny["adapter"]))
    with pytest.raises(ModelError, match="is for Stable Diffusion 1.x .768 wide.; the model tiny-embedded is"):
        engine.run(request, lambda event: None)
    info = ip_adapter_files.read_adapter(str(tiny["adapter"]))
    with pytest.raises(ModelError, match="run on Stable Diffusion 1.x, SDXL and Flux.1 models here; the model x"):
        ip_adapter_files.check_pairing(info, "sd3", None, "x")
    with pytest.raises(ModelError, match="is for Stable Diffusion 1.x .768 wide.; the model x is Flux.1"):
        ip_adapter_files.check_pairing(info, "flux", None, "x")


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"image_prompt_weight": 2.5}, "image_prompt_weight", "from 0 to 2"),
    ({"image_prompt_weight": float("nan")}, "image_prompt_weight", "from 0 to 2"),
    ({"ip_adapter": None}, "ip_adapter", "an image prompt needs an IP-Adapter"),
    ({"image_prompt": None}, "ip_adapter", "needs an image prompt"),
    ({"image_prompt": "/no/such/picture.png"}, "image_prompt", "no such image file"),
    ({"ip_adapter": " "}, "ip_adapter", "must name an IP-Adapter"),
])
def test_a_bad_image_prompt_is_refused_when_the_request_is_built(sd_request, changes, field, words):
    with pytest.raises(RequestError, match=words) as caught:
        sd_request(weight=1.0, **changes)
    assert caught.value.field == field


def test_the_adapter_files_are_checked_in_one_line(tiny, tmp_path):
    def refused(path, words):
        with pytest.raises(ModelError, match=words) as caught:
            ip_adapter_files.read_adapter(str(path))
        assert "\n" not in str(caught.value)

    weights = tiny["adapter"] / "ip-adapter_tiny.safetensors"
    info = ip_adapter_files.read_adapter(str(weights))  # the file itself; its encoder beside it
    assert (info.family, info.width, info.kind, info.layers) == ("sd1", 768, "plain", 4)
    refused(tmp_path / "nothing", "not found")
    two = shutil.copytree(tiny["adapter"], tmp_path / "two")
    shutil.copy(weights, two / "ip-adapter_other.safetensors")
    refused(two, "holds 2 adapters")
    alone = tmp_path / "solo" / "alone"  # no folder next to it holds an image encoder either
    alone.mkdir(parents=True)
    shutil.copy(weights, alone / "ip-adapter_tiny.safetensors")
    refused(alone, "has no image encoder")
    (alone / "ip-adapter_tiny.bin").write_bytes(b"\x80\x04pickle")
    refused(alone / "ip-adapter_tiny.bin", "not a .safetensors file")
    build_image_encoder(alone / "image_encoder", projection=24)
    refused(alone, "reads 32-wide image embeddings; .* gives 24")
    unet = tiny["model"] / "unet" / "diffusion_pytorch_model.safetensors"
    refused(unet, "is not an IP-Adapter: it has no image_proj")
    fake = tmp_path / "fake" / "ip-adapter_x.safetensors"
    fake.parent.mkdir()
    fake.write_bytes(b"PK\x03\x04 a zip")
    refused(fake, "is not a safetensors file: it is a PyTorch zip archive")


def test_an_encoder_in_a_folder_next_to_the_adapters_is_found(tiny, tmp_path):
    """h94/IP-Adapter's layout: sdxl_models/*vit-h* adapters read models/image_encoder."""
    repo = tmp_path / "IP-Adapter"
    (repo / "sdxl_models").mkdir(parents=True)
    shutil.copy(tiny["adapter"] / "ip-adapter_tiny.safetensors",
                repo / "sdxl_models" / "ip-adapter_vit-h.safetensors")
    build_image_encoder(repo / "sdxl_models" / "image_encoder", projection=48)  # another width: skipped
    shutil.copytree(tiny["adapter"] / "image_encoder", repo / "models" / "image_encoder")
    info = ip_adapter_files.read_adapter(str(repo / "sdxl_models" / "ip-adapter_vit-h.safetensors"))
    assert info.encoder == repo / "models" / "image_encoder"


def test_an_adapter_is_found_by_name_in_the_models_folder(tiny, user_home):
    shutil.copytree(tiny["adapter"], user_home / "models" / "ip-adapter" / "tiny")
    assert ip_adapter_files.resolve_adapter("tiny") == user_home / "models" / "ip-adapter" / "tiny"
    assert ip_adapter_files.read_adapter("tiny").name == "ip-adapter_tiny"
