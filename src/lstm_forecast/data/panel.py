"""Long-format panels: many series of different lengths, each on its own timeline.

A long table holds one row per (series, timestamp) with the value and optional per-step extra columns
and per-series static category columns. It is sorted by series then time, checked (or filled) against
the series' frequency, and kept as flat arrays: memory is O(total rows), never O(series x time).

For windowing every series gets ``window_size`` zero rows in front of its own rows in one padded,
concatenated array, so a window never reaches into another series and the method's zero-padded
warm-up windows come for free. A window set is an index array of target positions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pandas.tseries.frequencies import to_offset

from lstm_forecast.data.calendar import calendar_features as make_calendar_features
from lstm_forecast.data.datamodule import SPLITS, ForecastDataModule
from lstm_forecast.data.scaling import MinMaxScaler
from lstm_forecast.data.sources import read_table
from lstm_forecast.data.windows import Batch
from lstm_forecast.errors import UserError

log = logging.getLogger(__name__)

FILL_METHODS = ("ffill", "interpolate", "zero")
DATE_SPLIT_KEYS = ("val_start", "test_start")


# --------------------------------------------------------------------------------------------- source
@dataclass(frozen=True)
class PanelFrame:
    """Rows of a long table, sorted by series then time, on a regular grid per series.

    Attributes
    ----------
    series_names : list of str
        ``[S]`` names; series ``s`` is id ``s + 1`` in batches.
    offsets : ndarray
        ``[S + 1]`` int64: rows of series ``s`` are ``offsets[s] : offsets[s + 1]`` (possibly none).
    timestamps : DatetimeIndex
        ``[N]`` timestamp of every row.
    values : ndarray
        ``[N]`` float64 series values.
    extras : DataFrame
        ``[N, E]`` float64 user extra columns.
    static : DataFrame
        ``[S, K]`` per-series category labels (strings), one column per static column.
    freq : DateOffset
        The step between consecutive rows of a series.
    """

    series_names: list[str]
    offsets: np.ndarray
    timestamps: pd.DatetimeIndex
    values: np.ndarray
    extras: pd.DataFrame
    static: pd.DataFrame
    freq: pd.DateOffset

    @property
    def num_rows(self) -> int:
        return len(self.values)

    @property
    def lengths(self) -> np.ndarray:
        """``[S]`` rows per series."""
        return np.diff(self.offsets)

    @property
    def row_series(self) -> np.ndarray:
        """``[N]`` series of each row, from 0."""
        return np.repeat(np.arange(len(self.series_names)), self.lengths)

    @property
    def local_index(self) -> np.ndarray:
        """``[N]`` position of each row within its series, from 0."""
        return np.arange(self.num_rows) - np.repeat(self.offsets[:-1], self.lengths)


def _require(columns: list[str], available: list[str], path: str, key: str) -> None:
    missing = [column for column in columns if column not in available]
    if missing:
        raise UserError(f"column(s) {missing} not found in {path} (it has {available}); fix {key}")


def _numeric_column(column: pd.Series, name: str, path: str) -> np.ndarray:
    """A column as float64; text is refused with its first offending row, blanks become NaN."""
    converted = pd.to_numeric(column, errors="coerce")
    bad = converted.isna() & column.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(
            f"column {name!r} in {path} is not numeric (row {row}: {column.iloc[row]!r}); "
            "fix the file or leave the column out of data.source"
        )
    values = converted.to_numpy(dtype=np.float64)
    if np.isinf(values).any():
        row = int(np.flatnonzero(np.isinf(values))[0])
        raise UserError(f"infinite value in {path} at row {row}, column {name!r}; fix the file")
    return values


def resolve_freq(freq: str | None, timestamps: pd.DatetimeIndex, offsets: np.ndarray) -> pd.DateOffset:
    """``freq`` as a pandas offset, or inferred: pandas' inference on the longest series, else the most
    common step between consecutive rows of a series."""
    if freq is not None:
        try:
            return to_offset(freq)
        except ValueError as error:
            raise UserError(f"data.source.freq={freq!r} is not a pandas frequency (e.g. h, D, MS)") from error
    lengths = np.diff(offsets)
    longest = int(np.argmax(lengths))
    if lengths[longest] >= 3:
        inferred = pd.infer_freq(timestamps[offsets[longest] : offsets[longest + 1]])
        if inferred is not None:
            return to_offset(inferred)
    steps = np.diff(timestamps.asi8)
    same_series = np.ones(len(steps), dtype=bool)
    same_series[offsets[1:-1][offsets[1:-1] > 0] - 1] = False  # a step from one series into the next
    steps = steps[same_series & (steps > 0)]
    if len(steps) == 0:
        raise UserError("cannot infer the frequency from series of one row each; set data.source.freq")
    values, counts = np.unique(steps, return_counts=True)
    return to_offset(pd.Timedelta(int(values[np.argmax(counts)]), unit="ns"))


def grid_positions(
    timestamps: pd.DatetimeIndex, offsets: np.ndarray, freq: pd.DateOffset
) -> tuple[np.ndarray, np.ndarray]:
    """Step of each row from its series' first row on the ``freq`` grid, and whether it is on the grid.

    Fixed-length frequencies (h, min, D...) count steps from each series' own first timestamp;
    calendar frequencies (MS, W-SUN, B...) use one grid of all anchored dates.

    Returns
    -------
    tuple
        ``(position [N] int64, on_grid [N] bool)``.
    """
    lengths = np.diff(offsets)
    first = np.repeat(offsets[:-1], lengths)
    stamps = timestamps.asi8
    if isinstance(freq, pd.offsets.Tick):
        step = pd.Timedelta(freq).value
        elapsed = stamps - stamps[first]
        return elapsed // step, elapsed % step == 0
    # Every row must be on the grid, so the earliest one starts it (if it is off, it is reported).
    grid = pd.date_range(start=timestamps.min(), end=timestamps.max(), freq=freq)
    index = np.searchsorted(grid.asi8, stamps)
    on_grid = (index < len(grid)) & (grid.asi8[np.minimum(index, len(grid) - 1)] == stamps)
    return index - index[first], on_grid


def _gaps(offsets: np.ndarray, position: np.ndarray) -> np.ndarray:
    """``[N]`` bool: rows more than one grid step after the previous row of their series."""
    local = np.arange(len(position)) - np.repeat(offsets[:-1], np.diff(offsets))
    return (local > 0) & (np.diff(position, prepend=0) > 1)


def _series_of_row(offsets: np.ndarray, row: int) -> int:
    return int(np.searchsorted(offsets, row, side="right") - 1)


def _fill(values: np.ndarray, row_series: np.ndarray, method: str) -> np.ndarray:
    """Fill NaNs of ``values [N, C]`` within each series (never from a neighbouring series)."""
    if method == "zero":
        return np.nan_to_num(values, nan=0.0)
    filled = values.copy()
    rows = np.arange(len(values))
    for column in range(values.shape[1]):
        known = ~np.isnan(values[:, column])
        previous = np.maximum.accumulate(np.where(known, rows, -1))  # last known row at or before
        has_previous = (previous >= 0) & (row_series[np.maximum(previous, 0)] == row_series)
        if method == "ffill":
            usable = ~known & has_previous
            filled[usable, column] = values[previous[usable], column]
            continue
        following = np.minimum.accumulate(np.where(known, rows, len(rows))[::-1])[::-1]
        has_following = (following < len(rows)) & (
            row_series[np.minimum(following, len(rows) - 1)] == row_series
        )
        usable = ~known & has_previous & has_following
        lo, hi = previous[usable], following[usable]
        weight = (rows[usable] - lo) / (hi - lo)
        filled[usable, column] = (1 - weight) * values[lo, column] + weight * values[hi, column]
    return filled


def long_file_frame(
    path: str,
    series_column: str = "series",
    timestamp_column: str = "timestamp",
    value_column: str = "value",
    extra_columns: list[str] | None = None,
    static_columns: list[str] | None = None,
    freq: str | None = None,
    fill_method: str | None = None,
    series_names: list[str] | None = None,
) -> PanelFrame:
    """A long CSV/Parquet file: one row per series and timestamp.

    Parameters
    ----------
    path : str
        The file (``.csv`` or ``.parquet``).
    series_column, timestamp_column, value_column : str
        Column names of the series name, the timestamp and the value.
    extra_columns : list of str
        Numeric per-step feature columns (known for every row).
    static_columns : list of str
        Per-series category columns (one value per series), fed to extra embeddings.
    freq : str or None
        Pandas frequency of every series (``h``, ``D``, ``MS``...); None infers it.
    fill_method : str or None
        None refuses missing steps and missing values with the first one found; ``ffill``,
        ``interpolate`` (linear) or ``zero`` fills them within each series.
    series_names : list of str or None
        The series order (a checkpoint's); None sorts the names. Names not listed are refused.
    """
    extra_columns = list(extra_columns or [])
    static_columns = list(static_columns or [])
    if fill_method is not None and fill_method not in FILL_METHODS:
        raise UserError(f"unknown data.source.fill_method {fill_method!r}; choose one of {FILL_METHODS} or null")
    table = read_table(path)
    columns = [str(c) for c in table.columns]
    _require([series_column], columns, path, "data.source.series_column")
    _require([timestamp_column], columns, path, "data.source.timestamp_column")
    _require([value_column], columns, path, "data.source.value_column")
    _require(extra_columns, columns, path, "data.source.extra_columns")
    _require(static_columns, columns, path, "data.source.static_columns")
    roles = [series_column, timestamp_column, value_column, *extra_columns, *static_columns]
    repeated = sorted({c for c in roles if roles.count(c) > 1})
    if repeated:
        raise UserError(f"column(s) {repeated} are given more than one role in data.source; list each once")
    if len(table) == 0:
        raise UserError(f"{path} has no rows")

    names = table[series_column]
    if names.isna().any():
        row = int(np.flatnonzero(names.isna().to_numpy())[0])
        raise UserError(f"missing series name in {path} at row {row}; fill column {series_column!r}")
    names = names.astype(str)
    vocabulary = sorted(names.unique()) if series_names is None else list(series_names)
    codes = pd.Categorical(names, categories=vocabulary).codes
    if (codes < 0).any():
        unknown = sorted(set(names[codes < 0]))
        raise UserError(
            f"series {unknown[:5]} in {path} were not in the training data; "
            "a checkpoint forecasts only the series it was trained on"
        )
    timestamps = pd.to_datetime(table[timestamp_column], errors="coerce")
    if timestamps.isna().any():
        row = int(np.flatnonzero(timestamps.isna().to_numpy())[0])
        raise UserError(
            f"unparseable timestamp in {path} at row {row} ({table[timestamp_column].iloc[row]!r}); "
            "fix data.source.timestamp_column or the file"
        )
    timezone = timestamps.dt.tz
    if timezone is not None:  # grid arithmetic in UTC; the zone is put back at the end
        timestamps = timestamps.dt.tz_convert(None)
    order = np.lexsort((timestamps.to_numpy(), codes))
    codes = codes[order].astype(np.int64)
    stamps = pd.DatetimeIndex(timestamps.to_numpy()[order]).as_unit("ns")  # grid arithmetic is in ns
    offsets = np.searchsorted(codes, np.arange(len(vocabulary) + 1)).astype(np.int64)
    duplicate = np.flatnonzero((np.diff(codes) == 0) & (np.diff(stamps.asi8) == 0))
    if len(duplicate):
        row = int(duplicate[0])
        raise UserError(
            f"series {vocabulary[codes[row]]!r} has {len(duplicate)} duplicate timestamp(s) in {path}, "
            f"first {stamps[row]}; keep one row per series and timestamp"
        )
    numeric = np.column_stack(
        [_numeric_column(table[c], c, path)[order] for c in [value_column, *extra_columns]]
    )  # [N, 1 + E]
    static = _static_labels(table, static_columns, names, order, codes, vocabulary, path)
    del table

    offset = resolve_freq(freq, stamps, offsets)
    position, on_grid = grid_positions(stamps, offsets, offset)
    if not on_grid.all():
        row = int(np.flatnonzero(~on_grid)[0])
        series = vocabulary[codes[row]]
        raise UserError(
            f"series {series!r} has timestamp {stamps[row]} off its {offset.freqstr} grid in {path} "
            f"({int((~on_grid).sum())} such rows); fix the timestamps or set data.source.freq"
        )
    gap = _gaps(offsets, position)
    missing_value = np.isnan(numeric).any(axis=1)
    if fill_method is None:
        if gap.any():
            row = int(np.flatnonzero(gap)[0])
            affected = len(np.unique(codes[gap]))
            raise UserError(
                f"series {vocabulary[codes[row]]!r} has missing {offset.freqstr} steps between "
                f"{stamps[row - 1]} and {stamps[row]} in {path} ({affected} series with gaps); "
                "set data.source.fill_method=ffill|interpolate|zero to fill them"
            )
        if missing_value.any():
            row = int(np.flatnonzero(missing_value)[0])
            raise UserError(
                f"missing value in {path} for series {vocabulary[codes[row]]!r} at {stamps[row]}; "
                "set data.source.fill_method=ffill|interpolate|zero or drop those rows"
            )
    elif gap.any() or missing_value.any():
        stamps, numeric, offsets = _fill_panel(stamps, numeric, offsets, position, offset, fill_method)
        still = np.isnan(numeric).any(axis=1)
        if still.any():
            row = int(np.flatnonzero(still)[0])
            raise UserError(
                f"series {vocabulary[_series_of_row(offsets, row)]!r} starts or ends with a missing value "
                f"at {stamps[row]} that fill_method={fill_method} cannot fill; drop those rows "
                "or use fill_method=zero"
            )
        log.info("filled %d missing steps/values with %s", int(gap.sum() + missing_value.sum()), fill_method)
    if timezone is not None:
        stamps = stamps.tz_localize("UTC").tz_convert(timezone)
    return PanelFrame(
        series_names=vocabulary,
        offsets=offsets,
        timestamps=stamps,
        values=numeric[:, 0],
        extras=pd.DataFrame(numeric[:, 1:], columns=extra_columns),
        static=static,
        freq=offset,
    )


def _static_labels(
    table: pd.DataFrame,
    static_columns: list[str],
    names: pd.Series,
    order: np.ndarray,
    codes: np.ndarray,
    vocabulary: list[str],
    path: str,
) -> pd.DataFrame:
    """``[S, K]`` string label of each static column per series; refused where a series has two."""
    static = pd.DataFrame(index=pd.Index(vocabulary, name="series"))
    for column in static_columns:
        labels = table[column].astype(str).to_numpy()[order]
        changes = np.flatnonzero((np.diff(codes) == 0) & (labels[1:] != labels[:-1]))
        if len(changes):
            series = vocabulary[codes[changes[0]]]
            raise UserError(
                f"static column {column!r} changes within series {series!r} in {path}; "
                "a static column holds one value per series (use extra_columns for per-step values)"
            )
        first = np.searchsorted(codes, np.arange(len(vocabulary)))
        present = first < len(codes)
        per_series = np.full(len(vocabulary), "", dtype=object)
        per_series[present] = labels[np.minimum(first, len(codes) - 1)][present]
        static[column] = per_series
    return static


def _fill_panel(
    stamps: pd.DatetimeIndex,
    numeric: np.ndarray,
    offsets: np.ndarray,
    position: np.ndarray,
    freq: pd.DateOffset,
    method: str,
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Insert the missing grid steps of every series (NaN), then fill NaNs within each series."""
    lengths = np.diff(offsets)
    last = offsets[1:] - 1
    new_lengths = np.where(lengths > 0, position[np.maximum(last, 0)] + 1, 0)
    new_offsets = np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int64)
    row_series = np.repeat(np.arange(len(lengths)), lengths)
    target = new_offsets[row_series] + position  # new row of each old row
    filled = np.full((new_offsets[-1], numeric.shape[1]), np.nan)
    filled[target] = numeric
    new_series = np.repeat(np.arange(len(lengths)), new_lengths)
    local = np.arange(new_offsets[-1]) - new_offsets[new_series]
    first_stamp = stamps[offsets[:-1][lengths > 0]]
    starts = np.zeros(len(lengths), dtype="datetime64[ns]")
    starts[lengths > 0] = first_stamp.to_numpy()
    if isinstance(freq, pd.offsets.Tick):
        step = np.timedelta64(pd.Timedelta(freq).value, "ns")
        new_stamps = pd.DatetimeIndex(starts[new_series] + local * step)
    else:
        grid = pd.date_range(start=stamps.min(), end=stamps.max(), freq=freq)
        base = np.searchsorted(grid.asi8, starts.astype(np.int64))
        new_stamps = grid[base[new_series] + local]
    return new_stamps, _fill(filled, new_series, method), new_offsets


