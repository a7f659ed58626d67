"""The memory plan: chosen before loading from the weights on disk and the free memory (memory_plan.py), applied
once per pipeline (memory.apply_plan), recorded in the recipe, and the out-of-memory fallbacks after it."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_checkpoints import build_tiny_checkpoint
from tiny_families import build_family

from desktop_app.engine import memory
from desktop_app.engine import memory_plan as mp
from desktop_app.engine.events import StageStarted
from desktop_app.engine.recipe import Recipe
from desktop_app.errors import OutOfMemory

GB = mp.GB
FLUX = mp.ModelWeights({"transformer": int(22.2 * GB), "text_encoder_2": int(8.9 * GB),
                        "text_encoder": int(0.23 * GB), "vae": int(0.16 * GB)}, largest_tensor=int(0.25 * GB))
SMALL = mp.ModelWeights({"unet": int(1.6 * GB), "text_encoder": int(0.23 * GB), "vae": int(0.16 * GB)},
                        largest_tensor=int(0.05 * GB))


# ---- choosing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights, free_gb, device, expected", [
    (FLUX, 80, "cuda", mp.ALL_ON_DEVICE),  # an 80 GB card holds Flux whole
    (FLUX, 30, "cuda", mp.MODEL_OFFLOAD),  # 31.5 GB of weights, but the 22 GB transformer fits alone
    (FLUX, 24, "cuda", mp.GROUP_OFFLOAD),  # the transformer alone does not fit in 24 GB with room to work
    (FLUX, 2.4, "cuda", mp.SEQUENTIAL_OFFLOAD),  # two layers at a time do not fit; one does
    (SMALL, 8, "cuda", mp.ALL_ON_DEVICE),
    (SMALL, 4, "cuda", mp.MODEL_OFFLOAD),
    (FLUX, 0.5, "cpu", mp.ALL_ON_DEVICE),  # the CPU never offloads, whatever the numbers
    (FLUX, 0.5, "mps", mp.ALL_ON_DEVICE),  # unified memory: nothing to offload to
    (FLUX, None, "cuda", mp.ALL_ON_DEVICE),  # free memory not known
])
def test_the_first_plan_that_fits_is_chosen(weights, free_gb, device, expected):
    free = None if free_gb is None else int(free_gb * GB)
    plan = mp.choose_plan(weights, free, device)
    assert plan.name == expected
    assert plan.offloads == (expected != mp.ALL_ON_DEVICE)
    if device == "cuda" and free is not None:
        assert plan.fits and plan.need_bytes <= free
        assert f"{free / GB:.1f} GB free" in plan.reason
        assert f"{weights.total / GB:.1f} GB of weights" in plan.reason


def test_without_group_offloading_the_plan_falls_to_sequential():
    plan = mp.choose_plan(FLUX, 24 * GB, "cuda", available=(mp.MODEL_OFFLOAD, mp.SEQUENTIAL_OFFLOAD))
    assert plan.name == mp.SEQUENTIAL_OFFLOAD and plan.fits


def test_when_nothing_fits_the_lightest_plan_is_chosen_and_says_so():
    plan = mp.choose_plan(FLUX, GB // 4, "cuda")
    assert plan.name == mp.SEQUENTIAL_OFFLOAD and not plan.fits
    assert "may still run out of memory" in plan.reason
    only_whole = mp.choose_plan(FLUX, GB // 4, "cuda", available=())  # no accelerate, old diffusers
    assert only_whole.name == mp.ALL_ON_DEVICE and not only_whole.fits


def test_larger_images_need_more_room():
    free = int(SMALL.total * 1.2 + mp.activation_bytes(512, 512)) + 1
    assert mp.choose_plan(SMALL, free, "cuda", width=512, height=512).name == mp.ALL_ON_DEVICE
    larger = mp.choose_plan(SMALL, free, "cuda", width=1024, height=1024)
    batch = mp.choose_plan(SMALL, free, "cuda", width=512, height=512, batch_size=4)
    assert larger.offloads and batch.offloads and larger.fits and batch.fits


components = st.dictionaries(st.sampled_from(["unet", "transformer", "text_encoder", "text_encoder_2", "vae"]),
                             st.integers(0, 64 * GB), min_size=1)
weights_strategy = st.builds(lambda parts, share: mp.ModelWeights(parts, int(max(parts.values()) * share)),
                             components, st.floats(0, 1))
plan_sets = st.sets(st.sampled_from(mp.PLANS[1:])).map(lambda s: tuple(sorted(s, key=mp.PLANS.index)))


@settings(max_examples=300, deadline=None)
@given(weights_strategy, st.integers(0, 200 * GB), st.integers(0, 200 * GB), st.sampled_from([256, 1024, 2048]),
       plan_sets)
def test_a_plan_never_exceeds_the_free_memory_and_more_memory_is_never_heavier(weights, free, more, side,
                                                                                available):
    plan = mp.choose_plan(weights, free, "cuda", width=side, height=side, available=available)
    offered = [mp.ALL_ON_DEVICE, *available]
    assert plan.name in offered
    if plan.fits:
        assert plan.need_bytes <= free
    else:  # nothing fitted: the lightest plan this install has, over the free memory
        assert plan.name == offered[-1] and plan.need_bytes > free
    richer = mp.choose_plan(weights, free + more, "cuda", width=side, height=side, available=available)
    assert mp.PLANS.index(richer.name) <= mp.PLANS.index(plan.name)
    assert richer.fits or not plan.fits


@settings(max_examples=100, deadline=None)
@given(weights_strategy)
def test_each_plan_needs_no_more_than_the_one_before(weights):
    needs = mp.plan_needs(weights)
    assert [needs[name] for name in mp.PLANS] == sorted((needs[name] for name in mp.PLANS), reverse=True)


# ---- the weights on disk -------------------------------------------------------------------------------


def _data_bytes(file: Path) -> int:
    """The bytes of a safetensors file's tensors (the file less its header)."""
    with open(file, "rb") as handle:
        (header,) = struct.unpack("<Q", handle.read(8))
    return file.stat().st_size - 8 - header


