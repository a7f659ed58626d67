"""Stage 4: the latent denoiser, a small UNet2DConditionModel with cross-attention on MiniLM token states.

v-prediction on a cosine schedule, min-SNR loss weighting, caption dropout for classifier-free guidance, an
EMA of the weights (the EMA is what ships). ``addition_embed_type="text"`` adds an attention-pooled summary of
the prompt to the timestep embedding, so the global colour and shape of the picture are conditioned at every
block, not only through cross-attention.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel

import checkpoints
import data
from loop import Loop

UNET_CONFIG = dict(
    sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(64, 128, 256),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=384, attention_head_dim=8, norm_num_groups=32,
    addition_embed_type="text", addition_embed_type_num_heads=6,
)
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                        prediction_type="v_prediction", steps_offset=1)
CAPTION_DROPOUT = 0.1
MIN_SNR_GAMMA = 5.0


def train(cache: Path, minutes: float, steps: int | None = None, batch: int = 64, lr: float = 3e-4,
          ema_decay: float = 0.999, lr_final: float | None = None) -> Path:
    """Train for ``minutes`` (or ``steps``), resuming from the checkpoint.

    With ``lr_final`` the learning rate falls from ``lr`` to ``lr_final`` along a cosine over this stretch
    (by elapsed time, or by steps when ``steps`` is given): the annealing phase that a constant rate never has.
    """
    enc = torch.load(cache / "encoded.pt", weights_only=False)
    _, _, meta = data.load(cache)
    train_items = torch.tensor([it["split"] == "train" for it in meta["items"]])
    caption_ok = train_items[enc["owner"]]
    caption_ids = torch.nonzero(caption_ok).squeeze(1)
    mean, std, text, owner = enc["mean"], enc["std"], enc["text"], enc["owner"]
    scaling, uncond = enc["scaling"], enc["uncond"].float()
    sched = DDPMScheduler(**SCHEDULER_CONFIG)
    alphas = sched.alphas_cumprod
    snr = alphas / (1 - alphas)

    unet = UNet2DConditionModel(**UNET_CONFIG)
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    loop = Loop("unet", cache, unet, opt, others={"ema": ema}, seed=1000, log_every=50, lr=lr, lr_final=lr_final,
                clip=1.0)
    print(f"unet: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M parameters, "
          f"{len(caption_ids)} training captions")

    def train_step(gen: torch.Generator) -> torch.Tensor:
        pick = caption_ids[torch.randint(0, len(caption_ids), (batch,), generator=gen)]
        img = owner[pick]
        latents = (mean[img] + std[img] * torch.randn(mean[img].shape, generator=gen)) * scaling
        cond = text[pick].float()
        drop = torch.rand(batch, generator=gen) < CAPTION_DROPOUT
        cond[drop] = uncond
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=gen)
        noisy = sched.add_noise(latents, noise, t)
        target_v = sched.get_velocity(latents, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=cond).sample
        # min-SNR-gamma weighting for v-prediction: min(snr, gamma) / (snr + 1)
        weight = torch.clamp(snr[t], max=MIN_SNR_GAMMA) / (snr[t] + 1)
        return (F.mse_loss(pred, target_v, reduction="none").mean(dim=(1, 2, 3)) * weight).mean()

    def update_ema(step: int) -> None:
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), unet.parameters()):
                p_ema.lerp_(p, 1 - decay)

    return loop.run(train_step, minutes, steps, after_step=update_ema)


def load_trained(cache: Path) -> tuple[UNet2DConditionModel, dict]:
    state = checkpoints.load(cache / "ckpt" / "unet.pt")
    unet = UNet2DConditionModel(**UNET_CONFIG)
    unet.load_state_dict(state["ema"])
    unet.eval().requires_grad_(False)
    return unet, state
