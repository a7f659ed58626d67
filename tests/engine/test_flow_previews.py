"""Live previews for flow-matching models (SD3, Flux, Sana ...): the predicted clean latent is
x0 = x_t - sigma_t * v, read from the scheduler's step (its inputs and the sigma it started from)."""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from desktop_app.engine.preview import capture_x0


def test_the_flow_matching_x0_is_the_clean_latent_at_every_step():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(4)
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(1, 16, 8, 8, generator=generator), torch.randn(1, 16, 8, 8, generator=generator)
    seen = []
    with capture_x0(scheduler) as capture:
        for index, timestep in enumerate(scheduler.timesteps):
            sigma = scheduler.sigmas[index]
            noisy = (1 - sigma) * x0 + sigma * noise
            scheduler.step(noise - x0, timestep, noisy)  # the exact velocity: x0 comes back
            seen.append(float((capture.latest - x0).abs().max()))
    assert len(seen) == 4 and max(seen) < 1e-5
    assert "step" not in vars(scheduler)  # the scheduler's own step is back


def test_a_wrong_velocity_shows_in_the_preview():
    scheduler = FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(2)
    x0, noise = torch.zeros(1, 4, 4, 4), torch.ones(1, 4, 4, 4)
    with capture_x0(scheduler) as capture:
        sigma = scheduler.sigmas[0]
        scheduler.step(torch.zeros_like(x0), scheduler.timesteps[0], (1 - sigma) * x0 + sigma * noise)
    assert float(capture.latest.mean()) > 0.5  # v = 0 predicts the noisy sample itself as clean
