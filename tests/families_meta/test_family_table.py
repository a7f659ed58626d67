"""The family table (desktop_app/models/families.py) against diffusers 0.42 itself: every class it names exists
and fits its family, and what it says of the latents and prompts is what the pipelines and configs say."""

from __future__ import annotations

import inspect
import json

import pytest

from desktop_app.models import families, single_file

FAMILIES = sorted(families.FAMILIES)


def _denoiser_annotation(pipeline) -> str:
    parameters = inspect.signature(pipeline.__init__).parameters
    annotation = parameters["unet" if "unet" in parameters else "transformer"].annotation
    return annotation if isinstance(annotation, str) else annotation.__name__


@pytest.mark.parametrize("key", FAMILIES)
def test_every_class_the_table_names_is_in_diffusers_and_takes_the_familys_network(key):
    import diffusers

    family = families.FAMILIES[key]
    assert hasattr(diffusers, family.denoiser), family.denoiser
    assert family.denoiser_folder == ("unet" if family.denoiser == "UNet2DConditionModel" else "transformer")
    assert family.pipeline_classes, "a family needs a pipeline"
    for name in {*family.pipeline_classes, *family.pipelines}:
        assert hasattr(diffusers, name), name
        assert family.denoiser in _denoiser_annotation(getattr(diffusers, name)), name
    if family.negative_prompt and family.text_to_image:
        call = inspect.signature(getattr(diffusers, family.text_to_image).__call__).parameters
        assert "negative_prompt" in call, family.text_to_image


def test_pipeline_names_lead_back_to_one_family():
    seen = {}
    for family in families.FAMILIES.values():
        for name in family.pipelines:
            assert name not in seen, f"{name}: {seen.get(name)} and {family.key}"
            seen[name] = family.key
            assert families.family_for_pipeline(name) == family.key
        if family.denoiser_folder == "transformer":
            assert family.text_to_image in family.pipelines
    # SD 1.x, 2.x and the embedded model share StableDiffusionPipeline: the UNet's width decides (model_files)
    assert families.family_for_pipeline("StableDiffusionPipeline") is None
    assert families.family_for_pipeline("PixArtAlphaPipeline") is None


@pytest.mark.parametrize("key", [k for k in FAMILIES if families.FAMILIES[k].variants])
def test_latent_channels_and_packing_agree_with_the_published_configs(key):
    family = families.FAMILIES[key]
    for variant in family.variants:
        folder = single_file.bundled_transformer_config(variant.key)
        config = json.loads((folder / "transformer" / "config.json").read_text())
        assert config["_class_name"] == family.denoiser
        # FLUX.1 Fill's inputs add the masked image's latents and the mask to the latents: its output is them
        channels = config["out_channels"] if variant.key == "flux-fill" else config["in_channels"]
        assert channels == family.latent_channels * (4 if family.packed else 1), variant.key


@pytest.mark.parametrize("key", ["sd1", "sd2", "sd2-v", "sdxl", "sdxl-refiner"])
def test_the_sd_families_agree_with_their_bundled_pipelines(key):
    family = families.FAMILIES[key]
    folder = single_file.bundled_config(key)
    unet = json.loads((folder / "unet" / "config.json").read_text())
    index = json.loads((folder / "model_index.json").read_text())
    assert unet["in_channels"] == family.latent_channels
    assert families.CONTEXT_FAMILIES[unet["cross_attention_dim"]] == key.removesuffix("-v")
    assert index["_class_name"] in family.pipeline_classes
    assert index.get("_defaults", {}).get("width", family.size) == family.size


def test_few_step_defaults_and_variant_defaults():
    for family in families.FAMILIES.values():
        defaults = family.defaults()
        assert defaults["width"] == defaults["height"] == family.size
        assert (defaults["steps"] <= 9) == family.few_step, family.key
    assert families.FAMILIES["flux"].defaults("flux-schnell") == {
        "width": 1024, "height": 1024, "steps": 4, "guidance_scale": 0.0, "sampler": "Euler"}
    assert "sampler" not in families.FAMILIES["pixart-sigma"].defaults()  # an epsilon model: the SD samplers
    assert families.FAMILIES["flux"].defaults("flux-dev")["steps"] == 28
    assert families.FAMILIES["sd3"].defaults("sd3.5-large")["guidance_scale"] == 3.5
    assert families.FAMILIES["sd3"].defaults("no-such-variant") == families.FAMILIES["sd3"].defaults()


def test_variant_keys_are_unique_and_display_names_cover_every_family():
    keys = [v.key for f in families.FAMILIES.values() for v in f.variants]
    assert len(keys) == len(set(keys))
    assert set(families.display_names()) == set(families.FAMILIES)
    assert families.SUPPORTED <= set(families.FAMILIES)
