"""The model recipe's shared training loop (packaging/model_recipe/loop.py) on a tiny linear model, on CPU."""

import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

RECIPE = Path(__file__).resolve().parents[2] / "packaging" / "model_recipe"
sys.path.insert(0, str(RECIPE))

import checkpoints  # noqa: E402
from loop import Loop, stretch_rate  # noqa: E402


class Clock:
    """A clock that moves only when a step says so, so the time budget is exact."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tiny(lr: float = 0.1):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=lr)


def fit_step(model, seen=None, clock=None, tick=0.0):
    """A step on y = x . (1, 2, 3): records the optimiser's rate and the first draw of the generator."""
    w = torch.tensor([[1.0, 2.0, 3.0]])

    def step(gen):
        x = torch.randn(8, 3, generator=gen)
        if seen is not None:
            seen.append(x[0, 0].item())
        if clock is not None:
            clock.now += tick
        return torch.nn.functional.mse_loss(model(x), x @ w.T)

    return step


def test_steps_train_log_and_save(tmp_path, capsys):
    model, opt = tiny()
    loop = Loop("toy", tmp_path, model, opt, log_every=2)
    assert not loop.resumed and loop.step == 0
    first = torch.nn.functional.mse_loss(model(torch.eye(3)), torch.tensor([[1.0], [2.0], [3.0]])).item()
    path = loop.run(fit_step(model), minutes=10, steps=40)
    assert path == tmp_path / "ckpt" / "toy.pt"
    state = checkpoints.load(path)
    assert set(state) == {"model", "opt", "step", "seconds"}
    assert state["step"] == 40
    last = torch.nn.functional.mse_loss(model(torch.eye(3)), torch.tensor([[1.0], [2.0], [3.0]])).item()
    assert last < first / 10, "the optimiser stepped"
    rows = [json.loads(line) for line in (tmp_path / "logs" / "toy.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(2, 41, 2))
    assert list(rows[0]) == ["step", "loss", "seconds", "time"], "no lr column when the loop leaves the rate alone"
    out = capsys.readouterr().out
    assert "toy step 2 loss " in out and "toy: saved at step 40" in out


def test_resumes_at_the_saved_step_with_the_next_seed(tmp_path):
    model, opt = tiny()
    Loop("toy", tmp_path, model, opt, seed=1000).run(fit_step(model), minutes=10, steps=3)
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    model2, opt2 = tiny(lr=0.5)  # fresh weights and another rate: the checkpoint's win
    loop = Loop("toy", tmp_path, model2, opt2, seed=1000)
    assert loop.resumed and loop.step == 3
    for key, value in model2.state_dict().items():
        assert torch.equal(value, saved[key])
    assert opt2.param_groups[0]["lr"] == 0.1, "the optimiser state (and its rate) came back"
    seen = []
    loop.run(fit_step(model2, seen), minutes=10, steps=5)
    assert loop.step == 5 and checkpoints.load(loop.ckpt_path)["step"] == 5
    expected = torch.randn(8, 3, generator=torch.Generator().manual_seed(1003))[0, 0].item()
    assert seen[0] == expected, "a resumed stretch seeds its generator with seed + step"


def test_an_old_checkpoint_with_extra_modules_resumes(tmp_path):
    model, opt = tiny()
    ema = torch.nn.Linear(3, 1)
    torch.nn.init.constant_(ema.weight, 7.0)
    # the layout train_unet.py wrote before the shared loop
    checkpoints.save(tmp_path / "ckpt" / "unet.pt", model=model.state_dict(), ema=ema.state_dict(),
                     opt=opt.state_dict(), step=120, seconds=90.0)
    model2, opt2 = tiny()
    ema2 = torch.nn.Linear(3, 1)
    loop = Loop("unet", tmp_path, model2, opt2, others={"ema": ema2})
    assert (loop.step, loop.seconds) == (120, 90.0)
    assert torch.equal(ema2.weight, ema.weight)
    loop.run(fit_step(model2), minutes=10, steps=121)
    state = checkpoints.load(loop.ckpt_path)
    assert set(state) == {"model", "ema", "opt", "step", "seconds"} and state["step"] == 121
    assert state["seconds"] >= 90.0


def test_stops_on_the_time_budget_and_checkpoints(tmp_path):
    clock = Clock()
    model, opt = tiny()
    loop = Loop("toy", tmp_path, model, opt, save_every=25, clock=clock)
    on_disk = []

    def step(gen):
        state = checkpoints.load(loop.ckpt_path)
        on_disk.append(state["step"] if state else None)
        return fit_step(model, clock=clock, tick=10.0)(gen)

    loop.run(step, minutes=1)  # 10 s a step, a 60 s budget
    state = checkpoints.load(loop.ckpt_path)
    assert state["step"] == 6 and state["seconds"] == pytest.approx(60.0)
    assert on_disk == [None, None, None, 3, 3, 3], "a checkpoint every save_every seconds on the way"
    # the next stretch adds to the time already trained
    model2, opt2 = tiny()
    loop2 = Loop("toy", tmp_path, model2, opt2, clock=clock)
    loop2.run(fit_step(model2, clock=clock, tick=10.0), minutes=0.5)
    state = checkpoints.load(loop.ckpt_path)
    assert state["step"] == 9 and state["seconds"] == pytest.approx(90.0)


def test_the_rate_follows_the_cosine_by_steps(tmp_path):
    model, opt = tiny()
    rates = []

    def step(gen):
        rates.append(opt.param_groups[0]["lr"])
        return fit_step(model)(gen)

    loop = Loop("toy", tmp_path, model, opt, lr=1.0, lr_final=0.0, log_every=1)
    loop.run(step, minutes=10, steps=4)
    assert rates == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 - math.cos(math.pi / 4))])
    rows = checkpoints.Log(tmp_path / "logs" / "toy.jsonl").rows()
    assert [r["lr"] for r in rows] == pytest.approx(rates)


