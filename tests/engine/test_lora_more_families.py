"""LoRAs on Sana, Sana Sprint, Z-Image, Qwen-Image and FLUX.2 [klein] (issue 16), through their pipelines' own
LoRA loaders (SanaLoraLoaderMixin, ZImageLoraLoaderMixin, QwenImageLoraLoaderMixin, Flux2LoraLoaderMixin) on the
tiny random models of tests/tiny_families.py, through the real Engine. A peft LoRA on the transformer's attention
projections, saved with the pipeline's own save_lora_weights, changes the image; weight 0 and removal give the
base pixels back; the recipe holds the file's hash; a LoRA of another family is refused in one line naming both
families before anything loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tiny_families import build_family, build_pipeline

from desktop_app.engine.lora import held_loras
from desktop_app.engine.request import GenerationRequest, LoraChoice
from desktop_app.errors import ModelError
from desktop_app.models.model_hash import model_hash

# the attention projections each family's transformer has (peft matches the names' ends)
ATTENTION = {
    "sana": ["to_q", "to_k", "to_v", "to_out.0"],  # attn1 (self) and attn2 (cross)
    "sana-sprint": ["to_q", "to_k", "to_v", "to_out.0"],
    "z-image": ["to_q", "to_k", "to_v", "to_out.0"],  # layers.N.attention, the refiners' too
    "qwen-image": ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"],
    "flux2-klein": ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                    "to_qkv_mlp_proj"],
    "flux": ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"],
}
SIZE = {"sana": 64}  # Sana draws at its 512-pixel bins: 64 is the smallest size it takes; the others 32
FAMILIES = ("sana", "sana-sprint", "z-image", "qwen-image", "flux2-klein")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("more-lora-families")
    return {name: build_family(name, root / name) for name in (*FAMILIES, "flux")}


def peft_lora(family: str, folder, seed: int = 0):
    """A LoRA on the transformer's attention projections, made with peft and saved by the pipeline class's own
    save_lora_weights (a diffusers-format LoRA folder)."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = build_pipeline(family)
    torch.manual_seed(seed)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                            target_modules=ATTENTION[family]))
    # peft's random B at 4 times its size: a LoRA strong enough to show on every tiny model's pixels
    state = {k: (v * (4 if ".lora_B." in k else 1)).detach().contiguous()
             for k, v in get_peft_model_state_dict(pipe.transformer).items()}
    type(pipe).save_lora_weights(folder, transformer_lora_layers=state, safe_serialization=True)
    return folder


def sd1_lora(path):
    """A kohya key of an SD 1.x LoRA: attn2.to_k takes CLIP-L's 768-wide text features."""
    base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file({f"{base}.lora_down.weight": torch.zeros(4, 768), f"{base}.lora_up.weight": torch.zeros(320, 4),
               f"{base}.alpha": torch.tensor(4.0)}, path)
    return path


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    root = tmp_path_factory.mktemp("more-loras")
    made = {family: peft_lora(family, root / f"{family}-peft") for family in (*FAMILIES, "flux")}
    return made | {"sd1": sd1_lora(root / "sd1.safetensors")}


def request_for(family, folder, *choices, **changes) -> GenerationRequest:
    size = SIZE.get(family, 32)
    values = dict(prompt="a red fox", model=str(folder), steps=2, width=size, height=size, sampler="Euler",
                  guidance_scale=3.0, seed=5, preview=False,
                  loras=tuple(LoraChoice(str(path), weight) for path, weight in choices))
    return GenerationRequest(**(values | changes))


def image(generate, request) -> np.ndarray:
    result, _ = generate(request)
    return np.asarray(result.images[0].convert("RGB"), dtype=np.int16)


def lora_layers(engine) -> list[str]:
    return [name for name, _ in engine.model.pipe.transformer.named_modules() if "lora" in name]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_lora_changes_the_image_and_weight_zero_or_removal_gives_the_base(family, folders, loras, generate,
                                                                          engine):
    base = image(generate, request_for(family, folders[family]))
    result, _ = generate(request_for(family, folders[family], (loras[family], 1.0)))
    with_lora = np.asarray(result.images[0].convert("RGB"), dtype=np.int16)
    assert np.abs(with_lora - base).max() > 8, "the LoRA changed nothing"
    path = loras[family] / "pytorch_lora_weights.safetensors"
    assert result.recipe.lora_hashes == {str(loras[family]): model_hash(path)}
    assert lora_layers(engine)
    # Sana alone: once diffusers has loaded a LoRA into it (weight 0, or unloaded again), its latents move by ~2e-6
    # (the bare SanaPipeline does the same, without this app), one level in a pixel or two; the others are exact
    same = 1 if family == "sana" else 0
    zero = image(generate, request_for(family, folders[family], (loras[family], 0.0)))
    assert np.abs(zero - base).max() <= same
    assert np.abs(image(generate, request_for(family, folders[family])) - base).max() <= same  # removed
    assert held_loras(engine.model.pipe) == [] and not lora_layers(engine)


