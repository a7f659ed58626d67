"""The diffusion transformers (SD3, Flux, Sana, Chroma, Z-Image, Qwen-Image, PixArt-Sigma): the pipeline encodes
the prompt with its own text encoders (one to three of them, each with its own tokenizer and length) and draws
its noise from the per-image generators. ``FlowFamily``: the flow-matching ones, sampled by the model's own
flow-matching scheduler ("Euler"), their live preview x0 = x_t - sigma_t * v (engine/preview.py).
``TransformerFamily``: PixArt-Sigma, a noise-predicting (epsilon) transformer sampled by the usual samplers."""

from __future__ import annotations

import torch

from desktop_app.engine.families.base import EngineFamily, call_parameters
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import RequestError
from desktop_app.models.families import FAMILIES

FLOW_SAMPLERS = ("Euler",)  # the flow-matching Euler the models ship with
OWN_SCHEDULERS = ("FlowMatch", "SCMScheduler")  # kept as the model ships them (Sana Sprint's is SCM)
# the families the engine applies LoRAs to: their pipelines' own LoRA loaders (FluxLoraLoaderMixin, which
# Chroma's pipeline shares, and SD3LoraLoaderMixin), their LoRAs told apart by engine/lora_families.py
LORA_FAMILIES = tuple(k for k, f in FAMILIES.items() if f.loras and f.denoiser_folder == "transformer")

# A1111 prompt weighting scales the text encoder's output vector of each weighted token (weighted_encoders.py).
# These families' encoders are chat language models, and their transformers normalise each text vector before
# they use it, so a scaled vector is not an emphasised one: the weighting syntax is taken out, the text goes to
# the pipeline as it is, and the run's notices say so (prompt_notice). Qwen-Image and FLUX.2 [klein] say why in
# their own files.
# - Sana, Sana Sprint: Gemma 2's last hidden states, read after the pipeline's long instruction preamble; the
#   transformer's caption projection (linear, GELU, linear) is followed by an RMS norm of each token
#   (SanaTransformer2DModel.caption_norm), which takes a token's scale out again, bent by the GELU on the way.
# - Z-Image: Qwen3's next-to-last hidden states, of the prompt in Qwen's chat template; the transformer's
#   caption embedder begins with an RMS norm of each token (ZImageTransformer2DModel.cap_embedder), which undoes
#   any scaling of it exactly.
# - FLUX.2 [dev]: Mistral Small 3.1's middle hidden states, in its chat template, into FLUX.2's transformer (see
#   flux2.py).
UNWEIGHTED = {"sana": "Gemma 2", "sana-sprint": "Gemma 2", "z-image": "Qwen3", "flux2": "Mistral Small 3.1"}


class TransformerFamily(EngineFamily):
    hires_fix = False

    @property
    def loras(self) -> bool:
        return self.key in LORA_FAMILIES and self.lora_loader()

    def lora_loader(self) -> bool:
        """Whether the family's diffusers pipeline has a LoRA loader (``load_lora_weights``)."""
        import diffusers

        from desktop_app.models.families import FAMILIES

        declared = FAMILIES.get(self.key)
        name = declared.text_to_image if declared is not None else None
        return hasattr(getattr(diffusers, name, None), "load_lora_weights") if name else False

    def __init__(self, key: str, negative_prompt: bool | None = None):
        self.key = key
        # the chat language model that encodes this family's prompts, when weights cannot be applied to its output
        self.unweighted: str | None = UNWEIGHTED.get(key)
        if negative_prompt is None:
            from desktop_app.models.families import FAMILIES

            declared = FAMILIES.get(key)
            negative_prompt = declared.negative_prompt if declared is not None else True
        self.negative_prompt = negative_prompt

    def encode_text(self, pipe, request: GenerationRequest, device: torch.device) -> dict:
        from desktop_app.engine.prompt_weights import plain_text

        # weighting syntax ("(word:1.2)", "[word]", BREAK) is for the CLIP families: here it is taken out, never
        # sent to the text encoders as literal brackets
        kwargs = {"prompt": plain_text(request.prompt)}
        if self.negative_prompt and request.negative_prompt:
            kwargs["negative_prompt"] = plain_text(request.negative_prompt)
        if "clean_caption" in call_parameters(type(pipe)):  # PixArt, Sana: the prompt as written (no ftfy, no bs4)
            kwargs["clean_caption"] = False
        return kwargs

    def initial_noise(self, pipe, request: GenerationRequest, generators: list, device: torch.device) -> dict:
        return {}

    def prompt_notice(self, request: GenerationRequest) -> str | None:
        from desktop_app.engine.prompt_weights import is_plain

        prompts = [request.prompt, request.negative_prompt] if self.negative_prompt else [request.prompt]
        if self.unweighted is None or all(is_plain(prompt or "") for prompt in prompts):
            return None
        return (f"prompt weighting is not applied on {self.display()} models (their text encoder, "
                f"{self.unweighted}, is a chat language model): the prompt went without its weighting syntax")

    def unsupported(self, request: GenerationRequest) -> tuple[str, str] | None:
        if request.negative_prompt and not self.negative_prompt:
            return "negative_prompt", f"{self.display()} models take no negative prompt: leave it empty"
        if request.hires_scale:
            return "hires_scale", f"the hires fix is for Stable Diffusion models, not yet for {self.display()}"
        if request.loras and not self.loras:
            if not self.lora_loader():
                return "loras", f"{self.display()} models take no LoRAs: diffusers has no LoRA loader for them"
            return "loras", f"LoRAs on {self.display()} models are not supported yet in this version"
        return None

    def display(self) -> str:
        from desktop_app.models.families import FAMILIES

        declared = FAMILIES.get(self.key)
        return declared.name if declared is not None else self.key


class FlowFamily(TransformerFamily):
    flow_matching = True

    def make_scheduler(self, sampler: str, base_config):
        if sampler not in FLOW_SAMPLERS:
            raise RequestError("sampler", f"{self.display()} models sample with flow matching: choose "
                                          f"{' or '.join(FLOW_SAMPLERS)}, got {sampler!r}")
        from diffusers import FlowMatchEulerDiscreteScheduler

        if dict(base_config).get("_class_name", "").startswith(OWN_SCHEDULERS):
            import diffusers

            cls = getattr(diffusers, base_config["_class_name"], FlowMatchEulerDiscreteScheduler)
            return cls.from_config(base_config)
        return FlowMatchEulerDiscreteScheduler.from_config(base_config)


class SanaSprintFamily(FlowFamily):
    """Sana Sprint: a consistency model (its SCM scheduler, 1 to 4 steps). Its published schedule puts an
    intermediate time between exactly 2 steps; any other count runs the plain schedule."""

    def __init__(self):
        super().__init__("sana-sprint", negative_prompt=False)

    def call_options(self, pipe, request: GenerationRequest) -> dict:
        return {} if request.steps == 2 else {"intermediate_timesteps": None}
