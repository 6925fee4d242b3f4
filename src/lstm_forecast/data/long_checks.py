"""The checks of a long file's rows, sorted by series then time, computed chunk by chunk of series.

Every check walks consecutive series ranges of about :data:`~lstm_forecast.data.windows.CHUNK_ROWS`
rows (:func:`~lstm_forecast.data.windows.series_chunks`), so its temporaries are chunk-sized, never
``[N]``: duplicate timestamps, changing static labels, rows off the frequency's grid, missing steps and
missing values. Each refusal names the first offending row in series-then-time order, as one pass over
the whole panel would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lstm_forecast.data.frame import LOOKAHEAD_FILLS, fill_reaching_edges, fill_within_series
from lstm_forecast.data.windows import CHUNK_ROWS, series_chunks
from lstm_forecast.errors import UserError

log = logging.getLogger(__name__)


def _chunks(offsets: np.ndarray) -> list[tuple[int, int]]:
    return series_chunks(offsets, CHUNK_ROWS)  # read at call time: tests use small chunks


def series_of_row(offsets: np.ndarray, row: int) -> int:
    return int(np.searchsorted(offsets, row, side="right") - 1)


def chunk_starts(offsets: np.ndarray, s0: int, s1: int) -> np.ndarray:
    """``[rows of series s0:s1]`` bool: the rows that start a series."""
    first = offsets[s0:s1][np.diff(offsets[s0 : s1 + 1]) > 0]
    starts = np.zeros(offsets[s1] - offsets[s0], dtype=bool)
    starts[first - offsets[s0]] = True
    return starts


def refuse_duplicates(
    stamps: pd.DatetimeIndex, offsets: np.ndarray, vocabulary: list[str], path: str
) -> None:
    """Refuse two rows of a series with one timestamp, naming the first and counting them all."""
    stamps_ns = stamps.asi8
    first, count = None, 0
    for s0, s1 in _chunks(offsets):
        a, b = offsets[s0], offsets[s1]
        same = (np.diff(stamps_ns[a:b]) == 0) & ~chunk_starts(offsets, s0, s1)[1:]
        count += int(same.sum())
        if first is None and same.any():
            first = int(a + np.flatnonzero(same)[0])
    if count:
        raise UserError(
            f"series {vocabulary[series_of_row(offsets, first)]!r} has {count} duplicate timestamp(s) in "
            f"{path}, first {stamps[first]}; keep one row per series and timestamp"
        )


def static_labels(
    label_codes: np.ndarray,
    labels: np.ndarray,
    order: np.ndarray | None,
    offsets: np.ndarray,
    vocabulary: list[str],
    column: str,
    path: str,
) -> np.ndarray:
    """``[S]`` label of one static column per series ("" where missing or the series has no rows);
    refused where a series has two.

    ``label_codes [N]`` index ``labels`` in file order (-1: missing); ``order [N]`` the sorted rows
    (None: the file is sorted)."""
    labels = np.append(labels, "")  # code -1 (missing) reads the last entry
    first = np.full(len(offsets) - 1, -1, dtype=np.int64)
    for s0, s1 in _chunks(offsets):
        a, b = offsets[s0], offsets[s1]
        part = label_codes[a:b] if order is None else label_codes[order[a:b]]
        changes = np.flatnonzero((part[1:] != part[:-1]) & ~chunk_starts(offsets, s0, s1)[1:])
        if len(changes):
            series = vocabulary[series_of_row(offsets, int(a + changes[0]))]
            raise UserError(
                f"static column {column!r} changes within series {series!r} in {path}; "
                "a static column holds one value per series (use extra_columns for per-step values)"
            )
        present = np.flatnonzero(np.diff(offsets[s0 : s1 + 1]) > 0)
        first[s0 + present] = part[offsets[s0 + present] - a]
    return labels[first]


def modal_step(stamps_ns: np.ndarray, offsets: np.ndarray) -> int | None:
    """The most common positive step between consecutive rows of a series (the smallest of equally
    common ones), None where there is none."""
    steps, counts = [], []
    for s0, s1 in _chunks(offsets):
        a, b = offsets[s0], offsets[s1]
        diffs = np.diff(stamps_ns[a:b])
        diffs = diffs[~chunk_starts(offsets, s0, s1)[1:] & (diffs > 0)]
        values, value_counts = np.unique(diffs, return_counts=True)
        steps.append(values)
        counts.append(value_counts)
    values, inverse = np.unique(np.concatenate(steps), return_inverse=True)
    if len(values) == 0:
        return None
    totals = np.bincount(inverse, weights=np.concatenate(counts))
    return int(values[np.argmax(totals)])


def _grid(stamps: pd.DatetimeIndex, freq: pd.DateOffset) -> np.ndarray | None:
    """Calendar frequencies: one grid of all anchored dates from the earliest row (ns); None for
    fixed-length ones, whose steps count from each series' own first timestamp."""
    if isinstance(freq, pd.offsets.Tick):
        return None
    # Every row must be on the grid, so the earliest one starts it (if it is off, it is reported).
    return pd.date_range(start=stamps.min(), end=stamps.max(), freq=freq).as_unit("ns").asi8


