"""The transformer ControlNet pipelines (issue 17): diffusers' FluxControlNetPipeline and
StableDiffusion3ControlNetPipeline, with the control image's VAE latents taken as the encoder's mean.

Why the mean: both pipelines encode the control image with the model's VAE and sample its posterior. Flux's draws
that sample from the request's generators before the initial noise, so a ControlNet of weight 0 would start
from other noise than text to image does (not the plain picture); SD3's draws it from torch's global generator,
so the same request would not give the same picture twice. The mean needs no randomness: the noise is text to
image's, the picture is the request's alone, and image k of a batch is seed + k's alone. (The posterior of a
trained VAE is narrow: the mean is where its samples lie.)

With a start image (Flux.1's FluxControlNetImg2ImgPipeline and FluxControlNetInpaintPipeline): the start image's
latents are sampled from its posterior with the request's generators, as the plain image-to-image and inpaint
pipelines (FluxImg2ImgPipeline, FluxInpaintPipeline) sample them, so that the draws come in the same order and a
ControlNet of weight 0 gives exactly their picture; but once per image of a batch, each with its own generator
(diffusers encodes a batch's one start image with the first generator only, and the others' noise then comes
first in their streams), so that image k of a batch is seed + k's alone. The inpaint pipeline's masked-image
latents are the mean too (that pipeline does not use them; the plain one draws them after all its noise).
SD3's ControlNet inpainting pipeline (StableDiffusion3ControlNetInpaintingPipeline) is not used: it takes no
start image nor strength (it starts from pure noise and keeps nothing outside the mask) and needs an inpainting
ControlNet that takes the masked image and the mask as its input (extra_conditioning_channels=1), so SD3's
ControlNets stay text to image (engine/control_job.py refuses a start image in one line).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from types import SimpleNamespace

# the text-to-image pipeline classes that take their family's ControlNets here, and the ControlNet's class
FLOW_CONTROLNETS = {"FluxControlNetPipeline": "FluxControlNetModel",
                    "StableDiffusion3ControlNetPipeline": "SD3ControlNetModel"}
# with a start image: the ControlNet pipeline's (image to image, inpaint) twins, made here with the mean too
FLOW_IMAGE_CONTROLNETS = {"FluxControlNetPipeline": ("FluxControlNetImg2ImgPipeline",
                                                     "FluxControlNetInpaintPipeline")}


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
    methods = {"__call__": __call__, "__module__": __name__}
    if hasattr(base, "_encode_vae_image"):  # a start image: sampled, one draw per image with its own generator
        def _encode_vae_image(self, image, generator):
            if isinstance(generator, list) and image.shape[0] == 1 < len(generator):
                image = image.repeat(len(generator), 1, 1, 1)
            with own_encoding(self.vae):
                return base._encode_vae_image(self, image, generator)

        methods["_encode_vae_image"] = _encode_vae_image
    return type(class_name, (base,), methods)


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


@contextmanager
def own_encoding(vae):
    """``vae.encode`` its own again (its posterior sampled) while the block runs, inside ``mean_encoding``."""
    mean = vae.__dict__.pop("encode", None)
    try:
        yield
    finally:
        if mean is not None:
            vae.encode = mean
