"""Desktop diffusion studio: prompt in, image out, offline, on your own device."""

__version__ = "0.1.0"
