"""The transformer ControlNet pipelines (issue 17): diffusers' FluxControlNetPipeline and
StableDiffusion3ControlNetPipeline, with the control image's VAE latents taken as the encoder's mean.

Why the mean: both pipelines encode the control image with the model's VAE and sample its posterior. Flux's draws
that sample from the request's generators before the initial noise, so a ControlNet of weight 0 would start
from other noise than text to image does (not the plain picture); SD3's draws it from torch's global generator,
so the same request would not give the same picture twice. The mean needs no randomness: the noise is text to
image's, the picture is the request's alone, and image k of a batch is seed + k's alone. (The posterior of a
trained VAE is narrow: the mean is where its samples lie.)
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from types import SimpleNamespace

# the text-to-image pipeline classes that take their family's ControlNets here, and the ControlNet's class
FLOW_CONTROLNETS = {"FluxControlNetPipeline": "FluxControlNetModel",
                    "StableDiffusion3ControlNetPipeline": "SD3ControlNetModel"}


@functools.cache
def mean_encoding_class(class_name: str):
    """diffusers' ``class_name`` pipeline whose call encodes its control images to the VAE's mean. Its call keeps
    the pipeline's own signature (callers read its parameters: callback_on_step_end, control_image)."""
    import diffusers

    base = getattr(diffusers, class_name)

    def __call__(self, *args, **kwargs):
        with mean_encoding(self.vae):
            return base.__call__(self, *args, **kwargs)

    functools.update_wrapper(__call__, base.__call__)
    return type(class_name, (base,), {"__call__": __call__, "__module__": __name__})


@contextmanager
def mean_encoding(vae):
    """``vae.encode`` gives its posterior's mean for ``sample()`` while the block runs (the VAE is the loaded
    model's, shared with its other pipelines: it is put back after)."""
    encode = vae.encode

    def encode_mean(*args, **kwargs):
        posterior = encode(*args, **kwargs).latent_dist
        mean = SimpleNamespace(sample=lambda generator=None: posterior.mode(), mode=posterior.mode,
                               mean=posterior.mean)
        return SimpleNamespace(latent_dist=mean)

    vae.encode = encode_mean  # an instance attribute, over the class's method
    try:
        yield
    finally:
        del vae.encode
