"""Images as other tools write them, and hostile ones, crafted byte by byte for the recipe-reader tests.

The chunk names and JSON shapes follow what each tool writes (as the sd-parsers library's readers and sample
images show): Fooocus JSON in ``parameters``; ComfyUI ``prompt`` (API graph) and ``workflow``; InvokeAI
``invokeai_metadata``, ``sd-metadata`` and ``Dream``; NovelAI ``Comment``/``Description``/``Software``/``Source``;
A1111's stealth-pnginfo extension (bits in the alpha or RGB channels, column by column).
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

A1111_TEXT = ("a lighthouse at dusk <lora:film grain:0.6>\nNegative prompt: blurry\nSteps: 24, Sampler: Euler a, "
              "CFG scale: 6.5, Seed: 777, Size: 64x48, Model hash: 1234abcd, Model: dreamshaper")


def png_with_text(path: Path, texts: dict, size=(8, 8), mode="RGB", compressed=()) -> Path:
    """A small PNG with text chunks (tEXt, or zTXt for the keys in ``compressed``)."""
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value, zip=key in compressed)
    Image.new(mode, size, (40, 80, 120, 255)[: len(mode)] if mode in ("RGB", "RGBA") else 0).save(path,
                                                                                                 pnginfo=info)
    return Path(path)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(path: Path, width: int, height: int, chunks=(), after=(), color_type: int = 2) -> Path:
    """A PNG written by hand: IHDR declaring ``width`` x ``height`` (any size: a decompression bomb needs no
    pixels), the ``chunks`` before a tiny IDAT and the ``after`` chunks behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    body = chunk(b"IHDR", ihdr) + b"".join(chunks) + chunk(b"IDAT", idat) + b"".join(after) + chunk(b"IEND", b"")
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return Path(path)


def text_chunk(key: str, text: str) -> bytes:
    return chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1"))


def ztxt_bomb(key: str = "parameters", megabytes: int = 64) -> bytes:
    """A zTXt chunk of a few hundred KB that expands to ``megabytes`` MB."""
    packer = zlib.compressobj(9)
    block = b"a" * (1024 * 1024)
    data = b"".join(packer.compress(block) for _ in range(megabytes)) + packer.flush()
    return chunk(b"zTXt", key.encode() + b"\0\0" + data)


def itxt_bomb(key: str = "parameters", megabytes: int = 64) -> bytes:
    packer = zlib.compressobj(9)
    block = b"b" * (1024 * 1024)
    data = b"".join(packer.compress(block) for _ in range(megabytes)) + packer.flush()
    return chunk(b"iTXt", key.encode() + b"\0\x01\x00\0\0" + data)


# ---- other tools -----------------------------------------------------------------------------------------


FOOOCUS = {
    "adm_guidance": "(1.5, 0.8, 0.3)", "base_model": "juggernautXL_v8Rundiffusion.safetensors",
    "base_model_hash": "aeb7e9e689", "full_negative_prompt": ["unrealistic", "saturated"],
    "full_prompt": ["a red fox in the snow", "cinematic"], "guidance_scale": 4.0,
    "lora_combined_1": "sd_xl_offset_example-lora_1.0.safetensors : 0.1", "metadata_scheme": "fooocus",
    "negative_prompt": "unrealistic", "performance": "Speed", "prompt": "a red fox in the snow",
    "refiner_model": "None", "refiner_switch": 0.5, "resolution": "(1152, 896)", "sampler": "dpmpp_2m_sde_gpu",
    "scheduler": "karras", "seed": "1234567890", "sharpness": 2.0, "steps": 30,
    "styles": "['Fooocus V2', 'Fooocus Enhance']", "vae": "Default (model)", "version": "Fooocus v2.5.5",
}

