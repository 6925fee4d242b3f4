"""Batches of windows for Lightning: whole batches gathered in-process, sharded across ranks."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, Dataset, Sampler

from lstm_forecast.data.windows import Batch, Windows
from lstm_forecast.errors import UserError


def window_loader(
    windows: Windows,
    global_batch_size: int,
    key: str,
    training: bool,
    seed: int,
    rank: int,
    world_size: int,
    windows_per_epoch: int | None = None,
) -> DataLoader:
    """A loader of whole batches of ``windows``: shuffled and evenly sharded when ``training``,
    in order and unrepeated otherwise. ``global_batch_size`` (the config key ``data.<key>``) is split
    over the ``world_size`` processes. ``windows_per_epoch`` (training only) draws that many distinct
    windows anew each epoch instead of taking every window (see :class:`WindowBatchSampler`)."""
    if global_batch_size % world_size:
        raise UserError(
            f"data.{key}={global_batch_size} does not divide over {world_size} processes; "
            f"use a multiple of {world_size}"
        )
    sampler = WindowBatchSampler(
        len(windows),
        global_batch_size // world_size,
        shuffle=training,
        seed=seed,
        rank=rank,
        world_size=world_size,
        even_shards=training,
        num_samples=windows_per_epoch if training else None,
    )
    return DataLoader(WindowDataset(windows), batch_size=None, sampler=sampler)


@contextlib.contextmanager
def in_process_loading() -> Iterator[None]:
    """Lightning's advice to give the loaders worker processes, silenced while inside (a fit on
    :func:`window_loader` loaders).

    Lightning warns about any DataLoader with fewer than two workers. Ours gather a whole batch with
    one indexing operation in this process (:class:`WindowDataset`), on the training device when the
    data lives there: workers would only add a copy of every batch between processes. Only that
    warning is silenced, and only while inside.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"The '\w+' does not have many workers", category=PossibleUserWarning
        )
        yield


class WindowDataset(Dataset):
    """A map-style dataset whose items are whole batches: ``dataset[index_tensor] -> Batch``.

    Used with ``DataLoader(batch_size=None, sampler=WindowBatchSampler(...))``, so there is no
    per-sample ``__getitem__``, no collate and no worker process on the batch path.
    """

    def __init__(self, windows: Windows) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: torch.Tensor) -> Batch:
        return self.windows.gather(index)


class WindowBatchSampler(Sampler[torch.Tensor]):
    """Yields index tensors of whole batches, sharded across distributed ranks.

    Parameters
    ----------
    num_windows : int
        Size of the window set.
    batch_size : int
        Windows per batch on this rank.
    shuffle : bool
        Reshuffle every epoch (training); otherwise keep the order.
    seed : int
        Base seed of the shuffle; the epoch is added so every epoch differs and every rank agrees.
    rank, world_size : int
        This process's share of the indices.
    even_shards : bool
        Training under DDP needs the same number of steps on every rank: wrap around to pad the
        index list to a multiple of ``world_size``. Evaluation sets pass False: each rank takes a
        contiguous, unrepeated share, so every window is scored exactly once.
    num_samples : int or None
        Draw this many distinct windows each epoch (uniformly, a new draw every epoch, the same draw
        on every rank, which takes its own ``num_samples // world_size`` of it: disjoint, equal
        shards) instead of every window once. The draw costs memory in proportion to ``num_samples``,
        not to the number of windows (see :func:`sample_windows`). None: every window (the method).
    """

    def __init__(
        self,
        num_windows: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        even_shards: bool = True,
        num_samples: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if num_samples is not None and num_samples < 1:
            raise ValueError("num_samples must be at least 1")
        self.num_windows = num_windows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.even_shards = even_shards
        self.num_samples = None if num_samples is None else min(num_samples, num_windows)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every training epoch."""
        self.epoch = epoch

    def _rank_indices(self) -> torch.Tensor:
        if self.num_samples is not None:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            drawn = sample_windows(self.num_windows, self.num_samples, generator)
            per_rank = self.num_samples // self.world_size
            return drawn[self.rank * per_rank : (self.rank + 1) * per_rank]
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_windows, generator=generator)
        else:
            order = torch.arange(self.num_windows)
        if self.world_size == 1:
            return order
        if self.even_shards:
            padded = -(-self.num_windows // self.world_size) * self.world_size
            if self.num_windows:  # wrap around as often as it takes: fewer windows than ranks too
                order = order.repeat(-(-padded // self.num_windows))[:padded]
            return order[self.rank :: self.world_size]
        bounds = np.linspace(0, self.num_windows, self.world_size + 1).round().astype(int)
        return order[bounds[self.rank] : bounds[self.rank + 1]]

    def __iter__(self) -> Iterator[torch.Tensor]:
        indices = self._rank_indices()
        if len(indices):  # torch.split of nothing is one empty batch; an empty shard has none
            yield from torch.split(indices, self.batch_size)

    def __len__(self) -> int:
        if self.num_samples is not None:
            return -(-(self.num_samples // self.world_size) // self.batch_size)
        if self.world_size == 1:
            count = self.num_windows
        elif self.even_shards:
            count = -(-self.num_windows // self.world_size)
        else:
            bounds = np.linspace(0, self.num_windows, self.world_size + 1).round().astype(int)
            count = int(bounds[self.rank + 1] - bounds[self.rank])
        return -(-count // self.batch_size)


def sample_windows(num_windows: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` distinct window indices out of ``num_windows``, uniformly, in random order: ``[count]``.

    Memory and time grow with ``count``, not with ``num_windows``: while ``count`` is a small share of
    the windows, draws with replacement are deduplicated and topped up (a few rounds at most) instead
    of permuting every index. A large share is a prefix of one permutation (its memory is then within a
    few times ``count`` anyway).
    """
    if count >= num_windows or 4 * count >= num_windows:
        return torch.randperm(num_windows, generator=generator)[:count]
    chosen = torch.empty(0, dtype=torch.long)
    while len(chosen) < count:
        # 10 % spare: with count <= num_windows / 4 a round loses at most ~ count / 8 to collisions.
        draws = torch.randint(num_windows, (count - len(chosen) + count // 10 + 16,), generator=generator)
        chosen = torch.cat([chosen, draws]).unique()
    # unique() sorts: shuffle, then keep count (a uniform subset of a uniform subset).
    return chosen[torch.randperm(len(chosen), generator=generator)[:count]]


def fixed_sample(num_windows: int, count: int | None, seed: int) -> torch.Tensor | None:
    """``count`` of ``num_windows`` windows drawn once with ``seed`` (:func:`sample_windows`), sorted:
    the same positions in every process; None when ``count`` is None or covers every window."""
    if count is None or count >= num_windows:
        return None
    return sample_windows(num_windows, count, torch.Generator().manual_seed(seed)).sort()[0]
