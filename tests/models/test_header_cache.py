"""A model file's header is read once per process while the file is unchanged (models/header_cache.py): one
Engine.load of a tiny single transformer file (.safetensors, .gguf) and one run with a LoRA read each file's
header at most once per reader, a second load none; a file changed on disk (new content, the same size with
another time, a damaged file mended) is read again."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_transformer_files import split

from desktop_app.engine.request import GenerationRequest, LoraChoice
from desktop_app.errors import ModelError
from desktop_app.models import components, gguf_files, header_cache, model_files


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return split("flux", tmp_path_factory.mktemp("flux"))


@pytest.fixture
def reads(monkeypatch):
    """(reader, file) -> how many times the file was opened to read its header: the app's uncached readers,
    and safetensors' own reader wherever the app calls it."""
    import safetensors

    counts: collections.Counter = collections.Counter()
    header_cache.clear()

    def counted(label, read):
        def wrapper(path, *args, **kwargs):
            counts[(label, str(Path(path).resolve()))] += 1
            return read(path, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(model_files, "_read_header", counted("safetensors", model_files._read_header))
    monkeypatch.setattr(model_files, "_head", counted("head", model_files._head))
    monkeypatch.setattr(gguf_files, "_read", counted("gguf", gguf_files._read))
    monkeypatch.setattr(safetensors, "safe_open", counted("safe_open", safetensors.safe_open))
    yield counts
    header_cache.clear()


def tiny_flux_lora(path: Path) -> Path:
    key = "transformer.transformer_blocks.0.attn.to_q"
    generator = torch.Generator().manual_seed(0)
    save_file({f"{key}.lora_A.weight": torch.randn(2, 32, generator=generator) * 0.1,
               f"{key}.lora_B.weight": torch.randn(32, 2, generator=generator) * 0.1}, path)
    return path


@pytest.mark.parametrize("kind", ["file", "gguf"])
def test_one_load_and_one_lora_run_read_each_header_once(kind, flux, reads, tmp_path):
    from desktop_app.engine.generate import Engine

    model, lora = flux[kind].resolve(), tiny_flux_lora(tmp_path / "tiny-flux-lora.safetensors").resolve()
    components.set_for_family("flux", flux["components"])
    engine = Engine(device="cpu")
    engine.load(str(model), None, (32, 32, 1))
    for (reader, file), count in reads.items():
        assert count <= 1, f"{reader} read {Path(file).name} {count} times in one load"
    read_model = {reader for reader, file in reads if file == str(model)}
    # the safetensors file: one open, for its header; the GGUF file: its first bytes, its metadata, and the
    # memory plan's look at it as safetensors (refused once, that answer kept too)
    assert read_model == ({"safetensors"} if kind == "file" else {"head", "gguf", "safetensors"})
    assert any(file != str(model) for _, file in reads)  # the components' headers are counted too

    reads.clear()
    engine.unload()
    engine.load(str(model), None, (32, 32, 1))  # the same files, unchanged: no header is read again
    assert not reads

    request = GenerationRequest(prompt="a red fox", model=str(model), steps=1, width=32, height=32,
                                sampler="Euler", guidance_scale=3.0, seed=1, preview=False,
                                loras=(LoraChoice(str(lora), 1.0),))
    assert engine.run(request, lambda event: None) is not None
    on_lora = {key: count for key, count in reads.items() if key[1] == str(lora)}
    # the safety check, its info, the family check and Flux's layout check share one read of its header
    assert on_lora == {("safetensors", str(lora)): 1}


def test_a_file_changed_on_disk_is_read_again(reads, tmp_path):
    path = tmp_path / "lora.safetensors"
    key = "transformer.transformer_blocks.0.attn.to_q"
    save_file({f"{key}.lora_A.weight": torch.zeros(2, 32), f"{key}.lora_B.weight": torch.zeros(32, 2)}, path)
    counted = ("safetensors", str(path.resolve()))
    assert model_files.inspect(path).tensor_count == 2
    assert model_files.inspect(path).tensor_count == 2
    assert reads[counted] == 1
    # another content of another size
    save_file({f"{key}.lora_A.weight": torch.zeros(4, 32), f"{key}.lora_B.weight": torch.zeros(32, 4),
               "transformer.transformer_blocks.0.attn.to_k.lora_A.weight": torch.zeros(4, 32)}, path)
    assert model_files.inspect(path).tensor_count == 3
    assert reads[counted] == 2
    # the same size, another content and another time (a copy over it, however fast the clock)
    size = path.stat().st_size
    save_file({f"{key}.lora_A.weight": torch.zeros(4, 32), f"{key}.lora_B.weight": torch.zeros(32, 4),
               "transformer.transformer_blocks.0.attn.to_v.lora_A.weight": torch.zeros(4, 32)}, path)
    assert path.stat().st_size == size
    later = path.stat().st_mtime_ns + 2_000_000_000
    os.utime(path, ns=(later, later))
    assert "transformer.transformer_blocks.0.attn.to_v.lora_A.weight" in model_files.read_header(path)
    assert reads[counted] == 3


def test_a_damaged_file_mended_reads_again_and_callers_cannot_spoil_the_cache(reads, tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"weight": torch.zeros(4, 4)}, path)
    whole = path.read_bytes()
    path.write_bytes(whole[:-8])  # truncated: refused, and refused again without another read
    for _ in range(2):
        with pytest.raises(ModelError, match="truncated"):
            model_files.read_header(path)
    assert reads[("safetensors", str(path.resolve()))] == 1
    path.write_bytes(whole)
    header = model_files.read_header(path)
    assert list(header) == ["weight"] and reads[("safetensors", str(path.resolve()))] == 2
    header.pop("weight")  # the caller's copy
    assert list(model_files.read_header(path)) == ["weight"]


def test_the_cache_keeps_a_bounded_number_of_answers(reads, tmp_path, monkeypatch):
    monkeypatch.setattr(header_cache, "LIMIT", 2)
    paths = []
    for index in range(3):
        paths.append(tmp_path / f"f{index}.safetensors")
        save_file({"weight": torch.zeros(index + 1)}, paths[-1])
        model_files.read_header(paths[-1])
    model_files.read_header(paths[0])  # the least recently used, dropped: read again
    model_files.read_header(paths[2])  # still kept
    assert [reads[("safetensors", str(p.resolve()))] for p in paths] == [2, 1, 1]
