"""Oracle state reader: facts of true states, action success semantics, training, loading, runner errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

from egoframe.errors import InputError, MissingWeightsError
from egoframe.evaluation.oracle import (
    HEADS,
    OracleConfig,
    OracleReader,
    WorldStates,
    action_facts,
    action_success,
    state_accuracy,
    state_facts,
    train_oracle,
)
from tests.evaluation.world_fixtures import tiny_oracle, tiny_world  # noqa: F401  (fixtures)


def _actions(world):
    from egoframe.data.records import load_records
    from egoframe.world import WorldManifest

    manifest = WorldManifest.load(world)
    return load_records(manifest.path(manifest.files["ground_truth"]))


@pytest.fixture(scope="module")
def oracle_dir(tiny_oracle):  # noqa: F811
    return tiny_oracle


def test_facts_of_true_states_follow_each_action(tiny_world):  # noqa: F811
    world = WorldStates(tiny_world)
    changed = 0
    for rec in _actions(tiny_world):
        before = state_facts(world.state(rec.video_id, rec.input_frame))
        after = state_facts(world.state(rec.video_id, rec.target_frame))
        judged = action_facts(rec.verb, before, after)
        assert set(judged) >= {n for n in HEADS if before[n] != after[n]}
        if rec.verb == "take" and rec.noun == "cup":
            hand, colour = rec.extra["hand"], rec.extra["object_colour"]
            # "take cup": the right cup must end in the right hand
            assert after[f"{hand}_hand"] == f"{colour} cup" and after[f"place_{colour}_cup"] == "hand"
            assert {f"{hand}_hand", f"place_{colour}_cup"} <= set(judged)
        if rec.verb in ("open", "close"):
            assert {"drawer_left", "drawer_right"} <= set(judged)
        # reading the true target exactly succeeds; a frame with the input's facts fails when anything changed
        assert action_success(after, rec.verb, before, after)
        if before != after:
            assert not action_success(before, rec.verb, before, after)
            changed += 1
    assert changed >= len(_actions(tiny_world)) // 2  # most targets differ from their inputs in some fact


def test_unrelated_fact_costs_state_accuracy_not_success(tiny_world):  # noqa: F811
    world = WorldStates(tiny_world)
    rec = next(r for r in _actions(tiny_world) if r.verb in ("take", "put", "open", "close", "cut"))
    before = state_facts(world.state(rec.video_id, rec.input_frame))
    after = state_facts(world.state(rec.video_id, rec.target_frame))
    wrong = dict(after)
    wrong["tap"] = "on" if after["tap"] == "off" else "off"  # the tap is none of these verbs' business
    if "tap" not in action_facts(rec.verb, before, after):
        assert action_success(wrong, rec.verb, before, after)
    assert state_accuracy(wrong, after) == pytest.approx(1 - 1 / len(HEADS))
    with pytest.raises(InputError, match="unknown world verb"):
        action_facts("juggle", before, after)
    # The curated record spells the verb "turn on", the world "turn-on", Ego4D "turn_on": all are one verb.
    assert action_facts("turn on", before, after) == action_facts("turn-on", before, after) \
        == action_facts("turn_on", before, after)


def test_trained_oracle_saves_reloads_and_reports(oracle_dir, tiny_world):  # noqa: F811
    import json

    from egoframe.world import render_state

    files = set(os.listdir(oracle_dir))
    assert {"oracle.safetensors", "oracle_config.json", "oracle_report.json"} <= files
    report = json.load(open(os.path.join(oracle_dir, "oracle_report.json")))
    assert set(report["fact_accuracy"]) == set(HEADS)
    assert 0 <= report["mean_fact_accuracy"] <= 1 and report["test_frames"] > 0
    assert report["target_action_success"]["n"] == report["test_actions"]
    reader = OracleReader.load(oracle_dir)
    world = WorldStates(tiny_world)
    rec = _actions(tiny_world)[0]
    image = render_state(world.state(rec.video_id, rec.target_frame), 64)
    first, second = reader.read([image, image])
    assert first == second and set(first) == set(HEADS)
    assert all(first[k] in HEADS[k] for k in HEADS)
    # the reloaded reader reads exactly as the trained one did: its held-out report is the same numbers
    # (regression: the config's heads were once reloaded in sorted-key order, slicing the logits wrongly)
    from egoframe.evaluation.oracle import video_report

    again_report = video_report(reader, tiny_world, frame_stride=15)
    assert again_report["fact_accuracy"] == report["fact_accuracy"]
    assert again_report["target_action_success"] == report["target_action_success"]
    # the facts each frame shows are a subset of all facts: reading them can only be as exact or more
    assert again_report["shown_facts_exact"]["value"] >= again_report["all_facts_exact"]["value"]
    assert 0.0 <= again_report["hidden_facts"]["share"] < 0.5
    assert set(again_report["hidden_facts"]["frames_per_fact"]) <= set(HEADS)
    # a rerun into a finished directory reuses it
    again = train_oracle(OracleConfig(source="world", world=tiny_world, out_dir=oracle_dir, steps=1))
    assert again == report


def test_missing_oracle_and_world_columns_are_clear_errors(tmp_path, oracle_dir, tiny_world):  # noqa: F811
    from PIL import Image

    import egoframe.evaluation.oracle as oracle_module
    from egoframe.evaluation.generation_set import Sample, write_generation_set
    from egoframe.evaluation.runner import EvalConfig, MetricWeights, evaluate_folder

    with pytest.MonkeyPatch.context() as mp:  # an install without the shipped oracle says what to pass
        mp.setattr(oracle_module, "SHIPPED_ORACLE", str(tmp_path / "no-shipped-oracle"))
        with pytest.raises(MissingWeightsError, match="--oracle"):
            OracleReader.load(None)
    with pytest.raises(MissingWeightsError, match="oracle.safetensors"):
        OracleReader.load(str(tmp_path))
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    write_generation_set(tmp_path, [Sample("s1", "take cup", "", img, img, {"m": img}),
                                    Sample("s2", "take cup", "", img, img, {"m": img})], ["m"])
    config = EvalConfig(metrics=["action-success"], weights=MetricWeights(oracle=oracle_dir, world=tiny_world))
    with pytest.raises(InputError, match="video_id"):
        evaluate_folder(tmp_path, config=config)
    with pytest.raises(InputError, match="--world"):  # the shipped oracle needs the world's true states
        evaluate_folder(tmp_path, config=EvalConfig(metrics=["state-acc"]))


def test_oracle_config_keeps_head_order_through_json(tmp_path):
    import json

    from egoframe.utils.checkpoint import atomic_write_json

    path = tmp_path / "c.json"
    atomic_write_json(str(path), OracleConfig().to_dict())  # written with sorted keys
    loaded = OracleConfig.from_dict(json.load(open(path)))
    assert list(loaded.heads) == list(HEADS)
    # files from before the order was stored (a sorted mapping) are put back in training order
    legacy = OracleConfig().to_dict()
    legacy["heads"] = {k: list(v) for k, v in sorted(HEADS.items())}
    assert list(OracleConfig.from_dict(legacy).heads) == list(HEADS)
    legacy["heads"] = {"left_hand": list(HEADS["left_hand"])}
    with pytest.raises(InputError, match="heads"):
        OracleConfig.from_dict(legacy)


def test_every_action_is_judged_on_the_frame_and_both_hands(tiny_world):  # noqa: F811
    world = WorldStates(tiny_world)
    for rec in _actions(tiny_world):
        before = state_facts(world.state(rec.video_id, rec.input_frame))
        after = state_facts(world.state(rec.video_id, rec.target_frame))
        assert {"frame", "left_hand", "right_hand"} <= set(action_facts(rec.verb, before, after))
        # a frame with the acting hand painted out, or no kitchen at all, never shows the action done
        hand = rec.extra["hand"]
        assert not action_success({**after, f"{hand}_hand": "no hand"}, rec.verb, before, after)
        assert not action_success({**after, "frame": "unreadable"}, rec.verb, before, after)
    state = world.state(rec.video_id, rec.target_frame)
    assert state_facts(state, hidden_hands=("left",))["left_hand"] == "no hand"


def test_world_pairs_always_change_the_actions_facts(tiny_world):  # noqa: F811
    """Every frame of curation's +-3 window around the PNR shows the outcome, no frame of PRE-15 +-3 does."""
    from egoframe.world.facts import unchanged_pair

    world = WorldStates(tiny_world)
    for rec in _actions(tiny_world):
        for target in range(rec.target_frame - 3, rec.target_frame + 4):
            for inp in range(rec.input_frame - 3, rec.input_frame + 4):
                assert not unchanged_pair(world, rec.video_id, rec.verb, inp, target), (rec.id, inp, target)
        fin = state_facts(world.state(rec.video_id, rec.input_frame))
        ftg = state_facts(world.state(rec.video_id, rec.target_frame))
        for target in range(rec.target_frame - 3, rec.target_frame + 4):
            assert action_success(state_facts(world.state(rec.video_id, target)), rec.verb, fin, ftg)


