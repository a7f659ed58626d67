"""The numbers behind the explain report's figures, each from the model's own parts: the tokenizer and the text
encoder (tokens, their embeddings, the encoder's output), the scheduler's training schedule (alpha-bar) and its
``add_noise`` (forward diffusion), and the VAE (latents seen as images)."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

STRIP_DIMS = 16  # the first dimensions of each embedding that the report draws as a strip
COSINE_S = 0.008  # Improved DDPM's offset (Nichol and Dhariwal 2021)


def token_numbers(pipe, prompt: str, prompt_embeds: torch.Tensor, dims: int = STRIP_DIMS) -> dict:
    """The prompt as the (first) tokenizer splits it, with ids; each token's own embedding (the encoder's input
    table) and the encoder's output per position of the first window, their first ``dims`` values; the shape of
    what the UNet receives; which tokens fall past one window of the encoder."""
    tokenizer = pipe.tokenizer if getattr(pipe, "tokenizer", None) is not None else pipe.tokenizer_2
    encoder = pipe.text_encoder if getattr(pipe, "text_encoder", None) is not None else pipe.text_encoder_2
    window = int(tokenizer.model_max_length)
    room = window - tokenizer.num_special_tokens_to_add()
    ids = tokenizer(prompt, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    texts = tokenizer.convert_ids_to_tokens(ids)
    first = tokenizer(prompt, truncation=True, max_length=window, padding="max_length")["input_ids"]
    table = encoder.get_input_embeddings().weight
    with torch.no_grad():
        own = table[torch.tensor(ids, dtype=torch.long, device=table.device), :dims] if ids else table[:0, :dims]
    output = prompt_embeds[0, :window, :dims]
    return {
        "prompt": prompt,
        "tokenizer": type(tokenizer).__name__,
        "text_encoder": type(encoder).__name__,
        "window": window,
        "room": room,
        "tokens": [{"index": k, "text": text, "id": int(i), "in_first_window": k < room}
                   for k, (text, i) in enumerate(zip(texts, ids))],
        "truncated": [text for text in texts[room:]],
        "windows": max(1, math.ceil(len(ids) / room)) if room > 0 else 1,
        "first_window": {"ids": [int(i) for i in first],
                         "tokens": tokenizer.convert_ids_to_tokens(first)},
        "output_shape": [int(n) for n in prompt_embeds.shape],
        "embedding_width": int(table.shape[1]),
        "strip_dims": int(dims),
        "input_embeddings": own.detach().float().cpu().numpy().round(5).tolist(),
        "encoder_output": output.detach().float().cpu().numpy().round(5).tolist(),
    }


def training_schedule(scheduler_config):
    """The model's own training schedule, as a DDPM scheduler made from its scheduler config (every sampler made
    from that config shares its ``alphas_cumprod``)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler_config)


def schedule_numbers(scheduler_config, used: list[tuple[float, float]]) -> dict:
    """alpha-bar (the share of signal left, squared) against the training timestep under the model's own
    schedule, with the linear (DDPM) and cosine (Improved DDPM) schedules over as many timesteps for comparison;
    ``used``: (timestep, alpha-bar) of the steps this run took."""
    train = training_schedule(scheduler_config)
    steps = int(train.config.num_train_timesteps)
    t = np.arange(steps, dtype=np.float64)
    linear = np.cumprod(1.0 - np.linspace(1e-4, 0.02, steps))
    f = np.cos(((t + 1) / steps + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2
    cosine = np.clip(f / math.cos(COSINE_S / (1 + COSINE_S) * math.pi / 2) ** 2, 0.0, 1.0)
    return {
        "timesteps": [int(k) for k in t],
        "alpha_bar": [float(v) for v in train.alphas_cumprod.double().numpy()],
        "beta_schedule": train.config.beta_schedule,
        "prediction_type": train.config.prediction_type,
        "linear_alpha_bar": [float(v) for v in linear],
        "cosine_alpha_bar": [float(v) for v in cosine],
        "used_timesteps": [float(step) for step, _ in used],
        "used_alpha_bar": [float(level) for _, level in used],
    }


def forward_diffusion(scheduler_config, clean: np.ndarray, noise: np.ndarray, timesteps: list[int]) -> list[dict]:
    """The clean latent noised at each of ``timesteps`` by the training schedule's ``add_noise`` with this seed's
    starting noise: what training shows the model, at those levels."""
    train = training_schedule(scheduler_config)
    x0 = torch.from_numpy(clean)[None].float()
    eps = torch.from_numpy(noise)[None].float()
    result = []
    for t in timesteps:
        noised = train.add_noise(x0, eps, torch.tensor([int(t)]))
        result.append({"timestep": int(t), "alpha_bar": float(train.alphas_cumprod[int(t)]),
                       "latent": noised[0].numpy().astype(np.float32)})
    return result


def chosen_timesteps(steps: int) -> list[int]:
    """Six levels from clean to almost pure noise over ``steps`` training timesteps."""
    return sorted({min(steps - 1, round(share * steps)) for share in (0, 0.1, 0.25, 0.5, 0.75, 1.0)})


class LatentDecoder:
    """Latents (VP convention, as the UNet sees them) through the model's VAE to PIL images."""

    def __init__(self, vae, size: tuple[int, int]):
        self.vae, self.size = vae, size

    @torch.inference_mode()
    def __call__(self, latent: np.ndarray) -> Image.Image:
        config = self.vae.config
        param = next(self.vae.parameters())
        latents = torch.from_numpy(latent)[None].to(param.device, self.vae.dtype) / config.scaling_factor
        if getattr(config, "shift_factor", None) is not None:
            latents = latents + config.shift_factor
        image = self.vae.decode(latents, return_dict=False)[0][0].float()
        array = ((torch.nan_to_num(image).clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        pil = Image.fromarray(array)
        return pil if pil.size == tuple(self.size) else pil.resize(self.size, Image.Resampling.BILINEAR)
