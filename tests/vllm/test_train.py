"""Instruction tuning: answer-only labels, learning, exact resume, LoRA export, config checks."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from egoframe.errors import ConfigError, InputError
from egoframe.vllm.data import encode_instruction_batch, load_instruction_examples
from egoframe.vllm.model import load_vllm
from egoframe.vllm.train import VllmTrainConfig, latest_checkpoint, train_vllm
from tests.vllm.vllm_testdata import tiny_config


def _config(dataset_dir, out, **kw) -> VllmTrainConfig:
    base = dict(data_dir=dataset_dir, out_dir=str(out), tiny=tiny_config(), batch_size=6, lr=3e-3, epochs=100,
                warmup_steps=2, log_every=1, save_every=3, pretrain_vision_steps=0)
    base.update(kw)
    return VllmTrainConfig(**base)


def test_labels_cover_the_answer_and_eos_only(tiny_vllm, dataset_dir):
    ex = load_instruction_examples(dataset_dir, splits=["train"])[:2]
    batch = encode_instruction_batch(tiny_vllm, [e.image_path for e in ex], [e.action for e in ex],
                                     [e.description for e in ex], [0, 4])
    tok = tiny_vllm.tokenizer
    for row, e in enumerate(ex):
        labelled = batch["labels"][row][batch["labels"][row] != -100].tolist()
        assert labelled[-1] == tok.eos_token_id
        assert tok.decode(labelled[:-1]) == e.description.lower()
        n_real = int(batch["attention_mask"][row].sum())
        # the answer is the end of the real tokens; everything before it (image, question) is unlabelled
        assert batch["input_ids"][row, n_real - len(labelled):n_real].tolist() == labelled
        assert (batch["labels"][row, :n_real - len(labelled)] == -100).all()
    assert batch["pixel_values"].shape == (2, 3, 32, 32)


def test_from_scratch_learns_and_exports(dataset_dir, tmp_path):
    losses = []
    result = train_vllm(_config(dataset_dir, tmp_path / "run", max_steps=40, save_every=100), progress=False,
                        on_step=lambda step, loss: losses.append(loss))
    assert result.steps == 40 and len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:3]) / 3  # the answer is being learned
    vllm = load_vllm(result.model_dir)
    assert os.path.exists(os.path.join(result.model_dir, "train_config.json"))
    saved = VllmTrainConfig.from_dict(json.load(open(os.path.join(tmp_path / "run", "train_config.json"))))
    assert saved.max_steps == 40 and saved.tiny == tiny_config()
    assert vllm.tokenizer.convert_tokens_to_ids("cup") != vllm.tokenizer.unk_token_id
    lines = open(os.path.join(tmp_path / "run", "train_log.jsonl")).read().splitlines()
    assert len(lines) == 40


def test_resume_continues_exactly(dataset_dir, tmp_path):
    straight = train_vllm(_config(dataset_dir, tmp_path / "a", max_steps=6), progress=False)
    train_vllm(_config(dataset_dir, tmp_path / "b", max_steps=3), progress=False)  # "killed" after step 3
    assert os.path.basename(latest_checkpoint(str(tmp_path / "b"))) == "step-00000003"
    resumed = train_vllm(_config(dataset_dir, tmp_path / "b", max_steps=6), resume=True, progress=False)
    assert resumed.steps == 6
    a = load_file(os.path.join(straight.model_dir, "model.safetensors"))
    b = load_file(os.path.join(resumed.model_dir, "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state = json.load(open(os.path.join(latest_checkpoint(str(tmp_path / "b")), "state.json")))
    assert state["step"] == 6 and state["optimizer"]["param_groups"]


def test_refuses_to_overwrite_or_to_resume_with_other_settings(dataset_dir, tmp_path):
    train_vllm(_config(dataset_dir, tmp_path / "r", max_steps=1), progress=False)
    with pytest.raises(InputError, match="--resume"):
        train_vllm(_config(dataset_dir, tmp_path / "r", max_steps=1), progress=False)
    with pytest.raises(ConfigError, match="lr"):
        train_vllm(_config(dataset_dir, tmp_path / "r", max_steps=2, lr=1e-4), resume=True, progress=False)


def test_lora_fine_tune_of_a_saved_llava(tiny_vllm_dir, dataset_dir, tmp_path):
    config = _config(dataset_dir, tmp_path / "lora", model_dir=tiny_vllm_dir, mode="lora", max_steps=2, lr=1e-2,
                     gradient_checkpointing=True)
    result = train_vllm(config, progress=False)
    before = load_file(os.path.join(tiny_vllm_dir, "model.safetensors"))
    after = load_file(os.path.join(result.model_dir, "model.safetensors"))
    assert before.keys() == after.keys()  # LoRA merged: a plain llava-hf checkpoint again

    def changed(fragment):
        return [k for k in before if fragment in k and not torch.equal(before[k], after[k])]

    assert changed("layers.0.self_attn.q_proj")  # LoRA target (saved under llava-hf's legacy key names)
    assert changed("multi_modal_projector")  # trained in full, as in LEGO
    assert not changed("vision_tower")  # a pretrained CLIP tower stays frozen
    assert not changed("mlp.gate_proj")  # not a LoRA target
    load_vllm(result.model_dir)


def test_bad_config_values(dataset_dir, tmp_path):
    with pytest.raises(ConfigError, match="mode"):
        _config(dataset_dir, tmp_path, mode="qlora")
    with pytest.raises(ConfigError, match="unknown"):
        VllmTrainConfig.from_dict({"data_dir": "d", "out_dir": "o", "nope": 1})
    with pytest.raises(ConfigError, match="pretrain-vision-reading"):
        _config(dataset_dir, tmp_path, pretrain_vision_reading=1.0)  # _config turns stage 0 off
    with pytest.raises(ConfigError, match="pretrain_vision_reading"):
        _config(dataset_dir, tmp_path, pretrain_vision_reading=-1.0, pretrain_vision_steps=5)


def test_no_descriptions(tmp_path):
    from tests.vllm.vllm_testdata import make_dataset

    data = make_dataset(str(tmp_path / "d"), n=3, with_descriptions=False)
    with pytest.raises(InputError, match="egoframe enrich"):
        train_vllm(_config(data, tmp_path / "o"), progress=False)


def test_descriptions_parquet_overrides_and_failed_rows_are_skipped(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.vllm.vllm_testdata import make_dataset

    data = make_dataset(str(tmp_path / "d"), n=3, with_descriptions=False)
    pq.write_table(pa.Table.from_pylist([
        {"id": "item0000", "description": "the person takes the red cup with the left hand.", "status": "done"},
        {"id": "item0001", "description": "half an answer", "status": "failed"}]),
        os.path.join(data, "descriptions.parquet"))
    examples = load_instruction_examples(data)
    assert [(e.id, e.description) for e in examples] == [("item0000", "the person takes the red cup with the left hand.")]


def test_vision_pretraining_makes_the_model_read_the_frame(tmp_path):
    """The embedded recipe (stage 0 vision pretraining, frozen tower, bias-free projector): on the synthetic set
    the colour and the hand are only in the picture, so answers must be cheaper with the real frames than with
    frames shuffled among the held-out pairs."""
    from egoframe.vllm.evaluate import image_reliance
    from tests.vllm.vllm_testdata import make_dataset

    data = make_dataset(str(tmp_path / "data"), n=60)
    config = _config(data, tmp_path / "run", pretrain_vision_steps=40, pretrain_vision_batch_size=24, lr=3e-3,
                     batch_size=12, max_steps=70, warmup_steps=10)
    assert config.resolved_train_vision() is False
    result = train_vllm(config, progress=False)
    assert os.path.isdir(tmp_path / "run" / "vision_pretrained")
    stage0 = json.loads(open(tmp_path / "run" / "train_log.jsonl").readline())
    assert stage0["stage"] == "vision_pretrain" and stage0["steps"] == 40
    reliance = image_reliance(load_vllm(result.model_dir), data, limit=None)
    assert reliance.n == 6
    assert reliance.shuffled > reliance.real + 0.05, reliance.lines()


def test_pretrain_steps_only_from_scratch(dataset_dir, tmp_path, tiny_vllm_dir):
    assert _config(dataset_dir, tmp_path, pretrain_vision_steps=None).resolved_pretrain_steps() == 300
    assert _config(dataset_dir, tmp_path, pretrain_vision_steps=None, model_dir=tiny_vllm_dir) \
        .resolved_pretrain_steps() == 0
    with pytest.raises(ConfigError):
        _config(dataset_dir, tmp_path, pretrain_vision_steps=5, model_dir=tiny_vllm_dir)
    with pytest.raises(ConfigError):
        _config(dataset_dir, tmp_path, pretrain_vision_steps=-1)


def test_action_conditioned_pretraining_reads_what_depends_on_the_action(tiny_vllm):
    """Stage 0 with the action labels: when the word a description holds depends on the frame *and* the action
    (which side's colour an action names), an image-only pooling head cannot fit it and the action-conditioned
    one can: its loss ends clearly lower on the same frames, steps and seed."""
    import copy

    import numpy as np

    from egoframe.vllm.pretrain import pretrain_vision_tower
    from tests.vllm.vllm_testdata import synthetic_frame

    rng = np.random.default_rng(0)
    frames, descriptions, actions = [], [], []
    for _ in range(48):
        left, right = rng.choice(["red", "blue", "green"], size=2, replace=False)
        frame = synthetic_frame(str(left), "left", size=32)
        frame[:, 16:] = synthetic_frame(str(right), "left", size=32)[:, 16:]
        side = rng.choice(["left", "right"])
        frames.append(frame)
        actions.append(f"take {side} thing")
        descriptions.append(f"the person takes the {left if side == 'left' else right} thing.")
    pixels = tiny_vllm.processor.image_processor(images=frames, return_tensors="pt")["pixel_values"]
    losses = {}
    for name, acts in (("image only", None), ("with action", actions)):
        result = pretrain_vision_tower(copy.deepcopy(tiny_vllm), pixels, descriptions, steps=120, batch_size=24,
                                       lr=3e-3, contrastive_weight=0.0, seed=0, actions=acts)
        losses[name] = result.final_loss
    assert losses["with action"] < 0.8 * losses["image only"], losses
    with pytest.raises(ValueError, match="actions"):
        pretrain_vision_tower(copy.deepcopy(tiny_vllm), pixels, descriptions, steps=1, actions=actions[:3])


def test_grounded_loss_is_the_plain_loss_at_weight_0_and_weights_the_frame_words(tiny_vllm, dataset_dir):
    from egoframe.vllm.train import grounded_loss, grounded_token_ids

    examples = load_instruction_examples(dataset_dir)[:4]
    from PIL import Image

    batch = encode_instruction_batch(tiny_vllm, [Image.open(e.image_path).convert("RGB") for e in examples],
                                     [e.action for e in examples], [e.description for e in examples], [0] * 4)
    ids = grounded_token_ids(tiny_vllm.processor.tokenizer, ("red", "blue", "green", "left", "right"))
    assert len(ids) >= 3
    with torch.no_grad():
        plain = tiny_vllm.model(**batch).loss
        labels = batch.pop("labels")
        logits = tiny_vllm.model(**batch).logits
    assert torch.allclose(grounded_loss(logits, labels, ids, 0.0), plain, atol=1e-5)
    # with a weight, the loss moves towards the mean loss of the grounded tokens alone
    only = grounded_loss(logits, labels, ids, 1e6)
    mask = torch.isin(labels[:, 1:], ids)
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                           labels[:, 1:].reshape(-1).clamp(min=0), reduction="none")
    assert mask.any() and torch.allclose(only, ce[mask.reshape(-1)].mean(), atol=1e-3)
    with pytest.raises(ConfigError, match="grounded_weight"):
        _config(dataset_dir, "/tmp/x", grounded_weight=-1)


def test_reading_targets_keep_the_colour_or_side_that_names_the_object():
    from egoframe.vllm.pretrain import reading_targets

    descriptions = ["the person takes the green cup in the centre of the counter with the left hand.",
                    "the person opens the right drawer with the right hand.",
                    "the person holds the knife in the right hand and cuts the tomato.",
                    "nothing to read here."]
    actions = ["take cup", "open drawer", "cut tomato", "take cup"]
    hands, objects, names = reading_targets(descriptions, actions)
    assert hands.tolist() == [0, 1, 1, -1]
    assert [names[i] if i >= 0 else None for i in objects.tolist()] == ["green cup", "right drawer", "tomato", None]
    assert "the cup" not in names and "cup" in names


def test_reading_head_reads_what_only_frame_and_action_together_say(tiny_vllm):
    """The reading head names the object from the tower's tokens in place and the action: here which colour the
    action's side has, a relation of frame and action (chance 1/3); it is off, and reports nothing, at 0."""
    import copy

    import numpy as np

    from egoframe.vllm.pretrain import pretrain_vision_tower
    from tests.vllm.vllm_testdata import synthetic_frame

    rng = np.random.default_rng(0)
    frames, descriptions, actions = [], [], []
    palette = ["red", "blue", "green"]
    for _ in range(48):
        left, right = rng.choice(palette, size=2, replace=False)
        frame = synthetic_frame(str(left), "left", size=32)
        frame[:, 16:] = synthetic_frame(str(right), "left", size=32)[:, 16:]
        side = str(rng.choice(["left", "right"]))
        frames.append(frame)
        actions.append(f"take {side} cup")
        descriptions.append(f"the person takes the {left if side == 'left' else right} cup with the {side} hand.")
    pixels = tiny_vllm.processor.image_processor(images=frames, return_tensors="pt")["pixel_values"]
    with pytest.raises(ValueError, match="actions"):
        pretrain_vision_tower(copy.deepcopy(tiny_vllm), pixels, descriptions, steps=1, reading_weight=1.0)
    kw = dict(steps=150, batch_size=24, lr=3e-3, contrastive_weight=0.0, seed=0, actions=actions, pool_on_action=False)
    read = pretrain_vision_tower(copy.deepcopy(tiny_vllm), pixels, descriptions, reading_weight=1.0, **kw)
    assert read.reading_accuracy is not None and read.reading_accuracy >= 0.7, read  # chance 1/3
    plain = pretrain_vision_tower(copy.deepcopy(tiny_vllm), pixels, descriptions, **kw)
    assert plain.reading_accuracy is None