def test_stream_oracle_resumes_to_the_same_weights(tmp_path):
    from egoframe.utils.checkpoint import load_tensors

    def config(out):
        return OracleConfig(out_dir=str(out), steps=4, resolution=32, channels=(8, 16), hidden=16, batch_size=8,
                            checkpoint_every=2, threads=1)

    whole = tmp_path / "whole"
    report = train_oracle(config(whole))
    assert report["source"] == "stream" and report["train_frames"] == 32
    # a run killed after its step-2 checkpoint: only the checkpoint is left
    killed = tmp_path / "killed"
    train_oracle(config(killed))
    for name in ("oracle.safetensors", "oracle_config.json", "oracle_report.json"):
        os.remove(killed / name)
    import json
    state = json.load(open(killed / "checkpoint" / "state.json"))
    assert state["step"] == 2
    resumed = train_oracle(config(killed))
    a, b = load_tensors(str(whole / "oracle.safetensors")), load_tensors(str(killed / "oracle.safetensors"))
    assert resumed["final_loss"] == report["final_loss"]
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    with pytest.raises(InputError, match="different oracle config"):
        for name in ("oracle.safetensors", "oracle_config.json", "oracle_report.json"):
            os.remove(killed / name)
        train_oracle(OracleConfig(**{**config(killed).__dict__, "lr": 1e-3}))


