"""Qwen-Image: a Qwen2.5-VL text encoder, 16-channel latents of a video-style VAE (one frame) normalised by
per-channel mean and deviation rather than one scaling factor, packed 2x2 into tokens; real classifier-free
guidance (``true_cfg_scale``, with a negative prompt: a blank one when the person gives none).

No A1111 prompt weighting: Qwen2.5-VL is a chat language model (its last hidden states of the prompt in the chat
template, the preamble dropped), and the transformer RMS-normalises each text vector on the way in
(QwenImageTransformer2DModel.txt_norm), which undoes any scaling of a token's vector exactly. The weighting syntax
is taken out, the text goes to the pipeline, and the run's notices say so (flow.py, prompt_notice)."""

from __future__ import annotations

import torch

from desktop_app.engine.families.flux import FluxFamily
from desktop_app.engine.request import GenerationRequest


class QwenImageFamily(FluxFamily):
    linear_preview = None

    def __init__(self):
        super().__init__("qwen-image", negative_prompt=True)
        self.unweighted = "Qwen2.5-VL"

    def encode_text(self, pipe, request: GenerationRequest, device: torch.device) -> dict:
        kwargs = super().encode_text(pipe, request, device)
        if request.guidance_scale > 1 and "negative_prompt" not in kwargs:
            kwargs["negative_prompt"] = " "  # true guidance needs one; the makers' examples use a blank
        return kwargs

    def call_options(self, pipe, request: GenerationRequest) -> dict:
        # the guidance people set is the real one here; the distilled-guidance input is for other models
        return {"true_cfg_scale": request.guidance_scale, "guidance_scale": None}

    def unsupported(self, request: GenerationRequest) -> tuple[str, str] | None:
        problem = super().unsupported(request)
        if problem is None and not request.init_image and _edit_release(request.model):
            # its pipeline needs an image: text to image is Qwen-Image's (an edit folder has no QwenImagePipeline)
            return "model", ("Qwen-Image-Edit models change an image by an instruction and draw nothing from "
                             "text alone: use `desktop-app edit IMAGE INSTRUCTION --model MODEL`, or a Qwen-Image "
                             "model")
        return problem

    def preview_decoder(self, pipe):
        vae = getattr(pipe, "vae", None)
        return QwenVaePreview(vae) if vae is not None and "latents_mean" in vae.config else None


class QwenVaePreview:
    """x0 through the VAE as the pipeline decodes it: un-normalised per channel, one frame."""

    def __init__(self, vae):
        self.vae = vae
        config = vae.config
        self.mean = torch.tensor(config.latents_mean).view(1, config.z_dim, 1, 1, 1)
        self.std = torch.tensor(config.latents_std).view(1, config.z_dim, 1, 1, 1)

    @torch.inference_mode()
    def __call__(self, x0: torch.Tensor, size: tuple[int, int]):
        from desktop_app.engine.preview import _to_pil

        latents = x0[:1].to(self.vae.dtype)
        if latents.ndim == 4:
            latents = latents.unsqueeze(2)
        mean, std = self.mean.to(latents), self.std.to(latents)
        image = self.vae.decode(latents * std + mean, return_dict=False)[0][:, :, 0]
        return _to_pil((image[0].float() + 1) / 2, size)


def _edit_release(model: str) -> bool:
    """Whether ``model`` is a Qwen-Image-Edit diffusers folder (its pipeline takes an image it must be given)."""
    from desktop_app.errors import ModelError
    from desktop_app.models import model_folder

    folder = model_folder.resolve(model)
    try:
        index = model_folder.read_index(folder) if folder.is_dir() else {}
    except ModelError:
        return False
    return str(index.get("_class_name", "")).startswith("QwenImageEdit")
