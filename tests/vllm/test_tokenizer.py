"""The word-level tokenizer of the tiny VLLM gives the same ids in every process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json
from egoframe.vllm.tiny import build_word_tokenizer
texts = ["the person takes the green cup with the left hand.", "zz yy xx ww vv", "red blue cup; knife, tap!"]
tok = build_word_tokenizer(texts)
print(json.dumps({"vocab": tok.get_vocab(), "ids": tok(texts[0])["input_ids"]}, sort_keys=True))
"""


def _run(hash_seed: str) -> dict:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_same_ids_in_two_processes():
    a, b = _run("1"), _run("2")
    assert a == b
    vocab = a["vocab"]
    assert [vocab[t] for t in ("<pad>", "<unk>", "<s>", "</s>", "<image>")] == [0, 1, 2, 3, 4]
    # by descending count, ties alphabetical: "the" (3) first, then "cup" (2), then the words seen once
    assert vocab["the"] == 5 and vocab["cup"] == 6 and vocab["blue"] < vocab["zz"]
