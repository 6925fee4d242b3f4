"""Sliding windows as index arithmetic over the scaled arrays.

A window is never materialised ahead of time: a window set knows which target rows and series it
covers, and :meth:`WideWindows.gather` cuts a whole batch of windows out of the shared, zero-padded
arrays with two gathers on strided window views (no per-window Python). Memory is O(rows x columns)
however many windows there are.

Layout of one window (the method's, minus the series id, which travels separately):
``x[b, k] = [extra features at step k..., (padding mask), value at step k]`` for the ``window_size``
steps before the target row; steps before the first row of the data are zeros (the warm-up padding).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

Batch = dict[str, torch.Tensor]


@contextmanager
def single_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run CPU tensor ops on one intra-op thread, then restore the count.

    A batch gather is a few memory-bound copies of ~10^5 floats: OpenMP's fan-out costs more than it
    saves, and on a busy machine the threads spin waiting for each other (30x slower measured with 2
    threads on 2 loaded cores). GPU ops are unaffected.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class PaddedArrays:
    """Scaled arrays with ``window_size`` zero rows in front, shared by every window set.

    Attributes
    ----------
    values : Tensor
        ``[window_size + T, S]`` series values, stored series-major (``values.t()`` is contiguous):
        a window of one series is then one contiguous run of memory, whatever the number of series.
    extras : Tensor
        ``[window_size + T, E]`` extra features (row-major: a window is a contiguous block).
    window_size : int
        Number of zero rows in front; row ``t`` of the data is row ``t + window_size`` here.
    """

    values: torch.Tensor
    extras: torch.Tensor
    window_size: int

    def __post_init__(self) -> None:
        if not self.values.t().is_contiguous():
            object.__setattr__(self, "values", self.values.t().contiguous().t())
        if not self.extras.is_contiguous():
            object.__setattr__(self, "extras", self.extras.contiguous())

    @classmethod
    def from_arrays(cls, values: torch.Tensor, extras: torch.Tensor, window_size: int) -> PaddedArrays:
        """Pad ``values [T, S]`` and ``extras [T, E]`` with ``window_size`` zero rows in front."""
        pad = window_size
        series_major = values.new_zeros(values.shape[1], pad + values.shape[0])  # [S, W + T]
        series_major[:, pad:] = values.t()
        padded_extras = extras.new_zeros(pad + extras.shape[0], extras.shape[1])  # [W + T, E]
        padded_extras[pad:] = extras
        return cls(values=series_major.t(), extras=padded_extras, window_size=window_size)

    @property
    def num_rows(self) -> int:
        return self.values.shape[0] - self.window_size

    @property
    def num_series(self) -> int:
        return self.values.shape[1]

    def to(self, device: torch.device | str) -> PaddedArrays:
        return PaddedArrays(self.values.to(device), self.extras.to(device), self.window_size)


class WideWindows:
    """Windows for target rows ``first_target <= t < first_target + num_targets`` of every series.

    Window ``i`` is target row ``first_target + i // S`` of series ``i % S`` (time-major, then series,
    the method's sample order). Its context is the ``window_size`` rows before the target row, zero
    where those rows lie before the data (the warm-up windows). Its targets are rows ``t .. t+H-1``.

    Parameters
    ----------
    arrays : PaddedArrays
        The scaled data.
    first_target, num_targets : int
        The target rows covered.
    horizon : int
        Steps predicted per window (``H``); every target row must exist when ``with_target``.
    padding_mask : bool
        Add a feature that is 1 on real steps and 0 on padded ones (0 is a real scaled value).
    with_target : bool
        Return ``y``; prediction windows past the end of the data have none.
    """

    def __init__(
        self,
        arrays: PaddedArrays,
        first_target: int,
        num_targets: int,
        horizon: int = 1,
        padding_mask: bool = False,
        with_target: bool = True,
    ) -> None:
        if num_targets < 0 or first_target < 0:
            raise ValueError(f"invalid target rows: first={first_target}, count={num_targets}")
        if with_target and first_target + num_targets + horizon - 1 > arrays.num_rows:
            raise ValueError("targets run past the end of the data")
        self.arrays = arrays
        self.first_target = first_target
        self.num_targets = num_targets
        self.horizon = horizon
        self.padding_mask = padding_mask
        self.with_target = with_target
        self._set_offsets(arrays.values.device)

    def _set_offsets(self, device: torch.device) -> None:
        window_size = self.arrays.window_size
        self._context_offsets = torch.arange(window_size, device=device)
        # Every window as a strided view (no copy): window of padded start row r is [r, r + W).
        self._value_windows = self.arrays.values.t().unfold(1, window_size, 1)  # [S, T + 1, W]
        self._extra_windows = self.arrays.extras.unfold(0, window_size, 1).transpose(1, 2)  # [T + 1, W, E]
        if self.with_target:
            self._target_windows = self.arrays.values.t().unfold(1, self.horizon, 1)  # [S, W+T-H+1, H]

    def to(self, device: torch.device | str) -> WideWindows:
        """Move the arrays (and so every gathered batch) to ``device``."""
        self.arrays = self.arrays.to(device)
        self._set_offsets(self.arrays.values.device)
        return self

    @property
    def window_size(self) -> int:
        return self.arrays.window_size

    @property
    def num_series(self) -> int:
        return self.arrays.num_series

    @property
    def num_features(self) -> int:
        """Features per step in ``x``: extras, the optional padding mask, the value."""
        return self.arrays.extras.shape[1] + int(self.padding_mask) + 1

    def __len__(self) -> int:
        return self.num_targets * self.num_series

    def full_context_index(self) -> torch.Tensor:
        """Indices of the windows whose context lies wholly inside the data (no warm-up padding)."""
        first_full = max(0, self.window_size - self.first_target)
        return torch.arange(min(first_full * self.num_series, len(self)), len(self))

    def locate(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map window indices ``[B]`` to ``(target_row [B], series [B])`` (series from 0)."""
        num_series = self.num_series
        return self.first_target + index // num_series, index % num_series

    def gather(self, index: torch.Tensor) -> Batch:
        """Cut the windows ``index [B]`` out of the arrays: two gathers on strided views, no loop.

        Returns
        -------
        dict
            ``x [B, W, F]`` float, ``series_id [B]`` long (from 1), ``target_row [B]`` long and,
            with targets, ``y [B, H]``.
        """
        device = self.arrays.values.device
        with single_cpu_thread(device):
            return self._gather(index.to(device))

    def _gather(self, index: torch.Tensor) -> Batch:
        target_row, series = self.locate(index)
        # The context of target row t is padded rows [t, t + W): window view number t.
        # index_select on the contiguous-block view beats indexing with a [B, W] row grid 3-6x on CPU.
        parts = [torch.index_select(self._extra_windows, 0, target_row)]  # [B, W, E]
        if self.padding_mask:
            real = (target_row[:, None] + self._context_offsets) >= self.window_size  # [B, W]
            parts.append(real.to(self.arrays.values.dtype).unsqueeze(-1))  # [B, W, 1]
        parts.append(self._value_windows[series, target_row].unsqueeze(-1))  # [B, W, 1]
        batch = {
            "x": torch.cat(parts, dim=-1),  # [B, W, F]
            "series_id": series + 1,  # [B]; 0 stays reserved
            "target_row": target_row,  # [B]
        }
        if self.with_target:
            batch["y"] = self._target_windows[series, target_row + self.window_size]  # [B, H]
        return batch


