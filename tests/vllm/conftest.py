"""Fixtures of the VLLM tests: a synthetic curated data set and a tiny LLaVA small enough for second-long tests."""

from __future__ import annotations

import pytest

from tests.vllm.vllm_testdata import make_dataset, tiny_config


@pytest.fixture(scope="session", autouse=True)
def _threads():
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> str:
    return make_dataset(str(tmp_path_factory.mktemp("vllm-data")))


@pytest.fixture(scope="session")
def tiny_vllm(dataset_dir):
    from egoframe.vllm.data import load_instruction_examples
    from egoframe.vllm.tiny import build_tiny_vllm, build_word_tokenizer, tokenizer_corpus

    examples = load_instruction_examples(dataset_dir)
    tokenizer = build_word_tokenizer(tokenizer_corpus([e.description for e in examples], ["take cup"]))
    return build_tiny_vllm(tokenizer, tiny_config(), seed=0)


@pytest.fixture(scope="session")
def tiny_vllm_dir(tiny_vllm, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("tiny-vllm"))
    tiny_vllm.save_pretrained(out)
    return out
