"""LoRA training on a diffusers Stable Diffusion pipeline (the embedded model, SD1.x/2.x). No Qt.

``train(config, emit, control)`` runs a job: events (plain dicts, JSON-ready) go to ``emit``; ``control()`` is
polled once per step and returns None, "pause" or "cancel". Pause and cancel save a checkpoint and return;
``resume=True`` continues from the job's checkpoint. Each step draws its noise, timesteps and images from a
generator seeded by (seed, step), so a resumed run repeats an uninterrupted one.

The loop runs on ``accelerate`` (accelerated.py): mixed precision, gradient accumulation (``accumulate``
micro-batches per step), DDP when accelerate's launcher starts several processes (launch.py), checkpoints by
``save_state``/``load_state``. A step's batch is batch_size x accumulate x processes images, drawn as a whole,
so the same global batch gives the same LoRA however it is split.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

from desktop_app import paths
from desktop_app.training import accelerated, checkpoint, dataset, export
from desktop_app.training.config import TrainConfig, job_path
from desktop_app.training.support import check_model
from desktop_app.training.errors import TrainingError  # noqa: F401 - re-exported

Emit = Callable[[dict], None]
UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_TARGETS = {"clip": ["q_proj", "k_proj", "v_proj", "out_proj"], "bert": ["query", "key", "value"]}
DISK_MARGIN = 64 * 2**20


def job_dir(name: str, create: bool = True) -> Path:
    """Where a job keeps its config, checkpoint, samples and class images. The name is checked first
    (RequestError for a path, '..', control characters...), so nothing is made outside the user folder."""
    folder = job_path(name)
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_disk(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN:
        raise TrainingError("disk", f"not enough free disk in {folder} for checkpoints: "
                                    f"{free / 2**20:.0f} MB free, {(needed + DISK_MARGIN) / 2**20:.0f} MB needed")


def step_generator(seed: int, step: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device).manual_seed((seed * 1_000_003 + step) % 2**63)


def train(config: TrainConfig, emit: Emit, control: Callable[[], str | None] = lambda: None,
          resume: bool = False) -> dict:
    """Run (or resume) the job; returns the last event (finished, paused or cancelled). DatasetError and
    RequestError for bad input before training starts; TrainingError when it stops on NaN or disk. Under
    accelerate's launcher every process runs this; only the main one emits events (and writes files)."""
    from desktop_app.engine import device as devices

    started = time.perf_counter()
    check_model(config.model)  # SDXL and other families the loop cannot train: refused before anything is made
    folder = job_dir(config.name)
    accelerator = accelerated.make(str(devices.choose_device(config.device)), config.mixed_precision,
                                   config.accumulate)
    try:
        return _run(config, emit if accelerator.is_main_process else _silent, control, resume, accelerator,
                    folder, started)
    finally:
        accelerated.reset()


def _silent(event: dict) -> None:
    """Processes other than the main one report nothing (one loss curve, one progress bar)."""