class WindowDataset(Dataset):
    """A map-style dataset whose items are whole batches: ``dataset[index_tensor] -> Batch``.

    Used with ``DataLoader(batch_size=None, sampler=WindowBatchSampler(...))``, so there is no
    per-sample ``__getitem__``, no collate and no worker process on the batch path.
    """

    def __init__(self, windows: WideWindows) -> None:
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
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.num_windows = num_windows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.even_shards = even_shards
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every training epoch."""
        self.epoch = epoch

    def _rank_indices(self) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_windows, generator=generator)
        else:
            order = torch.arange(self.num_windows)
        if self.world_size == 1:
            return order
        if self.even_shards:
            padded = -(-self.num_windows // self.world_size) * self.world_size
            order = torch.cat([order, order[: padded - self.num_windows]])
            return order[self.rank :: self.world_size]
        bounds = np.linspace(0, self.num_windows, self.world_size + 1).round().astype(int)
        return order[bounds[self.rank] : bounds[self.rank + 1]]

    def __iter__(self) -> Iterator[torch.Tensor]:
        indices = self._rank_indices()
        if len(indices):  # torch.split of nothing is one empty batch; an empty shard has none
            yield from torch.split(indices, self.batch_size)

    def __len__(self) -> int:
        if self.world_size == 1:
            count = self.num_windows
        elif self.even_shards:
            count = -(-self.num_windows // self.world_size)
        else:
            bounds = np.linspace(0, self.num_windows, self.world_size + 1).round().astype(int)
            count = int(bounds[self.rank + 1] - bounds[self.rank])
        return -(-count // self.batch_size)


def _source_arrays(source: np.ndarray, num_series: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a blog-layout source ``[rows, series + extras]`` into value and extra tensors."""
    source = np.asarray(source, dtype=np.float32)
    if source.ndim != 2 or not 1 <= num_series <= source.shape[1]:
        raise ValueError(f"source must be [rows, >= num_series] 2-D, got {source.shape} for {num_series}")
    tensor = torch.from_numpy(source)
    return tensor[:, :num_series], tensor[:, num_series:]


