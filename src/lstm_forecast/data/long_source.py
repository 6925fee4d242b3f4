"""Long-format sources: one row per (series, timestamp), series of their own lengths and timelines.

The table is sorted by series then time, checked (or filled) against the series' frequency and kept
as flat arrays: memory is O(total rows), never O(series x time).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from lstm_forecast.data.frame import SeriesFrame, fill_within_series
from lstm_forecast.data.sources import check_fill_method, numeric_column, require_columns, source_table
from lstm_forecast.errors import UserError

log = logging.getLogger(__name__)

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


def long_file_frame(
    path: str | None = None,
    series_column: str = "series",
    timestamp_column: str = "timestamp",
    value_column: str = "value",
    extra_columns: list[str] | None = None,
    static_columns: list[str] | None = None,
    freq: str | None = None,
    fill_method: str | None = None,
    series_names: list[str] | None = None,
    table: pd.DataFrame | None = None,
) -> SeriesFrame:
    """A long CSV/Parquet file: one row per series and timestamp.

    Parameters
    ----------
    path : str or None
        The file (``.csv`` or ``.parquet``); not read when ``table`` holds its rows (a DataFrame).
    series_column, timestamp_column, value_column : str
        Column names of the series name, the timestamp and the value.
    extra_columns : list of str
        Numeric per-step feature columns (known for every row).
    static_columns : list of str
        Per-series category columns (one value per series), fed to extra embeddings.
    freq : str or None
        Pandas frequency of every series (``h``, ``D``, ``MS``...); None infers it.
    fill_method : str or None
        None refuses missing steps and missing values with the first one found; one of
        :data:`~lstm_forecast.data.frame.FILL_METHODS` fills them within each series.
    series_names : list of str or None
        The series order (a checkpoint's); None sorts the names. Names not listed are refused.
    table : pandas.DataFrame or None
        The rows already read, in place of the file.
    """
    extra_columns = list(extra_columns or [])
    static_columns = list(static_columns or [])
    check_fill_method(fill_method)
    table, path = source_table(path, table)
    _check_roles(table, path, series_column, timestamp_column, value_column, extra_columns, static_columns)
    codes, vocabulary = _series_codes(table[series_column], series_names, path, series_column)
    timestamps = _timestamps(table[timestamp_column], path, timestamp_column)
    timezone = timestamps.dt.tz
    if timezone is not None:  # grid arithmetic in UTC; the zone is put back at the end
        timestamps = timestamps.dt.tz_convert(None)
    order = np.lexsort((timestamps.to_numpy(), codes))
    codes = codes[order].astype(np.int64)
    stamps = pd.DatetimeIndex(timestamps.to_numpy()[order]).as_unit("ns")  # grid arithmetic is in ns
    offsets = np.searchsorted(codes, np.arange(len(vocabulary) + 1)).astype(np.int64)
    _refuse_duplicates(codes, stamps, vocabulary, path)
    numeric = np.column_stack(
        [numeric_column(table[c], c, path)[order] for c in [value_column, *extra_columns]]
    )  # [N, 1 + E]
    static = _static_labels(table, static_columns, order, codes, offsets, vocabulary, path)
    del table

    offset = resolve_freq(freq, stamps, offsets)
    position = _grid_positions_checked(stamps, offsets, offset, codes, vocabulary, path)
    stamps, numeric, offsets = _fill_or_refuse(
        stamps, numeric, offsets, position, offset, fill_method, codes, vocabulary, path
    )
    if timezone is not None:
        stamps = stamps.tz_localize("UTC").tz_convert(timezone)
    return SeriesFrame(
        series_names=vocabulary,
        offsets=offsets,
        timestamps=stamps,
        values=numeric[:, 0],
        extras=pd.DataFrame(numeric[:, 1:], columns=extra_columns),
        static=static,
        freq=offset,
    )


def _check_roles(
    table: pd.DataFrame,
    path: str,
    series_column: str,
    timestamp_column: str,
    value_column: str,
    extra_columns: list[str],
    static_columns: list[str],
) -> None:
    """Every named column exists and has one role; the table has rows."""
    for columns, key in (
        ([series_column], "data.source.series_column"),
        ([timestamp_column], "data.source.timestamp_column"),
        ([value_column], "data.source.value_column"),
        (extra_columns, "data.source.extra_columns"),
        (static_columns, "data.source.static_columns"),
    ):
        require_columns(table, columns, path, key)
    roles = [series_column, timestamp_column, value_column, *extra_columns, *static_columns]
    repeated = sorted({c for c in roles if roles.count(c) > 1})
    if repeated:
        raise UserError(f"column(s) {repeated} are given more than one role in data.source; list each once")
    if len(table) == 0:
        raise UserError(f"{path} has no rows")


def _series_codes(
    column: pd.Series, series_names: list[str] | None, path: str, series_column: str
) -> tuple[np.ndarray, list[str]]:
    """``(series of each row [N], the series names)``: sorted names, or a checkpoint's order."""
    name_codes, names = _factorize(column)
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
    return series_of_name[name_codes], vocabulary


def _timestamps(column: pd.Series, path: str, timestamp_column: str) -> pd.Series:
    timestamps = pd.to_datetime(column, errors="coerce")
    if timestamps.isna().any():
        row = int(np.flatnonzero(timestamps.isna().to_numpy())[0])
        raise UserError(
            f"unparseable timestamp in {path} at row {row} ({column.iloc[row]!r}); "
            f"fix data.source.timestamp_column ({timestamp_column!r}) or the file"
        )
    return timestamps


def _refuse_duplicates(codes: np.ndarray, stamps: pd.DatetimeIndex, vocabulary: list[str], path: str) -> None:
    duplicate = np.flatnonzero((np.diff(codes) == 0) & (np.diff(stamps.asi8) == 0))
    if len(duplicate):
        row = int(duplicate[0])
        raise UserError(
            f"series {vocabulary[codes[row]]!r} has {len(duplicate)} duplicate timestamp(s) in {path}, "
            f"first {stamps[row]}; keep one row per series and timestamp"
        )


def _grid_positions_checked(
    stamps: pd.DatetimeIndex,
    offsets: np.ndarray,
    freq: pd.DateOffset,
    codes: np.ndarray,
    vocabulary: list[str],
    path: str,
) -> np.ndarray:
    """``[N]`` grid step of every row from its series' first row, refusing rows off the grid."""
    position, on_grid = grid_positions(stamps, offsets, freq)
    if not on_grid.all():
        row = int(np.flatnonzero(~on_grid)[0])
        raise UserError(
            f"series {vocabulary[codes[row]]!r} has timestamp {stamps[row]} off its {freq.freqstr} grid in "
            f"{path} ({int((~on_grid).sum())} such rows); fix the timestamps or set data.source.freq"
        )
    return position


def _fill_or_refuse(
    stamps: pd.DatetimeIndex,
    numeric: np.ndarray,
    offsets: np.ndarray,
    position: np.ndarray,
    freq: pd.DateOffset,
    fill_method: str | None,
    codes: np.ndarray,
    vocabulary: list[str],
    path: str,
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Refuse missing steps and values (naming the first), or insert and fill them per series."""
    gap = _gaps(offsets, position)
    missing_value = np.isnan(numeric).any(axis=1)
    if fill_method is None:
        if gap.any():
            row = int(np.flatnonzero(gap)[0])
            affected = len(np.unique(codes[gap]))
            raise UserError(
                f"series {vocabulary[codes[row]]!r} has missing {freq.freqstr} steps between "
                f"{stamps[row - 1]} and {stamps[row]} in {path} ({affected} series with gaps); "
                "set data.source.fill_method=ffill|bfill|interpolate|zero to fill them"
            )
        if missing_value.any():
            row = int(np.flatnonzero(missing_value)[0])
            raise UserError(
                f"missing value in {path} for series {vocabulary[codes[row]]!r} at {stamps[row]}; "
                "set data.source.fill_method=ffill|bfill|interpolate|zero or drop those rows"
            )
        return stamps, numeric, offsets
    if not (gap.any() or missing_value.any()):
        return stamps, numeric, offsets
    stamps, numeric, offsets = _fill_panel(stamps, numeric, offsets, position, freq, fill_method)
    still = np.isnan(numeric).any(axis=1)
    if still.any():
        row = int(np.flatnonzero(still)[0])
        raise UserError(
            f"series {vocabulary[_series_of_row(offsets, row)]!r} starts or ends with a missing value "
            f"at {stamps[row]} that fill_method={fill_method} cannot fill; drop those rows "
            "or use fill_method=interpolate or zero"
        )
    log.info("filled %d missing steps/values with %s", int(gap.sum() + missing_value.sum()), fill_method)
    return stamps, numeric, offsets


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
    return new_stamps, fill_within_series(filled, new_series, method), new_offsets


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