def _run(config: TrainConfig, emit: Emit, control: Callable[[], str | None], resume: bool, accelerator,
         folder: Path, started: float) -> dict:
    from diffusers import DDPMScheduler
    from diffusers.training_utils import cast_training_params, compute_snr
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import set_peft_model_state_dict

    from desktop_app.models import model_folder
    from desktop_app.errors import RequestError
    from desktop_app.engine.loader import load_model
    from desktop_app.models.model_hash import model_hash

    main = accelerator.is_main_process
    # 1. the dataset, checked before anything heavy loads
    scan = dataset.scan(config.images)
    for path, reason in scan.unusable:
        emit({"event": "unusable", "path": str(path), "reason": reason})
    for warning in scan.warnings:
        emit({"event": "warning", "message": warning})
    dataset.check_ready(scan, config.batch_size)
    data_hash = dataset.dataset_hash(scan.usable)
    state = checkpoint.load(folder) if resume else None
    resume_from = checkpoint.existing(folder) if state is not None else None
    if resume and state is None:
        emit({"event": "warning", "message": f"no checkpoint in {folder}; starting from step 0"})
    if main:
        config.save(folder / "config.json")

    # 2. the model, frozen, in the weight dtype; LoRA adapters in float32
    device = accelerator.device
    mixed = accelerator.mixed_precision
    weight_dtype = accelerated.weight_dtype(mixed, device.type)
    if config.train_text_encoder and model_folder.is_embedded(model_folder.read_index(
            model_folder.check_folder(config.model))):
        raise RequestError("train_text_encoder", "the embedded model's text encoder (MiniLM) cannot take a LoRA "
                                                 "that diffusers loads back (its loader reads CLIP text encoders "
                                                 "only); train the U-Net alone for this model")
    model = load_model(config.model, device, weight_dtype)
    pipe = model.pipe
    unet, vae, text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
    noise_scheduler = DDPMScheduler.from_config(model.base_scheduler_config)
    prediction = noise_scheduler.config.prediction_type

    # 3. class images for prior preservation, drawn by the base model before the adapters exist (main first)
    class_items = []
    if config.prior_preservation:
        with accelerator.main_process_first():
            class_items = _class_images(config, pipe, folder, emit)

    torch.manual_seed(config.seed)  # the adapters' gaussian initialisation: the same seed, the same LoRA
    unet.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.rank, init_lora_weights="gaussian",
                                target_modules=UNET_TARGETS))
    text_kind = "bert" if type(text_encoder).__name__.startswith("Bert") else "clip"
    if config.train_text_encoder:
        # peft directly (transformers' add_adapter wants a newer peft); diffusers loads text encoder LoRAs so too
        inject_adapter_in_model(LoraConfig(r=config.rank, lora_alpha=config.rank, init_lora_weights="gaussian",
                                           target_modules=TEXT_TARGETS[text_kind]), text_encoder)
    trained = [unet] + ([text_encoder] if config.train_text_encoder else [])
    cast_training_params(trained, torch.float32)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    params = [p for m in trained for p in m.parameters() if p.requires_grad]
    text_params = [p for p in text_encoder.parameters() if p.requires_grad] if config.train_text_encoder else []
    lora_bytes = sum(p.numel() for p in params) * 4
    sample_rounds = 1 + (config.steps // config.sample_every if config.sample_every else 0)
    # the checkpoint (LoRA + two Adam moments, and its staged copy), both LoRA files, ~64 KB per sample round
    check_disk(folder, lora_bytes * 6 + sample_rounds * 64 * 1024)
    # accelerate: DDP around the U-Net with several processes, autocast and the gradient scaler
    unet_ddp, optimizer = accelerator.prepare(unet, _optimizer(config, params))

    # 4. pixels to latents once (centre crop), prompts to embeddings once (unless the text encoder learns)
    prompt = dataset.instance_prompt(config.token, config.class_word)
    items = [(item.path, item.caption or prompt) for item in scan.usable]
    cached = config.crop == "center"
    latent_cache = [_encode(vae, [p], config, None, device, weight_dtype) for p, _ in items] if cached else []
    first_latent = latent_cache[0] if cached else _encode(vae, [items[0][0]], config, None, device, weight_dtype)
    shape = tuple(first_latent[0].shape[1:])  # (channels, height, width) of one latent
    class_latents = [_encode(vae, [p], config, None, device, weight_dtype) for p in class_items]
    class_text = _embed(pipe, [dataset.class_prompt(config.class_word)], device)[0] if class_items else None
    texts = {t for _, t in items}
    text_cache = {} if config.train_text_encoder else {t: _embed(pipe, [t], device)[0] for t in texts}

    # 5. resume
    step, losses, elapsed_before = 0, [], 0.0
    if state is not None:
        set_peft_model_state_dict(unet, state["unet"])
        if config.train_text_encoder and state.get("text_encoder"):
            set_peft_model_state_dict(text_encoder, state["text_encoder"])
        cast_training_params(trained, torch.float32)
        if resume_from.is_dir():
            accelerated.load(accelerator, resume_from)  # optimizer, scaler, RNG
        else:  # a single-file checkpoint from before accelerate
            optimizer.load_state_dict(state["optimizer"])
            if accelerator.scaler is not None and state.get("scaler"):
                accelerator.scaler.load_state_dict(state["scaler"])
        step, losses, elapsed_before = int(state["step"]), list(state["losses"]), float(state["elapsed"])
        if state.get("dataset_hash") != data_hash:
            emit({"event": "warning", "message": "the images changed since the checkpoint; training goes on "
                                                 "with the new ones"})
    processes, micro = accelerator.num_processes, config.batch_size
    emit({"event": "started", "step": step, "total": config.steps, "images": len(items), "device": str(device),
          "dtype": str(weight_dtype).removeprefix("torch."), "prediction": prediction, "job_dir": str(folder),
          "instance_prompt": prompt, "resumed": state is not None, "mixed_precision": mixed,
          "processes": processes, "accumulate": config.accumulate,
          "batch": micro * config.accumulate * processes})

    def save_state() -> Path | None:
        return accelerated.save(accelerator, folder, {
            "step": step, "losses": losses, "elapsed": elapsed_before + time.perf_counter() - started,
            "unet": export.peft_state(unet), "dataset_hash": data_hash,
            "text_encoder": export.peft_state(text_encoder) if config.train_text_encoder else {}})

    # 6. the loop: each step draws its whole batch (every process, every micro-batch) from one generator seeded
    # by (seed, step), then this process trains on its share; so one process with batch 4, four micro-batches
    # of 1 and two processes of 2 all see the same images, noise and timesteps
    for module in trained:
        module.train()
    total_batch = micro * config.accumulate * processes
    loop_start, loop_start_step = time.perf_counter(), step
    while step < config.steps:
        command = accelerated.agree(accelerator, control())
        if command in ("pause", "cancel"):
            saved = save_state()
            event = {"event": "paused" if command == "pause" else "cancelled", "step": step,
                     "checkpoint": str(saved)}
            emit(event)
            return event
        draw = _draw(step_generator(config.seed, step + 1), total_batch, len(items), shape,
                     len(class_items), noise_scheduler.config.num_train_timesteps, config.noise_offset)
        step_loss = torch.zeros((), device=device)
        for k in range(config.accumulate):
            first = (k * processes + accelerator.process_index) * micro
            share = slice(first, first + micro)
            with accelerator.accumulate(unet_ddp):
                picks = draw["picks"][share].tolist()
                if cached:
                    latents = [latent_cache[i] for i in picks]
                else:
                    latents = [_encode(vae, [items[i][0]], config, random.Random(
                        (config.seed * 7919 + step) * 100_003 + first + j), device, weight_dtype)
                        for j, i in enumerate(picks)]
                latents = torch.cat([m + s * e for (m, s), e in zip(latents, draw["eps"][share])])
                item_texts = [items[i][1] for i in picks]
                rows = [share]
                if class_items:
                    chosen = [class_latents[i] for i in draw["class_picks"][share].tolist()]
                    latents = torch.cat([latents] + [m + s * e for (m, s), e in
                                                     zip(chosen, draw["class_eps"][share])])
                    rows.append(slice(total_batch + first, total_batch + first + micro))
                noise = torch.cat([draw["noise"][r] for r in rows])
                if config.noise_offset:
                    noise = noise + config.noise_offset * torch.cat([draw["offset"][r] for r in rows])
                timesteps = torch.cat([draw["timesteps"][r] for r in rows]).to(device)
                latents, noise = latents.to(device), noise.to(device)
                with accelerator.autocast():
                    if config.train_text_encoder:
                        embeds = _embed(pipe, item_texts, device, grad=True)
                    else:
                        embeds = torch.stack([text_cache[t] for t in item_texts])
                    if class_items:
                        embeds = torch.cat([embeds, class_text.unsqueeze(0).expand(micro, -1, -1)])
                    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                    target = noise_scheduler.get_velocity(latents, noise, timesteps) \
                        if prediction == "v_prediction" else noise
                    predicted = unet_ddp(noisy.to(weight_dtype), timesteps, embeds.to(weight_dtype)).sample
                per_item = F.mse_loss(predicted.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
                if config.snr_gamma:
                    snr = compute_snr(noise_scheduler, timesteps)
                    weights = torch.clamp(snr, max=config.snr_gamma)
                    per_item = per_item * (weights / (snr + 1) if prediction == "v_prediction" else weights / snr)
                loss = per_item[:micro].mean()
                if class_items:
                    loss = loss + config.prior_weight * per_item[micro:].mean()
                if config.inject_nan_at and step + 1 == config.inject_nan_at:
                    loss = loss * float("nan")
                accelerator.backward(loss)  # divided by the accumulation; DDP averages over the processes
                if text_params and processes > 1 and accelerator.sync_gradients:
                    for p in text_params:  # the text encoder runs outside DDP (the pipeline calls it)
                        if p.grad is not None:
                            p.grad = accelerator.reduce(p.grad, "mean")
                # a non-finite gradient (the same on every process: DDP averaged it) never reaches the LoRA:
                # the step is skipped, and the loss check below stops the run with the last good checkpoint
                if not accelerator.sync_gradients or _finite(params):
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step_loss = step_loss + loss.detach().float() / config.accumulate
        if processes > 1:
            step_loss = accelerator.reduce(step_loss, "mean")  # the loss of the whole batch, the same everywhere
        if not torch.isfinite(step_loss):
            kept = checkpoint.existing(folder)
            kept_text = "no checkpoint was saved yet"
            if kept is not None:
                kept_text = f"the last good checkpoint (step {checkpoint.saved_step(folder)}) is kept in {kept}"
            message = (f"the loss became {step_loss.item()} at step {step + 1}: training stopped; {kept_text}. "
                       "Lower the learning rate (or turn off fp16) and resume or start again.")
            error = TrainingError("nan", message)
            emit({"event": "failed", "kind": error.kind.value, "reason": error.reason, "step": step + 1,
                  "message": message})
            raise error
        step += 1
        losses.append([step, round(step_loss.item(), 6)])
        now = time.perf_counter()
        rate = (step - loop_start_step) / max(now - loop_start, 1e-9)
        elapsed = elapsed_before + now - started
        emit({"event": "step", "step": step, "total": config.steps, "loss": losses[-1][1],
              "elapsed": round(elapsed, 3), "eta": round((config.steps - step) / rate, 3) if rate else None})
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps:
            emit({"event": "checkpoint", "step": step, "path": str(save_state())})
        if config.sample_every and step % config.sample_every == 0 and step < config.steps:
            if main:
                emit({"event": "sample", "step": step,
                      "paths": _samples(config, pipe, folder, step, device, prompt)})
            accelerator.wait_for_everyone()

    # 7. the result: LoRA files, final samples, the originality check (the main process)
    for module in trained:
        module.eval()
    event = {"event": "finished", "step": step}
    if main:
        sample_paths = _samples(config, pipe, folder, step, device, prompt)
        emit({"event": "sample", "step": step, "paths": sample_paths})
        date = datetime.now(timezone.utc).isoformat(timespec="seconds")
        meta = export.metadata(config, model.display_name, model_hash(model.path), data_hash, len(items), step,
                               date, text_kind == "clip")
        files = export.save_lora(paths.loras_dir(), config.name, unet,
                                 text_encoder if config.train_text_encoder else None, meta,
                                 kohya_text_encoder=text_kind == "clip")
    save_state()
    if main:
        from desktop_app.training.originality import nearest

        report = nearest(sample_paths, [path for path, _ in items])
        event.update({"files": files, "samples": sample_paths, "originality": report,
                      "elapsed": round(elapsed_before + time.perf_counter() - started, 3),
                      "trigger": config.token, "losses": losses[-5:]})
    emit(event)
    return event


def _draw(gen: torch.Generator, count: int, images: int, shape, class_images: int, timesteps: int,
          noise_offset: float) -> dict:
    """Every random number of one step's whole batch (``count`` items; class rows after them), in a fixed order."""
    rows = count * (2 if class_images else 1)
    rounds = -(-count // images)  # a batch larger than the folder takes every image before repeating one
    draw = {"picks": torch.cat([torch.randperm(images, generator=gen) for _ in range(rounds)])[:count],
            "eps": torch.randn((count, *shape), generator=gen)}
    if class_images:
        draw["class_picks"] = torch.randint(class_images, (count,), generator=gen)
        draw["class_eps"] = torch.randn((count, *shape), generator=gen)
    draw["noise"] = torch.randn((rows, *shape), generator=gen)
    if noise_offset:
        draw["offset"] = torch.randn((rows, shape[0], 1, 1), generator=gen)
    draw["timesteps"] = torch.randint(0, timesteps, (rows,), generator=gen)
    return draw


# ---- pieces -------------------------------------------------------------------------------------------------


def _optimizer(config: TrainConfig, params: list) -> torch.optim.Optimizer:
    if config.use_8bit_adam:
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=config.learning_rate)
        except Exception:  # noqa: BLE001 - bitsandbytes fails in many ways off CUDA: plain AdamW then
            pass
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=1e-2)


def _encode(vae, paths_: list[Path], config: TrainConfig, rng, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the VAE's latent distribution, scaled by the VAE's scaling factor."""
    import numpy as np

    crop = config.crop if rng is not None else "center"
    images = [dataset.prepare(p, config.resolution, crop, rng) for p in paths_]
    pixels = torch.stack([torch.from_numpy(np.asarray(i, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
                          for i in images]).to(device, dtype)
    with torch.no_grad():
        dist = vae.encode(pixels).latent_dist
    scale = vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((dist.mean.float() - shift) * scale).cpu(), (dist.std.float() * scale).cpu()


def _sample(moments: tuple[torch.Tensor, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    mean, std = moments
    return mean + std * torch.randn(mean.shape, generator=gen)


def _embed(pipe, texts: list[str], device, grad: bool = False) -> torch.Tensor:
    """Prompt embeddings exactly as the pipeline makes them at generation time (attention mask included)."""
    with torch.set_grad_enabled(grad):
        embeds, _ = pipe.encode_prompt(texts, device, 1, False)
    return embeds if grad else embeds.detach()


def _class_images(config: TrainConfig, pipe, folder: Path, emit: Emit) -> list[Path]:
    """Class images by the base model (cached in the job folder; existing ones are reused)."""
    out = folder / "class_images"
    out.mkdir(exist_ok=True)
    have = sorted(out.glob("*.png"))[: config.class_images]
    prompt = dataset.class_prompt(config.class_word)
    for k in range(len(have), config.class_images):
        generator = torch.Generator("cpu").manual_seed(config.seed + 10_000 + k)
        with torch.no_grad():
            image = pipe(prompt, width=config.resolution, height=config.resolution,
                         num_inference_steps=config.sample_steps, generator=generator).images[0]
        path = out / f"class-{k:04d}.png"
        image.save(path)
        have.append(path)
        emit({"event": "class_image", "index": k + 1, "total": config.class_images, "path": str(path)})
    return have


def _samples(config: TrainConfig, pipe, folder: Path, step: int, device, prompt: str, count: int = 2) -> list[str]:
    """Images for the validation prompt with fixed seeds (the same at every step, so they can be compared)."""
    out = folder / "samples"
    out.mkdir(exist_ok=True)
    text = config.sample_prompt.strip() or prompt
    unet = pipe.unet
    was_training = unet.training
    unet.eval()
    written = []
    with torch.no_grad():
        for k in range(count):
            generator = torch.Generator("cpu").manual_seed(config.seed + k)
            image = pipe(text, width=config.resolution, height=config.resolution,
                         num_inference_steps=config.sample_steps, generator=generator).images[0]
            path = out / f"step-{step:06d}-{k}.png"
            image.save(path)
            written.append(str(path))
    unet.train(was_training)
    return written


def _finite(params) -> bool:
    """Whether every gradient of ``params`` is finite (no NaN or inf)."""
    return all(bool(torch.isfinite(p.grad).all()) for p in params if p.grad is not None)
