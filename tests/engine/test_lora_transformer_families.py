"""LoRAs on the flow-matching transformer families (issue 16): Flux.1, Chroma and SD3 through their pipelines' own
LoRA loaders, on the tiny random models of tests/tiny_families.py, through the real Engine and the command line.
A peft LoRA changes the image and weight 0 (or no LoRA) gives the base pixels back; kohya's and ComfyUI's Flux key
layouts give the image of the same LoRA in diffusers' layout; a LoRA of another family or size is refused in one
line before anything loads; families whose pipeline has no LoRA loader refuse LoRAs naming the family."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from tiny_families import build_family, build_pipeline

from desktop_app.engine.events import StageStarted
from desktop_app.engine.lora import held_loras, read_lora_info
from desktop_app.engine.request import GenerationRequest, LoraChoice
from desktop_app.errors import ModelError, RequestError
from desktop_app.models.model_hash import model_hash

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-families")
    return {name: build_family(name, root / name) for name in ("flux", "sd3", "chroma", "pixart", "sana")}


def peft_lora(family: str, folder, seed: int = 0):
    """A LoRA on the transformer's attention projections, made with peft and saved by the pipeline class's own
    save_lora_weights (a diffusers-format LoRA folder)."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = build_pipeline(family)
    torch.manual_seed(seed)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=ATTENTION))
    state = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(pipe.transformer).items()}
    type(pipe).save_lora_weights(folder, transformer_lora_layers=state, safe_serialization=True)
    return folder


def flux_layouts(root, hidden: int = 32, rank: int = 2, seed: int = 1):
    """One Flux LoRA written four ways: kohya's keys (``lora_unet_double_blocks_0_img_attn_qkv`` with one
    down-projection for q, k and v, and an alpha), ComfyUI's (``diffusion_model.double_blocks.0.img_attn.qkv``,
    with kohya's ``lora_down``/``lora_up`` and with peft's ``lora_A``/``lora_B``) and diffusers' (what diffusers'
    _convert_kohya_flux_lora_to_diffusers makes of them: alpha = rank, scale 1)."""
    from diffusers import FluxPipeline

    generator = torch.Generator().manual_seed(seed)

    def pair(out: int, into: int):
        return (torch.randn(rank, into, generator=generator) * 0.5,
                torch.randn(out, rank, generator=generator) * 0.5)

    qkv, proj, txt_proj = pair(3 * hidden, hidden), pair(hidden, hidden), pair(hidden, hidden)
    linear2 = pair(hidden, hidden + 4 * hidden)  # single block: attention and MLP outputs together
    makers = {"double_blocks.0.img_attn.qkv": qkv, "double_blocks.0.img_attn.proj": proj,
              "double_blocks.0.txt_attn.proj": txt_proj, "single_blocks.0.linear2": linear2}
    kohya, comfy, comfy_peft = {}, {}, {}
    for name, (down, up) in makers.items():
        flat = "lora_unet_" + name.replace(".", "_")
        kohya |= {f"{flat}.lora_down.weight": down, f"{flat}.lora_up.weight": up, f"{flat}.alpha": torch.tensor(
            float(rank))}
        comfy |= {f"diffusion_model.{name}.lora_down.weight": down, f"diffusion_model.{name}.lora_up.weight": up}
        comfy_peft |= {f"diffusion_model.{name}.lora_A.weight": down, f"diffusion_model.{name}.lora_B.weight": up}
    block = "transformer_blocks.0.attn"
    diffusers = {f"{block}.to_out.0.lora_A.weight": proj[0], f"{block}.to_out.0.lora_B.weight": proj[1],
                 f"{block}.to_add_out.lora_A.weight": txt_proj[0],
                 f"{block}.to_add_out.lora_B.weight": txt_proj[1],
                 "single_transformer_blocks.0.proj_out.lora_A.weight": linear2[0],
                 "single_transformer_blocks.0.proj_out.lora_B.weight": linear2[1]}
    for index, part in enumerate(("to_q", "to_k", "to_v")):
        diffusers[f"{block}.{part}.lora_A.weight"] = qkv[0].clone()
        diffusers[f"{block}.{part}.lora_B.weight"] = qkv[1][index * hidden:(index + 1) * hidden]
    root.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in kohya.items()}, root / "flux-kohya.safetensors")
    save_file({k: v.contiguous() for k, v in comfy.items()}, root / "flux-comfyui.safetensors")
    save_file({k: v.contiguous() for k, v in comfy_peft.items()}, root / "flux-comfyui-peft.safetensors")
    FluxPipeline.save_lora_weights(root / "flux-diffusers", transformer_lora_layers={
        k: v.contiguous() for k, v in diffusers.items()}, safe_serialization=True)
    return {"kohya": root / "flux-kohya.safetensors", "comfyui": root / "flux-comfyui.safetensors",
            "comfyui-peft": root / "flux-comfyui-peft.safetensors", "diffusers": root / "flux-diffusers"}