def test_the_rate_follows_the_cosine_by_time_and_stays_constant_without_a_final_rate(tmp_path):
    clock = Clock()
    model, opt = tiny()
    rates = []

    def step(gen):
        rates.append(opt.param_groups[0]["lr"])
        return fit_step(model, clock=clock, tick=15.0)(gen)

    Loop("toy", tmp_path, model, opt, lr=0.2, lr_final=0.1, clock=clock).run(step, minutes=1)
    assert rates == pytest.approx([stretch_rate(0.2, 0.1, d) for d in (0, 0.25, 0.5, 0.75)])
    assert rates[0] == pytest.approx(0.2) and rates[2] == pytest.approx(0.15)

    model, opt = tiny()
    rates.clear()
    Loop("flat", tmp_path, model, opt, lr=0.3, clock=clock).run(step, minutes=1)
    assert rates == pytest.approx([0.3] * 4)


def test_after_step_extras_and_evaluate(tmp_path, capsys):
    model, opt = tiny()
    after = []

    def step(gen):
        return fit_step(model)(gen), {"kl": torch.tensor(1234.5678)}

    loop = Loop("vae", tmp_path, model, opt, log_every=2, formats={"kl": ".1f"}, clip=1e-3)
    before = model.weight.detach().clone()
    loop.run(step, minutes=10, steps=2, after_step=after.append, evaluate=lambda: {"val_psnr": 21.5})
    assert after == [1, 2]
    assert (model.weight - before).norm() <= 2 * 0.1 * 1e-3 + 1e-7, "gradients clipped to the given norm"
    rows = loop.log.rows()
    assert list(rows[0])[:4] == ["step", "loss", "kl", "seconds"] and rows[0]["kl"] == pytest.approx(1234.5678)
    assert rows[-1]["val_psnr"] == 21.5 and rows[-1]["step"] == 2
    assert checkpoints.load(loop.ckpt_path)["val_psnr"] == 21.5
    assert re.search(r"^vae step 2 loss \d+\.\d{4} kl 1234\.6 \d+\.\d min$", capsys.readouterr().out, re.M)
