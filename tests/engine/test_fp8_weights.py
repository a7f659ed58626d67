"""fp8 weights: the denoiser's (transformer's or UNet's) weights stored in float8 and cast up to the compute dtype
layer by layer as it runs (diffusers' layerwise casting), as the Engine's weights setting ("auto" | "full" |
"fp8", `generate --weights`), and as the memory plan "fp8 weights" that CUDA gets when a model fits on the GPU only
so. On the CPU (the cast happens there too): a tiny Flux and a tiny SD 1 draw nearly the full-precision image,
their Linear weights really are float8 and take a quarter of their float32 bytes, and the full-size Flux and SDXL
denoisers (bundled configs, on the meta device) take half their bfloat16 bytes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from tiny_families import build_family
from tiny_transformer_files import split

from desktop_app.engine import memory
from desktop_app.engine import memory_plan as mp
from desktop_app.engine.events import Finished, StageStarted
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import RequestError

GB = mp.GB
FLUX = mp.ModelWeights({"transformer": int(22.2 * GB), "text_encoder_2": int(8.9 * GB),
                        "text_encoder": int(0.23 * GB), "vae": int(0.16 * GB)}, largest_tensor=int(0.25 * GB))
FP8 = torch.float8_e4m3fn


def denoiser_of(pipe):
    return pipe.transformer if getattr(pipe, "transformer", None) is not None else pipe.unet


def parameter_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


# ---- choosing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("free_gb, weights, expected", [
    (80, "auto", mp.ALL_ON_DEVICE),  # fits in bf16: full precision
    (30, "auto", mp.FP8_WEIGHTS),  # 31.5 GB of weights do not fit, 20.4 GB with an fp8 transformer do
    (30, "full", mp.MODEL_OFFLOAD),  # never fp8: the plan it had before
    (16, "auto", mp.GROUP_OFFLOAD),  # even fp8 does not fit whole: the offload ladder in full precision
    (80, "fp8", mp.FP8_WEIGHTS),  # asked for: fp8 even where bf16 fits
    (16, "fp8", mp.MODEL_OFFLOAD),  # asked for, and not fitting whole: offloaded, with the transformer in fp8
])
def test_cuda_takes_fp8_weights_between_all_on_device_and_model_offload(free_gb, weights, expected):
    plan = mp.choose_plan(FLUX, int(free_gb * GB), "cuda", weights=weights)
    assert plan.name == expected and plan.fits and plan.need_bytes <= free_gb * GB
    assert plan.fp8 == (expected == mp.FP8_WEIGHTS or weights == "fp8")
    assert plan.offloads == (expected not in (mp.ALL_ON_DEVICE, mp.FP8_WEIGHTS))
    if plan.fp8:  # the line the load stage and the recipe's notices show says what was stored how
        assert "the transformer's weights stored in fp8 (22.2 GB -> 11.1 GB)" in plan.told()
        assert plan.label == (mp.FP8_WEIGHTS if expected == mp.FP8_WEIGHTS else f"{expected}, fp8 weights")


def test_the_fp8_estimate_counts_the_denoiser_at_one_byte_a_number():
    needs = mp.plan_needs(FLUX, 1024, 1024)
    saved = needs[mp.ALL_ON_DEVICE] - needs[mp.FP8_WEIGHTS]
    assert abs(saved - FLUX.components["transformer"] / 2 * (1 + mp.WEIGHT_MARGIN)) < 16
    as_float32 = mp.ModelWeights(FLUX.components, FLUX.largest_tensor, number_bytes=4)
    assert as_float32.in_fp8().components["transformer"] == FLUX.components["transformer"] // 4


@pytest.mark.parametrize("device, expected", [("cpu", mp.FP8_WEIGHTS), ("mps", mp.ALL_ON_DEVICE)])
def test_off_cuda_only_an_explicit_fp8_stores_fp8_and_apple_gpus_say_why_not(device, expected):
    assert mp.choose_plan(FLUX, None, device, weights="auto").name == mp.ALL_ON_DEVICE
    plan = mp.choose_plan(FLUX, None, device, weights="fp8")
    assert plan.name == expected and plan.fp8 == (device == "cpu") and not plan.offloads
    if device == "mps":
        assert "Apple GPUs have no float8" in plan.reason


def test_a_weights_setting_that_does_not_exist_is_refused_in_one_line():
    from desktop_app.engine.generate import Engine

    with pytest.raises(ValueError, match="weights must be one of auto, full, fp8"):
        mp.choose_plan(FLUX, GB, "cuda", weights="int4")
    with pytest.raises(RequestError, match="weights: must be one of auto, full, fp8, got 'half'"):
        Engine(device="cpu", weights="half")


components = st.dictionaries(st.sampled_from(["unet", "transformer", "text_encoder", "text_encoder_2", "vae"]),
                             st.integers(0, 64 * GB), min_size=1)
weights_strategy = st.builds(lambda parts, share: mp.ModelWeights(parts, int(max(parts.values()) * share)),
                             components, st.floats(0, 1))


@settings(max_examples=300, deadline=None)
@given(weights_strategy, st.integers(0, 200 * GB), st.integers(0, 200 * GB), st.sampled_from(mp.WEIGHTS))
def test_no_setting_exceeds_the_free_memory_and_more_memory_is_never_slower(weights, free, more, setting):
    plan = mp.choose_plan(weights, free, "cuda", weights=setting)
    if plan.fits:
        assert plan.need_bytes <= free
    if setting == "full":
        assert not plan.fp8
    richer = mp.choose_plan(weights, free + more, "cuda", weights=setting)
    assert mp.ORDER.index(richer.name) <= mp.ORDER.index(plan.name)
    # "auto" takes fp8 only where full precision does not fit whole
    if setting == "auto" and plan.fp8:
        assert mp.plan_needs(weights)[mp.ALL_ON_DEVICE] > free


# ---- applying, on the CPU ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fp8")
    return {name: build_family(name, root / name) for name in ("flux", "sd1")}


def draw(engine, folder, seed: int = 3) -> tuple[np.ndarray, Finished, list]:
    events = []
    request = GenerationRequest(prompt="a red fox", model=str(folder), steps=3, width=32, height=32,
                                sampler="Euler", guidance_scale=3.0, seed=seed, preview=False)
    result = engine.run(request, events.append)
    assert isinstance(result, Finished)
    return np.asarray(result.images[0], dtype=np.float32), result, events


@pytest.mark.parametrize("family", ["flux", "sd1"])
def test_fp8_weights_draw_nearly_the_full_precision_image_in_a_quarter_of_the_float32_bytes(family, folders):
    from desktop_app.engine.generate import Engine

    full_engine = Engine(device="cpu", preview_share=None, weights="full")
    expected, full, _ = draw(full_engine, folders[family])
    full_bytes = parameter_bytes(denoiser_of(full_engine.model.pipe))
    assert full.recipe.memory_plan == mp.ALL_ON_DEVICE and full_engine.model.dtype == torch.float32

    engine = Engine(device="cpu", preview_share=None, weights="fp8")
    image, result, events = draw(engine, folders[family])
    denoiser = denoiser_of(engine.model.pipe)
    # 1. the Linear (and convolution) weights are float8 now, and the model still computes in float32
    linears = [m for m in denoiser.modules() if isinstance(m, torch.nn.Linear)]
    stored = [m for m in linears if m.weight.dtype == FP8]
    assert len(stored) >= 0.8 * len(linears) and engine.model.dtype == torch.float32
    # 2. each of those numbers takes one byte of its four: the cast layers' memory is a quarter
    fp8_numbers = sum(p.numel() for p in denoiser.parameters() if p.dtype == FP8)
    assert parameter_bytes(denoiser) == full_bytes - 3 * fp8_numbers
    names = {id(m): name for name, m in denoiser.named_modules()}
    full_modules = dict(denoiser_of(full_engine.model.pipe).named_modules())
    as_full = sum(parameter_bytes(full_modules[names[id(m)]]) for m in stored)
    assert sum(parameter_bytes(m) for m in stored) * 4 == as_full
    print(f"{family}: denoiser {full_bytes} B in float32, {parameter_bytes(denoiser)} B with fp8 weights "
          f"({parameter_bytes(denoiser) / full_bytes:.3f}); Linear layers {as_full} -> "
          f"{sum(parameter_bytes(m) for m in stored)} B; mean difference {np.abs(image - expected).mean():.2f}")
    # 3. the picture: a few levels of 255 on average, not another picture
    difference = np.abs(image - expected)
    assert 0 < difference.mean() < 3.0, difference.mean()
    # 4. told in the load line and the recipe's notices, recorded as the recipe's memory plan
    loads = [e.detail for e in events if isinstance(e, StageStarted) and e.stage == "load"]
    assert any("memory plan: fp8 weights" in line for line in loads)
    assert result.recipe.memory_plan == mp.FP8_WEIGHTS
    assert any(line.startswith("memory plan: fp8 weights") for line in result.recipe.notices)


def test_back_to_full_the_model_loads_again_in_full_precision(folders):
    from desktop_app.engine.generate import Engine

    engine = Engine(device="cpu", preview_share=None, weights="fp8")
    lossy, _, _ = draw(engine, folders["flux"])
    assert any(p.dtype == FP8 for p in engine.model.pipe.transformer.parameters())
    engine.set_weights("auto")  # the CPU's "auto" is full precision
    image, result, events = draw(engine, folders["flux"])
    assert "load" in [e.stage for e in events if isinstance(e, StageStarted)]  # loaded again
    assert {p.dtype for p in engine.model.pipe.transformer.parameters()} == {torch.float32}
    assert result.recipe.memory_plan == mp.ALL_ON_DEVICE
    reference, _, _ = draw(Engine(device="cpu", preview_share=None, weights="full"), folders["flux"])
    assert np.array_equal(image, reference) and not np.array_equal(lossy, reference)
    held = engine.model
    engine.set_weights("full")  # full precision already: nothing to load again
    assert engine.model is held


def test_a_lora_on_fp8_weights_keeps_its_own_precision_and_its_effect(folders, tmp_path):
    """peft gives a LoRA its base layer's dtype; an fp8 layer names its compute dtype, so the LoRA's weights stay
    float32 (in float8 the CPU cannot even multiply them)."""
    from tiny_loras import lora_state, save_diffusers_lora

    from desktop_app.engine.generate import Engine
    from desktop_app.engine.request import LoraChoice

    lora = save_diffusers_lora(lora_state(folders["sd1"] / "unet"), tmp_path / "lora")
    images = {}
    for weights in ("full", "fp8"):
        engine = Engine(device="cpu", preview_share=None, weights=weights)
        for with_lora in (False, True):
            request = GenerationRequest(prompt="a red fox", model=str(folders["sd1"]), steps=3, width=32,
                                        height=32, sampler="Euler", seed=3, preview=False,
                                        loras=(LoraChoice(str(lora), 1.0),) if with_lora else ())
            images[weights, with_lora] = np.asarray(engine.run(request, lambda event: None).images[0], np.float32)
        lora_dtypes = {p.dtype for name, p in engine.model.pipe.unet.named_parameters() if "lora_" in name}
        assert lora_dtypes == {torch.float32}
    effect = {w: np.abs(images[w, True] - images[w, False]).mean() for w in ("full", "fp8")}
    assert effect["fp8"] > 0.5 * effect["full"] > 0
    assert np.abs(images["fp8", True] - images["full", True]).mean() < 3.0


@pytest.mark.parametrize("config, cls, kind, name", [
    ("flux-dev/transformer", "FluxTransformer2DModel", "transformer", "Flux.1 dev transformer"),
    ("sd3.5-large/transformer", "SD3Transformer2DModel", "transformer", "SD3.5 Large transformer"),
    ("sdxl/unet", "UNet2DConditionModel", "unet", "SDXL UNet"),
])
def test_a_full_size_denoiser_takes_half_its_bfloat16_memory(config, cls, kind, name):
    """The published configs (bundled), instantiated on the meta device in bfloat16: no memory, true sizes.
    What fp8 storage leaves in bfloat16 (norms, embeddings, the first and last projections) is under 1%."""
    import diffusers

    from desktop_app.resources import resources_dir

    folder = resources_dir() / "configs" / config
    model_class = getattr(diffusers, cls)
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("meta"):
            model = model_class.from_config(model_class.load_config(folder))
    finally:
        torch.set_default_dtype(saved)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    bf16 = parameter_bytes(model)
    assert memory.store_fp8(SimpleNamespace(**{kind: model}))
    ratio = parameter_bytes(model) / bf16
    print(f"{name}: {bf16 / GB:.2f} GB in bf16, {parameter_bytes(model) / GB:.2f} GB with fp8 weights")
    assert 0.5 <= ratio < 0.502, f"{name}: {ratio:.4f}"
    assert model.dtype == torch.bfloat16  # what it computes in


def test_a_quantized_gguf_transformer_is_left_as_it_is(tmp_path):
    from diffusers.quantizers.gguf.utils import GGUFParameter

    from desktop_app.engine.generate import Engine
    from desktop_app.models import components

    files = split("flux", tmp_path)
    components.set_for_family("flux", files["components"])
    engine = Engine(device="cpu", preview_share=None, weights="fp8")
    _, result, events = draw(engine, files["gguf"])
    parameters = list(engine.model.pipe.transformer.parameters())
    assert any(isinstance(p, GGUFParameter) for p in parameters) and not any(p.dtype == FP8 for p in parameters)
    assert result.recipe.memory_plan == mp.ALL_ON_DEVICE
    loads = [e.detail for e in events if isinstance(e, StageStarted) and e.stage == "load"]
    assert any("quantized already: no fp8 storage" in line for line in loads)


class FakePipe:
    """A real tiny transformer, and the pipeline calls the plan makes recorded instead of run (no GPU here)."""

    def __init__(self, transformer):
        self.transformer, self.calls = transformer, []

    def to(self, device):
        self.calls.append(("to", device))

    def enable_model_cpu_offload(self, **kwargs):
        self.calls.append(("enable_model_cpu_offload", kwargs.get("device")))


@pytest.mark.parametrize("plan, call, label", [
    (mp.MemoryPlan(mp.FP8_WEIGHTS, "test", fp8=True), "to", mp.FP8_WEIGHTS),
    (mp.MemoryPlan(mp.MODEL_OFFLOAD, "test", fp8=True), "enable_model_cpu_offload", "model offload, fp8 weights"),
])
def test_on_cuda_the_weights_become_fp8_before_they_go_to_the_gpu(plan, call, label):
    from tiny_families import build_pipeline

    cuda = torch.device("cuda")  # a device object only: the calls are recorded
    pipe = FakePipe(build_pipeline("flux").transformer)
    assert memory.apply_plan(pipe, plan, cuda)
    assert pipe.calls == [(call, cuda)]
    assert any(p.dtype == FP8 for p in pipe.transformer.parameters())
    assert memory.plan_of(pipe) == label
    assert memory.offloaded(pipe) == (plan.name != mp.FP8_WEIGHTS)  # fp8 alone keeps the cpu_offload fallback


# ---- the command line ------------------------------------------------------------------------------------


def test_generate_weights_fp8_writes_a_png_whose_recipe_says_so(folders, tmp_path, capsys):
    from desktop_app import cli

    out = tmp_path / "fox.png"
    code = cli.main(["generate", "a red fox", "--model", str(folders["sd1"]), "--out", str(out), "--width", "32",
                     "--height", "32", "--steps", "2", "--seed", "4", "--device", "cpu", "--weights", "fp8"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "memory plan: fp8 weights" in captured.err
    with Image.open(out) as image:
        assert json.loads(image.text["recipe"])["memory_plan"] == mp.FP8_WEIGHTS

    with pytest.raises(SystemExit) as exited:
        cli.main(["generate", "a red fox", "--model", str(folders["sd1"]), "--out", str(out), "--weights", "fp4"])
    captured = capsys.readouterr()
    assert exited.value.code == 2 and "Traceback" not in captured.err
    assert "argument --weights: invalid choice: 'fp4' (choose from 'auto', 'full', 'fp8')" in captured.err


# ---- on a CUDA GPU (skipped elsewhere) ---------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("family", ["flux", "sd1"])
def test_on_cuda_auto_takes_fp8_weights_when_only_they_fit(family, folders, monkeypatch):
    """The free memory is told just enough for "fp8 weights" (memory.device_free_bytes): the model loads on the
    CPU, its denoiser becomes fp8 there and goes to the GPU, and it draws nearly what all on the device draws."""
    from desktop_app.engine.generate import Engine

    reference_engine = Engine(device="cuda", preview_share=None, weights="full")
    expected, reference, _ = draw(reference_engine, folders[family])
    assert reference.recipe.memory_plan == mp.ALL_ON_DEVICE
    dtype = reference_engine.model.dtype
    reference_engine.unload()
    needs = mp.plan_needs(mp.weights_on_disk(folders[family], dtype.itemsize), 32, 32, 1)
    monkeypatch.setattr(memory, "device_free_bytes", lambda device: needs[mp.FP8_WEIGHTS])
    engine = Engine(device="cuda", preview_share=None)  # "auto"
    image, result, _ = draw(engine, folders[family])
    assert engine.plan.name == mp.FP8_WEIGHTS and result.recipe.memory_plan == mp.FP8_WEIGHTS
    denoiser = denoiser_of(engine.model.pipe)
    assert {p.device.type for p in denoiser.parameters()} == {"cuda"}
    assert any(p.dtype == FP8 for p in denoiser.parameters()) and denoiser.dtype == dtype
    assert np.abs(image - expected).mean() < 4.0
    engine.unload()