def with_clip_part(kohya_path, path, rank: int = 2):
    """The kohya Flux LoRA with a CLIP-L text-encoder part too (``lora_te1_text_model_encoder_layers_0_...``)."""
    from safetensors.torch import load_file

    generator = torch.Generator().manual_seed(7)
    state = load_file(str(kohya_path))
    for part in ("q_proj", "k_proj", "v_proj", "out_proj"):  # kohya writes all four (diffusers needs out_proj)
        base = f"lora_te1_text_model_encoder_layers_0_self_attn_{part}"
        state |= {f"{base}.lora_down.weight": torch.randn(rank, 32, generator=generator),
                  f"{base}.lora_up.weight": torch.randn(32, rank, generator=generator),
                  f"{base}.alpha": torch.tensor(float(rank))}
    save_file(state, path)
    return path


def sd1_lora(path):
    """A kohya key of an SD 1.x LoRA: attn2.to_k takes CLIP-L's 768-wide text features."""
    base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file({f"{base}.lora_down.weight": torch.zeros(4, 768), f"{base}.lora_up.weight": torch.zeros(320, 4),
               f"{base}.alpha": torch.tensor(4.0)}, path)
    return path


def published_width_lora(path, width: int):
    """diffusers' joint-attention keys (the names Flux.1 and SD3 share) at a published model's width."""
    key = "transformer.transformer_blocks.0.attn.to_q"
    save_file({f"{key}.lora_A.weight": torch.zeros(4, width), f"{key}.lora_B.weight": torch.zeros(width, 4)}, path)
    return path


def named_lora(path, layer: str, width: int = 32):
    """One diffusers-layout LoRA layer by name (a layer only one family has)."""
    save_file({f"{layer}.lora_A.weight": torch.zeros(4, width), f"{layer}.lora_B.weight": torch.zeros(width, 4)},
              path)
    return path


def sd3_makers_lora(path):
    """A kohya (sd-scripts) SD3 LoRA key: SD3's makers' ``joint_blocks`` names."""
    base = "lora_unet_joint_blocks_0_x_block_attn_qkv"
    save_file({f"{base}.lora_down.weight": torch.zeros(4, 32), f"{base}.lora_up.weight": torch.zeros(96, 4),
               f"{base}.alpha": torch.tensor(4.0)}, path)
    return path


@pytest.fixture(scope="module")
def loras(folders, tmp_path_factory):
    root = tmp_path_factory.mktemp("loras")
    made = {family: peft_lora(family, root / f"{family}-peft") for family in ("flux", "sd3")}
    wide = flux_layouts(root / "wide", hidden=64)
    layouts = flux_layouts(root / "layouts")
    return made | layouts | {"with-clip": with_clip_part(layouts["kohya"], root / "with-clip.safetensors"),
        "sd1": sd1_lora(root / "sd1.safetensors"), "wide-flux": wide["kohya"],
        "sd3-joint": sd3_makers_lora(root / "sd3-joint.safetensors"),
        "sd3-1536": published_width_lora(root / "sd3-medium-like.safetensors", 1536),
        "flux-3072": published_width_lora(root / "flux-dev-like.safetensors", 3072),
        "qwen": named_lora(root / "qwen.safetensors", "transformer.transformer_blocks.0.img_mod.1"),
        "flux2": named_lora(root / "flux2.safetensors",
                            "transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj")}


