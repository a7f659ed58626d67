"""FLUX.2 [klein]: a Qwen3 text encoder, 32-channel latents patchified 2x2 into 128 channels and packed into
tokens on a plain grid (text to image: no reference images), normalised by the VAE's batch-norm statistics;
step-distilled (4 steps, no guidance), no negative prompt.

No A1111 prompt weighting: Qwen3 is a chat language model whose middle layers' hidden states (9, 18, 27: not
normalised, with the outsized activations such models carry) are taken of the prompt in its chat template, and
the transformer layer-normalises each text token before every attention and feed-forward
(Flux2TransformerBlock.norm1_context, norm2_context), so a scaled token vector is not an emphasised one. The
weighting syntax is taken out, the text goes to the pipeline, and the run's notices say so (flow.py,
prompt_notice)."""

from __future__ import annotations

import torch

from desktop_app.engine.families.flux import FluxFamily


class Flux2Family(FluxFamily):
    linear_preview = None

    def __init__(self, key: str = "flux2-klein"):
        super().__init__(key, negative_prompt=False)
        self.unweighted = "Qwen3"

    def preview_latents(self, pipe, x0: torch.Tensor, width: int, height: int) -> torch.Tensor:
        if x0.ndim != 3:
            return x0
        # tokens in row-major order of the (height/16, width/16) grid, as the pipeline's latent ids lay them out
        rows, columns = height // (pipe.vae_scale_factor * 2), width // (pipe.vae_scale_factor * 2)
        return x0.reshape(x0.shape[0], rows, columns, x0.shape[-1]).permute(0, 3, 1, 2)

    def preview_decoder(self, pipe):
        vae = getattr(pipe, "vae", None)
        return Flux2VaePreview(vae, pipe._unpatchify_latents) if vae is not None and hasattr(vae, "bn") else None


class Flux2VaePreview:
    """x0 through the VAE as the pipeline decodes it: batch-norm statistics undone, the 2x2 patches unfolded."""

    def __init__(self, vae, unpatchify):
        self.vae, self.unpatchify = vae, unpatchify

    @torch.inference_mode()
    def __call__(self, x0: torch.Tensor, size: tuple[int, int]):
        from desktop_app.engine.preview import _to_pil

        latents = x0[:1].to(self.vae.dtype)
        bn = self.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1).to(latents)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + self.vae.config.batch_norm_eps).to(latents)
        image = self.vae.decode(self.unpatchify(latents * std + mean), return_dict=False)[0]
        return _to_pil((image[0].float() + 1) / 2, size)