@pytest.fixture(scope="module")
def flux_folder(tmp_path_factory):
    return build_family("flux", tmp_path_factory.mktemp("plan") / "tiny-flux")


@pytest.mark.parametrize("family", ["sd1", "flux", "sd3"])
def test_the_weights_of_each_component_are_summed_from_its_files(family, tmp_path):
    folder = build_family(family, tmp_path / family)
    index = json.loads((folder / "model_index.json").read_text())
    weights = mp.weights_on_disk(folder)
    expected = {name: sum(_data_bytes(f) for f in (folder / name).glob("*.safetensors"))
                for name, value in index.items() if isinstance(value, list) and (folder / name).is_dir()}
    expected = {name: size for name, size in expected.items() if size}
    assert weights.components == expected
    assert weights.total == sum(expected.values())
    assert 0 < weights.largest_tensor <= weights.largest_component


def test_the_load_dtype_counts_float_weights_at_its_size(flux_folder):
    as_stored = mp.weights_on_disk(flux_folder)  # the tiny models are stored in float32
    half = mp.weights_on_disk(flux_folder, dtype_bytes=2)
    assert half.components["vae"] * 2 == as_stored.components["vae"]
    assert half.total < as_stored.total


def test_a_variant_file_is_not_counted_twice(flux_folder, tmp_path):
    folder = tmp_path / "with-variant"
    shutil.copytree(flux_folder, folder)
    plain = folder / "vae" / "diffusion_pytorch_model.safetensors"
    shutil.copy(plain, plain.with_name("diffusion_pytorch_model.fp16.safetensors"))
    assert mp.weights_on_disk(folder).components == mp.weights_on_disk(flux_folder).components
    plain.unlink()  # only the variant left: it is what there is to load
    assert mp.weights_on_disk(folder).components["vae"] == mp.weights_on_disk(flux_folder).components["vae"]


