"""Image prompts on Flux.1 (issue 17): XLabs-layout IP-Adapters (tests/tiny_ip_adapters.py) on the tiny random
Flux.1 dev and schnell, as folders and as a single transformer file with its components. Weight 0 gives the plain
picture exactly, a weight changes it, the transformer gets its own attention back without an image prompt, image
to image and a batch take it, the recipe records it; a Flux adapter on SD, an SD adapter on Flux, and one for
another size of Flux are refused in one line before their weights load.

The tiny models' VAE is made see-through (tests/transparent_vae.py): a random VAE decodes any latents to much the
same noise, which would hide what the adapter did to the latents."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from tiny_checkpoints import build_tiny_pipeline
from tiny_controlnets import control_picture
from tiny_families import build_pipeline
from tiny_flow_controlnets import build_flux_controlnet
from tiny_ip_adapters import build_flux_ip_adapter, build_ip_adapter, prompt_picture
from tiny_transformer_files import split
from transparent_vae import make_transparent

from desktop_app.engine import image_prompt, image_prompt_flux
from desktop_app.engine.events import Progress, StageStarted
from desktop_app.engine.recipe import Recipe
from desktop_app.engine.request import ControlChoice, GenerationRequest
from desktop_app.errors import ModelError
from desktop_app.models import components, ip_adapter_files


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux-ip-adapter")
    flux = build_pipeline("flux")
    flux.save_pretrained(root / "tiny-flux")
    build_pipeline("flux-schnell").save_pretrained(root / "tiny-flux-schnell")
    from diffusers import FluxTransformer2DModel

    bigger = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=2, num_single_layers=1,
                                    attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                    pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    sd1 = build_tiny_pipeline("sd1")
    sd1.save_pretrained(root / "tiny-sd1")
    picture = prompt_picture(root / "prompt.png")
    inverted = Image.fromarray(255 - np.asarray(Image.open(picture))[::-1])  # another look altogether
    inverted.save(root / "inverted.png")
    return {"model": root / "tiny-flux", "schnell": root / "tiny-flux-schnell", "sd1": root / "tiny-sd1",
            "adapter": build_flux_ip_adapter(flux.transformer, root / "xlabs"),
            "two-blocks": build_flux_ip_adapter(bigger, root / "two-blocks", seed=2),
            "sd-adapter": build_ip_adapter(sd1.unet, root / "h94"),
            "files": split("flux", root / "split"), "control": build_flux_controlnet(root / "flux-canny", 3),
            "control-image": control_picture(root / "control.png"),
            "picture": picture, "other": prompt_picture(root / "other.png", 40), "inverted": root / "inverted.png"}


@pytest.fixture
def see_through(engine, monkeypatch):
    """Load ``folder`` and make its VAE see-through for this test."""

    def load(folder):
        model = engine.load(str(folder))
        make_transparent(monkeypatch, model.pipe.vae, model.pipe.vae_scale_factor)

    return load


def flux_request(tiny, weight=None, model="model", **changes) -> GenerationRequest:
    values = dict(prompt="a red fox", width=32, height=32, steps=4, seed=5, sampler="Euler", guidance_scale=3.5,
                  model=str(tiny[model]))
    if weight is not None:
        values.update(image_prompt=str(tiny["picture"]), image_prompt_weight=weight,
                      ip_adapter=str(tiny["adapter"]))
    return GenerationRequest(**(values | changes))


def levels(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def test_weight_zero_gives_the_plain_picture_and_a_weight_changes_it(generate, see_through, tiny):
    see_through(tiny["model"])
    plain = generate(flux_request(tiny))[0].images[0]
    zero, events = generate(flux_request(tiny, weight=0))
    assert levels(zero.images[0], plain) == 0
    loads = [e.detail for e in events.of(StageStarted) if e.stage == "load"]
    assert [line for line in loads if "IP-Adapter ip_adapter (Flux.1), image encoder image_encoder" in line]
    steered, events = generate(flux_request(tiny, weight=1.0))
    assert levels(steered.images[0], plain) > 8
    assert [p.step for p in events.of(Progress)] == [1, 2, 3, 4]
    denoise = [e.detail for e in events.of(StageStarted) if e.stage == "denoise"]
    assert "image prompt ip_adapter (weight 1)" in denoise[0]
    assert not [e for e in events.of(StageStarted) if e.stage == "load" and "IP-Adapter" in e.detail]  # held
    again = generate(flux_request(tiny, weight=1.0))[0].images[0]
    assert levels(again, steered.images[0]) == 0
    assert levels(generate(flux_request(tiny, weight=2.0))[0].images[0], steered.images[0]) > 4
    other = generate(flux_request(tiny, weight=1.0, image_prompt=str(tiny["inverted"])))[0].images[0]
    assert levels(other, steered.images[0]) > 4


def test_a_run_without_an_image_prompt_gives_the_transformer_its_own_attention(engine, generate, see_through,
                                                                                tiny):
    see_through(tiny["model"])
    plain = generate(flux_request(tiny))[0].images[0]
    generate(flux_request(tiny, weight=1.0))
    transformer = engine.model.pipe.transformer
    kinds = [type(p).__name__ for p in transformer.attn_processors.values()]
    assert kinds.count("FluxIPAdapterAttnProcessor") == len(transformer.transformer_blocks)
    assert transformer.encoder_hid_proj is not None
    assert levels(generate(flux_request(tiny))[0].images[0], plain) == 0
    assert "FluxIPAdapterAttnProcessor" not in {type(p).__name__ for p in transformer.attn_processors.values()}
    assert transformer.encoder_hid_proj is None


def test_the_recipe_records_the_image_prompt_and_round_trips(generate, see_through, tiny, tmp_path):
    from desktop_app.studio.png_recipe import read_recipe, save_png

    see_through(tiny["model"])
    result, _ = generate(flux_request(tiny, weight=0.7))
    record = result.recipe.image_prompt_model
    assert record["image_sha256"] == hashlib.sha256(tiny["picture"].read_bytes()).hexdigest()
    assert (record["name"], record["encoder"], record["weight"]) == ("ip_adapter", "image_encoder", 0.7)
    assert len(record["hash"]) == 10
    data = json.loads(json.dumps(result.recipe.to_dict()))
    assert Recipe.from_dict(data).request == result.recipe.request
    assert Recipe.from_dict(data).image_prompt_model == record
    path = save_png(result.images[0], tmp_path / "out.png", result.recipe.to_dict())
    again = GenerationRequest.from_dict(read_recipe(path)["request"])
    assert (again.image_prompt, again.image_prompt_weight, again.ip_adapter) == (
        str(tiny["picture"]), 0.7, str(tiny["adapter"]))
    assert levels(generate(again)[0].images[0], result.images[0]) == 0


def test_image_to_image_inpainting_and_a_batch_take_an_image_prompt(generate, see_through, tiny, tmp_path):
    see_through(tiny["model"])
    mask = tmp_path / "mask.png"
    Image.fromarray(np.pad(np.full((16, 16), 255, np.uint8), 8)).save(mask)  # the middle repainted
    for start in (dict(init_image=str(tiny["other"]), strength=0.8),
                  dict(init_image=str(tiny["other"]), strength=0.9, mask=str(mask))):
        plain = generate(flux_request(tiny, **start))[0].images[0]
        assert levels(generate(flux_request(tiny, weight=0, **start))[0].images[0], plain) == 0
        steered, events = generate(flux_request(tiny, weight=1.0, **start))
        assert levels(steered.images[0], plain) > 4
        assert "image prompt ip_adapter (weight 1)" in [e.detail for e in events.of(StageStarted)
                                                        if e.stage == "denoise"][0]
    batch, _ = generate(flux_request(tiny, weight=1.0, batch_size=2))
    alone, _ = generate(flux_request(tiny, weight=1.0, seed=6))
    assert len(batch.images) == 2 and levels(batch.images[1], alone.images[0]) <= 1


def test_a_controlnet_run_takes_an_image_prompt(generate, tiny):
    controls = (ControlChoice(model=str(tiny["control"]), image=str(tiny["control-image"])),)
    plain = generate(flux_request(tiny, controls=controls))[0].images[0]
    assert levels(generate(flux_request(tiny, weight=0, controls=controls))[0].images[0], plain) == 0
    steered, events = generate(flux_request(tiny, weight=1.0, controls=controls))
    assert levels(steered.images[0], plain) > 4
    denoise = [e.detail for e in events.of(StageStarted) if e.stage == "denoise"]
    assert "ControlNet flux-canny" in denoise[0] and "image prompt ip_adapter (weight 1)" in denoise[0]


def test_flux_schnell_takes_an_image_prompt(generate, see_through, tiny):
    see_through(tiny["schnell"])
    schnell = dict(model="schnell", guidance_scale=1.0)
    plain = generate(flux_request(tiny, **schnell))[0].images[0]
    assert levels(generate(flux_request(tiny, weight=0, **schnell))[0].images[0], plain) == 0
    assert levels(generate(flux_request(tiny, weight=1.0, **schnell))[0].images[0], plain) > 8


def test_a_single_transformer_file_takes_an_image_prompt(generate, see_through, tiny):
    files = tiny["files"]
    components.set_for_family("flux", files["components"])
    see_through(files["file"])
    tiny, on_file = {**tiny, "file": files["file"]}, {"model": "file"}
    plain = generate(flux_request(tiny, **on_file))[0].images[0]
    assert levels(generate(flux_request(tiny, weight=0, **on_file))[0].images[0], plain) == 0
    assert levels(generate(flux_request(tiny, weight=1.0, **on_file))[0].images[0], plain) > 8
    # torch-free, as the command line checks it: the file's family
    info = ip_adapter_files.check_image_prompt(str(tiny["adapter"]), str(files["file"]), "flux-transformer")
    assert (info.family, info.layers, info.tokens) == ("flux", 1, 4)


def test_an_adapter_for_another_family_is_refused_before_it_loads(engine, tiny, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the adapter's weights were loaded")

    monkeypatch.setattr(image_prompt, "build", never)
    monkeypatch.setattr(image_prompt_flux, "build", never)
    cases = [(flux_request(tiny, weight=1.0, ip_adapter=str(tiny["sd-adapter"])),
              "IP-Adapter ip-adapter_tiny is for Stable Diffusion 1.x (768 wide); the model tiny-flux is Flux.1"),
             (flux_request(tiny, weight=1.0, model="sd1"),
              "IP-Adapter ip_adapter is for Flux.1 (32 wide); the model tiny-sd1 is Stable Diffusion 1.x"),
             (flux_request(tiny, weight=1.0, ip_adapter=str(tiny["two-blocks"])),
              "IP-Adapter ip_adapter is for another size of Flux.1 than the model tiny-flux: double blocks 2 "
              "(the model's 1)")]
    for request, words in cases:
        with pytest.raises(ModelError) as caught:
            engine.run(request, lambda event: None)
        assert "\n" not in str(caught.value) and words in str(caught.value)
        with pytest.raises(ModelError) as caught:  # the torch-free check the command line and the window make
            ip_adapter_files.check_image_prompt(request.ip_adapter, request.model, request.model.split("/")[-1])
        assert words in str(caught.value)


def test_the_xlabs_files_are_read_and_checked_in_one_line(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    info = ip_adapter_files.read_adapter(str(tiny["adapter"]))  # the folder: its ip_adapter.safetensors
    assert (info.family, info.width, info.kind, info.layers, info.tokens, info.image_width) == (
        "flux", 32, "plain", 1, 4, 32)
    assert info.weights.name == "ip_adapter.safetensors" and info.encoder == tiny["adapter"] / "image_encoder"
    state = load_file(str(info.weights))
    for name, broken in [("no-bias", {k: v for k, v in state.items() if not k.endswith("k_proj.bias")}),
                         ("no-blocks", {k: v for k, v in state.items() if not k.startswith("double_blocks.")}),
                         ("odd-tokens", {**state, "ip_adapter_proj_model.proj.weight": state[
                             "ip_adapter_proj_model.proj.weight"][:96].contiguous(),
                                         "ip_adapter_proj_model.proj.bias": state[
                             "ip_adapter_proj_model.proj.bias"][:96].contiguous()})]:
        folder = shutil.copytree(tiny["adapter"], tmp_path / name)
        save_file(broken, folder / "ip_adapter.safetensors")
        with pytest.raises(ModelError, match="is not a Flux IP-Adapter") as caught:
            ip_adapter_files.read_adapter(str(folder))
        assert "\n" not in str(caught.value)


def test_the_modules_are_those_diffusers_load_ip_adapter_makes(tiny):
    """The same adapter file through diffusers' own FluxPipeline.load_ip_adapter and through the studio's build:
    the transformer's output is the same, so the key layout is read as diffusers reads XLabs' files."""
    from types import SimpleNamespace

    import torch

    ours, theirs = build_pipeline("flux"), build_pipeline("flux")
    info = ip_adapter_files.read_adapter(str(tiny["adapter"]))
    theirs.load_ip_adapter(str(tiny["adapter"]), weight_name="ip_adapter.safetensors", local_files_only=True,
                           image_encoder_pretrained_model_name_or_path=str(tiny["adapter"] / "image_encoder"),
                           image_encoder_dtype=torch.float32)
    theirs.set_ip_adapter_scale(0.8)
    model = SimpleNamespace(display_name="tiny-flux", device=torch.device("cpu"), dtype=torch.float32)
    processors, projection = image_prompt_flux.build(info, ours.transformer, model, model.device, torch.float32)
    adapter = image_prompt.Adapter((), info, processors, projection, None, 32)
    adapter.set_weight(0.8)
    adapter.install(ours.transformer)
    generator = torch.Generator().manual_seed(3)
    inputs = dict(hidden_states=torch.randn(1, 4, 64, generator=generator),
                  encoder_hidden_states=torch.randn(1, 5, 32, generator=generator),
                  pooled_projections=torch.randn(1, 32, generator=generator), timestep=torch.tensor([0.5]),
                  img_ids=torch.zeros(4, 3), txt_ids=torch.zeros(5, 3), guidance=torch.tensor([3.5]),
                  return_dict=False)
    embeds = torch.randn(1, 1, 32, generator=generator)
    with torch.no_grad():
        mine = ours.transformer(**inputs, joint_attention_kwargs={"ip_adapter_image_embeds": [embeds]})[0]
        want = theirs.transformer(**inputs, joint_attention_kwargs={"ip_adapter_image_embeds": [embeds]})[0]
        plain = build_pipeline("flux").transformer(**inputs)[0]
    # the same to float rounding (4e-7 seen: diffusers loads the weights another way), far from the plain output
    assert torch.allclose(mine, want, atol=1e-5) and (mine - plain).abs().max() > 0.1
