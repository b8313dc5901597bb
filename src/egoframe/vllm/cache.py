"""A sharded safetensors cache of VLLM embeddings for a whole data set, and its reader.

Layout of a cache directory::

    index.json                 format, VLLM identity, extraction config, d_llm, N, n_image_tokens, dtype,
                               shards: {file: [ids]}, descriptions: {id: text}
    shard-00000.safetensors    per id: "<id>/image_tokens" (n_image_tokens, d_llm),
                               "<id>/text_tokens" (N, d_llm), "<id>/text_mask" (N,) int64

Shards are fixed groups of the data set's ids (sorted), so a rerun skips every shard already listed in the
index and computes only the rest. A cache belongs to one VLLM (the sha256 of its config and weights) and one
extraction config; opening or extending it with another is refused.

A second kind of cache *references* feature files instead of holding them (:func:`import_npy_features`):
the VLLM features LEGO's authors released, one ``.npy`` per frame for H_i and one for H_t (500 GB, so never
copied). Its index lists ``files: {id: [image .npy, text .npy]}``; :class:`VllmEmbeddingCache` reads both
kinds, the ``.npy`` files memory-mapped with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from egoframe.data.records import load_records
from egoframe.errors import ConfigError, InputError
from egoframe.utils.progress import ProgressBar
from egoframe.vllm.data import load_instruction_examples
from egoframe.vllm.embeddings import ExtractionConfig, VllmEmbeddings, extract_vllm_embeddings, to_pil
from egoframe.vllm.model import Vllm

if TYPE_CHECKING:
    import torch

INDEX_FILE = "index.json"
CACHE_FORMAT = "egoframe-vllm-embeddings/1"
NPY_CACHE_FORMAT = "egoframe-vllm-features-npy/1"  # references released .npy feature files in place
RELEASED_FEATURES_IDENTITY = "lego-released-features"
DEFAULT_CACHE_DIRNAME = "vllm_embeddings"


def _atomic_write_json(path: str, data: Any) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _dtype_name(dtype: "torch.dtype") -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class CacheBuildResult:
    cache_dir: str
    n_items: int
    n_shards: int
    computed_shards: int
    skipped_shards: int


def _expected_header(vllm: "Vllm", config: ExtractionConfig, dtype: "torch.dtype", shard_size: int) -> dict[str, Any]:
    return {"format": CACHE_FORMAT, "vllm_identity": vllm.identity(), "extraction": config.to_dict(),
            "d_llm": vllm.d_llm, "n_text_tokens": config.n_text_tokens, "n_image_tokens": vllm.n_image_tokens,
            "dtype": _dtype_name(dtype), "shard_size": shard_size}


def _header_mismatch(index: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    return [k for k, v in expected.items() if index.get(k) != v]


def build_embedding_cache(vllm: "Vllm", data_dir: str, cache_dir: str | None = None, *,
                          config: ExtractionConfig | None = None, batch_size: int = 8, shard_size: int = 256,
                          dtype: "torch.dtype | None" = None, splits: Sequence[str] | None = None,
                          progress: bool = True, model_dir: str | None = None,
                          on_shard: Callable[[str], None] | None = None) -> CacheBuildResult:
    """Extract H_i, H_t and descriptions for every record of ``data_dir`` into ``cache_dir`` (default
    ``DATA_DIR/vllm_embeddings``). Resumable: shards already in the index are skipped."""
    from safetensors.torch import save_file

    if batch_size < 1 or shard_size < 1:
        raise ConfigError("batch_size and shard_size must be >= 1")
    config = config or ExtractionConfig()
    dtype = dtype or vllm.dtype
    cache_dir = cache_dir or os.path.join(data_dir, DEFAULT_CACHE_DIRNAME)
    examples = sorted(load_instruction_examples(data_dir, splits=splits, require_description=False),
                      key=lambda ex: ex.id)
    expected = _expected_header(vllm, config, dtype, shard_size)
    os.makedirs(cache_dir, exist_ok=True)
    index_path = os.path.join(cache_dir, INDEX_FILE)
    if os.path.exists(index_path):
        index = _read_index(cache_dir)
        bad = _header_mismatch(index, expected)
        if bad:
            raise ConfigError(f"the cache in {cache_dir} was made with another VLLM or config (differs in "
                              f"{', '.join(bad)}): use another cache directory or delete it")
    else:
        index = dict(expected, model_dir=model_dir, shards={}, descriptions={})
        _atomic_write_json(index_path, index)

    plan = [examples[i:i + shard_size] for i in range(0, len(examples), shard_size)]
    bar = ProgressBar(progress, "vllm embed", len(examples)).start()
    computed = skipped = 0
    try:
        for number, shard in enumerate(plan):
            name = f"shard-{number:05d}.safetensors"
            ids = [ex.id for ex in shard]
            if index["shards"].get(name) == ids and os.path.exists(os.path.join(cache_dir, name)):
                skipped += 1
                bar.advance(len(shard))
                continue
            tensors: dict[str, torch.Tensor] = {}
            for start in range(0, len(shard), batch_size):
                chunk = shard[start:start + batch_size]
                emb = extract_vllm_embeddings(vllm, [to_pil(ex.image_path) for ex in chunk],
                                              [ex.action for ex in chunk], config).to("cpu", dtype)
                for row, ex in enumerate(chunk):
                    tensors[f"{ex.id}/image_tokens"] = emb.image_tokens[row].contiguous()
                    tensors[f"{ex.id}/text_tokens"] = emb.text_tokens[row].contiguous()
                    tensors[f"{ex.id}/text_mask"] = emb.text_mask[row].contiguous()
                    index["descriptions"][ex.id] = emb.description[row]
                bar.advance(len(chunk))
            path = os.path.join(cache_dir, name)
            tmp = f"{path}.tmp-{os.getpid()}"
            save_file(tensors, tmp, metadata={"format": CACHE_FORMAT, "vllm_identity": expected["vllm_identity"]})
            os.replace(tmp, path)
            index["shards"][name] = ids  # the index lists a shard only once its file is complete
            _atomic_write_json(index_path, index)
            computed += 1
            if on_shard is not None:
                on_shard(name)
    finally:
        bar.close()
    return CacheBuildResult(cache_dir=cache_dir, n_items=len(examples), n_shards=len(plan),
                            computed_shards=computed, skipped_shards=skipped)


def _read_index(cache_dir: str) -> dict[str, Any]:
    path = os.path.join(cache_dir, INDEX_FILE)
    if not os.path.exists(path):
        raise InputError(f"no VLLM embedding cache in {cache_dir} (no {INDEX_FILE}): run `egoframe vllm embed`")
    try:
        with open(path) as f:
            index = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if index.get("format") not in (CACHE_FORMAT, NPY_CACHE_FORMAT):
        raise InputError(f"{path} is not an egoframe VLLM embedding cache index ({index.get('format')!r})")
    return index


class VllmEmbeddingCache:
    """Read access to a cache written by :func:`build_embedding_cache`.

    Pass ``vllm`` (and the ``config`` the caller will use on the fly) to have the cache checked against them:
    a cache made with another VLLM or extraction config raises :class:`~egoframe.errors.ConfigError`.
    """

    def __init__(self, cache_dir: str, vllm: "Vllm | None" = None, config: ExtractionConfig | None = None,
                 expect_identity: str | None = None):
        self.cache_dir = cache_dir
        self.index = _read_index(cache_dir)
        identity = expect_identity or (vllm.identity() if vllm is not None else None)
        if identity is not None and identity != self.index["vllm_identity"]:
            raise ConfigError(f"the cache in {cache_dir} was made with another VLLM "
                              f"({self.index['vllm_identity'][:12]}, this one is {identity[:12]})")
        if config is not None and config.to_dict() != self.index["extraction"]:
            raise ConfigError(f"the cache in {cache_dir} was made with extraction config "
                              f"{self.index['extraction']}, not {config.to_dict()}")
        self._files = self.index.get("files", {}) if self.index["format"] == NPY_CACHE_FORMAT else {}
        self._where = {i: shard for shard, ids in self.index.get("shards", {}).items() for i in ids}
        self._where.update({i: "" for i in self._files})
        self._handles: dict[str, Any] = {}

    @property
    def vllm_identity(self) -> str:
        return self.index["vllm_identity"]

    @property
    def d_llm(self) -> int:
        return int(self.index["d_llm"])

    @property
    def n_text_tokens(self) -> int:
        return int(self.index["n_text_tokens"])

    @property
    def n_image_tokens(self) -> int:
        return int(self.index["n_image_tokens"])

    @property
    def extraction_config(self) -> ExtractionConfig:
        return ExtractionConfig(**self.index["extraction"])

    def ids(self) -> list[str]:
        return sorted(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._where

    def _handle(self, shard: str):
        from safetensors import safe_open

        if shard not in self._handles:
            path = os.path.join(self.cache_dir, shard)
            if not os.path.exists(path):
                raise InputError(f"cache shard {path} listed in the index is missing: rerun `egoframe vllm embed`")
            self._handles[shard] = safe_open(path, framework="pt")
        return self._handles[shard]

    def get(self, item_id: str) -> VllmEmbeddings:
        """One id's tensors, with a batch axis of 1: image_tokens (1, n_image_tokens, d_llm),
        text_tokens (1, N, d_llm), text_mask (1, N)."""
        shard = self._where.get(item_id)
        if shard is None:
            raise InputError(f"id {item_id!r} is not in the VLLM embedding cache {self.cache_dir}")
        if item_id in self._files:
            image, text = (_read_npy(path) for path in self._files[item_id])
            text_tokens = _fit_tokens(text, self.n_text_tokens)
            return VllmEmbeddings(image_tokens=image[None], text_tokens=text_tokens[None],
                                  text_mask=_released_mask(text_tokens)[None],
                                  description=[self.index["descriptions"].get(item_id, "")])
        handle = self._handle(shard)
        return VllmEmbeddings(image_tokens=handle.get_tensor(f"{item_id}/image_tokens")[None],
                              text_tokens=handle.get_tensor(f"{item_id}/text_tokens")[None],
                              text_mask=handle.get_tensor(f"{item_id}/text_mask")[None],
                              description=[self.index["descriptions"][item_id]])

    def get_many(self, item_ids: Sequence[str]) -> VllmEmbeddings:
        """Several ids stacked along the batch axis, in the given order."""
        if not item_ids:
            raise InputError("no ids given")
        return VllmEmbeddings.cat([self.get(i) for i in item_ids])


# ------------------------------------------------------------------------------ released .npy features


def _read_npy(path: str) -> "torch.Tensor":
    """One feature file, memory-mapped, as a float32 tensor; never unpickles (``allow_pickle=False``)."""
    import numpy as np
    import torch

    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"VLLM feature file {path} is missing") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"VLLM feature file {path} is not a plain .npy array ({exc})") from None
    if array.ndim == 3 and array.shape[0] == 1:  # saved with a batch axis
        array = array[0]
    if array.ndim != 2:
        raise InputError(f"VLLM feature file {path} has shape {tuple(array.shape)}: expected (tokens, d_llm)")
    return torch.from_numpy(np.array(array, dtype=np.float32))  # a copy of this file only: torch wants it writable


def _fit_tokens(text: "torch.Tensor", n: int) -> "torch.Tensor":
    """Pad with zeros or truncate to ``n`` tokens, as the public code does with its text features (77)."""
    import torch

    if text.shape[0] >= n:
        return text[:n]
    return torch.cat([text, text.new_zeros(n - text.shape[0], text.shape[1])])


def _released_mask(text_tokens: "torch.Tensor") -> "torch.Tensor":
    """Every token counts: LEGO's public code passes all 77 (zero-padded) tokens to its mixer unmasked."""
    import torch

    return torch.ones(text_tokens.shape[0], dtype=torch.int64)


