"""What differs between model families when the engine runs them: one file per kind of model.

``sd.py``: the Stable Diffusion UNets (1.x, 2.x, XL, its refiner) and the embedded model, as the engine ran them
before families existed. ``flow.py``: the flow-matching transformers in general (SD3, PixArt-Sigma, Sana, Chroma,
Z-Image, Qwen-Image); ``sd3.py`` and ``flux.py`` add what is theirs (published preview factors; Flux's 2x2
packed latents); ``pixart.py`` PixArt-Sigma's weighted T5 prompts. What a family is called, its pipeline
classes and defaults are data in ``desktop_app.models.families`` (torch-free); these files hold only the code
that runs it. Adding a family is one entry there, a file here when its latents or text encoding differ, and its
tests.
"""

from __future__ import annotations

from desktop_app.engine.families.base import EngineFamily
from desktop_app.engine.families.flow import FlowFamily, SanaSprintFamily, TransformerFamily
from desktop_app.engine.families.flux import FluxFamily
from desktop_app.engine.families.flux2 import Flux2Family
from desktop_app.engine.families.pixart import PixArtFamily
from desktop_app.engine.families.qwen_image import QwenImageFamily
from desktop_app.engine.families.sd import SdFamily
from desktop_app.engine.families.sd3 import Sd3Family

__all__ = ["EngineFamily", "for_family", "is_flow"]

_SD = SdFamily()
_BY_KEY: dict[str, EngineFamily] = {"sd3": Sd3Family(), "flux": FluxFamily("flux"), "chroma": FluxFamily("chroma"),
                                    "sana-sprint": SanaSprintFamily(), "qwen-image": QwenImageFamily(),
                                    "flux2-klein": Flux2Family(), "pixart-sigma": PixArtFamily()}
FLOW_FAMILIES = ("sd3", "flux", "chroma", "sana", "sana-sprint", "z-image", "qwen-image", "flux2-klein", "flux2")
TRANSFORMER_FAMILIES = ("pixart-sigma",)  # noise-predicting transformers: the usual samplers


def for_family(key: str) -> EngineFamily:
    """The engine's code for the family ``key`` (a LoadedModel's ``family``): the SD code for the UNet families
    and anything unknown."""
    if key in _BY_KEY:
        return _BY_KEY[key]
    if key in FLOW_FAMILIES:
        _BY_KEY[key] = FlowFamily(key)
        return _BY_KEY[key]
    if key in TRANSFORMER_FAMILIES:
        _BY_KEY[key] = TransformerFamily(key)
        return _BY_KEY[key]
    return _SD


def is_flow(key: str) -> bool:
    return key in FLOW_FAMILIES
