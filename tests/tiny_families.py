"""Tiny random pipelines of the flow-matching families, built offline (issue #16).

``build_family(family, out)`` writes a complete diffusers folder (model_index.json, scheduler, transformer, vae,
text encoder(s), tokenizer(s)) through ``pipeline.save_pretrained``. The sizes follow diffusers' own
``get_dummy_components``, with the tokenizers built in code (tiny_tokenizers) instead of downloaded, and with
what the engine reads kept as the published models have it: the latent channels (16 for SD3 and Flux, 32 for
Sana and Flux.2), the VAE's downscale (8, 32 for Sana's DC-AE), the transformer's patching, CLIP's 77-token
window and the scheduler's kind and shift. Each folder generates 2 steps at 32x32 on a CPU in well under a
second once loaded. The SD families are here too, by the older builders: sd1 is tiny_models.build_plain_sd,
sd2 and sdxl are tiny_checkpoints.build_tiny_pipeline (their VAEs downscale 4x).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tiny_tokenizers import clip_tokenizer, gemma_tokenizer, qwen_tokenizer, t5_tokenizer

TINY_SIZE = 32  # pixels: the smallest size every family here takes


def _seeded(seed: int, make):
    torch.manual_seed(seed)
    return make()


def _kl_vae(latent_channels: int, scaling: float, shift: float | None, levels: int = 4):
    """An AutoencoderKL with the published downscale (2**(levels-1)) and no quant convs (as SD3's and Flux's)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, sample_size=TINY_SIZE,
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=(8,) * levels, layers_per_block=1, norm_num_groups=4,
        use_quant_conv=False, use_post_quant_conv=False, scaling_factor=scaling, shift_factor=shift)


def _clip(tokenizer, hidden: int = 32, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=1,
        hidden_size=hidden, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length, layer_norm_eps=1e-5,
        hidden_act="gelu", projection_dim=hidden)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _t5(tokenizer, d_model: int = 32):
    """A T5 v1.1 encoder (gated GELU, as T5-XXL) the size of hf-internal-testing/tiny-random-t5."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=37, num_layers=2,
                      num_heads=4, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, dropout_rate=0.0)
    return T5EncoderModel(config).eval()


def _flow_scheduler(**config):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**config)


# Flux.1 dev's (and Chroma's) scheduler: the shift grows with the image's token count.
FLUX_SHIFTING = {"shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
                 "base_image_seq_len": 256, "max_image_seq_len": 4096}


def build_sd3(seed: int = 0):
    """SD3 / SD3.5: CLIP-L and CLIP-G (with projections) and T5, an MMDiT on 16-channel latents, patch 2."""
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer, tokenizer_3 = clip_tokenizer(), t5_tokenizer(256)
    transformer = _seeded(seed, lambda: SD3Transformer2DModel(
        sample_size=TINY_SIZE // 8, patch_size=2, in_channels=16, out_channels=16, num_layers=1,
        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64,
        pooled_projection_dim=64, pos_embed_max_size=16))
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=_flow_scheduler(shift=3.0),
        vae=_seeded(seed, lambda: _kl_vae(16, scaling=1.5305, shift=0.0609)),
        text_encoder=_seeded(seed, lambda: _clip(tokenizer, projection=True)), tokenizer=tokenizer,
        text_encoder_2=_seeded(seed + 1, lambda: _clip(tokenizer, projection=True)), tokenizer_2=clip_tokenizer(),
        text_encoder_3=_seeded(seed, lambda: _t5(tokenizer_3, d_model=64)), tokenizer_3=tokenizer_3)


def build_flux(seed: int = 0, schnell: bool = False):
    """Flux.1 dev (guidance embedded, dynamic shift) or schnell: CLIP-L's pooled output and T5, an MMDiT on
    16-channel latents packed 2x2 into 64 channels."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer(512)
    transformer = _seeded(seed, lambda: FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        guidance_embeds=not schnell))
    scheduler = _flow_scheduler(shift=1.0) if schnell else _flow_scheduler(**FLUX_SHIFTING)
    return FluxPipeline(
        transformer=transformer, scheduler=scheduler,
        vae=_seeded(seed, lambda: _kl_vae(16, scaling=0.3611, shift=0.1159)),
        text_encoder=_seeded(seed, lambda: _clip(tokenizer)), tokenizer=tokenizer,
        text_encoder_2=_seeded(seed, lambda: _t5(tokenizer_2)), tokenizer_2=tokenizer_2)


def build_pixart(seed: int = 0):
    """PixArt-Sigma: T5 only, a DiT with learned sigma (8 output channels) on SD's 4-channel latents.
    sample_size 32 makes the pipeline's resolution binning use its 256-pixel bins."""
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    tokenizer = t5_tokenizer(300)
    transformer = _seeded(seed, lambda: PixArtTransformer2DModel(
        sample_size=32, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3,
        caption_channels=32, in_channels=4, out_channels=8, cross_attention_dim=24, attention_bias=True,
        activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=False))
    return PixArtSigmaPipeline(
        transformer=transformer.eval(), scheduler=DPMSolverMultistepScheduler(),
        vae=_seeded(seed, lambda: _kl_vae(4, scaling=0.13025, shift=None)),
        text_encoder=_seeded(seed, lambda: _t5(tokenizer)), tokenizer=tokenizer)


