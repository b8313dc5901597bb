"""Training data for the diffusion model: curated frame pairs + descriptions + VLLM embeddings.

Batches are a pure function of (seed, micro-step): the order is a per-epoch permutation drawn from
the seed, so a resumed run reads exactly the batches the uninterrupted run would have read, and in
distributed training each process takes its own slice of the same global batch.
"""

from __future__ import annotations

import numpy as np
import torch

from egoframe.data.dataset import FramePairDataset
from egoframe.enrichment import attach_descriptions
from egoframe.enrichment.run import DESCRIPTIONS_FILE
from egoframe.errors import ConfigError, InputError
from egoframe.vllm.cache import VllmEmbeddingCache


class PairSource:
    """Random access to training items: tensors in [-1, 1] plus texts and VLLM embeddings by index."""

    def __init__(self, root: str, split: str, resolution: int, vllm_cache: str | None = None,
                 need_vllm: bool = False, need_descriptions: bool = False):
        import os

        self.dataset = FramePairDataset(root, resolution=resolution, split=split, flip=False)
        if len(self.dataset) == 0:
            raise InputError(f"no {split!r} pairs in {root}")
        if os.path.exists(os.path.join(root, DESCRIPTIONS_FILE)):
            attach_descriptions(self.dataset.records, root)
        if need_descriptions:
            lacking = [r.id for r in self.dataset.records if not r.description]
            if lacking:
                raise ConfigError(
                    f"{len(lacking)} {split} pairs in {root} have no enriched description (e.g. {lacking[0]}): "
                    f"run `egoframe enrich {root}` first, or train a label-conditioned variant"
                )
        self.cache = None
        if need_vllm:
            self.cache = VllmEmbeddingCache(vllm_cache)
            missing = [r.id for r in self.dataset.records if r.id not in self.cache]
            if missing:
                raise ConfigError(
                    f"{len(missing)} {split} pairs have no VLLM embeddings in {vllm_cache} (e.g. {missing[0]}): "
                    "rerun `egoframe vllm embed` on this data set"
                )

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def records(self):
        return self.dataset.records

    def texts(self, index: int) -> tuple[str, str]:
        rec = self.dataset.records[index]
        return rec.action, rec.description or rec.action

    def images(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.dataset[index]
        return item["input"], item["target"]

    def vllm(self, indices: list[int]):
        if self.cache is None:
            return None
        return self.cache.get_many([self.dataset.records[i].id for i in indices])


def batch_indices(n_items: int, micro_step: int, batch_size: int, seed: int, rank: int = 0,
                  world_size: int = 1) -> list[int]:
    """Item indices of one process's micro-batch; epochs are seeded permutations of the data set."""
    global_batch = batch_size * world_size
    start = micro_step * global_batch + rank * batch_size
    out = []
    for position in range(start, start + batch_size):
        epoch, offset = divmod(position, n_items)
        out.append(int(_permutation(n_items, seed, epoch)[offset]))
    return out


_PERM_CACHE: dict[tuple[int, int, int], np.ndarray] = {}


def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    key = (n, seed, epoch)
    if key not in _PERM_CACHE:
        if len(_PERM_CACHE) > 8:
            _PERM_CACHE.clear()
        _PERM_CACHE[key] = np.random.default_rng([seed, epoch]).permutation(n)
    return _PERM_CACHE[key]


def augment(inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator, flip: bool,
            crop_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random crop (resized back) and horizontal flip for each input/target pair. (B, 3, R, R)."""
    if crop_scale < 1.0:
        size = inputs.shape[-1]
        outs_in, outs_tg = [], []
        for x, y in zip(inputs, targets):
            side = int(round(size * (crop_scale + (1 - crop_scale) * torch.rand(1, generator=generator).item())))
            top = int(torch.randint(0, size - side + 1, (1,), generator=generator))
            left = int(torch.randint(0, size - side + 1, (1,), generator=generator))
            pair = torch.stack([x, y])[:, :, top:top + side, left:left + side]
            pair = torch.nn.functional.interpolate(pair, size=(size, size), mode="bilinear", align_corners=False)
            outs_in.append(pair[0])
            outs_tg.append(pair[1])
        inputs, targets = torch.stack(outs_in), torch.stack(outs_tg)
    if flip:
        mirror = torch.rand(inputs.shape[0], generator=generator) < 0.5
        inputs = torch.where(mirror[:, None, None, None], inputs.flip(-1), inputs)
        targets = torch.where(mirror[:, None, None, None], targets.flip(-1), targets)
    return inputs, targets
