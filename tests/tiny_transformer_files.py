"""A tiny family pipeline written as people have such models: a transformer file (.safetensors, and .gguf
quantized Q8_0 with the gguf package) and a diffusers folder of the rest (its "components"). Used by
tests/families/test_transformer_files.py and the frozen bundle's test."""

from __future__ import annotations

import shutil

from tiny_families import build_pipeline


def write_gguf(state_dict: dict, path) -> int:
    """``state_dict`` as a GGUF file: Q8_0 where a tensor's rows split into 32-value blocks, F32 otherwise.
    Returns how many tensors are quantized."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "tiny")
    quantized = 0
    for name, tensor in state_dict.items():
        array = tensor.float().numpy()
        if array.ndim == 2 and array.shape[-1] % 32 == 0:
            writer.add_tensor(name, gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            quantized += 1
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return quantized


def split(name: str, root) -> dict:
    """The tiny ``name`` pipeline written three ways under ``root``: "whole" (the diffusers folder), "file" (its
    transformer as one .safetensors), "gguf" (the same, Q8_0), "components" (the folder without the
    transformer's weights: its transformer/ holds config.json only)."""
    from safetensors.torch import save_file

    pipe = build_pipeline(name)
    whole = root / "whole"
    pipe.save_pretrained(whole)
    parts = root / "components"
    shutil.copytree(whole, parts)
    for weights in (parts / "transformer").glob("*.safetensors"):
        weights.unlink()
    state = {k: v.contiguous() for k, v in pipe.transformer.state_dict().items()}
    file = root / f"{name}-transformer.safetensors"
    save_file(state, file)
    gguf_file = root / f"{name}-transformer-Q8_0.gguf"
    quantized = write_gguf(state, gguf_file)
    return {"whole": whole, "file": file, "gguf": gguf_file, "components": parts, "quantized": quantized}