COMFYUI_PROMPT = {
    "3": {"inputs": {"seed": 156680208, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
                     "denoise": 1, "model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0],
                     "latent_image": ["5", 0]}, "class_type": "KSampler"},
    "4": {"inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}, "class_type": "CheckpointLoaderSimple"},
    "5": {"inputs": {"width": 512, "height": 768, "batch_size": 1}, "class_type": "EmptyLatentImage"},
    "6": {"inputs": {"text": "beautiful scenery nature glass bottle landscape", "clip": ["10", 1]},
          "class_type": "CLIPTextEncode"},
    "7": {"inputs": {"text": "text, watermark", "clip": ["10", 1]}, "class_type": "CLIPTextEncode"},
    "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode"},
    "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage"},
    "10": {"inputs": {"lora_name": "add_detail.safetensors", "strength_model": 0.8, "strength_clip": 1.0,
                      "model": ["4", 0], "clip": ["4", 1]}, "class_type": "LoraLoader"},
}
COMFYUI_WORKFLOW = {"last_node_id": 10, "last_link_id": 9, "version": 0.4,
                    "nodes": [{"id": 3, "type": "KSampler", "widgets_values": [156680208, "fixed", 20, 8, "euler",
                                                                               "normal", 1]}],
                    "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 6, 0, 3, 1, "CONDITIONING"]]}

INVOKEAI_METADATA = {
    "generation_mode": "txt2img", "positive_prompt": "a cozy cabin in the woods", "negative_prompt": "people",
    "width": 768, "height": 512, "seed": 3141592, "rand_device": "cpu", "cfg_scale": 7.5,
    "cfg_rescale_multiplier": 0, "steps": 30, "scheduler": "dpmpp_2m_k",
    "model": {"key": "8a9e", "hash": "blake3:96f1", "name": "stable-diffusion-v1-5", "base": "sd-1",
              "type": "main"},
    "loras": [{"model": {"key": "11aa", "name": "detail-tweaker", "base": "sd-1"}, "weight": 0.75}],
    "app_version": "4.2.4",
}
INVOKEAI_V3_METADATA = {
    "generation_mode": "txt2img", "positive_prompt": "a cozy cabin", "negative_prompt": "", "width": 512,
    "height": 512, "seed": 42, "cfg_scale": 7, "steps": 25, "scheduler": "euler_a",
    "model": {"model_name": "stable-diffusion-v1-5", "base_model": "sd-1", "model_type": "main"},
    "loras": [{"lora": {"model_name": "pixel-art", "base_model": "sd-1"}, "weight": 0.5}],
    "app_version": "3.4.0",
}
SD_METADATA = {
    "model": "stable diffusion", "model_weights": "stable-diffusion-1.5",
    "model_hash": "cc6cb27103417325ff94f52b7a5d2dde45a7515b25c255d8e396c90014281516",
    "app_id": "invoke-ai/InvokeAI", "app_version": "2.2.5",
    "image": {"prompt": [{"prompt": "a photo of a cat [blurry, low quality]", "weight": 1.0}], "steps": 50,
              "cfg_scale": 7.5, "threshold": 0, "perlin": 0, "height": 512, "width": 512, "seed": 3357757885,
              "seamless": False, "hires_fix": False, "type": "txt2img", "postprocessing": None, "sampler": "k_lms",
              "variations": []},
}
DREAM = '"a photo of a dog [cartoon]" -s 40 -S 2718 -W 512 -H 640 -C 8.5 -A k_euler_a'

NOVELAI_COMMENT = {
    "prompt": "masterpiece, a girl reading in a library", "steps": 28, "height": 1216, "width": 832,
    "scale": 5.0, "uncond_scale": 1.0, "cfg_rescale": 0.0, "seed": 1234567, "n_samples": 1,
    "hide_debug_overlay": False, "noise_schedule": "native", "sampler": "k_euler_ancestral", "sm": False,
    "sm_dyn": False, "uc": "lowres, bad anatomy", "request_type": "PromptGenerateRequest",
    "reference_strength_multiple": [], "controlnet_model": None,
}
NOVELAI_CHUNKS = {"Title": "AI generated image", "Description": "masterpiece, a girl reading in a library",
                  "Software": "NovelAI", "Source": "NovelAI Diffusion V3 4BDE2A90", "Generation time": "5.1",
                  "Comment": json.dumps(NOVELAI_COMMENT)}


def fooocus_png(path: Path) -> Path:
    return png_with_text(path, {"parameters": json.dumps(FOOOCUS, sort_keys=True), "fooocus_scheme": "fooocus"})


def comfyui_png(path: Path, prompt=None) -> Path:
    return png_with_text(path, {"prompt": json.dumps(prompt or COMFYUI_PROMPT),
                                "workflow": json.dumps(COMFYUI_WORKFLOW)})


def invokeai_png(path: Path, metadata=None) -> Path:
    return png_with_text(path, {"invokeai_metadata": json.dumps(metadata or INVOKEAI_METADATA),
                                "invokeai_graph": json.dumps({"id": "graph", "nodes": {}, "edges": []})})


def sd_metadata_png(path: Path) -> Path:
    return png_with_text(path, {"sd-metadata": json.dumps(SD_METADATA)})


def dream_png(path: Path) -> Path:
    return png_with_text(path, {"Dream": DREAM})


def novelai_png(path: Path) -> Path:
    return png_with_text(path, NOVELAI_CHUNKS)


# ---- A1111 stealth-pnginfo -------------------------------------------------------------------------------


def stealth_png(path: Path, text: str, signature: str = "stealth_pngcomp", size=(64, 64)) -> Path:
    """Write ``text`` into the pixels' lowest bits as the sd-webui stealth-pnginfo extension does: for x, for
    y (column by column), one bit per pixel in alpha (``stealth_png*``) or three in R, G, B (``stealth_rgb*``):
    the signature, the payload length in bits (32 bits), the payload (gzip for ``*comp``)."""
    payload = text.encode("utf-8")
    if signature.endswith("comp"):
        payload = gzip.compress(payload)
    bits = "".join(format(byte, "08b") for byte in signature.encode("utf-8"))
    bits += format(len(payload) * 8, "032b") + "".join(format(byte, "08b") for byte in payload)
    alpha = signature.startswith("stealth_png")
    image = Image.new("RGBA" if alpha else "RGB", size, (200, 150, 100, 255)[: 4 if alpha else 3])
    pixels = image.load()
    width, height = size
    assert len(bits) <= width * height * (1 if alpha else 3), "the image is too small for the text"
    index = 0
    for x in range(width):
        for y in range(height):
            if index >= len(bits):
                break
            value = list(pixels[x, y])
            channels = (3,) if alpha else (0, 1, 2)
            for channel in channels:
                if index < len(bits):
                    value[channel] = (value[channel] & ~1) | int(bits[index])
                    index += 1
            pixels[x, y] = tuple(value)
    image.save(path)
    return Path(path)