def test_a_damaged_file_counts_its_size_on_disk(flux_folder, tmp_path):
    folder = tmp_path / "damaged"
    shutil.copytree(flux_folder, folder)
    (folder / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"\xff" * 1000)
    assert mp.weights_on_disk(folder).components["vae"] == 1000


def test_a_single_file_is_split_into_its_components(tmp_path):
    checkpoint = build_tiny_checkpoint("sd1", tmp_path).checkpoint
    weights = mp.weights_on_disk(checkpoint)
    assert set(weights.components) == {"unet", "vae", "text_encoder"}
    assert weights.total == _data_bytes(checkpoint)


def test_a_transformer_file_counts_its_components_text_encoders_and_vae_but_not_their_transformer(flux_folder):
    """A Flux transformer file runs with the text encoders and VAE of a components folder: the plan must count
    them (they are most of the memory at full size: T5-XXL alone is 9.5 GB), and not the folder's own
    transformer, which the file replaces."""
    file = flux_folder / "transformer" / "diffusion_pytorch_model.safetensors"
    alone, whole = mp.weights_on_disk(file), mp.weights_on_disk(flux_folder)
    with_parts = mp.weights_on_disk(file, components=flux_folder)
    assert with_parts.total == whole.total - whole.components["transformer"] + alone.total
    assert {"text_encoder", "text_encoder_2", "vae"} <= set(with_parts.components)
    assert with_parts.total > alone.total


# ---- applying --------------------------------------------------------------------------------------------


class FakePipe:
    """Records which enable_* method the plan called, with its arguments."""

    def __init__(self):
        self.calls = []
        self.vae = FakeVae()

    def enable_model_cpu_offload(self, **kwargs):
        self.calls.append(("enable_model_cpu_offload", kwargs))

    def enable_sequential_cpu_offload(self, **kwargs):
        self.calls.append(("enable_sequential_cpu_offload", kwargs))

    def enable_group_offload(self, **kwargs):
        self.calls.append(("enable_group_offload", kwargs))

    def enable_attention_slicing(self):
        self.calls.append(("enable_attention_slicing", {}))


class FakeVae:
    def enable_tiling(self):
        pass


CUDA = torch.device("cuda")  # a device object only: nothing here runs on a GPU


@pytest.mark.parametrize("name, method", [(mp.MODEL_OFFLOAD, "enable_model_cpu_offload"),
                                          (mp.GROUP_OFFLOAD, "enable_group_offload"),
                                          (mp.SEQUENTIAL_OFFLOAD, "enable_sequential_cpu_offload")])
def test_a_plan_is_applied_once_per_pipeline(name, method):
    pipe = FakePipe()
    assert memory.apply_plan(pipe, mp.MemoryPlan(name, "test"), CUDA)
    assert [call for call, _ in pipe.calls] == [method]
    assert pipe.calls[0][1].get("device", pipe.calls[0][1].get("onload_device")) == CUDA
    assert not memory.apply_plan(pipe, mp.MemoryPlan(mp.ALL_ON_DEVICE, "test"), CUDA)  # it has its plan
    assert len(pipe.calls) == 1 and memory.plan_of(pipe) == name and memory.offloaded(pipe)


def test_all_on_device_and_the_cpu_call_nothing():
    on_gpu, on_cpu = FakePipe(), FakePipe()
    memory.apply_plan(on_gpu, mp.MemoryPlan(mp.ALL_ON_DEVICE, "test"), CUDA)
    memory.apply_plan(on_cpu, mp.MemoryPlan(mp.MODEL_OFFLOAD, "test"), torch.device("cpu"))
    assert on_gpu.calls == on_cpu.calls == []
    assert memory.plan_of(on_cpu) == mp.ALL_ON_DEVICE and not memory.offloaded(on_cpu)


