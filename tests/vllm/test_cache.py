"""The sharded embedding cache: hit == on-the-fly bit for bit, resumable, refuses another VLLM or config."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from egoframe.errors import ConfigError, InputError
from egoframe.vllm.cache import VllmEmbeddingCache, build_embedding_cache
from egoframe.vllm.embeddings import ExtractionConfig, extract_vllm_embeddings
from egoframe.vllm.model import load_vllm

CONFIG = ExtractionConfig(max_new_tokens=4)


@pytest.fixture(scope="module")
def cache_dir(tiny_vllm, dataset_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cache"))
    result = build_embedding_cache(tiny_vllm, dataset_dir, out, config=CONFIG, batch_size=5, shard_size=10,
                                   progress=False)
    assert (result.n_items, result.n_shards, result.computed_shards) == (24, 3, 3)
    return out


def test_index_and_shapes(cache_dir, tiny_vllm):
    with open(os.path.join(cache_dir, "index.json")) as f:
        index = json.load(f)
    assert index["vllm_identity"] == tiny_vllm.identity()
    assert (index["d_llm"], index["n_text_tokens"], index["n_image_tokens"], index["dtype"]) == (32, 77, 16, "float32")
    assert sorted(index["shards"]) == [f"shard-0000{i}.safetensors" for i in range(3)]
    assert sum(len(v) for v in index["shards"].values()) == 24
    tensors = load_file(os.path.join(cache_dir, "shard-00000.safetensors"))
    assert tensors["item0000/image_tokens"].shape == (16, 32)
    assert tensors["item0000/text_tokens"].shape == (77, 32)
    assert tensors["item0000/text_mask"].dtype == torch.long


def test_cache_hit_is_bit_identical_to_on_the_fly(cache_dir, tiny_vllm_dir, dataset_dir):
    vllm = load_vllm(tiny_vllm_dir)  # a fresh load, as the diffusion pipeline would do
    cache = VllmEmbeddingCache(cache_dir, vllm=vllm, config=CONFIG)
    ids = ["item0003", "item0017", "item0022"]
    cached = cache.get_many(ids)
    fresh = extract_vllm_embeddings(vllm, [os.path.join(dataset_dir, f"frames/{i[4:]}.png") for i in ids],
                                    ["take cup"] * 3, CONFIG)
    assert torch.equal(cached.image_tokens, fresh.image_tokens)
    assert torch.equal(cached.text_tokens, fresh.text_tokens)
    assert torch.equal(cached.text_mask, fresh.text_mask)
    assert cached.description == fresh.description
    one = cache.get("item0017")
    assert one.image_tokens.shape == (1, 16, 32) and one.text_mask.shape == (1, 77)
    assert len(cache) == 24 and "item0000" in cache


def test_resume_computes_only_missing_shards(cache_dir, tiny_vllm, dataset_dir, tmp_path):
    import shutil

    copy = str(tmp_path / "c")
    shutil.copytree(cache_dir, copy)
    before = load_file(os.path.join(copy, "shard-00000.safetensors"))
    os.remove(os.path.join(copy, "shard-00001.safetensors"))  # as if killed while writing shard 1
    done = []
    result = build_embedding_cache(tiny_vllm, dataset_dir, copy, config=CONFIG, batch_size=5, shard_size=10,
                                   progress=False, on_shard=done.append)
    assert done == ["shard-00001.safetensors"]
    assert (result.computed_shards, result.skipped_shards) == (1, 2)
    after = load_file(os.path.join(copy, "shard-00000.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    redo = load_file(os.path.join(copy, "shard-00001.safetensors"))
    orig = load_file(os.path.join(cache_dir, "shard-00001.safetensors"))
    assert all(torch.equal(redo[k], orig[k]) for k in orig)


def test_refuses_another_vllm(cache_dir, tiny_vllm_dir, dataset_dir):
    other = load_vllm(tiny_vllm_dir)
    with torch.no_grad():
        other.model.lm_head.weight.mul_(1.01)
    other.forget_identity()
    with pytest.raises(ConfigError, match="another VLLM"):
        VllmEmbeddingCache(cache_dir, vllm=other)
    with pytest.raises(ConfigError, match="another VLLM or config.*vllm_identity"):
        build_embedding_cache(other, dataset_dir, cache_dir, config=CONFIG, shard_size=10, progress=False)


def test_refuses_another_config(cache_dir, tiny_vllm, dataset_dir):
    other = ExtractionConfig(max_new_tokens=4, question_template=3)
    with pytest.raises(ConfigError, match="extraction config"):
        VllmEmbeddingCache(cache_dir, vllm=tiny_vllm, config=other)
    with pytest.raises(ConfigError, match="extraction"):
        build_embedding_cache(tiny_vllm, dataset_dir, cache_dir, config=other, shard_size=10, progress=False)
    with pytest.raises(ConfigError, match="dtype"):
        build_embedding_cache(tiny_vllm, dataset_dir, cache_dir, config=CONFIG, shard_size=10,
                              dtype=torch.bfloat16, progress=False)


def test_unknown_id_and_missing_cache(cache_dir, tmp_path):
    with pytest.raises(InputError, match="not in the VLLM embedding cache"):
        VllmEmbeddingCache(cache_dir).get("nope")
    with pytest.raises(InputError, match="run `egoframe vllm embed`"):
        VllmEmbeddingCache(str(tmp_path))


def test_bf16_cache(tiny_vllm, dataset_dir, tmp_path):
    result = build_embedding_cache(tiny_vllm, dataset_dir, str(tmp_path), config=CONFIG, shard_size=100,
                                   dtype=torch.bfloat16, splits=["test"], progress=False)
    cache = VllmEmbeddingCache(result.cache_dir)
    assert len(cache) == 6 and cache.index["dtype"] == "bfloat16"
    assert cache.get(cache.ids()[0]).text_tokens.dtype == torch.bfloat16
