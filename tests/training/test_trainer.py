import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from egoframe.errors import ConfigError
from egoframe.training.trainer import LegoDenoiser, build_pipeline, read_losses, train
from tests.training.conftest import train_config


def test_conditioning_modules_are_in_the_optimizer_and_change(pairs_dir, vllm_cache, tmp_path):
    from safetensors.torch import load_file

    from egoframe.training.data import PairSource
    from egoframe.training.trainer import _optimizer

    config = train_config(pairs_dir, tmp_path / "run", cache=vllm_cache)
    source = PairSource(pairs_dir, "train", 32, vllm_cache, need_vllm=True)
    initial = build_pipeline(config, source.cache)
    denoiser = LegoDenoiser(initial.unet, initial.conditioning)
    held = {id(p) for group in _optimizer(config, [p for p in denoiser.parameters() if p.requires_grad]).param_groups
            for p in group["params"]}
    cond_params = list(initial.conditioning.named_parameters())
    assert {n.split(".")[0] for n, _ in cond_params} == {"image_proj", "text_proj", "text_transformer"}  # σ, μ, π
    assert all(id(p) in held for _, p in cond_params)

    result = train(config, progress=False)
    trained = load_file(os.path.join(tmp_path / "run", "checkpoints", "step-00000003", "model.safetensors"))
    for name, before in cond_params:
        after = trained[f"conditioning.{name}"]
        assert not torch.equal(before.detach(), after), f"{name} did not change"
    assert result.steps == 3
    # The exported model loads back through the normal path with the trained conditioning (EMA weights).
    from egoframe.pipelines.loading import load_pipeline

    pipe = load_pipeline(result.model_dir)
    assert pipe.conditioning.config.use_image_tokens
    assert os.path.exists(os.path.join(result.model_dir, "train_config.json"))
    assert os.path.exists(tmp_path / "run" / "samples" / "final.png")


def _write_yaml(config, path):
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def _run_cli(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "egoframe.cli.main", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_sigkill_and_resume_matches_uninterrupted_run(pairs_dir, tmp_path):
    base = train_config(pairs_dir, tmp_path / "a", ablation="descriptions", max_steps=10)
    base.log.checkpoint_every = 2
    straight = _write_yaml(base, tmp_path / "straight.yaml")
    out = _run_cli(["train", "--config", str(straight), "--quiet"])
    assert out.wait(timeout=600) == 0, out.stderr.read()
    expected = read_losses(str(tmp_path / "a"))
    assert [s for s, _ in expected] == list(range(1, 11))

    interrupted = base.model_copy(deep=True)
    interrupted.log.out_dir = str(tmp_path / "b")
    cfg = _write_yaml(interrupted, tmp_path / "interrupted.yaml")
    kill_after = random.Random().randint(3, 8)
    proc = _run_cli(["train", "--config", str(cfg), "--quiet"])
    losses = tmp_path / "b" / "losses.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline:
        if losses.exists() and len(losses.read_text().splitlines()) >= kill_after:
            break
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be killed: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(losses.read_text().splitlines()) < 10
    resumed = _run_cli(["train", "--config", str(cfg), "--resume", "--quiet"])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    got = read_losses(str(tmp_path / "b"))
    assert got == expected  # same steps, bit-identical losses


def test_two_processes_train_the_same_model(pairs_dir, tmp_path):
    config = train_config(pairs_dir, tmp_path / "ddp", ablation="descriptions", max_steps=2)
    cfg = _write_yaml(config, tmp_path / "ddp.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
         str(29500 + random.Random().randint(0, 500)), "-m", "egoframe.cli.main", "train", "--config", str(cfg),
         "--quiet"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = json.loads((tmp_path / "ddp" / "rank-digests.json").read_text())
    assert digests["world_size"] == 2
    assert digests["digests"][0] == digests["digests"][1]


@pytest.mark.parametrize("change,message", [
    ({"optim": {"lr": "fast"}}, "optim.lr"),
    ({"optim": {"learning_rate": 1e-4}}, "optim.learning_rate: unknown key"),
    ({"model": {"ablation": "lego"}}, "vllm_cache"),
    ({"model": {"ablation": "everything"}}, "model.ablation"),
    ({"dropout": {"text": 0.6, "image": 0.6}}, "sum to at most 1"),
])
def test_bad_config_values_fail_before_work(pairs_dir, tmp_path, change, message):
    from egoframe.training.config import parse_config

    data = {"data": {"root": pairs_dir}, "log": {"out_dir": str(tmp_path)}, "model": {"ablation": "descriptions"}}
    for section, values in change.items():
        data.setdefault(section, {}).update(values)
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_cli_config_errors_are_one_line(pairs_dir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"root": pairs_dir}, "log": {"out_dir": str(tmp_path / "o")},
                                   "model": {"ablation": "lego"}}))
    proc = _run_cli(["train", "--config", str(bad)])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1].startswith("error: ") and "vllm_cache" in err
    assert "Traceback" not in err
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({"data": {"root": str(tmp_path / "nope")}, "log": {"out_dir": str(tmp_path)},
                                       "model": {"ablation": "descriptions"}}))
    proc = _run_cli(["train", "--config", str(missing)])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "does not exist" in err


