"""Other tools' model folders (AUTOMATIC1111, ComfyUI): which subfolder holds which kind of file. Torch-free.

ComfyUI keeps a transformer family's parts apart: the transformer alone in ``models/diffusion_models`` (older
installs: ``models/unet``), as .safetensors or .gguf, and its text encoders and VAE as single files in
``models/text_encoders`` (``models/clip``) and ``models/vae``. The transformer files are listed as models; the
text-encoder and VAE files are not scanned, because this app takes a transformer file's components from a
diffusers folder of its family (``models components FAMILY FOLDER``): rebuilding a pipeline's text encoders,
tokenizers and VAE from loose ComfyUI files would need each family's configs and key conversions.
"""

from __future__ import annotations

from pathlib import Path

from desktop_app.models import model_files

# subfolders of other tools' model folders, and the kind of file each holds (None: whatever the file says)
TOOL_LAYOUTS = {
    "AUTOMATIC1111": {"models/Stable-diffusion": model_files.CHECKPOINT, "models/Lora": model_files.LORA,
                      "models/LyCORIS": model_files.LORA, "embeddings": model_files.EMBEDDING,
                      "models/ESRGAN": model_files.UPSCALER, "models/RealESRGAN": model_files.UPSCALER},
    "ComfyUI": {"models/checkpoints": model_files.CHECKPOINT, "models/diffusers": model_files.DIFFUSERS,
                "models/diffusion_models": model_files.CHECKPOINT, "models/unet": model_files.CHECKPOINT,
                "models/loras": model_files.LORA, "models/embeddings": model_files.EMBEDDING,
                "models/upscale_models": model_files.UPSCALER},
}
# ComfyUI's folders of single text-encoder and VAE files: not scanned (see above), named in a note instead
COMFY_PARTS = ("models/text_encoders", "models/clip", "models/vae")


def detect_layout(folder: Path) -> tuple[str, dict[str, str | None]]:
    """("AUTOMATIC1111" / "ComfyUI" / "flat", {subfolder: expected kind})."""
    for tool, layout in TOOL_LAYOUTS.items():
        present = {sub: kind for sub, kind in layout.items() if (folder / sub).is_dir()}
        if present:
            return tool, present
    if any((folder / sub).is_dir() for sub in COMFY_PARTS):  # a ComfyUI folder with only those: nothing to list
        return "ComfyUI", {}
    return "flat", {".": None}


def parts_note(folder: Path, tool: str) -> str:
    """What a scan of a ComfyUI folder says about its text-encoder and VAE files ("" when it has none)."""
    if tool != "ComfyUI":
        return ""
    present = [sub for sub in COMFY_PARTS if (Path(folder) / sub).is_dir() and any(
        p.is_file() for p in (Path(folder) / sub).iterdir())]
    if not present:
        return ""
    return (f"{' and '.join(present)} hold single text-encoder and VAE files, which this app does not load: a "
            "transformer file from models/diffusion_models takes its text encoders and VAE from a diffusers "
            "folder of its family (desktop-app models components FAMILY FOLDER, or --components FOLDER)")