def chunk_positions(
    stamps_ns: np.ndarray, offsets: np.ndarray, s0: int, s1: int, freq: pd.DateOffset, grid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(position, on_grid)`` of the rows of series ``s0:s1``: the grid step of each from its series'
    first row, and whether it is on the ``freq`` grid."""
    a = offsets[s0]
    part = stamps_ns[a : offsets[s1]]
    first = np.repeat(offsets[s0:s1] - a, np.diff(offsets[s0 : s1 + 1]))
    if grid is None:
        step = pd.Timedelta(freq).value
        elapsed = part - part[first]
        return elapsed // step, elapsed % step == 0
    index = np.searchsorted(grid, part)
    on_grid = (index < len(grid)) & (grid[np.minimum(index, len(grid) - 1)] == part)
    return index - index[first], on_grid


def grid_positions(stamps: pd.DatetimeIndex, offsets: np.ndarray, freq: pd.DateOffset) -> np.ndarray:
    """``[N]`` int64 step of each row from its series' first row on the ``freq`` grid."""
    grid = _grid(stamps, freq)
    return np.concatenate(
        [np.zeros(0, dtype=np.int64)]
        + [chunk_positions(stamps.asi8, offsets, s0, s1, freq, grid)[0] for s0, s1 in _chunks(offsets)]
    )


@dataclass
class GridScan:
    """What one pass over the rows found: the first row (and count) of each kind of fault."""

    off_grid: int | None = None
    off_grid_count: int = 0
    gap: int | None = None
    gap_count: int = 0
    gap_series: int = 0
    missing: int | None = None
    missing_count: int = 0
    grid_rows: int = 0  # rows once every missing step is inserted


def _note(scan: GridScan, kind: str, rows: np.ndarray, a: int) -> None:
    """Count the ``rows`` (a chunk's bool mask) of one fault; keep its first row."""
    found = np.flatnonzero(rows)
    setattr(scan, f"{kind}_count", getattr(scan, f"{kind}_count") + len(found))
    if getattr(scan, kind) is None and len(found):
        setattr(scan, kind, int(a + found[0]))


def scan_grid(
    stamps: pd.DatetimeIndex, values: np.ndarray, extras: np.ndarray, offsets: np.ndarray, freq: pd.DateOffset
) -> GridScan:
    """Rows off the ``freq`` grid, rows more than one step after the previous row of their series
    (gaps; and how many series have one; the rows with every step inserted) and rows with a missing
    value (``values [N]`` or any of ``extras [E, N]``)."""
    grid = _grid(stamps, freq)
    stamps_ns = stamps.asi8
    scan = GridScan()
    for s0, s1 in _chunks(offsets):
        a, b = offsets[s0], offsets[s1]
        position, on_grid = chunk_positions(stamps_ns, offsets, s0, s1, freq, grid)
        _note(scan, "off_grid", ~on_grid, a)
        gap = ~chunk_starts(offsets, s0, s1) & (np.diff(position, prepend=0) > 1)
        _note(scan, "gap", gap, a)
        last = offsets[s0 + 1 : s1 + 1][np.diff(offsets[s0 : s1 + 1]) > 0] - 1 - a  # [series with rows]
        scan.grid_rows += int((position[last] + 1).sum())
        scan.gap_series += len(np.unique(np.searchsorted(offsets, a + np.flatnonzero(gap), side="right")))
        missing = np.isnan(values[a:b])
        for extra in extras:
            missing |= np.isnan(extra[a:b])
        _note(scan, "missing", missing, a)
    return scan


def fill_panel(
    stamps: pd.DatetimeIndex,
    numeric: np.ndarray,
    offsets: np.ndarray,
    position: np.ndarray,
    freq: pd.DateOffset,
    method: str | None,
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Insert the missing grid steps of every series (NaN), then fill NaNs within each series (not
    when ``method`` is None: they stay NaN, for the fill after the split)."""
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
        grid = pd.date_range(start=stamps.min(), end=stamps.max(), freq=freq).as_unit("ns")
        base = np.searchsorted(grid.asi8, starts.astype(np.int64))
        new_stamps = grid[base[new_series] + local]
    if method is None:
        return new_stamps, filled, new_offsets
    return new_stamps, fill_within_series(filled, new_series, method), new_offsets


def fill_or_refuse(
    stamps: pd.DatetimeIndex,
    numeric: np.ndarray,
    offsets: np.ndarray,
    freq: pd.DateOffset,
    fill_method: str | None,
    vocabulary: list[str],
    path: str,
    names: list[str],
    split_fill: bool = False,
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Refuse rows off the grid, then missing steps and values (naming the first), or insert and fill
    them per series (``split_fill``: insert, and leave bfill/interpolate's values NaN for the split);
    ``numeric [1 + E, N]``, its rows the columns ``names``."""
    scan = scan_grid(stamps, numeric[0], numeric[1:], offsets, freq)
    if scan.off_grid is not None:
        row = scan.off_grid
        raise UserError(
            f"series {vocabulary[series_of_row(offsets, row)]!r} has timestamp {stamps[row]} off its "
            f"{freq.freqstr} grid in {path} ({scan.off_grid_count} such rows); fix the timestamps or set "
            "data.source.freq"
        )
    dwarfed = scan.grid_rows > GAPS_DWARF_DATA * len(stamps)
    if dwarfed and fill_method is not None:
        log.warning(
            "%s; filling them as data.source.fill_method=%s says", _dwarfing(scan, freq, stamps), fill_method
        )
    if fill_method is None:
        if scan.gap is not None:
            row = scan.gap
            series = vocabulary[series_of_row(offsets, row)]
            fill = "set data.source.fill_method=ffill|bfill|interpolate|zero to fill them"
            fix = (
                f"{_dwarfing(scan, freq, stamps)}; if the steps are really missing, {fill}"
                if dwarfed
                else fill
            )
            raise UserError(
                f"series {series!r} has missing {freq.freqstr} steps between "
                f"{stamps[row - 1]} and {stamps[row]} in {path} ({scan.gap_series} series with gaps); {fix}"
            )
        if scan.missing is not None:
            row = scan.missing
            column = names[int(np.flatnonzero(np.isnan(numeric[:, row]))[0])]
            raise UserError(
                f"missing value in {path} in column {column!r} for series "
                f"{vocabulary[series_of_row(offsets, row)]!r} at {stamps[row]}; "
                "set data.source.fill_method=ffill|bfill|interpolate|zero or drop those rows"
            )
        return stamps, numeric, offsets
    if scan.gap is None and scan.missing is None:
        return stamps, numeric, offsets
    position = grid_positions(stamps, offsets, freq)
    deferred = split_fill and fill_method in LOOKAHEAD_FILLS
    method = None if deferred else fill_method
    stamps, filled, offsets = fill_panel(stamps, numeric.T, offsets, position, freq, method)
    if deferred:
        return stamps, np.ascontiguousarray(filled.T), offsets
    still = np.isnan(filled).any(axis=1)
    if still.any():
        row = int(np.flatnonzero(still)[0])
        column = names[int(np.flatnonzero(np.isnan(filled[row]))[0])]
        what = "has no value" if fill_method == "interpolate" else "starts or ends with a missing value"
        raise UserError(
            f"series {vocabulary[series_of_row(offsets, row)]!r} {what} in column {column!r} (at "
            f"{stamps[row]}) that fill_method={fill_method} cannot fill; drop those rows "
            f"or use data.source.fill_method={fill_reaching_edges(fill_method)}"
        )
    return stamps, np.ascontiguousarray(filled.T), offsets


# Missing steps that would make the panel more than this many times the rows read are more likely
# misread dates (day-first read month-first: 590 monthly rows become 17,000 daily ones) than gaps.
GAPS_DWARF_DATA = 3


def _dwarfing(scan: GridScan, freq: pd.DateOffset, stamps: pd.DatetimeIndex) -> str:
    """What the inferred gaps would do: the rows a fill would make from the rows read, and the
    settings that read the dates differently."""
    return (
        f"filling the missing {freq.freqstr} steps would make {scan.grid_rows:,} rows from the "
        f"{len(stamps):,} read, so the dates may be misread: set data.source.dayfirst=true for "
        "day-first dates (31/01/2024), data.source.date_format for another layout or data.source.freq "
        "for another step"
    )