def synthetic_long_table(
    num_series: int = 20,
    max_length: int = 400,
    min_length: int = 20,
    freq: str = "h",
    start: str = "2024-01-01",
    seed: int = 0,
) -> pd.DataFrame:
    """A ragged long panel (``series, timestamp, value, category``) for examples, tests and benchmarks.

    Series have random lengths in ``[min_length, max_length]``, start at random steps within the span
    (so they start and end at different times), differ in level by orders of magnitude and have a daily
    cycle; ``category`` is a static label (one of three per series).
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_length, max_length + 1, num_series)
    first_step = rng.integers(0, max_length - lengths + 1)
    series = np.repeat(np.arange(num_series), lengths)
    local = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    step = first_step[series] + local
    level = 10 ** rng.uniform(0, 4, num_series)
    phase = rng.uniform(0, 2 * np.pi, num_series)
    cycle = np.sin(2 * np.pi * step / 24 + phase[series])
    values = level[series] * (1 + 0.3 * cycle + 0.05 * rng.standard_normal(len(step)))
    width = len(str(num_series))
    return pd.DataFrame(
        {
            "series": pd.Categorical([f"s{i:0{width}d}" for i in range(num_series)])[series],
            "timestamp": pd.Timestamp(start) + step * pd.Timedelta(to_offset(freq)),
            "value": values,
            "category": np.array(["a", "b", "c"])[np.arange(num_series) % 3][series],
        }
    )


# --------------------------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class PanelArrays:
    """Scaled rows of every series, each series preceded by ``window_size`` zero rows.

    Attributes
    ----------
    values : Tensor
        ``[N + S * W]`` series values.
    extras : Tensor
        ``[N + S * W, E]`` extra features.
    block_start : Tensor
        ``[S]`` long: padded row of series ``s``'s first zero row; its data row ``i`` (from 0) is
        padded row ``block_start[s] + W + i``.
    window_size : int
        Zero rows in front of each series (``W``).
    """

    values: torch.Tensor
    extras: torch.Tensor
    block_start: torch.Tensor
    window_size: int

    @classmethod
    def from_rows(
        cls, values: np.ndarray, extras: np.ndarray, offsets: np.ndarray, window_size: int
    ) -> PanelArrays:
        """Pad ``values [N]`` and ``extras [N, E]``, rows of series ``s`` at ``offsets[s]:offsets[s+1]``."""
        num_series = len(offsets) - 1
        row_series = np.repeat(np.arange(num_series), np.diff(offsets))
        padded_row = torch.from_numpy(np.arange(len(values)) + (row_series + 1) * window_size)  # [N]
        total = len(values) + num_series * window_size
        padded_values = torch.zeros(total, dtype=torch.float32)
        padded_values[padded_row] = torch.from_numpy(values.astype(np.float32))
        padded_extras = torch.zeros(total, extras.shape[1], dtype=torch.float32)
        padded_extras[padded_row] = torch.from_numpy(extras.astype(np.float32))
        block_start = torch.from_numpy(offsets[:-1] + np.arange(num_series) * window_size)
        return cls(padded_values, padded_extras, block_start.long(), window_size)

    @property
    def num_series(self) -> int:
        return len(self.block_start)

    def padded_rows(self, series: np.ndarray, local: np.ndarray) -> np.ndarray:
        """Padded row of step ``local`` (from 0) of series ``series`` (both ``[M]``)."""
        return self.block_start.cpu().numpy()[series] + self.window_size + local

    def to(self, device: torch.device | str) -> PanelArrays:
        return PanelArrays(
            self.values.to(device), self.extras.to(device), self.block_start.to(device), self.window_size
        )


class PanelWindows:
    """Windows whose targets are the padded rows ``targets``; same contract as ``WideWindows``.

    Window ``i`` forecasts padded rows ``targets[i] .. targets[i] + H - 1`` from the ``W`` rows before
    ``targets[i]``; those lie in the target's own series block (its rows or its zero padding), so a
    window never sees another series. Memory is one int64 per window.

    Parameters
    ----------
    arrays : PanelArrays
        The scaled, padded rows.
    targets : Tensor
        ``[M]`` long padded row of each window's first target, sorted (series, then time).
    horizon : int
        Steps predicted per window (``H``).
    padding_mask : bool
        Add a feature that is 1 on real steps and 0 on padded ones.
    with_target : bool
        Return ``y``; forecast windows past the end of a series have none.
    static : Tensor or None
        ``[S, K]`` long category codes per series (0: unknown), returned as ``static [B, K]``.
    """

    def __init__(
        self,
        arrays: PanelArrays,
        targets: torch.Tensor,
        horizon: int = 1,
        padding_mask: bool = False,
        with_target: bool = True,
        static: torch.Tensor | None = None,
    ) -> None:
        self.arrays = arrays
        self.targets = targets
        self.horizon = horizon
        self.padding_mask = padding_mask
        self.with_target = with_target
        self.static = static
        self._set_offsets(arrays.values.device)

    def _set_offsets(self, device: torch.device) -> None:
        self._context_offsets = torch.arange(-self.window_size, 0, device=device)
        self._horizon_offsets = torch.arange(self.horizon, device=device)

    def to(self, device: torch.device | str) -> PanelWindows:
        """Move the arrays (and so every gathered batch) to ``device``."""
        self.arrays = self.arrays.to(device)
        return self.share(self.arrays)

    def share(self, arrays: PanelArrays) -> PanelWindows:
        """Use ``arrays`` (the same data, already on a device) and move the index to their device."""
        device = arrays.values.device
        self.arrays = arrays
        self.targets = self.targets.to(device)
        self.static = self.static.to(device) if self.static is not None else None
        self._set_offsets(device)
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
        return len(self.targets)

    def locate(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded target rows ``[B]`` and series (from 0) ``[B]`` of windows ``index [B]``."""
        targets = self.targets[index.to(self.targets.device)]
        # The step before the target is always in the target's block, also for forecast windows
        # whose target is one past the series' last row (the next block's first row).
        series = torch.searchsorted(self.arrays.block_start, targets - 1, right=True) - 1
        return targets, series

    def gather(self, index: torch.Tensor) -> Batch:
        """Cut the windows ``index [B]`` out of the arrays in one indexing operation.

        Returns
        -------
        dict
            ``x [B, W, F]`` float, ``series_id [B]`` long (from 1), ``target_row [B]`` long (row of the
            long table, sorted by series then time; one past the series' last row for forecast windows),
            ``static [B, K]`` long when the data has static columns and, with targets, ``y [B, H]``.
        """
        targets, series = self.locate(index)
        window = self.window_size
        rows = targets[:, None] + self._context_offsets  # [B, W]
        values = self.arrays.values[rows]  # [B, W]
        parts = [self.arrays.extras[rows]]  # [B, W, E]
        if self.padding_mask:
            real = rows - self.arrays.block_start[series][:, None] >= window  # [B, W]
            parts.append(real.to(values.dtype).unsqueeze(-1))  # [B, W, 1]
        parts.append(values.unsqueeze(-1))  # [B, W, 1]
        batch = {
            "x": torch.cat(parts, dim=-1),  # [B, W, F]
            "series_id": series + 1,  # [B]; 0 stays reserved
            "target_row": targets - (series + 1) * window,  # [B]
        }
        if self.static is not None:
            batch["static"] = self.static[series]  # [B, K]
        if self.with_target:
            batch["y"] = self.arrays.values[targets[:, None] + self._horizon_offsets]  # [B, H]
        return batch