def _blog_layout(windows: WideWindows) -> tuple[np.ndarray, np.ndarray | None]:
    """All windows of a set in the blog's ``[samples, W, id + extras + value]`` layout."""
    batch = windows.gather(torch.arange(len(windows)))
    x = batch["x"]
    if windows.num_series > 1:  # univariate data carries no id
        ids = batch["series_id"].to(x.dtype)[:, None, None].expand(-1, x.shape[1], 1)
        x = torch.cat([ids, x], dim=-1)
    y = batch["y"].numpy() if windows.with_target else None
    return x.numpy(), y


def seed_arrays(
    source: np.ndarray, window_size: int, num_series: int, split_ratio: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The method's training and test arrays, for code written against the blog's layout.

    ``source`` is ``[rows, series + extras]`` (series first, already scaled). Feature 0 is the series
    id (from 1; absent for univariate data), then the extra features, last the value; samples are
    ordered time-major, then series. Training starts with the zero-padded warm-up windows
    (``(n_train - 1) * S`` samples); test windows take context from the rows before them, so every
    test row is a target exactly once (``n_test * S`` samples).

    Returns
    -------
    tuple
        ``(X_train, Y_train, X_test, Y_test)`` as float32 arrays; ``Y`` is ``[samples, 1]``.
    """
    values, extras = _source_arrays(source, num_series)
    num_rows = values.shape[0]
    num_train = int(num_rows * split_ratio)
    if not 2 <= num_train < num_rows:
        raise ValueError(f"split_ratio {split_ratio} leaves no training or test rows of {num_rows}")
    arrays = PaddedArrays.from_arrays(values, extras, window_size)
    x_train, y_train = _blog_layout(WideWindows(arrays, 1, num_train - 1))
    x_test, y_test = _blog_layout(WideWindows(arrays, num_train, num_rows - num_train))
    return x_train, y_train, x_test, y_test


def seed_prediction_arrays(source: np.ndarray, window_size: int, num_series: int) -> np.ndarray:
    """The method's prediction array: every window full of real rows, ``rows - W + 1`` per series.

    Window ``j`` holds rows ``j .. j+W-1`` and forecasts row ``j + W`` (the last one the step after
    the data). Layout as in :func:`seed_arrays`.
    """
    values, extras = _source_arrays(source, num_series)
    num_rows = values.shape[0]
    if num_rows < window_size:
        raise ValueError(f"{num_rows} rows are fewer than one window of {window_size}")
    arrays = PaddedArrays.from_arrays(values, extras, window_size)
    windows = WideWindows(arrays, window_size, num_rows - window_size + 1, with_target=False)
    return _blog_layout(windows)[0]