def released_feature_path(feature_dir: str, image_0: str) -> str:
    """Where the public code looks for a frame's feature: ``<dir>/<image_0 with 'jpg' replaced by 'npy'>``
    (``egogen_dataset.py``; a ``.png`` frame's name only loses its extension)."""
    name = image_0.replace("jpg", "npy")
    if not name.endswith(".npy"):
        name = os.path.splitext(name)[0] + ".npy"
    return os.path.join(feature_dir, name)


@dataclass
class FeatureImportResult:
    cache_dir: str
    n_items: int
    missing: dict[str, str]  # id -> reason
    d_llm: int
    n_image_tokens: int


def import_npy_features(data_dir: str, image_features: str, text_features: str, cache_dir: str | None = None, *,
                        n_text_tokens: int = 77, progress: bool = True) -> FeatureImportResult:
    """Reference the released per-frame VLLM features of every pair of ``data_dir`` in a cache index.

    A pair's features are found by its input frame's path relative to the frames folder (``image_0``, kept by
    ``--format lego`` curation; else the input path relative to the curation's ``--videos``). Each file's
    header is read (memory-mapped, no pickles) to check its shape; pairs whose files are missing or
    malformed are listed in the result and left out, never a crash. Nothing is copied."""
    import numpy as np

    records = load_records(data_dir)
    if not records:
        raise InputError(f"no pairs in {data_dir}")
    frames_root = ""
    config_path = os.path.join(data_dir, "config.json")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as handle:
            frames_root = json.load(handle).get("videos", "")
    files, missing, shapes = {}, {}, {}
    bar = ProgressBar(progress, "features", len(records)).start()
    for rec in records:
        bar.advance()
        rel = rec.extra.get("image_0") or (os.path.relpath(rec.input_path, frames_root) if frames_root else "")
        if not rel:
            missing[rec.id] = "no image_0 to locate its features by"
            continue
        paths = [released_feature_path(image_features, rel), released_feature_path(text_features, rel)]
        try:
            arrays = [np.load(p, mmap_mode="r", allow_pickle=False) for p in paths]
        except FileNotFoundError as exc:
            missing[rec.id] = f"missing feature file {exc.filename}"
            continue
        except (OSError, ValueError) as exc:
            missing[rec.id] = f"unreadable feature file ({exc})"
            continue
        dims = [a.shape[1:] if a.ndim == 2 else a.shape[2:] if a.ndim == 3 and a.shape[0] == 1 else None
                for a in arrays]
        if any(d is None or len(d) != 1 for d in dims) or dims[0] != dims[1]:
            missing[rec.id] = f"feature shapes {[tuple(a.shape) for a in arrays]} are not (tokens, d_llm) alike"
            continue
        shapes[rec.id] = (int(dims[0][0]), int(arrays[0].shape[-2]))
        files[rec.id] = [os.path.abspath(p) for p in paths]
    bar.close()
    if not files:
        first = next(iter(missing.items()), ("", "no pairs"))
        raise InputError(f"no VLLM features found for any pair of {data_dir} (e.g. {first[0]}: {first[1]})")
    kinds = set(shapes.values())
    if len(kinds) > 1:
        raise InputError(f"the feature files disagree in (d_llm, image tokens): {sorted(kinds)[:4]}")
    (d_llm, n_image_tokens), = kinds
    cache_dir = cache_dir or os.path.join(data_dir, DEFAULT_CACHE_DIRNAME)
    os.makedirs(cache_dir, exist_ok=True)
    descriptions = {r.id: r.description for r in records if r.id in files}
    _atomic_write_json(os.path.join(cache_dir, INDEX_FILE), {
        "format": NPY_CACHE_FORMAT, "vllm_identity": RELEASED_FEATURES_IDENTITY,
        "extraction": ExtractionConfig(n_text_tokens=n_text_tokens).to_dict(), "d_llm": d_llm,
        "n_text_tokens": n_text_tokens, "n_image_tokens": n_image_tokens, "dtype": "float32",
        "image_features": os.path.abspath(image_features), "text_features": os.path.abspath(text_features),
        "files": files, "descriptions": descriptions, "missing": missing})
    return FeatureImportResult(cache_dir, len(files), missing, d_llm, n_image_tokens)