def request_for(folder, *choices, **changes) -> GenerationRequest:
    values = dict(prompt="a red fox", model=str(folder), steps=2, width=32, height=32, sampler="Euler",
                  guidance_scale=3.0, seed=5, preview=False,
                  loras=tuple(LoraChoice(str(path), weight) for path, weight in choices))
    return GenerationRequest(**(values | changes))


def image(generate, request) -> np.ndarray:
    result, _ = generate(request)
    return np.asarray(result.images[0].convert("RGB"), dtype=np.int16)


def lora_layers(engine) -> list[str]:
    return [name for name, _ in engine.model.pipe.transformer.named_modules() if "lora" in name]


@pytest.mark.parametrize("family, lora", [("flux", "flux"), ("sd3", "sd3"), ("chroma", "flux")])
def test_a_lora_changes_the_image_and_weight_zero_or_none_gives_the_base(family, lora, folders, loras, generate,
                                                                         engine):
    base = image(generate, request_for(folders[family]))
    result, _ = generate(request_for(folders[family], (loras[lora], 1.0)))
    with_lora = np.asarray(result.images[0].convert("RGB"), dtype=np.int16)
    assert np.abs(with_lora - base).max() > 8, "the LoRA changed nothing"
    path = loras[lora] / "pytorch_lora_weights.safetensors"
    assert result.recipe.lora_hashes == {str(loras[lora]): model_hash(path)}
    assert lora_layers(engine)
    assert np.array_equal(image(generate, request_for(folders[family], (loras[lora], 0.0))), base)
    assert np.array_equal(image(generate, request_for(folders[family])), base)  # removed: the base pixels
    assert held_loras(engine.model.pipe) == [] and not lora_layers(engine)


@pytest.mark.parametrize("layout", ["kohya", "comfyui", "comfyui-peft"])
def test_kohya_and_comfyui_flux_layouts_give_the_diffusers_layouts_image(layout, folders, loras, generate):
    base = image(generate, request_for(folders["flux"]))
    diffusers = image(generate, request_for(folders["flux"], (loras["diffusers"], 1.0)))
    other = image(generate, request_for(folders["flux"], (loras[layout], 1.0)))
    assert np.abs(diffusers - base).max() > 8
    assert np.abs(other - diffusers).max() <= 1
    assert read_lora_info(loras[layout])["layout"] == ("kohya" if layout == "kohya" else "ComfyUI")


def test_a_clip_part_applies_on_flux_and_is_left_out_on_chroma_which_has_no_clip(folders, loras, generate):
    flux_without = image(generate, request_for(folders["flux"], (loras["kohya"], 1.0)))
    flux_with = image(generate, request_for(folders["flux"], (loras["with-clip"], 1.0)))
    assert np.abs(flux_with - flux_without).max() > 0  # the text encoder's layers took it too
    chroma_base = image(generate, request_for(folders["chroma"]))
    chroma_without = image(generate, request_for(folders["chroma"], (loras["kohya"], 1.0)))
    result, events = generate(request_for(folders["chroma"], (loras["with-clip"], 1.0)))
    chroma_with = np.asarray(result.images[0].convert("RGB"), dtype=np.int16)
    assert np.abs(chroma_without - chroma_base).max() > 8
    assert np.array_equal(chroma_with, chroma_without)
    assert any("CLIP text-encoder layers left out" in detail for detail in
               (event.detail for event in events.of(StageStarted)))


