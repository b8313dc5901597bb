"""The shared training engine: one checkpoint layout, the resume check, the step loop."""

from __future__ import annotations

import json
import os

import pytest
import torch

from egoframe.engine import (
    Checkpoints,
    Ema,
    GeneratorState,
    LossLog,
    ModuleState,
    TrainableState,
    TrainState,
    check_resumable,
    run_steps,
)
from egoframe.errors import ConfigError, TrainingDivergedError


def _run(out, steps, kill_after=None):
    """A tiny regression trained with the engine; killed (KeyboardInterrupt) right after step ``kill_after``."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    model[0].weight.requires_grad_(False)  # a frozen part: not in the trainable file
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    ema = Ema(model, 0.9)
    generator = torch.Generator().manual_seed(1)
    saver = Checkpoints(os.path.join(out, "checkpoints"), keep=2)
    state = TrainState(tensors={"trainable": TrainableState(model), "ema": ema, "gen": GeneratorState(generator)},
                       optimizer=optimizer, scheduler=scheduler)
    log = LossLog(os.path.join(out, "losses.jsonl"))
    first = saver.load(saver.latest(), state)["step"] if saver.latest() else 0
    log.resume(first)

    def step_fn(step):
        x = torch.randn(16, 3, generator=generator)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()  # dropout uses the global RNG: restored too
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        ema.update(model, step)
        return float(loss.detach()), {"lr": scheduler.get_last_lr()[0]}

    def after(done, loss):
        if done == kill_after:
            raise KeyboardInterrupt

    os.makedirs(out, exist_ok=True)
    run_steps(step_fn, first, steps, log=log, checkpoint=lambda d: saver.save(d, state, note="x"),
              checkpoint_every=2, checkpoint_at_end=True, after_step=after)
    return model, LossLog.read(os.path.join(out, "losses.jsonl")), saver


def test_a_killed_run_resumes_exactly_and_keeps_the_last_checkpoints(tmp_path):
    whole, expected, saver = _run(str(tmp_path / "a"), 7)
    assert [r["step"] for r in expected] == list(range(1, 8)) and "lr" in expected[0]
    assert sorted(os.listdir(saver.root)) == ["step-00000006", "step-00000007"]  # keep=2; one at the end
    with pytest.raises(KeyboardInterrupt):
        _run(str(tmp_path / "b"), 7, kill_after=5)  # steps 1-5 logged, checkpoint at 4
    assert len(LossLog.read(str(tmp_path / "b" / "losses.jsonl"))) == 5
    resumed, got, saver_b = _run(str(tmp_path / "b"), 7)
    assert got == expected  # step 5 dropped on resume and recomputed identically
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    record = json.load(open(os.path.join(saver_b.latest(), "state.json")))
    assert record["step"] == 7 and record["note"] == "x" and "lr_scheduler" in record


def test_a_half_written_checkpoint_is_never_read(tmp_path):
    saver = Checkpoints(str(tmp_path / "c"))
    model = torch.nn.Linear(2, 2)
    saver.save(3, TrainState(tensors={"model": ModuleState(model)}, rng=False))
    os.makedirs(tmp_path / "c" / "step-00000009.tmp-123")  # a kill during the write of step 9
    os.makedirs(tmp_path / "c" / "step-00000010")  # no state.json: not complete
    assert os.path.basename(saver.latest()) == "step-00000003"
    single = Checkpoints(str(tmp_path / "s"), single=True)
    assert single.latest() is None
    single.save(1, TrainState(tensors={"model": ModuleState(model)}))
    single.save(2, TrainState(tensors={"model": ModuleState(model)}))
    assert single.latest() == str(tmp_path / "s") and json.load(open(tmp_path / "s" / "state.json"))["step"] == 2


def test_a_checkpoint_of_another_model_is_refused_in_one_line(tmp_path):
    saver = Checkpoints(str(tmp_path / "c"))
    saver.save(1, TrainState(tensors={"model": ModuleState(torch.nn.Linear(2, 2))}))
    other = TrainState(tensors={"model": ModuleState(torch.nn.Linear(3, 2))})
    with pytest.raises(ConfigError, match="does not fit this model"):
        saver.load(saver.latest(), other)
    with pytest.raises(ConfigError, match="does not fit this model"):
        saver.load(saver.latest(), TrainState(tensors={"ema": Ema(torch.nn.Linear(2, 2), 0.9)}))


def test_check_resumable_names_what_changed():
    check_resumable({"lr": 1, "steps": 5}, {"lr": 1, "steps": 9}, "run", free=("steps",))
    with pytest.raises(ConfigError, match="lr changed"):
        check_resumable({"lr": 1, "steps": 5}, {"lr": 2, "steps": 5}, "run")
    check_resumable({"data": 1, "optim": 1}, {"data": 1, "optim": 2}, "run", only=("data",))
    check_resumable({"betas": (0.9, 0.99)}, {"betas": [0.9, 0.99]}, "run")  # compared as JSON


def test_a_diverging_loss_stops_with_advice():
    with pytest.raises(TrainingDivergedError, match="at step 2: lower the lr"):
        run_steps(lambda s: float("nan") if s == 1 else 1.0, 0, 5, advice="lower the lr")
