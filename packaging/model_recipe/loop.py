"""The training loop the recipe's stages share: resume, time budget, rate schedule, logging, checkpoints.

Each ``train_*.py`` builds its model, optimiser and data and writes one step function (``gen -> loss``);
``Loop`` does the rest the same way for all three:

- resume from ``<cache>/ckpt/<name>.pt`` (``model``, ``opt``, ``step``, ``seconds`` and any ``others`` such as
  the UNet's ``ema``), so a stage can run in several stretches;
- seed a fresh generator with ``seed + step``, so a resumed stretch does not replay the batches of the last;
- run until ``steps`` (this stretch) or the ``minutes`` of time budget are spent, whichever comes first;
- set the learning rate each step when the stage anneals it (``stretch_rate``): by steps when ``steps`` is
  given, else by elapsed time;
- zero the gradients, back-propagate, clip (optional), step the optimiser;
- append a JSON line to ``<cache>/logs/<name>.jsonl`` and print every ``log_every`` steps;
- save the checkpoint atomically every ``save_every`` seconds and once at the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

import checkpoints

Loss = torch.Tensor | tuple[torch.Tensor, Mapping[str, torch.Tensor | float]]


def stretch_rate(lr: float, lr_final: float | None, done: float) -> float:
    """The learning rate at fraction ``done`` of a training stretch: constant ``lr``, or with ``lr_final`` a
    cosine from ``lr`` down to ``lr_final`` (the annealing phase that a constant rate never has)."""
    if lr_final is None:
        return lr
    return lr_final + (lr - lr_final) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, done))))


def _value(x: torch.Tensor | float) -> float:
    return x.item() if isinstance(x, torch.Tensor) else float(x)


class Loop:
    """One stage's training loop. Building it resumes from the stage's checkpoint when there is one.

    ``lr``: the rate the schedule starts from; ``None`` leaves the optimiser's rate alone (the VAE trains at a
    constant rate, and a resumed optimiser keeps the rate it was saved with). ``lr_final``: anneal to this along
    a cosine over the stretch. ``others``: more modules saved and resumed under their own key. ``formats``:
    how to print the extra values a step reports beside its loss (default ``.4f``).
    """

    def __init__(self, name: str, cache: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, *,
                 others: Mapping[str, torch.nn.Module] | None = None, seed: int = 0, log_every: int = 50,
                 save_every: float = 300.0, lr: float | None = None, lr_final: float | None = None,
                 clip: float | None = None, formats: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time):
        self.name, self.model, self.opt = name, model, opt
        self.others = dict(others or {})
        self.seed, self.log_every, self.save_every = seed, log_every, save_every
        self.lr, self.lr_final, self.clip = lr, lr_final, clip
        self.formats = dict(formats or {})
        self.clock = clock
        self.ckpt_path = cache / "ckpt" / f"{name}.pt"
        self.log = checkpoints.Log(cache / "logs" / f"{name}.jsonl")
        self.step, self.seconds = 0, 0.0
        self.resumed = self._resume()

    def _resume(self) -> bool:
        state = checkpoints.load(self.ckpt_path)
        if not state:
            return False
        self.model.load_state_dict(state["model"])
        for key, module in self.others.items():
            module.load_state_dict(state[key])
        self.opt.load_state_dict(state["opt"])
        self.step, self.seconds = state["step"], state["seconds"]
        print(f"{self.name}: resumed at step {self.step} ({self.seconds / 60:.1f} min so far)")
        return True

    def save(self, seconds: float, **extra) -> None:
        """Write the checkpoint atomically: ``model``, the ``others``, ``opt``, ``step``, ``seconds``, extras."""
        state = {"model": self.model.state_dict()}
        state.update({key: module.state_dict() for key, module in self.others.items()})
        checkpoints.save(self.ckpt_path, **state, opt=self.opt.state_dict(), step=self.step, seconds=seconds,
                         **extra)

    def run(self, train_step: Callable[[torch.Generator], Loss], minutes: float, steps: int | None = None, *,
            after_step: Callable[[int], None] | None = None,
            evaluate: Callable[[], Mapping[str, float]] | None = None) -> Path:
        """Train for ``minutes`` (or ``steps`` more steps), then save and return the checkpoint's path.

        ``train_step(gen)`` draws a batch with ``gen`` and returns its loss (or the loss and a mapping of extra
        values to log); ``after_step(step)`` runs after each optimiser step (the UNet's EMA); ``evaluate()``
        runs once at the end, and its values are logged and stored in the final checkpoint.
        """
        gen = torch.Generator().manual_seed(self.seed + self.step)
        start = last_save = self.clock()
        target = steps or 10**9
        first_step = self.step
        self.model.train()
        while self.step < target and (self.clock() - start) < minutes * 60:
            done = ((self.step - first_step) / steps) if steps else (self.clock() - start) / (minutes * 60)
            rate = None if self.lr is None else stretch_rate(self.lr, self.lr_final, done)
            if rate is not None:
                for group in self.opt.param_groups:
                    group["lr"] = rate
            out = train_step(gen)
            loss, extra = out if isinstance(out, tuple) else (out, {})
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.opt.step()
            self.step += 1
            if after_step is not None:
                after_step(self.step)
            if self.step % self.log_every == 0:
                self._report(loss, extra, rate, self.seconds + self.clock() - start)
            if self.clock() - last_save > self.save_every:
                self.save(self.seconds + self.clock() - start)
                last_save = self.clock()
        self.seconds += self.clock() - start
        results = dict(evaluate()) if evaluate is not None else {}
        if results:
            self.log.write(step=self.step, **results, seconds=self.seconds)
        self.save(self.seconds, **results)
        print(f"{self.name}: saved at step {self.step}, {self.seconds / 60:.1f} min of training", flush=True)
        return self.ckpt_path

    def _report(self, loss: torch.Tensor, extra: Mapping, rate: float | None, elapsed: float) -> None:
        values = {key: _value(value) for key, value in extra.items()}
        row = dict(step=self.step, loss=loss.item(), **values, seconds=elapsed)
        line = f"{self.name} step {self.step} loss {row['loss']:.4f}"
        line += "".join(f" {key} {value:{self.formats.get(key, '.4f')}}" for key, value in values.items())
        if rate is not None:
            row["lr"] = rate
            line += f" lr {rate:.2e}"
        self.log.write(**row)
        print(f"{line} {elapsed / 60:.1f} min", flush=True)
