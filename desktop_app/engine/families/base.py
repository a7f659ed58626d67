"""The interface every family's code fills in; the defaults are the Stable Diffusion UNet's behaviour."""

from __future__ import annotations

import functools
import inspect

import torch

from desktop_app.engine.request import GenerationRequest


class EngineFamily:
    key = "sd"
    flow_matching = False
    negative_prompt = True  # the family's pipelines take a negative prompt
    hires_fix = True  # the hires fix's img2img pass exists for it here
    loras = True  # the engine applies LoRAs to it (transformers: flow.LORA_FAMILIES, with a pipeline LoRA loader)
    linear_preview: tuple | None = None  # (factors rows = latent channels, RGB bias): published latent -> RGB
    # the pipeline repeats the prompt embeddings it is given for each image of a batch (SD3's and Chroma's do not:
    # the engine repeats them itself)
    repeats_given_embeddings = True

    def make_scheduler(self, sampler: str, base_config):
        """The scheduler for ``sampler`` from the model's own scheduler config."""
        from desktop_app.engine.samplers import make_scheduler

        return make_scheduler(sampler, base_config)

    def encode_text(self, pipe, request: GenerationRequest, device: torch.device) -> dict:
        """The pipeline call's text arguments (embeddings where the text stage can be timed on its own)."""
        raise NotImplementedError

    def initial_noise(self, pipe, request: GenerationRequest, generators: list, device: torch.device) -> dict:
        """Per-image tensors for the pipeline call (``latents``), or {} when the pipeline draws its noise from
        the generators itself (one per image, so image k is reproducible alone with seed + k either way)."""
        raise NotImplementedError

    def step_callback(self, pipe, on_step_end) -> dict:
        """The pipeline call's arguments that call ``on_step_end(pipeline, i, t, callback_kwargs)`` after every
        step (diffusers' ``callback_on_step_end``; older pipelines have only ``callback``)."""
        if "callback_on_step_end" in call_parameters(type(pipe)):
            return {"callback_on_step_end": on_step_end}
        return {"callback": lambda i, t, latents: on_step_end(pipe, i, t, {}), "callback_steps": 1}

    def preview_decoder(self, pipe):
        """A preview decoder of the family's own (None: engine/preview.py's make_decoder chooses)."""
        return None

    def call_options(self, pipe, request: GenerationRequest) -> dict:
        """Anything else the family's pipeline call needs for this request."""
        return {}

    def size_multiple(self, pipe) -> int:
        """Width and height must be multiples of this."""
        return int(getattr(pipe, "vae_scale_factor", 8))

    def preview_latents(self, pipe, x0: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """x0 as the VAE takes it (batch, channels, height, width): packed families unpack here."""
        return x0

    def unsupported(self, request: GenerationRequest) -> tuple[str, str] | None:
        """(field, message) for what the request asks that this family cannot do here, else None."""
        return None

    def prompt_notice(self, request: GenerationRequest) -> str | None:
        """One line for the run's notices when the request's A1111 weighting syntax was taken out of its prompts
        rather than applied (a family whose text encoder cannot take weights), else None."""
        return None


@functools.cache
def call_parameters(pipeline_class) -> frozenset[str]:
    return frozenset(inspect.signature(pipeline_class.__call__).parameters)