def index_ranges(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(start[i], start[i] + count[i])`` over ``i`` (negative counts: none)."""
    count = np.maximum(count, 0)
    within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return np.repeat(start, count) + within


# --------------------------------------------------------------------------------------------- split
def _timestamp(value: Any, key: str, tz: Any) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise UserError(f"data.split.{key}={value!r} is not a date (e.g. 2024-03-01)") from error
    if tz is not None and stamp.tz is None:
        stamp = stamp.tz_localize(tz)
    return stamp


def split_bounds(split: dict[str, Any], frame: PanelFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Rows ``[lo, hi)`` (within each series, ``[S]`` each) of train, validation and test.

    ``split`` holds per-series fractions ``{train, val, test}`` (each series split by its own length;
    rows after the test part unused) and/or global cut-off dates ``{val_start, test_start}`` with an
    optional exclusive ``test_end`` (train: every row before ``val_start``); dates, when set (not
    null), take precedence. A series may have no rows in a split; it is then absent from it.
    """
    lengths = frame.lengths
    dates = {key: split[key] for key in (*DATE_SPLIT_KEYS, "test_end") if split.get(key) is not None}
    unknown = sorted(set(split) - {*SPLITS, *DATE_SPLIT_KEYS, "test_end"})
    if unknown:
        raise UserError(f"unknown data.split key(s) {unknown}; use train/val/test fractions or val_start/test_start")
    if dates:
        if not set(DATE_SPLIT_KEYS) <= set(dates):
            raise UserError(f"data.split by date needs both val_start and test_start; got {dates}")
        tz = frame.timestamps.tz
        cut_offs = [_timestamp(value, key, tz) for key, value in dates.items()]
        if any(later <= earlier for earlier, later in zip(cut_offs, cut_offs[1:], strict=False)):
            raise UserError(f"data.split dates must increase (val_start < test_start < test_end); got {dates}")
        row_series = frame.row_series
        counts = [np.bincount(row_series[frame.timestamps < date], minlength=len(lengths)) for date in cut_offs]
        if len(counts) == 2:
            counts.append(lengths)
        cuts = [np.zeros_like(lengths), *counts]
    elif all(split.get(name) is not None for name in SPLITS):
        fractions = [split[name] for name in SPLITS]
        if not all(isinstance(f, float) and 0 < f < 1 for f in fractions):
            raise UserError(
                f"data.split for long data takes per-series fractions in (0, 1) or dates "
                f"(val_start, test_start[, test_end]); got {split}"
            )
        if sum(fractions) > 1 + 1e-9:
            raise UserError(f"data.split fractions sum to {sum(fractions):.3f} > 1; make them add up to at most 1")
        n_val, n_test = (np.rint(f * lengths).astype(np.int64) for f in fractions[1:])
        n_train = np.minimum(np.rint(fractions[0] * lengths).astype(np.int64), lengths - n_val - n_test)
        n_train = np.maximum(n_train, 0)
        cuts = [np.zeros_like(lengths), n_train, n_train + n_val, n_train + n_val + n_test]
    else:
        raise UserError(
            "data.split for long data is either per-series fractions {train, val, test} or cut-off dates "
            f"{{val_start, test_start[, test_end]}}; got keys {sorted(split)}"
        )
    return {name: (cuts[i], cuts[i + 1]) for i, name in enumerate(SPLITS)}


# --------------------------------------------------------------------------------------------- datamodule
class PanelDataModule(ForecastDataModule):
    """Windows of a long-format panel: series of their own lengths and timelines.

    Same constructor, loaders and batch contract as :class:`ForecastDataModule`; ``source`` has
    ``kind: long_file`` and the options of :func:`long_file_frame`, ``split`` per-series fractions
    or cut-off dates (:func:`split_bounds`). Each series is min-max scaled with its own training rows;
    extra features are scaled globally on all training rows. A series without training rows cannot
    be scaled without leaking, so it is left out of every split (and reported).
    """

    _series_order: list[str] | None = None  # a checkpoint's series order, once restored
    _static_vocabulary: list[list[str]] | None = None  # per static column, labels of codes 1..C
    extra_scaler: MinMaxScaler | None = None
    series_train_rows: np.ndarray | None = None  # [S] training rows per series at fit time

    # ----------------------------------------------------------------------------- source and layout
    def load_frame(self) -> PanelFrame:
        """The sorted, checked (or filled) long table (read once and cached)."""
        if self._frame is None:
            options = {k: v for k, v in self.source.items() if k != "kind"}
            if self.source["kind"] != "long_file":
                raise UserError(f"data.source.kind must be long_file for long data, got {self.source['kind']!r}")
            unknown = sorted(set(options) - set(LONG_FILE_OPTIONS))
            if unknown:
                raise UserError(f"unknown data.source option(s) {unknown} for long_file; use {LONG_FILE_OPTIONS}")
            if "path" not in options:
                raise UserError("data.source.path is missing; give the long CSV or Parquet file")
            self._frame = long_file_frame(**options, series_names=self._series_order)
        return self._frame

    @property
    def series_names(self) -> list[str]:
        return list(self.load_frame().series_names)

    @property
    def feature_names(self) -> list[str]:
        """Extra features per step, in ``x`` order: user columns, then calendar features."""
        return [str(c) for c in self.load_frame().extras.columns] + self.calendar_feature_names

    @property
    def timestamps(self) -> pd.DatetimeIndex:
        """``[N]`` timestamp of every row of the long table; a batch's ``target_row`` indexes it."""
        return self.load_frame().timestamps

    @property
    def static_names(self) -> list[str]:
        return [str(c) for c in self.load_frame().static.columns]

    @property
    def static_vocabulary(self) -> list[list[str]]:
        """Per static column, the labels of codes ``1..C`` (code 0: a label unseen in training)."""
        if self._static_vocabulary is None:
            static = self.load_frame().static
            self._static_vocabulary = [sorted(set(static[c]) - {""}) for c in static.columns]
        return self._static_vocabulary

    @property
    def static_cardinalities(self) -> list[int]:
        """Codes per static column, including the unknown code 0 (the network's embedding sizes)."""
        return [len(labels) + 1 for labels in self.static_vocabulary]

    def static_codes(self) -> torch.Tensor | None:
        """``[S, K]`` long code of each series' static labels, or None without static columns."""
        static = self.load_frame().static
        if static.shape[1] == 0:
            return None
        codes = [
            pd.Categorical(static[column], categories=labels).codes.astype(np.int64) + 1
            for column, labels in zip(static.columns, self.static_vocabulary, strict=True)
        ]
        return torch.from_numpy(np.stack(codes, axis=1))

    def feature_table(self) -> np.ndarray:
        """``[N, E]`` float64 extra features of every row: user columns, then calendar features."""
        frame = self.load_frame()
        calendar = make_calendar_features(frame.timestamps, self.calendar_feature_names)
        return np.concatenate([frame.extras.to_numpy(), calendar.to_numpy()], axis=1)

    # ----------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        """Split each series, fit the scalers on training rows (unless restored), build the windows."""
        if self.windows:
            return
        frame = self.load_frame()
        extras = self.feature_table()
        bounds = split_bounds(self.split, frame)
        row_series, local = frame.row_series, frame.local_index
        if self.scaler is None:
            self._fit_scalers(frame, extras, row_series, local < bounds["train"][1][row_series])
        elif len(self.extra_scaler.data_min) != extras.shape[1]:
            raise UserError(
                f"the data has {extras.shape[1]} extra features but the checkpoint's scaler was fitted on "
                f"{len(self.extra_scaler.data_min)}; use data with the training columns"
            )
        values = self.scaler.transform(frame.values, column_index=row_series)
        arrays = PanelArrays.from_rows(values, self.extra_scaler.transform(extras), frame.offsets, self.window_size)
        del values, extras
        scaled_series = self.series_train_rows > 0
        horizon, static = self.horizon, self.static_codes()
        self.windows = {}
        for name, (lo, hi) in bounds.items():
            # Training targets start at step 1: the first window holds step 0 alone (the warm-up).
            start = np.maximum(lo, 1) if name == "train" else lo
            count = np.where(scaled_series, hi - horizon + 1 - start, 0)
            local_targets = index_ranges(start, count)
            series = np.repeat(np.arange(len(lo)), np.maximum(count, 0))
            targets = torch.from_numpy(arrays.padded_rows(series, local_targets))
            self.windows[name] = PanelWindows(arrays, targets, horizon, self.padding_mask, True, static)
        empty = [name for name, windows in self.windows.items() if len(windows) == 0]
        if empty:
            raise UserError(
                f"no {'/'.join(empty)} windows: every series has fewer rows than the horizon ({horizon}) "
                f"there (data.split={self.split}); give those splits more rows or use a shorter horizon"
            )
        if self._use_device_arrays():
            device_arrays = arrays.to(self.trainer.strategy.root_device)
            for windows in self.windows.values():
                windows.share(device_arrays)

    def _fit_scalers(
        self, frame: PanelFrame, extras: np.ndarray, row_series: np.ndarray, train_rows: np.ndarray
    ) -> None:
        """Per-series value scaler and z statistics, global extra-feature scaler, from training rows."""
        num_series = len(frame.series_names)
        if not train_rows.any():
            raise UserError(f"no training rows with data.split={self.split}; move the cut-off later")
        train_values = pd.Series(frame.values[train_rows])
        stats = train_values.groupby(row_series[train_rows]).agg(["min", "max", "mean", "count"])
        stats["std"] = train_values.groupby(row_series[train_rows]).std(ddof=0)
        stats = stats.reindex(range(num_series))
        self.series_train_rows = stats["count"].fillna(0).to_numpy(dtype=np.int64)
        data_min = stats["min"].fillna(0.0).to_numpy()
        self.scaler = MinMaxScaler(data_min=data_min, data_range=stats["max"].fillna(0.0).to_numpy() - data_min)
        self.series_mean = stats["mean"].fillna(0.0).to_numpy()
        std = stats["std"].fillna(0.0).to_numpy()
        self.series_std = np.where(std > 0, std, 1.0)
        self.extra_scaler = MinMaxScaler.fit(extras[train_rows])
        unscaled = [name for name, rows in zip(frame.series_names, self.series_train_rows, strict=True) if not rows]
        if unscaled:
            log.warning(
                "%d series have no training rows and are left out of every split (no scale without "
                "leaking the future): %s",
                len(unscaled),
                unscaled[:10],
            )

    # ----------------------------------------------------------------------------- forecasting
    def forecast_windows(self) -> PanelWindows:
        """One window per scaled series forecasting the ``horizon`` steps after its last row (no ``y``)."""
        self.setup()
        frame = self.load_frame()
        arrays = next(iter(self.windows.values())).arrays
        series = np.flatnonzero((frame.lengths > 0) & (self.series_train_rows > 0))
        targets = torch.from_numpy(arrays.padded_rows(series, frame.lengths[series]))
        return PanelWindows(arrays, targets, self.horizon, self.padding_mask, False, self.static_codes())

    def future_timestamps(self, series_index: np.ndarray, steps: int) -> pd.DatetimeIndex:
        """``[M * steps]`` timestamps of the ``steps`` steps after the last row of each series in
        ``series_index [M]`` (series-major)."""
        frame = self.load_frame()
        last = frame.timestamps[frame.offsets[np.asarray(series_index) + 1] - 1]  # [M]
        ahead = np.stack([(last + (k + 1) * frame.freq).asi8 for k in range(steps)], axis=1)  # [M, steps]
        stamps = pd.DatetimeIndex(ahead.ravel().view("datetime64[ns]"))
        return stamps if last.tz is None else stamps.tz_localize("UTC").tz_convert(last.tz)

    # ----------------------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict[str, Any]:
        if self.scaler is None:
            return {}
        return {
            **super().state_dict(),
            "extra_scaler": self.extra_scaler.state_dict(),
            "series_train_rows": torch.from_numpy(self.series_train_rows.copy()),
            "static_names": self.static_names,
            "static_vocabulary": [list(labels) for labels in self.static_vocabulary],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        order = [str(name) for name in state_dict["series_names"]]
        if self._frame is not None and self._frame.series_names != order:
            self._frame = None  # re-read in the checkpoint's series order (its embedding rows)
        self._series_order = order
        self.scaler = MinMaxScaler.from_state_dict(state_dict["scaler"])
        self.extra_scaler = MinMaxScaler.from_state_dict(state_dict["extra_scaler"])
        self.series_mean = state_dict["series_mean"].numpy()
        self.series_std = state_dict["series_std"].numpy()
        self.series_train_rows = state_dict["series_train_rows"].numpy()
        self._static_vocabulary = [list(labels) for labels in state_dict["static_vocabulary"]]
        self.windows = {}
        if self.static_names != list(state_dict["static_names"]):
            raise UserError(
                f"the data's static columns {self.static_names} differ from the checkpoint's "
                f"{list(state_dict['static_names'])}; set data.source.static_columns as in training"
            )


LONG_FILE_OPTIONS = (
    "path",
    "series_column",
    "timestamp_column",
    "value_column",
    "extra_columns",
    "static_columns",
    "freq",
    "fill_method",
)