def _dc_ae(latent_channels: int = 32, levels: int = 6):
    """Sana's deep-compression autoencoder, downscale 2**(levels-1) = 32, attention in the deeper stages."""
    from diffusers import AutoencoderDC

    deep = levels // 2
    blocks = ("ResBlock",) * (levels - deep) + ("EfficientViTBlock",) * deep
    scales = ((),) * (levels - deep) + ((5,),) * deep
    channels = (8,) * (levels - 2) + (latent_channels,) * 2  # the shortcuts need latent_channels at the bottom
    return AutoencoderDC(
        in_channels=3, latent_channels=latent_channels, attention_head_dim=8,
        encoder_block_types=blocks, decoder_block_types=blocks,
        encoder_block_out_channels=channels, decoder_block_out_channels=channels,
        encoder_qkv_multiscales=scales, decoder_qkv_multiscales=scales,
        encoder_layers_per_block=(1,) * levels, decoder_layers_per_block=(1,) * levels,
        downsample_block_type="conv", upsample_block_type="interpolate", decoder_norm_types="rms_norm",
        decoder_act_fns="silu", scaling_factor=0.41407)


def _gemma2(tokenizer, hidden: int = 8):
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config(
        head_dim=16, hidden_size=hidden, initializer_range=0.02, intermediate_size=64,
        max_position_embeddings=8192, num_attention_heads=2, num_hidden_layers=1, num_key_value_heads=2,
        vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1, bos_token_id=2, attn_implementation="eager")
    return Gemma2Model(config).eval()


def build_sana(seed: int = 0, sprint: bool = False):
    """Sana (flow DPM-Solver, Gemma 2 encoder, 32-channel DC-AE latents at 1/32) or Sana Sprint (SCM scheduler,
    guidance embedded). sample_size 16 makes Sana's resolution binning use its 512-pixel bins; Sprint's only
    knows sample_size 32 (1024-pixel bins)."""
    from diffusers import (DPMSolverMultistepScheduler, SanaPipeline, SanaSprintPipeline,
                           SanaTransformer2DModel, SCMScheduler)

    tokenizer = gemma_tokenizer()
    extra = {"qk_norm": "rms_norm_across_heads", "guidance_embeds": True} if sprint else {}
    transformer = _seeded(seed, lambda: SanaTransformer2DModel(
        patch_size=1, in_channels=32, out_channels=32, num_layers=1, num_attention_heads=2, attention_head_dim=4,
        num_cross_attention_heads=2, cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
        sample_size=32 if sprint else 16, **extra))
    if sprint:
        pipeline, scheduler = SanaSprintPipeline, SCMScheduler()
    else:
        pipeline = SanaPipeline
        scheduler = DPMSolverMultistepScheduler(flow_shift=3.0, use_flow_sigmas=True,
                                                prediction_type="flow_prediction")
    return pipeline(transformer=transformer, scheduler=scheduler, vae=_seeded(seed, _dc_ae),
                    text_encoder=_seeded(seed, lambda: _gemma2(tokenizer)), tokenizer=tokenizer)


def build_chroma(seed: int = 0):
    """Chroma: Flux's layout without CLIP or guidance (T5 alone, with its attention mask), a distilled
    modulation approximator."""
    from diffusers import ChromaPipeline, ChromaTransformer2DModel

    tokenizer = t5_tokenizer(512)
    transformer = _seeded(seed, lambda: ChromaTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=[4, 4, 8], approximator_hidden_dim=32,
        approximator_layers=1, approximator_num_channels=16))
    return ChromaPipeline(
        transformer=transformer, scheduler=_flow_scheduler(**FLUX_SHIFTING),
        vae=_seeded(seed, lambda: _kl_vae(16, scaling=0.3611, shift=0.1159)),
        text_encoder=_seeded(seed, lambda: _t5(tokenizer)), tokenizer=tokenizer)


