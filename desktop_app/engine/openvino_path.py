"""The embedded model's UNet through OpenVINO on the CPU (issue 20, section 9 of the bench).

The small UNet (16x16 latents at most) is bound by per-operation overhead in eager torch; OpenVINO's compiled
graph runs the same float32 step in about a third of the time on an AVX2 EPYC (docs/PERFORMANCE.md). Here:

- ``install(pipe, folder)`` converts the torch UNet once per model and machine (``openvino.convert_model``, with
  dynamic batch, latent size and prompt length) and keeps the IR in ``paths.compiled_dir()``, in a folder keyed
  by the weights' hash (models/model_hash.py), the UNet's config, the openvino and torch versions and the input
  shapes; a later load reads that IR and never converts again;
- each request's shapes compile once per session (the IR reshaped to them: static shapes run faster than the
  dynamic graph), on as many threads as torch uses, in the background: the model's default size from the load
  on, another size from its first step; until the graph is ready, the steps run in torch (so the first image
  after a start is not slower; the two differ by about 1e-5 in a step's output);
- the torch UNet stays in the pipeline: only its ``forward`` is replaced, so ``.config``, ``.dtype``, ``.device``,
  LoRAs, attention maps and image prompts keep working. A call that OpenVINO's graph does not cover (gradients,
  extra inputs such as ControlNet residuals, peft adapters, replaced attention processors, weights changed in
  place, another dtype, latent sizes the UNet's upsampling does not divide: 40 or 48 px for the embedded
  model) runs the torch forward;
- any failure (openvino missing, a conversion error, a broken cache file, an error at run time) leaves plain torch
  running and says so in one log line, never a traceback.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

import torch

from desktop_app.errors import one_line

log = logging.getLogger(__name__)

IR_NAME = "unet.xml"
# the converted graph's inputs: batch, latent height and width, prompt length are left dynamic
INPUTS = ("sample", "timestep", "encoder_hidden_states")
SHAPES = "sample[-1,C,-1,-1] timestep[-1] encoder_hidden_states[-1,-1,D]"
counts = {"conversions": 0, "compilations": 0}  # for the tests and the bench
# False: steps run in torch while their shapes compile (about 1 s); True: they wait for it (tests, timings)
WAIT_FOR_COMPILE = False


def install(pipe, folder: Path, *, quiet_missing: bool = False, size: tuple[int, int] | None = None) -> str | None:
    """Run ``pipe.unet`` through OpenVINO. Returns None when it does, else the one line saying why plain torch
    runs (also logged; at INFO only when openvino is missing and ``quiet_missing``).

    First use converts here, in the load (seconds, once per model and machine). A cached IR is read, and the
    graph for ``size`` (width, height: the model's default image, batch 2 for guidance) compiled, in a
    background thread at low priority: until it is ready the steps run in torch, so a start with the cache is
    not slower than plain torch. A cache file that cannot be read says so in one line when the thread finds it
    (the UNet stays in torch; the entry is removed and converts again at the next load)."""
    if importlib.util.find_spec("openvino") is None:
        line = "OpenVINO is not installed (pip install openvino): the UNet runs in plain torch"
        (log.info if quiet_missing else log.warning)(line)
        return line
    unet = pipe.unet
    try:
        entry = entry_dir(unet, Path(folder))
        if (entry / IR_NAME).exists():
            runner = Runner(None)
            runner.source = _background(runner.read, entry)
        else:
            log.info("Converting the UNet for OpenVINO (once per model and machine, about 10 s)")
            runner = Runner(_done(convert_into(unet, entry)))
    except Exception as exc:  # noqa: BLE001 - any failure of a third-party converter means: plain torch
        line = f"OpenVINO path off, the UNet runs in plain torch: {one_line(exc, 200)}"
        log.warning(line)
        return line
    runner.attach(unet)
    if size is not None:
        runner.prepare(_shapes(pipe, size))
    return None


def _done(value):
    from concurrent.futures import Future

    future: Future = Future()
    future.set_result(value)
    return future


def _background(function, *args):
    """``function(*args)`` in a thread of its own at a lower priority (Linux: a thread's nice value), as a
    Future: a start-up's compile must not slow the torch steps that run meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    def low(*args):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass  # not Linux, or not allowed: normal priority
        return function(*args)

    pool = ThreadPoolExecutor(1, thread_name_prefix="openvino")
    future = pool.submit(low, *args)
    pool.shutdown(wait=False)
    return future


def _shapes(pipe, size: tuple[int, int]) -> tuple:
    """The inputs' shapes for an image of ``size`` with guidance, as the pipeline calls the UNet."""
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    length = int(getattr(getattr(pipe, "tokenizer", None), "model_max_length", 77) or 77)
    config = pipe.unet.config
    return ((2, int(config.in_channels), size[1] // factor, size[0] // factor), (2,),
            (2, length, int(config.cross_attention_dim)))


def installed(pipe) -> bool:
    """Whether ``pipe``'s UNet runs through OpenVINO (its forward replaced and not switched off by a failure)."""
    runner = getattr(getattr(pipe, "unet", None), "_openvino_runner", None)
    return runner is not None and not runner.broken


def cache_key(unet, folder: Path) -> str:
    """What the converted IR depends on: the weights, the UNet's config, the libraries, the input shapes."""
    from importlib.metadata import version

    from desktop_app.models.model_hash import model_hash

    config = json.dumps({k: v for k, v in dict(unet.config).items() if not k.startswith("_")}, sort_keys=True,
                        default=str)
    parts = [model_hash(folder, full=True) or "no-weights", config, f"openvino {version('openvino')}",
             f"torch {torch.__version__}", SHAPES]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def entry_dir(unet, folder: Path) -> Path:
    from desktop_app import paths

    return paths.compiled_dir() / f"unet-{cache_key(unet, folder)}"


def read_ir(entry: Path):
    """The cached IR in ``entry``. One that cannot be read is removed (it converts again at the next load) and
    a RuntimeError says so."""
    import openvino

    try:
        ir, weights = entry / IR_NAME, (entry / IR_NAME).with_suffix(".bin")
        with ir.open("rb") as handle:
            if not handle.read(64).lstrip().startswith(b"<?xml") or not weights.is_file():
                # checked first: openvino's other frontends would print their own parse errors to stderr
                raise RuntimeError("not an OpenVINO IR (an XML file and its .bin)")
        return openvino.Core().read_model(str(ir))
    except Exception as exc:
        shutil.rmtree(entry, ignore_errors=True)
        raise RuntimeError(f"the cached IR {entry.name} could not be read ({one_line(exc, 100)}); removed, it "
                           "converts again at the next load") from None


def convert_into(unet, entry: Path):
    """The UNet converted (``convert``) and saved as ``entry`` (whole or not at all); the model."""
    import openvino

    model = convert(unet)
    entry.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
    try:
        openvino.save_model(model, str(scratch / IR_NAME), compress_to_fp16=False)
        try:
            os.replace(scratch, entry)  # another process may have won the race: its copy is as good
        except OSError:
            pass
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return model


class _Traced(torch.nn.Module):
    """The UNet with positional inputs and a plain tensor out, as convert_model traces it."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


def convert(unet):
    """``openvino.convert_model`` of the torch UNet (its own forward, even when replaced), dynamic shapes."""
    import warnings

    import openvino

    counts["conversions"] += 1
    runner = unet.__dict__.pop("forward", None)  # trace the torch forward, not ours
    channels, width = int(unet.config.in_channels), int(unet.config.cross_attention_dim)
    example = (torch.randn(2, channels, 8, 8), torch.full((2,), 500.0), torch.randn(2, 8, width))
    shapes = [openvino.PartialShape(s) for s in ([-1, channels, -1, -1], [-1], [-1, -1, width])]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes
            return openvino.convert_model(_Traced(unet).eval(), example_input=example, input=shapes)
    finally:
        if runner is not None:
            unet.forward = runner


def _given(value) -> bool:
    """Whether an extra UNet input is there (None and empty dicts/tuples are not)."""
    return value is not None and not (isinstance(value, (dict, tuple, list)) and len(value) == 0)


class Runner:
    """The converted UNet, compiled once per input shapes, standing in for the torch forward."""

    def __init__(self, source):
        self.source = source  # a Future of the converted (or read) OpenVINO model
        self.requests: dict[tuple, object] = {}
        self.pending: dict[tuple, object] = {}  # shapes -> a Future compiling them in the background
        self.broken = False
        self.unet = None
        self.original = None
        self._guard: tuple = ()
        self._attention: list = []
        self._parameters: list = []
        self._factor = 1

    def read(self, entry: Path):
        """The cached IR (in the background thread); a failure switches the runner off with one line."""
        try:
            return read_ir(entry)
        except Exception as exc:
            self.fail(f"OpenVINO path off, the UNet runs in plain torch: {exc}")
            raise

    def fail(self, line: str) -> None:
        if not self.broken:
            self.broken = True
            log.warning(line)

    def ready(self, timeout: float | None = None) -> bool:
        """Wait until the model is read and the shapes asked for so far are compiled; whether it runs."""
        from concurrent.futures import wait

        wait([self.source, *self.pending.values()], timeout=timeout)
        return not self.broken

    def attach(self, unet) -> None:
        self.unet, self.original = unet, unet.forward
        self._attention = [m for m in unet.modules() if hasattr(m, "set_processor") and hasattr(m, "processor")]
        self._parameters = list(unet.parameters())
        self._factor = 2 ** (len(unet.config.block_out_channels) - 1)  # as the UNet's default_overall_up_factor
        self._guard = self._state(unet)
        unet._openvino_runner = self
        unet.forward = self.forward

    def detach(self) -> None:
        if self.unet is not None:
            self.unet.__dict__.pop("forward", None)
            self.unet.__dict__.pop("_openvino_runner", None)

    def _state(self, unet) -> tuple:
        """What the converted graph assumed: the attention processors, the weights' in-place versions and
        dtypes (fp8 storage casts them), a few weights' storage (peft adapters, which replace modules, are seen
        by ``peft_config``). About 0.1 ms on the embedded UNet."""
        processors = tuple(id(m.processor) for m in self._attention)
        weights = self._parameters
        return processors, sum(p._version for p in weights), {p.dtype for p in weights}, {p.data_ptr() for p in
                                                                                            weights[:4]}

    def covers(self, sample, encoder_hidden_states, extra: dict) -> bool:
        unet = self.unet
        if self.broken or torch.is_grad_enabled() or unet.training or any(map(_given, extra.values())):
            return False
        if sample.dtype != torch.float32 or sample.device.type != "cpu" or sample.dim() != 4:
            return False
        if sample.shape[-1] % self._factor or sample.shape[-2] % self._factor:
            return False  # the torch UNet passes odd sizes' upsample sizes on, the traced graph does not
        if encoder_hidden_states is None or encoder_hidden_states.dtype != torch.float32:
            return False
        if getattr(unet, "peft_config", None) or getattr(unet, "encoder_hid_proj", None) is not None:
            return False
        return self._state(unet) == self._guard

    def forward(self, sample, timestep, encoder_hidden_states=None, *args, return_dict: bool = True, **extra):
        if args or not self.covers(sample, encoder_hidden_states, extra):
            return self.original(sample, timestep, encoder_hidden_states, *args, return_dict=return_dict, **extra)
        try:
            out = self.run(sample, timestep, encoder_hidden_states)
            if out is None:  # these shapes are still compiling: torch runs this step
                return self.original(sample, timestep, encoder_hidden_states, return_dict=return_dict, **extra)
        except Exception as exc:  # noqa: BLE001 - the runtime's errors: torch takes over for good
            self.fail(f"OpenVINO failed, the UNet runs in plain torch from here: {one_line(exc, 200)}")
            return self.original(sample, timestep, encoder_hidden_states, return_dict=return_dict, **extra)
        if not return_dict:
            return (out,)
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        return UNet2DConditionOutput(sample=out)

    def run(self, sample, timestep, context):
        """The UNet's output through OpenVINO, or None while the graph for these shapes compiles (in the
        background: the first image after a start, or at a new size, is never slower than torch's)."""
        batch = sample.shape[0]
        timestep = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(batch)
        inputs = [t.detach().contiguous().numpy() for t in (sample, timestep.contiguous(), context)]
        shapes = tuple(tuple(a.shape) for a in inputs)
        request = self.requests.get(shapes)
        if request is None:
            if WAIT_FOR_COMPILE:
                request = self.request(shapes)
            else:
                self.prepare(shapes)
                if not self.pending[shapes].done():
                    return None
                request = self.request(shapes)
        result = request.infer(inputs)
        return torch.from_numpy(result[0].copy())

    def prepare(self, shapes: tuple) -> None:
        """Compile for ``shapes`` in a background thread (``request`` waits for it)."""
        if shapes not in self.requests and shapes not in self.pending:
            self.pending[shapes] = _background(self._compile, shapes, max(1, torch.get_num_threads()))

    def request(self, shapes: tuple):
        """The infer request compiled for ``shapes`` (once per session and shapes)."""
        held = self.requests.get(shapes)
        if held is None and shapes in self.pending:
            held = self.pending.pop(shapes).result()
        if held is None:
            held = self._compile(shapes)
        self.requests[shapes] = held
        return held

    def _compile(self, shapes: tuple, threads: int | None = None):
        """The converted graph reshaped to ``shapes`` (static shapes run faster than dynamic ones), compiled
        for the CPU in float32 on ``threads`` (torch's count when None, read on the calling thread)."""
        import openvino

        counts["compilations"] += 1
        model = self.source.result().clone()
        model.reshape({i: openvino.PartialShape(list(s)) for i, s in enumerate(shapes)})
        config = {"INFERENCE_NUM_THREADS": threads or max(1, torch.get_num_threads()),
                  "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        return openvino.Core().compile_model(model, "CPU", config).create_infer_request()
