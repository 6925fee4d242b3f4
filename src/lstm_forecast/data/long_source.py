"""Long-format sources: one row per (series, timestamp), series of their own lengths and timelines.

The table is sorted by series then time, checked (or filled) against the series' frequency and kept
as flat arrays: memory is O(total rows), never O(series x time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from lstm_forecast.data.sources import read_table
from lstm_forecast.errors import UserError

log = logging.getLogger(__name__)

FILL_METHODS = ("ffill", "interpolate", "zero")
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
    steps = np.diff(timestamps.as_unit("ns").asi8)
    same_series = np.ones(len(steps), dtype=bool)
    boundaries = offsets[1:-1]
    boundaries = boundaries[(boundaries > 0) & (boundaries < len(timestamps))]
    same_series[boundaries - 1] = False  # a step from one series into the next
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
    timestamps = timestamps.as_unit("ns")  # pandas may parse to us or s; the arithmetic is in ns
    stamps = timestamps.asi8
    if isinstance(freq, pd.offsets.Tick):
        step = pd.Timedelta(freq).value
        elapsed = stamps - stamps[first]
        return elapsed // step, elapsed % step == 0
    # Every row must be on the grid, so the earliest one starts it (if it is off, it is reported).
    grid = pd.date_range(start=timestamps.min(), end=timestamps.max(), freq=freq).as_unit("ns")
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
        raise UserError(
            f"unknown data.source.fill_method {fill_method!r}; choose one of {FILL_METHODS} or null"
        )
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

    name_codes, names = _factorize(table[series_column])
    if (name_codes < 0).any():
        row = int(np.flatnonzero(name_codes < 0)[0])
        raise UserError(f"missing series name in {path} at row {row}; fill column {series_column!r}")
    vocabulary = sorted(names) if series_names is None else list(series_names)
    series_of_name = pd.Index(vocabulary).get_indexer(names)  # [U] -> series, -1 if unknown
    if (series_of_name < 0).any():
        unknown = sorted(names[series_of_name < 0])
        raise UserError(
            f"series {unknown[:5]} in {path} were not in the training data; "
            "a checkpoint forecasts only the series it was trained on"
        )
    codes = series_of_name[name_codes]
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
    static = _static_labels(table, static_columns, order, codes, offsets, vocabulary, path)
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


def _factorize(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(codes [N], labels [U])``: each row's label as an index into the distinct labels (as strings),
    -1 where missing; without building a string per row (categorical columns stay cheap)."""
    codes, uniques = pd.factorize(column)
    return codes.astype(np.int64), np.asarray(uniques.astype(str), dtype=object)


def _static_labels(
    table: pd.DataFrame,
    static_columns: list[str],
    order: np.ndarray,
    codes: np.ndarray,
    offsets: np.ndarray,
    vocabulary: list[str],
    path: str,
) -> pd.DataFrame:
    """``[S, K]`` label of each static column per series ("" where missing); refused where a series
    has two."""
    static = pd.DataFrame(index=pd.Index(vocabulary, name="series"))
    present = np.diff(offsets) > 0
    for column in static_columns:
        label_codes, labels = _factorize(table[column])
        label_codes = label_codes[order]
        changes = np.flatnonzero((np.diff(codes) == 0) & (np.diff(label_codes) != 0))
        if len(changes):
            series = vocabulary[codes[changes[0]]]
            raise UserError(
                f"static column {column!r} changes within series {series!r} in {path}; "
                "a static column holds one value per series (use extra_columns for per-step values)"
            )
        first = label_codes[np.minimum(offsets[:-1], len(codes) - 1)]  # [S]
        labels = np.append(labels, "")  # code -1 (missing) reads the last entry
        static[column] = np.where(present, labels[first], "")
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
        grid = pd.date_range(start=stamps.min(), end=stamps.max(), freq=freq).as_unit("ns")
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
