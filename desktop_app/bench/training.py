"""Section 7, fine-tuning: LoRA training steps per second with our trainer against a bare peft training loop
with the same model, batch, rank and resolution, measured alternately (ABAB) in one process.

Both sides skip their first step (warm-up) and time only the steps: model loading, the dataset, samples and
the export are outside the figure. Our trainer adds a seeded generator per step, the events, checkpoints (none
here) and the NaN check; the ratio shows what those cost. The LoRAs go to a temporary user folder.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from desktop_app.bench.common import Settings, ratio, spread

KEYS = ("status", "ours_steps_per_s", "bare_steps_per_s", "ratio", "settings")
RANK, LEARNING_RATE, BATCH = 4, 5e-4, 1


def run(settings: Settings) -> dict:
    from PIL import Image, ImageDraw

    from desktop_app.engine.device import choose_device

    device = choose_device(settings.device)
    steps = 6 if settings.quick else 30
    rounds = 2 if settings.quick else 4
    resolution = settings.size()[0]
    saved_home = os.environ.get("DESKTOP_APP_HOME")
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        os.environ["DESKTOP_APP_HOME"] = str(Path(tmp) / "home")
        try:
            images = Path(tmp) / "images"
            images.mkdir()
            for k in range(5):
                picture = Image.new("RGB", (resolution + 16, resolution), (230, 120 + 20 * k, 40))
                ImageDraw.Draw(picture).ellipse((8, 8, resolution // 2 + 8 * k, resolution - 8),
                                                fill=(30, 60, 200))
                picture.save(images / f"{k}.png")
            bare = BareLoop(settings.model, device, images, resolution)
            ours_rates, bare_rates = [], []
            for k in range(rounds):
                ours_rates.append(_ours(settings.model, str(device), images, resolution, steps, k))
                bare_rates.append(bare.rate(steps))
        finally:
            if saved_home is None:
                os.environ.pop("DESKTOP_APP_HOME", None)
            else:
                os.environ["DESKTOP_APP_HOME"] = saved_home
    ours, bare_summary = spread(ours_rates, 3), spread(bare_rates, 3)
    return {"status": "measured", "ours_steps_per_s": ours, "bare_steps_per_s": bare_summary,
            "ratio": ratio(ours["median"], bare_summary["median"]),
            "settings": {"device": str(device), "resolution": resolution, "batch": BATCH, "rank": RANK,
                         "steps_timed": steps - 1, "rounds": rounds, "images": 5}}


def _ours(model: str, device: str, images: Path, resolution: int, steps: int, k: int) -> float:
    from desktop_app.training.config import TrainConfig
    from desktop_app.training.trainer import train

    times: list[float] = []

    def emit(event: dict) -> None:
        if event["event"] == "step":
            times.append(time.perf_counter())

    config = TrainConfig(images=str(images), token="sks", class_word="ball", name=f"bench-{k}", model=model,
                         device=device, steps=steps, rank=RANK, learning_rate=LEARNING_RATE, batch_size=BATCH,
                         resolution=resolution, checkpoint_every=0, sample_every=0, sample_steps=1)
    train(config, emit)
    return (len(times) - 1) / (times[-1] - times[0])


class BareLoop:
    """The diffusers train_text_to_image_lora loop, stripped: one model, cached latents and embeddings."""

    def __init__(self, model: str, device, images: Path, resolution: int):
        import numpy as np
        import torch
        from diffusers import DDPMScheduler
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig

        from desktop_app.engine.loader import load_model
        from desktop_app.training.dataset import prepare

        self.torch = torch
        loaded = load_model(model, device, torch.float32)
        pipe = loaded.pipe
        self.unet, self.device = pipe.unet, device
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.requires_grad_(False)
        self.scheduler = DDPMScheduler.from_config(loaded.base_scheduler_config)
        self.unet.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian",
                                         target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
        cast_training_params(self.unet, torch.float32)
        self.optimizer = torch.optim.AdamW([p for p in self.unet.parameters() if p.requires_grad],
                                           lr=LEARNING_RATE)
        pixels = torch.stack([torch.from_numpy(np.asarray(prepare(p, resolution), dtype=np.float32) / 127.5 - 1)
                              .permute(2, 0, 1) for p in sorted(images.glob("*.png"))]).to(device)
        with torch.no_grad():
            self.latents = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor
            self.embeds, _ = pipe.encode_prompt("a photo of sks ball", device, 1, False)
        self.unet.train()

    def rate(self, steps: int) -> float:
        torch = self.torch
        times = []
        for _ in range(steps):
            index = torch.randint(len(self.latents), (BATCH,))
            latents = self.latents[index]
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (BATCH,), device=self.device)
            noisy = self.scheduler.add_noise(latents, noise, timesteps)
            if self.scheduler.config.prediction_type == "v_prediction":
                target = self.scheduler.get_velocity(latents, noise, timesteps)
            else:
                target = noise
            predicted = self.unet(noisy, timesteps, self.embeds.expand(BATCH, -1, -1)).sample
            loss = torch.nn.functional.mse_loss(predicted.float(), target.float())
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            loss.item()
            times.append(time.perf_counter())
        return (len(times) - 1) / (times[-1] - times[0])