def test_an_sd1_lora_on_flux_is_refused_in_one_line_before_loading(folders, loras, generate, engine,
                                                                   monkeypatch):
    base = image(generate, request_for(folders["flux"]))
    monkeypatch.setattr(type(engine.model.pipe), "load_lora_weights", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(ModelError) as caught:
        generate(request_for(folders["flux"], (loras["sd1"], 1.0)))
    message = str(caught.value)
    assert "\n" not in message
    assert "is for Stable Diffusion 1.x; the model" in message and "is Flux.1" in message
    monkeypatch.undo()
    assert np.array_equal(image(generate, request_for(folders["flux"])), base)


@pytest.mark.parametrize("lora, model, says", [
    ("flux", "sd3", "is for Flux.1; the model .* is Stable Diffusion 3.x"),
    ("flux-3072", "sd3", "is for Flux.1; the model .* is Stable Diffusion 3.x"),
    ("sd3-joint", "flux", "is for Stable Diffusion 3.x; the model .* is Flux.1"),
    ("sd3-1536", "flux", "is for Stable Diffusion 3.x; the model .* is Flux.1"),
    ("qwen", "flux", "is for Qwen-Image; the model .* is Flux.1"),
    ("flux2", "flux", r"is for FLUX.2; the model .* is Flux.1"),
    ("flux", "sd1", "is for Flux.1; the model tiny-sd is a Stable Diffusion UNet"),
    ("sd3", "sd1", r"is for a diffusion transformer \(SD3 or Flux.1 layer names\); the model tiny-sd is a "),
])
def test_a_lora_of_another_family_is_refused_naming_both(lora, model, says, folders, loras, generate,
                                                         tiny_sd_dir):
    folder = tiny_sd_dir if model == "sd1" else folders[model]
    changes = {"guidance_scale": 5.0} if model == "sd1" else {}
    with pytest.raises(ModelError, match=says):
        generate(request_for(folder, (loras[lora], 1.0), **changes))


def test_a_lora_for_a_wider_flux_is_refused_and_the_model_keeps_its_layers(folders, loras, generate, engine):
    base = image(generate, request_for(folders["flux"]))
    shapes = {name: tuple(p.shape) for name, p in engine.model.pipe.transformer.named_parameters()}
    with pytest.raises(ModelError, match="made for a model of another size: its layer .* is 64 wide"):
        generate(request_for(folders["flux"], (loras["wide-flux"], 1.0)))
    assert {name: tuple(p.shape) for name, p in engine.model.pipe.transformer.named_parameters()} == shapes
    assert np.array_equal(image(generate, request_for(folders["flux"])), base)


@pytest.mark.parametrize("family, says", [
    ("pixart", "loras: PixArt-Sigma models take no LoRAs: diffusers has no LoRA loader for them"),
])
def test_a_family_without_loras_refuses_them_naming_the_family(family, says, folders, loras, generate):
    changes = {"sampler": "DPM++ 2M"} if family == "pixart" else {"width": 64, "height": 64}
    with pytest.raises(RequestError) as caught:
        generate(request_for(folders[family], (loras["flux"], 1.0), **changes))
    assert caught.value.field == "loras" and says in str(caught.value) and "\n" not in str(caught.value)


def test_the_command_line_runs_a_flux_lora_and_refuses_an_sd1_one(folders, loras, tmp_path, capsys):
    from desktop_app.cli import main

    out = tmp_path / "flux.png"
    assert main(["generate", "a cat", "--model", str(folders["flux"]), "--steps", "2", "--width", "32",
                 "--height", "32", "--out", str(out), "--lora", f"{loras['kohya']}:0.8"]) == 0
    recipe = json.loads(Image.open(out).text["recipe"])
    assert recipe["family"] == "flux"
    assert recipe["lora_hashes"] == {str(loras["kohya"]): model_hash(loras["kohya"])}
    assert recipe["loras"] == [{"name": str(loras["kohya"]), "weight": 0.8}]
    capsys.readouterr()
    refused = tmp_path / "sd1.png"
    assert main(["generate", "a cat", "--model", str(folders["flux"]), "--steps", "2", "--width", "32",
                 "--height", "32", "--out", str(refused), "--lora", f"{loras['sd1']}:1"]) == 2
    err = capsys.readouterr().err
    assert "is for Stable Diffusion 1.x; the model" in err and "Traceback" not in err and not refused.exists()