@pytest.mark.parametrize("lora, model, says", [
    ("flux", "z-image", "is for Flux.1; the model .* is Z-Image"),
    ("sd1", "sana", "is for Stable Diffusion 1.x; the model .* is Sana"),
    ("z-image", "qwen-image", "is for Z-Image; the model .* is Qwen-Image"),
    ("flux", "flux2-klein", r"is for Flux.1; the model .* is FLUX.2 \[klein\]"),
    ("sana", "flux2-klein", r"is for Sana; the model .* is FLUX.2 \[klein\]"),
    ("flux2-klein", "sana-sprint", "is for FLUX.2; the model .* is Sana Sprint"),
    ("qwen-image", "z-image", "is for a diffusion transformer .*; the model .* is Z-Image"),
    ("sana", "flux", "is for Sana; the model .* is Flux.1"),
    ("z-image", "sd1", "is for Z-Image; the model tiny-sd is a Stable Diffusion UNet"),
])
def test_a_lora_of_another_family_is_refused_before_loading_naming_both(lora, model, says, folders, loras,
                                                                       generate, engine, tiny_sd_dir, monkeypatch):
    folder = tiny_sd_dir if model == "sd1" else folders[model]
    changes = {"guidance_scale": 5.0, "sampler": "Euler a"} if model == "sd1" else {}
    base = image(generate, request_for(model, folder, **changes))
    monkeypatch.setattr(type(engine.model.pipe), "load_lora_weights", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(ModelError, match=says) as caught:
        generate(request_for(model, folder, (loras[lora], 1.0), **changes))
    assert "\n" not in str(caught.value)
    monkeypatch.undo()
    assert np.array_equal(image(generate, request_for(model, folder, **changes)), base)


def header(**layers) -> dict[str, list[int]]:
    """A LoRA header as lora_families reads it: layer -> (the input width, the output width), rank 4,
    in the makers' (kohya) part names."""
    shapes = {}
    for layer, (into, out) in layers.items():
        shapes |= {f"{layer}.lora_down.weight": [4, into], f"{layer}.lora_up.weight": [out, 4]}
    return shapes


def fake_model(family: str):
    """What check_family reads of a loaded model: its family, its name, a transformer (here without layers)."""
    from types import SimpleNamespace

    return SimpleNamespace(family=family, display_name=f"my-{family}",
                           pipe=SimpleNamespace(transformer=torch.nn.Module()))


@pytest.mark.parametrize("mlp, family", [(7, "flux"), (9, "flux2")])
def test_flux_makers_layout_is_told_flux1_or_flux2_by_its_mlp_widths(mlp, family):
    """BFL's and kohya's names are the same in both generations: Flux.1's single-block linear1 gives 3 + 4 times
    the hidden width, FLUX.2's 3 + 6 (a SwiGLU MLP)."""
    from desktop_app.engine.lora_families import lora_family

    hidden = 3072
    shapes = header(**{"diffusion_model.single_blocks.0.linear1": (hidden, mlp * hidden),
                       "diffusion_model.double_blocks.0.img_attn.qkv": (hidden, 3 * hidden)})
    assert lora_family(shapes) == family


@pytest.mark.parametrize("model, refused", [("flux", False), ("flux2-klein", False), ("qwen-image", False),
                                            ("sd3", True), ("z-image", True), ("sana", True)])
def test_shared_names_at_a_shared_width_are_taken_by_each_family_that_has_them(tmp_path, model, refused):
    """diffusers' joint-attention names at 3072 wide: Flux.1 dev, Qwen-Image and FLUX.2 [klein] 4B all have them;
    a LoRA of them alone fits each of these, and is refused on SD3 (1536 or 2432 wide) naming Flux.1."""
    from desktop_app.engine.lora_families import check_family

    key = "transformer.transformer_blocks.0.attn.add_q_proj"
    path = tmp_path / "joint.safetensors"
    save_file({f"{key}.lora_A.weight": torch.zeros(4, 3072), f"{key}.lora_B.weight": torch.zeros(3072, 4)}, path)
    if refused:
        with pytest.raises(ModelError, match=f"is for Flux.1; the model my-{model} is "):
            check_family("joint", path, "unknown", fake_model(model))
    else:
        check_family("joint", path, "unknown", fake_model(model))


@pytest.mark.parametrize("layer, family", [
    ("transformer.transformer_blocks.0.img_mlp.net.0.proj", "qwen-image"),
    ("transformer.layers.0.attention.to_q", "z-image"),
    ("transformer.transformer_blocks.0.attn2.to_k", "sana"),
    ("transformer.transformer_blocks.0.ff.conv_inverted", "sana"),
    ("diffusion_model.blocks.0.mlp.inverted_conv.conv", "sana"),
    ("transformer.single_transformer_blocks.0.attn.to_out", "flux2"),
    ("transformer.transformer_blocks.0.ff_context.linear_out", "flux2"),
    ("transformer.single_transformer_blocks.0.proj_out", "flux"),
    ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", "sd"),
])
def test_a_lora_family_is_read_from_the_layer_names_only_it_has(layer, family):
    from desktop_app.engine.lora_families import lora_family

    assert lora_family({f"{layer}.lora_A.weight": [4, 32], f"{layer}.lora_B.weight": [32, 4]}) == family
