"""The Stable Diffusion UNets (1.x, 2.x, XL and its refiner) and the embedded model: noise drawn here (so the
explain view and the hires fix see it), the prompt encoded here where the pipeline allows it (so the text stage
is timed on its own)."""

from __future__ import annotations

import torch

from desktop_app.engine.families.base import EngineFamily
from desktop_app.engine.request import GenerationRequest


class SdFamily(EngineFamily):
    key = "sd"

    def encode_text(self, pipe, request: GenerationRequest, device: torch.device) -> dict:
        """Prompt embeddings for the pipeline call. Pipelines with another encode_prompt signature (SDXL) get
        the prompts and encode them themselves."""
        from diffusers import StableDiffusionPipeline

        if not isinstance(pipe, StableDiffusionPipeline):
            return {"prompt": request.prompt, "negative_prompt": request.negative_prompt or None}
        guided = request.guidance_scale > 1 and pipe.unet.config.time_cond_proj_dim is None
        positive, negative = pipe.encode_prompt(
            request.prompt, device, num_images_per_prompt=1, do_classifier_free_guidance=guided,
            negative_prompt=request.negative_prompt or None)
        kwargs = {"prompt_embeds": positive}
        if negative is not None:
            kwargs["negative_prompt_embeds"] = negative
        return kwargs

    def initial_noise(self, pipe, request: GenerationRequest, generators: list, device: torch.device) -> dict:
        """Unit-variance latent noise, one item per generator (the pipeline scales it by init_noise_sigma)."""
        from diffusers.utils.torch_utils import randn_tensor

        scale = pipe.vae_scale_factor
        shape = (len(generators), pipe.unet.config.in_channels, request.height // scale, request.width // scale)
        return {"latents": randn_tensor(shape, generator=generators, device=device, dtype=pipe.unet.dtype)}