def _qwen3(tokenizer, layers: int, causal_lm: bool):
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    config = Qwen3Config(
        hidden_size=16, intermediate_size=16, num_hidden_layers=layers, num_attention_heads=2,
        num_key_value_heads=2, head_dim=8, vocab_size=len(tokenizer), max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return (Qwen3ForCausalLM if causal_lm else Qwen3Model)(config).eval()


def build_z_image(seed: int = 0):
    """Z-Image (Turbo): a single-stream DiT on Flux's 16-channel latents (patch 2), Qwen3's next-to-last
    hidden states through its chat template."""
    from diffusers import ZImagePipeline, ZImageTransformer2DModel

    tokenizer = qwen_tokenizer(512)

    def transformer():
        model = ZImageTransformer2DModel(
            all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=2, n_refiner_layers=1,
            n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16, rope_theta=256.0,
            t_scale=1000.0, axes_dims=[8, 4, 4], axes_lens=[256, 32, 32])
        with torch.no_grad():  # made with torch.empty: fill them, or the folder holds whatever memory held
            model.x_pad_token.normal_()
            model.cap_pad_token.normal_()
        return model

    return ZImagePipeline(
        transformer=_seeded(seed, transformer), scheduler=_flow_scheduler(shift=3.0),
        vae=_seeded(seed, lambda: _kl_vae(16, scaling=0.3611, shift=0.1159)),
        text_encoder=_seeded(seed, lambda: _qwen3(tokenizer, layers=2, causal_lm=False)), tokenizer=tokenizer)


def _qwen25_vl(tokenizer):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "vocab_size": len(tokenizer), "rope_theta": 1000000.0,
                     "bos_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<|im_end|>"),
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": 16},
        hidden_size=16, vocab_size=len(tokenizer), image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"))
    return Qwen2_5_VLForConditionalGeneration(config).eval()


# Qwen-Image's scheduler: an exponential shift that grows with the token count, ending at 0.02.
QWEN_SHIFTING = {"shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 0.9,
                 "base_image_seq_len": 256, "max_image_seq_len": 8192, "shift_terminal": 0.02,
                 "time_shift_type": "exponential"}


def build_qwen_image(seed: int = 0):
    """Qwen-Image: Qwen2.5-VL's last hidden states (the 34-token system preamble dropped), an MMDiT on the
    Wan-style VAE's 16-channel latents (a 3D causal VAE seen one frame at a time), packed 2x2."""
    from diffusers import AutoencoderKLQwenImage, QwenImagePipeline, QwenImageTransformer2DModel

    tokenizer = qwen_tokenizer(1024)
    transformer = _seeded(seed, lambda: QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=3,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4)))
    vae = _seeded(seed, lambda: AutoencoderKLQwenImage(  # the published latents_mean and latents_std
        base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, temperal_downsample=[False, True, True]))
    return QwenImagePipeline(transformer=transformer, scheduler=_flow_scheduler(**QWEN_SHIFTING), vae=vae,
                             text_encoder=_seeded(seed, lambda: _qwen25_vl(tokenizer)), tokenizer=tokenizer)


def build_flux2_klein(seed: int = 0):
    """Flux.2 Klein (distilled): Qwen3's hidden states of layers 9, 18 and 27 side by side (so the tiny Qwen3
    keeps 28 layers), an MMDiT on Flux.2's 32-channel latents packed 2x2 into 128 channels, no guidance."""
    from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline, Flux2Transformer2DModel

    tokenizer = qwen_tokenizer(512)
    transformer = _seeded(seed, lambda: Flux2Transformer2DModel(
        patch_size=1, in_channels=128, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4], guidance_embeds=False))
    vae = _seeded(seed, lambda: AutoencoderKLFlux2(
        in_channels=3, out_channels=3, latent_channels=32, sample_size=TINY_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8,) * 4, layers_per_block=1, norm_num_groups=4))
    return Flux2KleinPipeline(
        transformer=transformer, scheduler=_flow_scheduler(**FLUX_SHIFTING), vae=vae, is_distilled=True,
        text_encoder=_seeded(seed, lambda: _qwen3(tokenizer, layers=28, causal_lm=True)), tokenizer=tokenizer)


def _sd(family: str):
    def build(seed: int = 0):
        from tiny_checkpoints import build_tiny_pipeline

        return build_tiny_pipeline(family, seed)

    return build


BUILDERS = {  # family -> build(seed) -> a diffusers pipeline
    "sd2": _sd("sd2"),
    "sdxl": _sd("sdxl"),
    "sd3": build_sd3,
    "flux": build_flux,
    "flux-schnell": lambda seed=0: build_flux(seed, schnell=True),
    "pixart": build_pixart,
    "sana": build_sana,
    "sana-sprint": lambda seed=0: build_sana(seed, sprint=True),
    "chroma": build_chroma,
    "z-image": build_z_image,
    "qwen-image": build_qwen_image,
    "flux2-klein": build_flux2_klein,
}
FLOW_FAMILIES = tuple(f for f in BUILDERS if not f.startswith("sd") or f == "sd3")
FAMILIES = ("sd1", *BUILDERS)  # sd1 is tiny_models.build_plain_sd, written straight to its folder


def build_pipeline(family: str, seed: int = 0):
    """The tiny random diffusers pipeline of ``family`` (in memory; every family but sd1)."""
    if family not in BUILDERS:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(BUILDERS)}")
    return BUILDERS[family](seed)


def build_family(family: str, out: Path, seed: int = 0) -> Path:
    """Write the tiny random ``family`` model as a diffusers folder at ``out`` and return ``out``."""
    out = Path(out)
    if family == "sd1":
        from tiny_models import build_plain_sd

        return build_plain_sd(out, seed)
    build_pipeline(family, seed).save_pretrained(out)
    return out