def test_existing_checkpoints_need_resume(pairs_dir, tmp_path):
    config = train_config(pairs_dir, tmp_path / "r", ablation="descriptions", max_steps=2)
    train(config, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train(config, progress=False)
    config.dropout.text = 0.2
    with pytest.raises(ConfigError, match="dropout changed"):
        train(config, resume=True, progress=False)


def _loss_values(out_dir) -> list[float]:
    return [loss for _, loss in read_losses(str(out_dir))]


def test_decode_workers_change_no_result(pairs_dir, tmp_path):
    # data.num_workers decodes the next batch ahead in threads; frames depend only on their index, so the
    # losses must equal the in-loop decoding bit for bit (precompute off, as with augmentation).
    runs = {}
    for workers in (0, 2):
        config = train_config(pairs_dir, tmp_path / f"w{workers}", ablation="descriptions")
        config.data.precompute = False
        config.data.num_workers = workers
        config.log.num_samples = 0
        train(config, progress=False)
        runs[workers] = _loss_values(tmp_path / f"w{workers}")
    assert len(runs[0]) == 3 and runs[0] == runs[2]


def test_channels_last_trains_the_same_model_and_exports_it_loadable(pairs_dir, tmp_path):
    from egoframe.pipelines.loading import load_pipeline

    runs, models = {}, {}
    for layout in (False, True):
        config = train_config(pairs_dir, tmp_path / str(layout), ablation="descriptions", channels_last=layout)
        config.log.num_samples = 0
        models[layout] = train(config, progress=False).model_dir
        runs[layout] = _loss_values(tmp_path / str(layout))
    # Same maths in another memory layout: equal up to float rounding of the convolution kernels.
    assert torch.allclose(torch.tensor(runs[True]), torch.tensor(runs[False]), rtol=1e-4, atol=1e-6)
    a, b = load_pipeline(models[False]).unet.state_dict(), load_pipeline(models[True]).unet.state_dict()
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


def test_a_resumed_run_loads_its_latents_instead_of_encoding_again(pairs_dir, tmp_path, monkeypatch):
    """The precomputed VAE latents are kept in OUT/latents.safetensors with what they were made from; a resume
    with the same data and VAE loads them (no frame is encoded again) and trains exactly as an uninterrupted
    run; other data (another key) encodes again."""
    from egoframe.training import trainer

    straight = train_config(pairs_dir, tmp_path / "a", ablation="descriptions", max_steps=4)
    straight.log.num_samples = 0
    train(straight, progress=False)
    first = train_config(pairs_dir, tmp_path / "b", ablation="descriptions", max_steps=2)
    first.log.num_samples = 0
    train(first, progress=False)
    cache = tmp_path / "b" / trainer.LATENT_CACHE
    assert cache.is_file()

    def refuse(*_a, **_k):
        raise AssertionError("encoded frames again although the latent cache matches")

    monkeypatch.setattr(trainer._Frozen, "encode", refuse)
    more = first.model_copy(deep=True)
    more.optim.max_steps = 4
    train(more, resume=True, progress=False)
    assert _loss_values(tmp_path / "b") == _loss_values(tmp_path / "a")
    # a cache made from other data is not used
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(cache))
    with safe_open(str(cache), framework="pt") as fh:
        key = json.loads(fh.metadata()["key"])
    save_file(tensors, str(cache), metadata={"key": json.dumps({**key, "items": key["items"] + 1})})
    again = more.model_copy(deep=True)
    again.optim.max_steps = 5
    with pytest.raises(AssertionError, match="encoded frames again"):
        train(again, resume=True, progress=False)
