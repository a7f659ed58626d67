"""The sampler names people know (request.SAMPLERS) mapped to diffusers schedulers.

Each is built from the model's own scheduler config, so the training settings (beta schedule, prediction
type, timestep spacing) carry over; only what defines the sampler is changed.
"""

from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LCMScheduler,
    UniPCMultistepScheduler,
)

from desktop_app.errors import RequestError
from desktop_app.engine.request import SAMPLERS

# name -> (scheduler class, settings that define the sampler)
_TABLE = {
    "Euler": (EulerDiscreteScheduler, {}),
    "Euler a": (EulerAncestralDiscreteScheduler, {}),
    "DPM++ 2M": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                               "use_karras_sigmas": False}),
    "DPM++ 2M Karras": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                      "use_karras_sigmas": True}),
    "DDIM": (DDIMScheduler, {}),
    "UniPC": (UniPCMultistepScheduler, {"predict_x0": True}),
    # the names as AUTOMATIC1111 shows them, mapped as the diffusers scheduler overview maps them
    "Heun": (HeunDiscreteScheduler, {}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),  # needs torchsde; imported when chosen
    "DPM++ 2M SDE Karras": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2,
                                                          "use_karras_sigmas": True}),
    "LCM": (LCMScheduler, {}),  # for LCM models and LCM-LoRAs: 4-8 steps, guidance 1-1.5
}
assert tuple(_TABLE) == SAMPLERS, "request.SAMPLERS and the sampler table must list the same names"


def make_scheduler(name: str, base_config):
    """A fresh scheduler for sampler ``name`` from the model's original scheduler config."""
    try:
        cls, settings = _TABLE[name]
    except KeyError:
        choices = ", ".join(SAMPLERS)
        raise RequestError("sampler", f"unknown sampler {name!r}; choose one of: {choices}") from None
    settings = dict(settings)
    if isinstance(cls, str):
        cls = _import_scheduler(name, cls)
    if cls is DDIMScheduler:
        # DDIM's own default clips x0 to [-1, 1], which is right for pixels and wrong for latents
        settings["clip_sample"] = dict(base_config).get("clip_sample", False)
    return cls.from_config(base_config, **settings)


def _import_scheduler(name: str, class_name: str):
    import warnings

    import diffusers

    # torchsde's Brownian interval warns when float rounding puts a time a hair past its end (or, in a refiner's
    # part of the schedule, before its start): harmless
    warnings.filterwarnings("ignore", message="Should have tb<=t1", category=UserWarning)
    warnings.filterwarnings("ignore", message="Should have ta>=t0", category=UserWarning)

    try:
        return getattr(diffusers, class_name)
    except (ImportError, AttributeError) as exc:  # diffusers' lazy import needs torchsde for DPMSolverSDE
        raise RequestError("sampler", f"the sampler {name} needs the torchsde package (pip install torchsde): "
                                      f"{exc}") from None
