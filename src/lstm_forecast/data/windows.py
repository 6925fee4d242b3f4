"""Sliding windows as index arithmetic over the scaled arrays.

A window is never materialised ahead of time: a window set (:class:`Windows`, the one window contract
of wide and long data alike) is an index of target rows, and :meth:`Windows.gather` cuts a whole batch
out of the shared, zero-padded arrays with gathers on strided window views (no per-window Python).
Memory is O(rows) however many windows there are.

Layout of one window (the method's, minus the series id, which travels separately):
``x[b, k] = [extra features at step k..., (padding mask), value at step k]`` for the ``window_size``
steps before the target row; steps before the first row of the data are zeros (the warm-up padding).
Future-known features (``data.future_columns``) also come for the ``H`` target steps:
``x_future[b, h] = [future-known features at target step h...]``, cut from the same arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

Batch = dict[str, torch.Tensor]

# Rows per piece when arrays are built or indexed piece by piece: a few MiB of temporaries, never [N].
CHUNK_ROWS = 1 << 18


def series_chunks(offsets: np.ndarray, rows: int = CHUNK_ROWS) -> list[tuple[int, int]]:
    """Consecutive series ranges ``[(s0, s1), ...]`` covering every series, each of about ``rows``
    rows (a longer series is a range of its own); ``offsets [S + 1]`` as in a frame."""
    offsets = np.asarray(offsets)
    num_series = len(offsets) - 1
    cuts = np.searchsorted(offsets, np.arange(rows, offsets[-1], rows))
    bounds = np.unique(np.concatenate([[0], np.minimum(cuts, num_series), [num_series]]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


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
class SeriesArrays:
    """Scaled rows of every series, each series preceded by ``window_size`` zero rows.

    Every series gets its own zero rows in front of its rows in one padded, concatenated array, so a
    window never reaches into another series and the method's zero-padded warm-up windows come for
    free. A wide table is the case in which every series has the same rows.

    Calendar features may be kept as one small integer key per row instead of floats (one or two
    bytes a row instead of four per feature): ``calendar [P]`` holds each row's key (0 on padding
    rows) and ``calendar_table [K, C]`` the scaled features of every key (zeros for key 0), looked up
    when a batch is gathered; the batch is the same as with the scaled floats in ``extras``.

    Attributes
    ----------
    values : Tensor
        ``[P]`` series values, ``P = N + S * W``.
    extras : Tensor
        ``[P, E]`` extra features (row-major: a window is a contiguous block).
    block_start : Tensor
        ``[S]`` long: padded row of series ``s``'s first zero row; its data row ``i`` (from 0) is
        padded row ``block_start[s] + W + i``.
    window_size : int
        Zero rows in front of each series (``W``).
    calendar : Tensor or None
        ``[P]`` uint8 or int16 calendar key of each row; its features follow the ``E`` extras in ``x``.
    calendar_table : Tensor or None
        ``[K, C]`` float32 scaled calendar features of each key.
    first_series : int
        Series (from 0) of block 0: arrays of a chunk of consecutive series ``first_series ..`` of the
        frame; their windows carry the frame's series ids and static codes.
    first_row : int
        Frame row of block 0's first data row, when the blocks hold consecutive frame rows (a window's
        ``target_row`` is then a frame row; arrays of other rows leave it meaningless).
    """

    values: torch.Tensor
    extras: torch.Tensor
    block_start: torch.Tensor
    window_size: int
    calendar: torch.Tensor | None = None
    calendar_table: torch.Tensor | None = None
    first_series: int = 0
    first_row: int = 0

    @classmethod
    def zeros(
        cls,
        offsets: np.ndarray,
        window_size: int,
        num_extras: int,
        calendar_dtype: np.dtype | type | None = None,
    ) -> SeriesArrays:
        """All-zero arrays for the rows ``offsets [S + 1]`` to be filled in place (numpy views of the
        tensors share their memory), with calendar keys of ``calendar_dtype`` if given."""
        num_series = len(offsets) - 1
        total = int(offsets[-1]) + num_series * window_size
        calendar = None
        if calendar_dtype is not None:
            calendar = torch.from_numpy(np.zeros(total, dtype=calendar_dtype))
        block_start = torch.from_numpy(np.asarray(offsets[:-1]) + np.arange(num_series) * window_size)
        return cls(
            torch.zeros(total, dtype=torch.float32),
            torch.zeros(total, num_extras, dtype=torch.float32),
            block_start.long(),
            window_size,
            calendar,
        )

    @classmethod
    def from_rows(
        cls,
        values: np.ndarray,
        extras: np.ndarray,
        offsets: np.ndarray,
        window_size: int,
        calendar: np.ndarray | None = None,
        calendar_table: np.ndarray | None = None,
    ) -> SeriesArrays:
        """Pad ``values [N]`` and ``extras [N, E]``, rows of series ``s`` at ``offsets[s]:offsets[s+1]``;
        optionally calendar keys ``calendar [N]`` (from 1) with their ``calendar_table [K, C]`` of
        scaled features (row 0: the padding key's zeros)."""
        num_series = len(offsets) - 1
        row_series = np.repeat(np.arange(num_series), np.diff(offsets))
        padded_row = np.arange(len(values)) + (row_series + 1) * window_size  # [N]
        keys = None if calendar is None else np.asarray(calendar)
        arrays = cls.zeros(offsets, window_size, extras.shape[1], None if keys is None else keys.dtype)
        arrays.values.numpy()[padded_row] = values
        arrays.extras.numpy()[padded_row] = extras
        if keys is None:
            return arrays
        arrays.calendar.numpy()[padded_row] = keys
        return replace(arrays, calendar_table=torch.as_tensor(calendar_table, dtype=torch.float32))

    @property
    def num_series(self) -> int:
        return len(self.block_start)

    @property
    def num_extras(self) -> int:
        """Extra features per step: the float extras, then the calendar keys' features."""
        return self.extras.shape[1] + (0 if self.calendar_table is None else self.calendar_table.shape[1])

    def padded_rows(self, series: np.ndarray, local: np.ndarray) -> np.ndarray:
        """Padded row of step ``local`` (from 0) of series ``series`` (both ``[M]``)."""
        return self.block_start.cpu().numpy()[series] + self.window_size + local

    def padded_ranges(self, start: np.ndarray, count: np.ndarray) -> torch.Tensor:
        """``[M]`` padded rows of steps ``start[s] .. start[s] + count[s] - 1`` of every series ``s`` in
        turn (negative counts: none): a window index. int32 while the padded rows fit in it (half the
        memory of int64), built a few series at a time."""
        count = np.maximum(count, 0)
        first = self.block_start.cpu().numpy() + self.window_size + start  # [S]
        ends = np.concatenate([[0], np.cumsum(count)])
        dtype = np.int32 if len(self.values) < 2**31 else np.int64
        index = np.empty(int(ends[-1]), dtype=dtype)
        for s0, s1 in series_chunks(ends):
            index[ends[s0] : ends[s1]] = index_ranges(first[s0:s1], count[s0:s1])
        return torch.from_numpy(index)

    def to(self, device: torch.device | str) -> SeriesArrays:
        return SeriesArrays(
            self.values.to(device),
            self.extras.to(device),
            self.block_start.to(device),
            self.window_size,
            None if self.calendar is None else self.calendar.to(device),
            None if self.calendar_table is None else self.calendar_table.to(device),
            self.first_series,
            self.first_row,
        )


class Windows:
    """The window contract: a set of windows over scaled series, whatever the data's layout.

    Window ``i`` forecasts padded rows ``targets[i] .. targets[i] + H - 1`` from the ``W`` rows before
    ``targets[i]``; those lie in the target's own series block (its rows or its zero padding), so a
    window never sees another series. Memory is one int32 (int64 on huge data) per window; a batch is
    cut out of strided window views of the shared arrays with ``index_select`` (no per-window Python).

    Parameters
    ----------
    arrays : SeriesArrays
        The scaled, padded rows.
    targets : Tensor
        ``[M]`` int32 or int64 padded row of each window's first target.
    horizon : int
        Steps predicted per window (``H``).
    padding_mask : bool
        Add a feature that is 1 on real steps and 0 on padded ones (0 is a real scaled value).
    with_target : bool
        Return ``y``; forecast windows past the end of a series have none.
    static : Tensor or None
        ``[S, K]`` long category codes per series (0: unknown), returned as ``static [B, K]``.
    future_index : Tensor or None
        ``[Ff]`` long positions, among the ``E`` extra features of a step, of the future-known ones,
        returned for the target steps as ``x_future [B, H, Ff]`` (their rows must exist: a forecast
        window past a series' end needs arrays grown by ``H`` rows).
    """

    def __init__(
        self,
        arrays: SeriesArrays,
        targets: torch.Tensor,
        horizon: int = 1,
        padding_mask: bool = False,
        with_target: bool = True,
        static: torch.Tensor | None = None,
        future_index: torch.Tensor | None = None,
    ) -> None:
        self.horizon = horizon
        self.padding_mask = padding_mask
        self.with_target = with_target
        self.targets = targets
        self.static = static
        self.future_index = future_index
        self.share(arrays)

    def share(self, arrays: SeriesArrays) -> Windows:
        """Use ``arrays`` (the same data, perhaps on another device) and move the index to their device."""
        device = arrays.values.device
        self.arrays = arrays
        self.targets = self.targets.to(device)
        self.static = self.static.to(device) if self.static is not None else None
        if self.future_index is not None:
            self.future_index = self.future_index.to(device)
        window_size = arrays.window_size
        self._context_offsets = torch.arange(window_size, device=device)
        # Every window as a strided view (no copy): the context of padded target t is view row t - W.
        self._value_windows = arrays.values.unfold(0, window_size, 1)  # [P - W + 1, W]
        self._extra_windows = arrays.extras.unfold(0, window_size, 1).transpose(1, 2)  # [P - W + 1, W, E]
        self._calendar_windows = None
        if arrays.calendar is not None:
            self._calendar_windows = arrays.calendar.unfold(0, window_size, 1)  # [P - W + 1, W] keys
        if self.with_target:
            self._target_windows = arrays.values.unfold(0, self.horizon, 1)  # [P - H + 1, H]
        self._future_calendar = None
        if self.future_index is not None:
            self._future_windows = arrays.extras.unfold(0, self.horizon, 1).transpose(
                1, 2
            )  # [P - H + 1, H, E]
            if arrays.calendar is not None:
                self._future_calendar = arrays.calendar.unfold(0, self.horizon, 1)  # [P - H + 1, H] keys
        return self

    def to(self, device: torch.device | str) -> Windows:
        """Move the arrays (and so every gathered batch) to ``device``."""
        return self.share(self.arrays.to(device))

    @property
    def window_size(self) -> int:
        return self.arrays.window_size

    @property
    def num_series(self) -> int:
        return self.arrays.num_series

    @property
    def num_features(self) -> int:
        """Features per step in ``x``: extras, the optional padding mask, the value."""
        return self.arrays.num_extras + int(self.padding_mask) + 1

    def __len__(self) -> int:
        return len(self.targets)

    def _padded_targets(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded target rows ``[B]`` and blocks (from 0) ``[B]`` of windows ``index [B]`` (a block is
        series ``first_series + block`` of the frame)."""
        targets = self.targets[index.to(self.targets.device)].long()
        # The step before the target is always in the target's block, also for forecast windows
        # whose target is one past the series' last row (the next block's first row).
        series = torch.searchsorted(self.arrays.block_start, targets - 1, right=True) - 1
        return targets, series

    def locate(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(target_row [B], series [B])`` of windows ``index [B]``: the row of the frame (sorted by
        series then time) of each window's first target, and its series from 0. A forecast window past
        a series' end has the row one past the series' last row."""
        targets, block = self._padded_targets(index)
        arrays = self.arrays
        return targets - (block + 1) * self.window_size + arrays.first_row, block + arrays.first_series

    def series_index(self) -> np.ndarray:
        """``[M]`` series (from 0) of every window, in window order."""
        return self._padded_targets(torch.arange(len(self)))[1].cpu().numpy() + self.arrays.first_series

    def full_context(self, index: torch.Tensor) -> torch.Tensor:
        """``[B]`` bool: which of windows ``index [B]`` have no warm-up padding in their context."""
        targets, series = self._padded_targets(index)
        return (targets - self.window_size >= self.arrays.block_start[series] + self.window_size).cpu()

    def observed(self, index: torch.Tensor) -> Batch:
        """What scoring reads of windows ``index [B]`` besides a model's forecast, with no context
        gathered: ``last_value [B]`` (what persistence repeats), ``series_id``, ``target_row`` and ``y``
        as :meth:`gather` has them."""
        return self._values_only(index, context=False)

    def gather_values(self, index: torch.Tensor) -> Batch:
        """The values alone of windows ``index [B]`` (a regression on them, the ridge baseline, needs
        no extra features): ``values [B, W]``, the last feature of ``x``; ``series_id`` and ``y``."""
        return self._values_only(index, context=True)

    def _values_only(self, index: torch.Tensor, context: bool) -> Batch:
        with single_cpu_thread(self.arrays.values.device):
            targets, block = self._padded_targets(index)
            batch = {"series_id": block + (self.arrays.first_series + 1)}
            if context:
                batch["values"] = torch.index_select(self._value_windows, 0, targets - self.window_size)
            else:
                batch["last_value"] = torch.index_select(self.arrays.values, 0, targets - 1)  # [B]
                batch["target_row"] = targets - (block + 1) * self.window_size + self.arrays.first_row
            if self.with_target:
                batch["y"] = torch.index_select(self._target_windows, 0, targets)  # [B, H]
            return batch

    def gather(self, index: torch.Tensor) -> Batch:
        """Cut the windows ``index [B]`` out of the arrays.

        Returns
        -------
        dict
            ``x [B, W, F]`` float, ``series_id [B]`` long (from 1), ``target_row [B]`` long (see
            :meth:`locate`), ``static [B, K]`` long when the data has static columns, ``x_future
            [B, H, Ff]`` float with future-known features and, with targets, ``y [B, H]``.
        """
        with single_cpu_thread(self.arrays.values.device):
            return self._gather(index)

    def _gather(self, index: torch.Tensor) -> Batch:
        targets, series = self._padded_targets(index)
        window = self.window_size
        first = targets - window  # [B] view row of each window's context
        parts = self._step_features(self._extra_windows, self._calendar_windows, first)  # [B, W, E] pieces
        if self.padding_mask:
            first_real = self.arrays.block_start[series] + window  # [B] padded row of the series' step 0
            real = (first[:, None] + self._context_offsets) >= first_real[:, None]  # [B, W]
            parts.append(real.to(self.arrays.values.dtype).unsqueeze(-1))  # [B, W, 1]
        parts.append(torch.index_select(self._value_windows, 0, first).unsqueeze(-1))  # [B, W, 1]
        first_series = self.arrays.first_series  # series = block + first_series
        batch = {
            "x": torch.cat(parts, dim=-1),  # [B, W, F]
            "series_id": series + (first_series + 1),  # [B]; 0 stays reserved
            "target_row": targets - (series + 1) * window + self.arrays.first_row,  # [B]
        }
        if self.static is not None:
            batch["static"] = self.static[series + first_series]  # [B, K]
        if self.with_target:
            batch["y"] = torch.index_select(self._target_windows, 0, targets)  # [B, H]
        if self.future_index is not None:
            steps = self._step_features(self._future_windows, self._future_calendar, targets)
            steps = torch.cat(steps, dim=-1)  # [B, H, E]
            batch["x_future"] = torch.index_select(steps, 2, self.future_index)  # [B, H, Ff]
        return batch

    def _step_features(
        self, extra_windows: torch.Tensor, calendar_windows: torch.Tensor | None, first: torch.Tensor
    ) -> list[torch.Tensor]:
        """The extra features of the ``L`` steps from view row ``first [B]`` of ``extra_windows
        [V, L, E_float]`` (and of ``calendar_windows [V, L]`` keys): ``[floats [B, L, E_float]]``,
        then ``calendar [B, L, C]`` when the calendar features are keys (concatenated by the caller,
        once)."""
        # index_select on the contiguous-block views beats indexing a [B, L] row grid 3-6x on CPU.
        parts = [torch.index_select(extra_windows, 0, first)]  # [B, L, E_float]
        if calendar_windows is not None:
            keys = torch.index_select(calendar_windows, 0, first).reshape(-1).to(torch.int32)  # [B * L]
            calendar = torch.index_select(self.arrays.calendar_table, 0, keys)  # [B * L, C]
            parts.append(calendar.view(len(first), calendar_windows.shape[1], -1))  # [B, L, C] scaled
        return parts


def index_chunks(count: int, size: int = CHUNK_ROWS) -> Iterator[torch.Tensor]:
    """``arange(count)`` in consecutive pieces of ``size`` (never the whole ``[count]`` index at once)."""
    for start in range(0, count, size):
        yield torch.arange(start, min(start + size, count))


def index_ranges(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(start[i], start[i] + count[i])`` over ``i`` (negative counts: none)."""
    count = np.maximum(count, 0)
    within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return np.repeat(start, count) + within