def test_stream_oracle_can_start_from_another_oracle(tmp_path):
    from egoframe.utils.checkpoint import load_tensors

    small = dict(steps=2, resolution=32, channels=(8, 16), hidden=16, batch_size=8, threads=1, data_workers=1)
    first = tmp_path / "first"
    train_oracle(OracleConfig(out_dir=str(first), **small))
    on = tmp_path / "on"
    train_oracle(OracleConfig(out_dir=str(on), init_from=str(first), lr=1e-9, **small))
    a, b = load_tensors(str(first / "oracle.safetensors")), load_tensors(str(on / "oracle.safetensors"))
    # a near-zero learning rate keeps the starting weights (BatchNorm statistics move; weights barely)
    assert all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-5) for k in a if "running" not in k and "num_batches" not in k)
    with pytest.raises(InputError, match="another architecture"):
        train_oracle(OracleConfig(out_dir=str(tmp_path / "bad"), init_from=str(first), **{**small, "hidden": 24}))


def test_class_balance_weights_rare_states_up_and_is_plain_cross_entropy_at_0(monkeypatch):
    import torch

    import egoframe.evaluation.oracle as oracle_module

    monkeypatch.setattr(oracle_module, "CLASS_COUNT_BATCHES", 2)
    config = OracleConfig(class_balance=0.5, batch_size=32, seed=3)
    weights = oracle_module.class_weights(config)
    again = oracle_module.class_weights(config)  # a pure function of the config: a resumed run gets the same
    assert all(torch.equal(a, b) for a, b in zip(weights, again))
    bowls = weights[list(HEADS).index("tomatoes_in_bowls")]
    assert bowls[1] > 2 * bowls[0]  # a tomato in a bowl is rare in the stream, "none" is common
    assert all(float(w.max()) <= oracle_module.MAX_CLASS_WEIGHT for w in weights)
    logits = torch.randn(5, sum(len(v) for v in HEADS.values()))
    labels = torch.tensor([[0] * len(HEADS)] * 5)
    ones = [torch.ones(len(v)) for v in HEADS.values()]
    plain = oracle_module._loss(logits, labels, config.heads)
    assert torch.allclose(oracle_module._loss(logits, labels, config.heads, ones), plain)
    plain_weights = oracle_module.class_weights(OracleConfig(class_balance=0.0, batch_size=32, seed=3))
    assert all(torch.allclose(w, torch.ones_like(w)) for w in plain_weights)
    with pytest.raises(InputError, match="class_balance"):
        OracleConfig(class_balance=2.0).validate()
    with pytest.raises(InputError, match="class_balance"):
        OracleConfig(class_balance=0.5, source="world", world="w").validate()


def test_mask_hidden_leaves_only_the_hidden_facts_unlabelled():
    """With mask_hidden a stream batch is the same batch, with IGNORE exactly on the facts whose objects the
    frame hides; the hands and the frame head are always labelled."""
    import egoframe.evaluation.oracle as oracle_module

    plain_config = OracleConfig(batch_size=32, seed=5, resolution=32, garbage_prob=0.0)
    images, plain = oracle_module.stream_batch(plain_config, 0)
    masked_images, masked = oracle_module.stream_batch(OracleConfig(**{**plain_config.__dict__, "mask_hidden": True}), 0)
    assert np.array_equal(images, masked_images)
    changed = plain != masked
    assert changed.any(), "a batch of 32 stream frames has some hidden object"
    assert (masked[changed] == oracle_module.IGNORE).all()
    for name in ("left_hand", "right_hand", "frame"):
        assert not changed[:, list(HEADS).index(name)].any()
    assert changed.mean() < 0.2  # most facts are shown
    with pytest.raises(InputError, match="mask_hidden"):
        OracleConfig(mask_hidden=True, source="world", world="w").validate()