def test_an_offloaded_pipeline_skips_the_cpu_offload_fallback():
    pipe = FakePipe()
    memory.apply_plan(pipe, mp.MemoryPlan(mp.GROUP_OFFLOAD, "test"), CUDA)
    failures = []

    def call(one_at_a_time):
        failures.append(one_at_a_time)
        if len(failures) < 4:
            raise torch.OutOfMemoryError("injected")
        return "images"

    result, used = memory.run_with_fallbacks(call, pipe, CUDA, batch_size=2)
    assert result == "images" and used == ["vae_tiling", "attention_slicing", "batch_1"]
    assert "enable_model_cpu_offload" not in [name for name, _ in pipe.calls]


def test_the_last_out_of_memory_message_names_the_plan():
    pipe = FakePipe()
    memory.apply_plan(pipe, mp.MemoryPlan(mp.SEQUENTIAL_OFFLOAD, "test"), CUDA)

    def call(one_at_a_time):
        raise torch.OutOfMemoryError("injected")

    with pytest.raises(OutOfMemory, match="even with sequential offload, VAE tiling, attention slicing"):
        memory.run_with_fallbacks(call, pipe, CUDA, batch_size=1)


# ---- through the Engine ------------------------------------------------------------------------------


def test_on_the_cpu_the_engine_keeps_all_on_the_device_and_records_it(generate, make_request, engine):
    engine.unload()  # the plan is chosen when the model loads
    result, events = generate(make_request())
    assert engine.plan.name == mp.ALL_ON_DEVICE
    assert result.recipe.memory_plan == mp.ALL_ON_DEVICE
    data = result.recipe.to_dict()
    assert data["memory_plan"] == mp.ALL_ON_DEVICE
    assert Recipe.from_dict(data).memory_plan == mp.ALL_ON_DEVICE
    assert not any("memory plan" in e.detail for e in events.of(StageStarted))  # nothing to tell on a CPU
    again, _ = generate(make_request(seed=7))  # the same pipeline: its plan stays
    assert again.recipe.memory_plan == mp.ALL_ON_DEVICE


def test_a_recipe_written_before_the_plan_still_reads():
    data = {"prompt": "a cat", "seed": 1, "seeds": [1], "model_name": "m", "device": "cpu", "dtype": "float32"}
    recipe = Recipe.from_dict(data)
    assert recipe.memory_plan is None and "memory_plan" not in recipe.to_dict()


def test_on_cuda_an_offloading_plan_loads_on_the_cpu_and_offloads(monkeypatch, tiny_sd_dir):
    """The device is CUDA in name only: the loader is replaced, and the fake pipeline records the calls."""
    from desktop_app.engine import device as devices
    from desktop_app.engine import generate as generate_module
    from desktop_app.engine.generate import Engine
    from desktop_app.engine.loader import LoadedModel

    engine = Engine(device="cpu")
    engine._choice = devices.DeviceChoice(CUDA, torch.float16)
    weights = mp.weights_on_disk(tiny_sd_dir, 2)
    # room for the UNet alone, not for everything: model offload
    free = mp.plan_needs(weights, 64, 64)[mp.MODEL_OFFLOAD]
    monkeypatch.setattr(memory, "device_free_bytes", lambda device: free)
    loads = []

    def load_model(name, device, dtype, components_dir=None):
        loads.append(torch.device(device))
        return LoadedModel(pipe=FakePipe(), name=name, path=Path(name), family="sd1", device=torch.device(device),
                           dtype=dtype)

    monkeypatch.setattr(generate_module, "load_model", load_model)
    seen = []
    model = engine.load(str(tiny_sd_dir), seen.append, (64, 64, 1))
    assert loads == [torch.device("cpu")]  # an offloading plan loads on the CPU ...
    assert [name for name, _ in model.pipe.calls] == ["enable_model_cpu_offload"]  # ... then offloads
    assert model.device == CUDA and engine.plan.name == mp.MODEL_OFFLOAD
    assert seen[0].stage == "load" and "memory plan: model offload" in seen[0].detail
    assert engine.load(str(tiny_sd_dir)) is model and len(model.pipe.calls) == 1  # applied once
