"""The model families, one table: what each is called, which diffusers classes run it, its defaults, and how its
files are recognised. Torch-free (the window and the command line read it before torch loads).

Recognition goes by content, never by name. A diffusers folder names its pipeline in model_index.json
(``_class_name``); a single transformer file is known by tensor names, the keys diffusers' own single-file
loader looks for (``diffusers.loaders.single_file_utils.CHECKPOINT_KEY_NAMES`` and the key maps of its
``convert_*_checkpoint_to_diffusers`` functions), in the original layout of the model's makers (BFL's
``double_blocks``, Stability AI's ``joint_blocks``, the Sana/PixArt ``blocks``) or in diffusers' layout (what
``save_pretrained`` writes), either with ComfyUI's ``model.diffusion_model.`` prefix. The size of a family
(Flux.2 Klein 4B or 9B, SD 3.5 Medium or Large, Sana 1.6B or 0.6B) comes from the model's width, read off one
small tensor's shape. The Stable Diffusion UNets are told apart by model_files (the text-encoder width their
cross-attention reads), as before.

A family's published full-size transformer config, for loading a single transformer file offline, is bundled in
``resources/configs/<variant>/transformer/config.json`` (the SD families' whole pipelines are in
``resources/configs/<family>/``: see single_file.py).

Which families this version of the app runs is ``SUPPORTED``: the transformer families of ``SINGLE_FILES`` as
diffusers folders and as single transformer files with a components folder, those of ``FOLDERS_ONLY`` as diffusers
folders only; the others are recognised and reported, and refused with ``unsupported_message`` before any weights
load.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from desktop_app.errors import ModelError
from desktop_app.models import flux_fill, model_folder
from desktop_app.resources import resources_dir

PREFIX = "model.diffusion_model."  # ComfyUI and SAI/BFL full checkpoints put the network under this prefix


@dataclass(frozen=True)
class Signature:
    """Tensor names (without the prefix) that all appear in one layout of a family's transformer file, and
    names that never appear in it (a closely related family's)."""

    layout: str  # "original" (the makers' own key names) or "diffusers"
    all_of: tuple[str, ...]
    none_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class Variant:
    """One published model of a family. ``key`` names its bundled config folder under resources/configs/."""

    key: str
    name: str
    width: int | None = None  # the hidden size that tells it apart (None: any)
    has: tuple[str, ...] = ()  # one of these tensors must be in the file (the names of both layouts)
    lacks: tuple[str, ...] = ()  # none of these may be
    dims: tuple[tuple[str, int, int], ...] = ()  # (tensor, dimension, size) that must hold where it is there
    steps: int | None = None  # its own defaults, where they differ from the family's
    guidance: float | None = None


@dataclass(frozen=True)
class Family:
    key: str
    name: str
    text_to_image: str | None  # diffusers pipeline classes (None: diffusers 0.42 has none)
    image_to_image: str | None
    inpaint: str | None
    denoiser: str  # the diffusers class of its UNet or transformer
    negative_prompt: bool
    steps: int
    guidance: float
    size: int  # the default width and height
    latent_channels: int  # the VAE's latent channels
    packed: bool = False  # latents packed 2x2 into tokens (Flux, Chroma, Flux.2, Qwen-Image)
    few_step: bool = False  # distilled: its defaults are a few steps
    flow_matching: bool = False  # sampled by flow matching (the model's own "Euler"), not the SD samplers
    loras: bool = False  # this version applies LoRAs to it (set from LORAS below)
    pipelines: tuple[str, ...] = ()  # model_index.json "_class_name" values that mean this family
    signatures: tuple[Signature, ...] = ()
    width_keys: tuple[tuple[str, int], ...] = ()  # (tensor name, dimension) holding the width
    variants: tuple[Variant, ...] = ()
    note: str = ""
    # the pipeline that edits an image by an instruction (edit_job.py), None: the family cannot; see EDIT_MODELS
    edit: str | None = None
    # the pipeline that runs ControlNets on it (engine/control_job.py), None: none here; see CONTROLNETS
    controlnet: str | None = None

    @property
    def denoiser_folder(self) -> str:
        return "unet" if self.denoiser.startswith("UNet") else "transformer"

    @property
    def pipeline_classes(self) -> tuple[str, ...]:
        return tuple(c for c in (self.text_to_image, self.image_to_image, self.inpaint) if c)

    def variant(self, key: str) -> Variant | None:
        return next((v for v in self.variants if v.key == key), None)

    def defaults(self, variant: str = "") -> dict:
        """The generation defaults (GenerationRequest's names) of the family, or of one of its variants."""
        chosen = self.variant(variant)
        steps = chosen.steps if chosen and chosen.steps is not None else self.steps
        guidance = chosen.guidance if chosen and chosen.guidance is not None else self.guidance
        values = {"width": self.size, "height": self.size, "steps": steps, "guidance_scale": guidance}
        return values | {"sampler": "Euler"} if self.flow_matching else values


_SD = dict(text_to_image="StableDiffusionPipeline", image_to_image="StableDiffusionImg2ImgPipeline",
           inpaint="StableDiffusionInpaintPipeline", denoiser="UNet2DConditionModel", negative_prompt=True,
           steps=20, guidance=7.5, latent_channels=4)
_XL = dict(image_to_image="StableDiffusionXLImg2ImgPipeline", denoiser="UNet2DConditionModel",
           negative_prompt=True, steps=20, guidance=5.0, size=1024, latent_channels=4)

# Flux.1 and its relatives in BFL's layout, and in diffusers'
_FLUX_ORIGINAL = "double_blocks.0.img_attn.norm.key_norm.scale"
_CHROMA_ORIGINAL = "distilled_guidance_layer.in_proj.bias"
_CHROMA_DIFFUSERS = "distilled_guidance_layer.in_proj.weight"
_FLUX2_ORIGINAL, _FLUX2_DIFFUSERS = "single_stream_modulation.lin.weight", "single_stream_modulation.linear.weight"
_FLUX_IN = (("img_in.weight", 1, 64), ("x_embedder.weight", 1, 64))  # Fill and Depth take more channels
_FILL_IN = (("img_in.weight", 1, 384), ("x_embedder.weight", 1, 384))  # FLUX.1 Fill: image, masked image, mask
_FLUX_GUIDANCE = ("guidance_in.in_layer.bias", "time_text_embed.guidance_embedder.linear_1.weight")
_FLUX2 = dict(denoiser="Flux2Transformer2DModel", negative_prompt=False, size=1024, latent_channels=32,
              packed=True, signatures=(
                  Signature("original", (_FLUX2_ORIGINAL, "double_blocks.0.img_attn.qkv.weight")),
                  Signature("diffusers", (_FLUX2_DIFFUSERS,
                                          "single_transformer_blocks.0.attn.to_qkv_mlp_proj.weight"))),
              width_keys=(("img_in.weight", 0), ("x_embedder.weight", 0)))
# Sana and PixArt share the original "blocks.N.cross_attn" naming; their feed-forward layers differ
_SANA_ORIGINAL = ("blocks.0.cross_attn.q_linear.weight", "blocks.0.mlp.inverted_conv.conv.weight")
_SANA_DIFFUSERS = ("caption_norm.weight", "transformer_blocks.0.ff.conv_inverted.weight")
_SPRINT_ORIGINAL, _SPRINT_DIFFUSERS = "cfg_embedder.mlp.0.weight", "time_embed.guidance_embedder.linear_1.weight"
_QK_NORM = ("blocks.0.attn.q_norm.weight", "transformer_blocks.0.attn1.norm_q.weight")
_SANA_WIDTH = (("attention_y_norm.weight", 0), ("caption_norm.weight", 0))
_SANA = dict(image_to_image=None, inpaint=None, denoiser="SanaTransformer2DModel", size=1024, latent_channels=32,
             width_keys=_SANA_WIDTH)

FAMILIES: dict[str, Family] = {f.key: f for f in (
    Family("sd1", "Stable Diffusion 1.x", size=512, **_SD),
    Family("sd2", "Stable Diffusion 2.x", size=512, **_SD),
    Family("sd2-v", "Stable Diffusion 2.x (768 v-prediction)", size=768, **_SD),
    Family("sdxl", "SDXL", text_to_image="StableDiffusionXLPipeline", inpaint="StableDiffusionXLInpaintPipeline",
           pipelines=("StableDiffusionXLPipeline",), **_XL),
    Family("sdxl-refiner", "SDXL refiner", text_to_image=None, inpaint=None,
           pipelines=("StableDiffusionXLImg2ImgPipeline",), note="the second stage of SDXL, image to image",
           **_XL),
    Family("embedded", "the embedded model", text_to_image="StableDiffusionPipeline", image_to_image=None,
           inpaint=None, denoiser="UNet2DConditionModel", negative_prompt=True, steps=20, guidance=10.0, size=64,
           latent_channels=4, note="a small SD-style UNet with a MiniLM text encoder from a Python package"),
    Family("sd3", "Stable Diffusion 3.x", text_to_image="StableDiffusion3Pipeline",
           image_to_image="StableDiffusion3Img2ImgPipeline", inpaint="StableDiffusion3InpaintPipeline",
           denoiser="SD3Transformer2DModel", negative_prompt=True, steps=28, guidance=7.0, size=1024,
           latent_channels=16,
           pipelines=("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline",
                      "StableDiffusion3InpaintPipeline"),
           signatures=(Signature("original", ("joint_blocks.0.context_block.adaLN_modulation.1.bias",)),
                       Signature("diffusers", ("pos_embed.proj.weight",
                                               "transformer_blocks.0.attn.add_q_proj.weight",
                                               "time_text_embed.text_embedder.linear_1.weight"))),
           width_keys=(("x_embedder.proj.bias", 0), ("pos_embed.proj.bias", 0)),
           variants=(  # 3.5 Large Turbo has 3.5 Large's tensors: its 4 steps cannot be told from the file
               Variant("sd3.5-large", "Stable Diffusion 3.5 Large", width=2432, steps=28, guidance=3.5),
               Variant("sd3.5-medium", "Stable Diffusion 3.5 Medium", width=1536, steps=40, guidance=4.5,
                       has=("joint_blocks.0.x_block.attn2.qkv.weight", "transformer_blocks.0.attn2.to_q.weight")),
               Variant("sd3-medium", "Stable Diffusion 3 Medium", width=1536,
                       lacks=("joint_blocks.0.x_block.attn.ln_q.weight",
                              "transformer_blocks.0.attn.norm_q.weight")))),
    Family("flux", "Flux.1", text_to_image="FluxPipeline", image_to_image="FluxImg2ImgPipeline",
           inpaint="FluxInpaintPipeline", denoiser="FluxTransformer2DModel", negative_prompt=False, steps=28,
           guidance=3.5, size=1024, latent_channels=16, packed=True,
           pipelines=("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline", "FluxKontextPipeline",
                      flux_fill.PIPELINE),
           edit="FluxKontextPipeline",
           signatures=(Signature("original", (_FLUX_ORIGINAL,), (_CHROMA_ORIGINAL, _FLUX2_ORIGINAL)),
                       Signature("diffusers", ("single_transformer_blocks.0.proj_mlp.weight",
                                               "time_text_embed.timestep_embedder.linear_1.weight"))),
           width_keys=(("img_in.bias", 0), ("x_embedder.bias", 0)),
           variants=(Variant("flux-dev", "FLUX.1 [dev]", width=3072, has=_FLUX_GUIDANCE, dims=_FLUX_IN),
                     Variant("flux-schnell", "FLUX.1 [schnell]", width=3072, lacks=_FLUX_GUIDANCE, dims=_FLUX_IN,
                             steps=4, guidance=0.0),  # Fill: BFL's and diffusers' 50 steps at guidance 30
                     Variant(flux_fill.VARIANT, flux_fill.NAME, width=3072, has=_FLUX_GUIDANCE, dims=_FILL_IN,
                             steps=50, guidance=30.0))),
    Family("chroma", "Chroma", text_to_image="ChromaPipeline", image_to_image="ChromaImg2ImgPipeline",
           inpaint="ChromaInpaintPipeline", denoiser="ChromaTransformer2DModel", negative_prompt=True, steps=35,
           guidance=5.0, size=1024, latent_channels=16, packed=True,
           pipelines=("ChromaPipeline", "ChromaImg2ImgPipeline", "ChromaInpaintPipeline"),
           signatures=(Signature("original", (_CHROMA_ORIGINAL, _FLUX_ORIGINAL)),
                       Signature("diffusers", (_CHROMA_DIFFUSERS, "single_transformer_blocks.0.proj_mlp.weight"))),
           width_keys=(("img_in.bias", 0), ("x_embedder.bias", 0)),
           variants=(Variant("chroma", "Chroma1-HD", width=3072),)),
    Family("flux2-klein", "FLUX.2 [klein]", text_to_image="Flux2KleinPipeline", image_to_image=None,
           inpaint="Flux2KleinInpaintPipeline", steps=4, guidance=1.0, few_step=True,
           pipelines=("Flux2KleinPipeline", "Flux2KleinInpaintPipeline", "Flux2KleinKVPipeline"),
           edit="Flux2KleinPipeline",
           variants=(Variant("flux2-klein-4b", "FLUX.2 [klein] 4B", width=3072),
                     Variant("flux2-klein-9b", "FLUX.2 [klein] 9B", width=4096)),
           note="the step-distilled releases; the [klein] base models (same tensors) want 50 steps at guidance 4",
           **_FLUX2),
    Family("flux2", "FLUX.2 [dev]", text_to_image="Flux2Pipeline", image_to_image=None, inpaint=None, steps=50,
           guidance=4.0, pipelines=("Flux2Pipeline",), edit="Flux2Pipeline",
           variants=(Variant("flux2-dev", "FLUX.2 [dev]", width=6144),),
           **_FLUX2),
    Family("z-image", "Z-Image", text_to_image="ZImagePipeline", image_to_image="ZImageImg2ImgPipeline",
           inpaint="ZImageInpaintPipeline", denoiser="ZImageTransformer2DModel", negative_prompt=False, steps=9,
           guidance=0.0, size=1024, latent_channels=16, few_step=True,
           pipelines=("ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline"),
           signatures=(Signature("original", ("layers.0.adaLN_modulation.0.weight",
                                              "layers.0.attention.qkv.weight")),
                       Signature("diffusers", ("layers.0.adaLN_modulation.0.weight",
                                               "layers.0.attention.to_q.weight", "cap_embedder.1.weight"))),
           width_keys=(("cap_embedder.1.bias", 0),),
           variants=(Variant("z-image-turbo", "Z-Image-Turbo", width=3840),),
           note="defaults of Z-Image-Turbo (9 steps, no guidance); the base model (same tensors) wants more"),
    Family("qwen-image", "Qwen-Image", text_to_image="QwenImagePipeline",
           image_to_image="QwenImageImg2ImgPipeline", inpaint="QwenImageInpaintPipeline",
           denoiser="QwenImageTransformer2DModel", negative_prompt=True, steps=50, guidance=4.0, size=1328,
           latent_channels=16, packed=True,
           pipelines=("QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline",
                      "QwenImageEditPipeline", "QwenImageEditPlusPipeline"),
           edit="QwenImageEditPipeline",
           signatures=(Signature("diffusers", ("transformer_blocks.0.img_mod.1.weight", "txt_norm.weight",
                                               "img_in.weight"), ("txt_in.text_norm.weight",)),),
           width_keys=(("img_in.bias", 0),),
           variants=(Variant("qwen-image", "Qwen-Image", width=3072),),
           note="its guidance is true classifier-free guidance (diffusers' true_cfg_scale)"),
    Family("sana", "Sana", text_to_image="SanaPipeline", negative_prompt=True, steps=20, guidance=4.5,
           pipelines=("SanaPipeline", "SanaPAGPipeline"),
           signatures=(Signature("original", _SANA_ORIGINAL, (_SPRINT_ORIGINAL,)),
                       Signature("diffusers", _SANA_DIFFUSERS, (_SPRINT_DIFFUSERS,))),
           variants=(Variant("sana-1600m", "Sana 1600M", width=2240, lacks=_QK_NORM),  # Sana 1.5: QK norm
                     Variant("sana-600m", "Sana 600M", width=1152, lacks=_QK_NORM)),
           **_SANA),
    Family("sana-sprint", "Sana Sprint", text_to_image="SanaSprintPipeline", negative_prompt=False, steps=2,
           guidance=4.5, few_step=True, pipelines=("SanaSprintPipeline", "SanaSprintImg2ImgPipeline"),
           signatures=(Signature("original", (*_SANA_ORIGINAL, _SPRINT_ORIGINAL)),
                       Signature("diffusers", (*_SANA_DIFFUSERS, _SPRINT_DIFFUSERS))),
           variants=(Variant("sana-sprint-1600m", "Sana Sprint 1.6B", width=2240),
                     Variant("sana-sprint-600m", "Sana Sprint 0.6B", width=1152)),
           **(_SANA | {"image_to_image": "SanaSprintImg2ImgPipeline"})),
    Family("pixart-sigma", "PixArt-Sigma", text_to_image="PixArtSigmaPipeline", image_to_image=None, inpaint=None,
           denoiser="PixArtTransformer2DModel", negative_prompt=True, steps=20, guidance=4.5, size=1024,
           latent_channels=4, pipelines=("PixArtSigmaPipeline", "PixArtSigmaPAGPipeline"),
           signatures=(Signature("original", ("blocks.0.cross_attn.q_linear.weight", "blocks.0.mlp.fc1.weight",
                                              "t_block.1.weight")),
                       Signature("diffusers", ("adaln_single.linear.weight", "caption_projection.linear_1.weight",
                                               "transformer_blocks.0.attn2.to_q.weight"))),
           width_keys=(("x_embedder.proj.bias", 0), ("pos_embed.proj.bias", 0)),
           variants=(Variant("pixart-sigma-xl", "PixArt-Sigma XL 1024", width=1152),),
           note="PixArt-Alpha has the same tensors; its folders (PixArtAlphaPipeline) are not this family"),
)}

# sampled by flow matching: the model's own scheduler ("Euler"), not the SD samplers
FLOW_MATCHING = frozenset({"sd3", "flux", "chroma", "flux2-klein", "flux2", "z-image", "qwen-image", "sana",
                           "sana-sprint"})
# take LoRAs here: the SD UNets, and the transformers whose LoRAs the engine loads (their pipelines' own loaders)
# and tells apart by their layers (engine/lora_families.py); the others' LoRAs are refused naming the family
LORAS = frozenset({"sd1", "sd2", "sd2-v", "sdxl", "sdxl-refiner", "embedded", "flux", "chroma", "sd3", "sana",
                    "sana-sprint", "z-image", "qwen-image", "flux2-klein"})
# the diffusers pipeline that runs ControlNets on each family (the text-to-image ones, made from its components)
_SD_CONTROL = "StableDiffusionControlNetPipeline"
CONTROLNETS = {"sd1": _SD_CONTROL, "sd2": _SD_CONTROL, "sd2-v": _SD_CONTROL, "embedded": _SD_CONTROL,
               "sdxl": "StableDiffusionXLControlNetPipeline", "sd3": "StableDiffusion3ControlNetPipeline",
               "flux": "FluxControlNetPipeline"}
FAMILIES = {key: replace(family, flow_matching=key in FLOW_MATCHING, loras=key in LORAS,
                         controlnet=CONTROLNETS.get(key))
            for key, family in FAMILIES.items()}

# the text-encoder width an SD UNet cross-attends to, per family (the embedded model's MiniLM gives 384)
CONTEXT_FAMILIES = {384: "embedded", 768: "sd1", 1024: "sd2", 1280: "sdxl-refiner", 2048: "sdxl"}
# the families this version of the app runs; the rest are recognised, reported, and refused before loading
SD_FAMILIES = frozenset({"sd1", "sd2", "sd2-v", "sdxl", "sdxl-refiner", "embedded"})
# the transformer families whose single transformer file (.safetensors or .gguf) runs too, with the text encoders,
# tokenizers, VAE and scheduler of a diffusers folder of the family: its "components" (engine/transformer_file.py)
SINGLE_FILES = frozenset({"sd3", "flux", "chroma", "sana", "sana-sprint", "z-image", "qwen-image", "flux2-klein"})
# the transformer families run as diffusers folders only (diffusers has no from_single_file for PixArt's)
FOLDERS_ONLY = frozenset({"pixart-sigma"})
SUPPORTED = SD_FAMILIES | SINGLE_FILES | FOLDERS_ONLY
# edit by an instruction: FLUX.2's own pipelines take reference images (one model makes and edits); Flux.1 and
# Qwen-Image edit only with their edit releases (FLUX.1 Kontext, Qwen-Image-Edit), folders of these pipelines
EDIT_MODELS = {"FluxKontextPipeline": "FLUX.1 Kontext", "QwenImageEditPipeline": "Qwen-Image-Edit",
               "QwenImageEditPlusPipeline": "Qwen-Image-Edit-2509 (Plus)", "Flux2KleinPipeline": "FLUX.2 [klein]",
               "Flux2Pipeline": "FLUX.2 [dev]"}
# the order single files are tried in: a family whose signature contains another's comes first
_CONTROLNET = ("controlnet_", "control_", "controlnet.")
_RECOGNITION_ORDER = ("flux2-klein", "flux2", "chroma", "flux", "sd3", "qwen-image", "z-image", "sana-sprint",
                      "sana", "pixart-sigma")


@dataclass(frozen=True)
class Recognised:
    family: str
    variant: str  # a Variant.key, or "" when the file's size matches no published model
    layout: str  # "original" or "diffusers"


def display_names() -> dict[str, str]:
    return {key: family.name for key, family in FAMILIES.items()}


def get(key: str) -> Family | None:
    return FAMILIES.get(key)


def is_supported(family: str, single_file: bool = False) -> bool:
    """Whether this version runs ``family``: as a diffusers folder, or (``single_file``) as one file (a
    transformer family's with a components folder)."""
    return family in (SD_FAMILIES | SINGLE_FILES if single_file else SUPPORTED)


def check_supported(family: str, what: str = "This model") -> None:
    """ModelError when this version of the app does not run ``family`` (see ``unsupported_message``)."""
    message = unsupported_message(family, what)
    if message:
        raise ModelError(message)


def unsupported_message(family: str, what: str = "This model") -> str | None:
    """Why this version of the app does not run ``family`` (None when it does): the recognised-but-not-yet path
    the loader takes before any weights load."""
    if family in SUPPORTED:
        return None
    runs = ("Stable Diffusion 1.x, 2.x, SDXL (and its refiner), the embedded model, and "
            + ", ".join(FAMILIES[key].name for key in sorted(SINGLE_FILES | FOLDERS_ONLY)))
    if family not in FAMILIES:
        return f"{what} is of no model family this app knows; it runs {runs}."
    return (f"{what} is {FAMILIES[family].name}: recognised, but this version of the app does not run "
            f"{FAMILIES[family].name} models yet; it runs {runs}.")


def components_message(family: str, file_name: str, problem: str = "") -> str:
    """The one line for a transformer file whose text encoders, tokenizers and VAE are not at hand: ``problem``
    says what is wrong with the components folder named (empty: none is named)."""
    name = FAMILIES[family].name if family in FAMILIES else family
    what = f"{name} transformer file {file_name}"
    where = (f"name a {name} diffusers folder as its components (in the window Models > Components…, on the "
             f"command line `desktop-app models components {family} FOLDER`, or --components FOLDER); single "
             "text-encoder and VAE files (ComfyUI's models/text_encoders, models/vae) cannot serve as components")
    if not problem:
        return f"{what} needs its text encoders, tokenizers and VAE: {where}."
    return f"{what} cannot use its components: {problem}; {where}."


def strip_prefix(shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """The tensor names without ComfyUI's ``model.diffusion_model.`` prefix (names without it are kept)."""
    if not any(name.startswith(PREFIX) for name in shapes):
        return dict(shapes)
    return {name.removeprefix(PREFIX): shape for name, shape in shapes.items()}


def recognise(shapes: dict[str, list[int]]) -> Recognised | None:
    """The transformer family of a single file from its tensor names and shapes (a header's), or None when it
    holds none of them (a Stable Diffusion UNet, a LoRA, an unknown network)."""
    names = strip_prefix(shapes)
    if any(name.startswith(_CONTROLNET) for name in names):  # a ControlNet shares its base model's blocks
        return None
    for key in _RECOGNITION_ORDER:
        family = FAMILIES[key]
        for signature in family.signatures:
            if all(n in names for n in signature.all_of) and not any(n in names for n in signature.none_of):
                found = Recognised(key, _variant(family, names), signature.layout)
                if not found.variant and key == "flux2-klein":  # same tensors as FLUX.2 [dev]: the width decides
                    dev = FAMILIES["flux2"]
                    if _variant(dev, names):
                        return Recognised("flux2", _variant(dev, names), signature.layout)
                return found
    return None


def family_from_widths(widths) -> str:
    """The SD family of the widest known cross-attention width among ``widths``, or "unknown"."""
    for size in sorted(widths, reverse=True):
        if size in CONTEXT_FAMILIES:
            return CONTEXT_FAMILIES[size]
    return "unknown"


def width(family: Family, names: dict[str, list[int]]) -> int | None:
    for name, dim in family.width_keys:
        shape = names.get(name)
        if shape is not None and len(shape) > dim:
            return shape[dim]
    return None


def _variant(family: Family, names: dict[str, list[int]]) -> str:
    size = width(family, names)
    for variant in family.variants:
        if variant.width is not None and variant.width != size:
            continue
        if variant.has and not any(n in names for n in variant.has):
            continue
        if any(n in names for n in variant.lacks):
            continue
        if any(n in names and len(names[n]) > d and names[n][d] != want for n, d, want in variant.dims):
            continue
        return variant.key
    return ""


# ---------------------------------------------------------------------------------------------------------------
# diffusers folders

# the config keys that fix a transformer's architecture (the others: sizes of a default image, names, versions)
ARCH_KEYS = ("num_layers", "num_single_layers", "num_attention_heads", "attention_head_dim", "joint_attention_dim",
             "guidance_embeds", "dual_attention_layers", "qk_norm", "caption_projection_dim", "in_channels",
             "num_cross_attention_heads", "cross_attention_head_dim", "cross_attention_dim", "caption_channels",
             "dim", "n_layers", "n_heads", "cap_feat_dim")


def folder_family(folder: Path, index: dict) -> tuple[str, str]:
    """(family, variant) of a diffusers folder whose model_index.json is ``index``: the embedded format, the
    pipeline's family, else the UNet's cross-attention width, else the transformer's class."""
    if model_folder.is_embedded(index):
        return "embedded", ""
    family = family_for_pipeline(str(index.get("_class_name", "")))
    if family is None:
        unet = _config(folder / "unet" / "config.json")
        family = CONTEXT_FAMILIES.get(_whole(unet.get("cross_attention_dim")), "unknown")
        scheduler = _config(folder / "scheduler" / "scheduler_config.json")
        if family == "sd2" and scheduler.get("prediction_type") == "v_prediction":
            family = "sd2-v"
    transformer = _config(folder / "transformer" / "config.json")
    if family == "unknown":
        family = family_for_denoiser(str(transformer.get("_class_name", "")), transformer) or "unknown"
    if family == "flux" and flux_fill.is_fill(index, transformer):  # a Fill folder of any size
        return family, flux_fill.VARIANT
    return family, folder_variant(family, transformer) if transformer else ""


def _config(path: Path) -> dict:
    """A small JSON config as a dict; {} when it is missing, damaged or not an object."""
    if not path.is_file():
        return {}
    try:
        config = model_folder.read_json_file(path, "config")
    except ModelError:
        return {}
    return config if isinstance(config, dict) else {}


def _whole(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def family_for_pipeline(class_name: str) -> str | None:
    """The family a model_index.json ``_class_name`` means; None for StableDiffusionPipeline (SD 1.x, 2.x and
    the embedded model share it: model_files tells them apart) and for pipelines of no known family."""
    return next((f.key for f in FAMILIES.values() if class_name in f.pipelines), None)


def family_for_denoiser(class_name: str, config: dict | None = None) -> str | None:
    """The transformer family of a ``transformer/config.json`` ``_class_name`` (a folder whose pipeline names no
    family); Sana's transformer with a guidance embedding is Sana Sprint's, Flux.2's is the variant's width."""
    found = [f for f in FAMILIES.values() if f.denoiser == class_name and f.denoiser_folder == "transformer"]
    if not found:
        return None
    config = config or {}
    if class_name == "SanaTransformer2DModel":
        return "sana-sprint" if config.get("guidance_embeds") else "sana"
    if len(found) > 1:
        matching = [f for f in found if folder_variant(f.key, config)]
        return (matching or found)[0].key
    return found[0].key


def transformer_config_file(variant: str) -> Path:
    """Where the bundled transformer config of a variant is (it may be missing: single_file checks)."""
    return resources_dir() / "configs" / variant / "transformer" / "config.json"


def folder_variant(family: str, config: dict) -> str:
    """The published variant whose bundled transformer config has the same architecture as ``config`` (a
    folder's transformer/config.json), or "". Keys ``config`` leaves out are not compared."""
    import json

    chosen = FAMILIES.get(family)
    for variant in chosen.variants if chosen else ():
        try:
            bundled = json.loads(transformer_config_file(variant.key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        shared = [k for k in ARCH_KEYS if k in config and k in bundled]
        if shared and all(_same(config[k], bundled[k]) for k in shared):
            return variant.key
    return ""


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b
