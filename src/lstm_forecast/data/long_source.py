"""Long-format sources: one row per (series, timestamp), series of their own lengths and timelines.

The table is sorted by series then time, checked (or filled) against the series' frequency and kept
as flat arrays: memory is O(total rows), never O(series x time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from lstm_forecast.data.column_names import ROLES, file_columns, recognised_long_columns
from lstm_forecast.data.frame import ReadNotes, SeriesFrame
from lstm_forecast.data.long_checks import (
    fill_or_refuse,
    modal_step,
    refuse_duplicates,
    static_labels,
)
from lstm_forecast.data.sources import check_fill_method, numeric_column, source_table
from lstm_forecast.data.table_checks import (
    has_no_values,
    list_override,
    parse_timestamps,
    refuse_empty_columns,
    require_columns,
    row_place,
)
from lstm_forecast.data.windows import CHUNK_ROWS
from lstm_forecast.errors import UserError

LONG_FILE_OPTIONS = (
    "path",
    "series_column",
    "timestamp_column",
    "value_column",
    "extra_columns",
    "static_columns",
    "freq",
    "fill_method",
    "dayfirst",
    "date_format",
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
    step = modal_step(_in_ns(timestamps).asi8, offsets)
    if step is None:
        raise UserError("cannot infer the frequency from series of one row each; set data.source.freq")
    return to_offset(pd.Timedelta(step, unit="ns"))


def _in_ns(stamps: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """``stamps`` in ns (pandas may parse to us or s), not copied where they are already."""
    return stamps if stamps.unit == "ns" else stamps.as_unit("ns")


def long_file_frame(
    path: str | None = None,
    series_column: str = "series",
    timestamp_column: str = "timestamp",
    value_column: str = "value",
    extra_columns: list[str] | None = None,
    static_columns: list[str] | None = None,
    freq: str | None = None,
    fill_method: str | None = None,
    dayfirst: bool = False,
    date_format: str | None = None,
    series_names: list[str] | None = None,
    table: pd.DataFrame | None = None,
    split_fill: bool = False,
) -> SeriesFrame:
    """A long CSV/Parquet file: one row per series and timestamp.

    Parameters
    ----------
    path : str or None
        The file (``.csv`` or ``.parquet``); not read when ``table`` holds its rows (a DataFrame).
    series_column, timestamp_column, value_column : str
        Column names of the series name, the timestamp and the value; a default the file lacks is
        read from Nixtla's name when the file has it (``unique_id``, ``ds``, ``y``).
    extra_columns : list of str
        Numeric per-step feature columns (known for every row).
    static_columns : list of str
        Per-series category columns (one value per series), fed to extra embeddings.
    freq : str or None
        Pandas frequency of every series (``h``, ``D``, ``MS``...); None infers it.
    fill_method : str or None
        None refuses missing steps and missing values with the first one found; one of
        :data:`~lstm_forecast.data.frame.FILL_METHODS` fills them within each series.
    dayfirst : bool
        Read text timestamps day-first (31/01/2024) instead of month-first.
    date_format : str or None
        The strftime format of text timestamps (``%d.%m.%Y``); None infers it.
    series_names : list of str or None
        The series order (a checkpoint's); None sorts the names. Names not listed are refused.
    table : pandas.DataFrame or None
        The rows already read, in place of the file.
    split_fill : bool
        Insert the missing steps but leave the values of the fills that look ahead (``bfill``,
        ``interpolate``) NaN, for :func:`~lstm_forecast.data.split_fill.fill_by_split` after the split.

    Notes
    -----
    Memory: a Parquet file's named columns are read one at a time; each is released once the frame's
    copy of it is made (rows already sorted by series then time, the common case, are copied as they
    are: no sort), and every check runs chunk by chunk of series (:mod:`long_checks`).
    """
    extra_columns = list(extra_columns or [])
    static_columns = list(static_columns or [])
    check_fill_method(fill_method)
    # unique_id/ds/y where the file has those and not the defaults (data/column_names.py).
    named = recognised_long_columns(
        table.columns if table is not None else file_columns(path),
        series=series_column, timestamp=timestamp_column, value=value_column,
    )  # fmt: skip
    series_column, timestamp_column, value_column = (named[role] for role in ROLES)
    roles = [series_column, timestamp_column, value_column, *extra_columns, *static_columns]
    table, path = source_table(path, table, columns=roles)
    _check_roles(table, path, series_column, timestamp_column, value_column, extra_columns, static_columns)
    columns = {column: table[column] for column in roles}
    num_rows = len(table)
    del table  # a file's own table: each column is freed once used (popped from ``columns``)
    codes, vocabulary = _series_codes(columns.pop(series_column), series_names, path, series_column)
    raw_stamps, timezone = _timestamps(
        columns.pop(timestamp_column), path, timestamp_column, dayfirst, date_format
    )
    order, offsets = _sort_order(codes, raw_stamps, len(vocabulary))
    del codes
    # A copy of the file's timestamps (sorted when they were not); grid arithmetic is in ns.
    own = order is None and raw_stamps.dtype == np.dtype("datetime64[ns]")  # else as_unit copies
    stamps = _in_ns(pd.DatetimeIndex(raw_stamps if order is None else raw_stamps[order], copy=own))
    del raw_stamps
    refuse_duplicates(stamps, offsets, vocabulary, path)
    numeric = np.empty((1 + len(extra_columns), num_rows))  # [1 + E, N]: the value, then the extras
    empty = []
    for row, column in enumerate([value_column, *extra_columns]):
        converted = numeric_column(columns.pop(column), column, path)
        if has_no_values(converted):
            empty.append(column)
        numeric[row] = converted if order is None else converted[order]
        del converted
    extras_left = list_override("data.source.extra_columns", [c for c in extra_columns if c not in empty])
    refuse_empty_columns(
        empty,
        path,
        "set data.source.value_column to the column of the values"
        if value_column in empty
        else f"leave them out: {extras_left}",
    )
    static = pd.DataFrame(index=pd.Index(vocabulary, name="series"))
    for column in static_columns:
        label_codes, labels = _factorize(columns.pop(column))
        static[column] = static_labels(label_codes, labels, order, offsets, vocabulary, column, path)
        del label_codes
    del order

    offset = resolve_freq(freq, stamps, offsets)
    read_rows, chunks = len(stamps), range(0, len(stamps), CHUNK_ROWS)
    missing = sum(int(np.isnan(numeric[:, a : a + CHUNK_ROWS]).sum()) for a in chunks)  # cells filled
    stamps, numeric, offsets = fill_or_refuse(
        stamps,
        numeric,
        offsets,
        offset,
        fill_method,
        vocabulary,
        path,
        [value_column, *extra_columns],
        split_fill,
    )
    if timezone is not None:
        stamps = stamps.tz_localize("UTC").tz_convert(timezone)
    return SeriesFrame(
        series_names=vocabulary,
        offsets=offsets,
        timestamps=stamps,
        values=numeric[0],
        extras=pd.DataFrame(numeric[1:].T, columns=extra_columns, copy=False),
        static=static,
        freq=offset,
        notes=ReadNotes(path, named, len(stamps) - read_rows, missing),
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
    require_columns(
        table,
        [
            ([series_column], "data.source.series_column"),
            ([timestamp_column], "data.source.timestamp_column"),
            ([value_column], "data.source.value_column"),
            (extra_columns, "data.source.extra_columns"),
            (static_columns, "data.source.static_columns"),
        ],
        path,
    )
    roles = [series_column, timestamp_column, value_column, *extra_columns, *static_columns]
    repeated = sorted({c for c in roles if roles.count(c) > 1})
    if repeated:
        raise UserError(f"column(s) {repeated} are given more than one role in data.source; list each once")
    if len(table) == 0:
        raise UserError(f"{path} has no rows")


@dataclass(frozen=True)
class SeriesCodes:
    """The series of each row, kept as the name column's own codes ``[N]`` (int8/16 for a categorical
    column) and ``lookup`` from a name code to the series (int32): ``[N]`` series codes are made
    chunk by chunk, or whole only to sort an unsorted file."""

    name_codes: np.ndarray
    lookup: np.ndarray

    def __len__(self) -> int:
        return len(self.name_codes)

    def rows(self, a: int, b: int) -> np.ndarray:
        """``[b - a]`` int32 series of rows ``a:b``."""
        return np.take(self.lookup, self.name_codes[a:b])

    def whole(self) -> np.ndarray:
        codes = np.empty(len(self), dtype=np.int32)
        for a in range(0, len(self), CHUNK_ROWS):
            codes[a : a + CHUNK_ROWS] = self.rows(a, a + CHUNK_ROWS)
        return codes


def _series_codes(
    column: pd.Series, series_names: list[str] | None, path: str, series_column: str
) -> tuple[SeriesCodes, list[str]]:
    """``(series of each row, the series names)``: sorted names, or a checkpoint's order."""
    name_codes, names = _factorize(column, observed=True)
    for a in range(0, len(name_codes), CHUNK_ROWS):
        missing = np.flatnonzero(name_codes[a : a + CHUNK_ROWS] < 0)
        if len(missing):
            raise UserError(
                f"missing series name in {path} at {row_place(path, a + int(missing[0]))}; "
                f"fill column {series_column!r}"
            )
    known = names != None  # noqa: E711 (the categories no row holds are None)
    vocabulary = sorted(names[known]) if series_names is None else list(series_names)
    series_of_name = pd.Index(vocabulary).get_indexer(names[known])  # [U] -> series, -1 if unknown
    if (series_of_name < 0).any():
        unknown = sorted(names[known][series_of_name < 0])
        raise UserError(
            f"series {unknown[:5]} in {path} were not in the training data; "
            "a checkpoint forecasts only the series it was trained on"
        )
    lookup = np.full(len(names), -1, dtype=np.int32)
    lookup[known] = series_of_name
    return SeriesCodes(name_codes, lookup), vocabulary


def _timestamps(
    column: pd.Series, path: str, timestamp_column: str, dayfirst: bool, date_format: str | None
) -> tuple[np.ndarray, object]:
    """``(timestamps [N] datetime64, their time zone or None)``: naive (UTC where the column has a time
    zone: grid arithmetic is in UTC; the zone is put back at the end). A column already parsed
    (Parquet) is kept as it is: parsing would copy it, unchanged."""
    timestamps = parse_timestamps(column, path, timestamp_column, dayfirst=dayfirst, date_format=date_format)
    if timestamps.isna().any():  # NaT in a column already of datetimes
        row = int(np.flatnonzero(timestamps.isna().to_numpy())[0])
        raise UserError(
            f"missing timestamp in {path} at {row_place(path, row)}; "
            f"fix data.source.timestamp_column ({timestamp_column!r}) or the file"
        )
    timezone = timestamps.dt.tz
    if timezone is not None:
        timestamps = timestamps.dt.tz_convert(None)
    return timestamps.to_numpy(), timezone


def _sort_order(
    codes: SeriesCodes, stamps: np.ndarray, num_series: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """``(rows in series-then-time order [N], or None where the file already has that order; offsets
    [S + 1])``, looking at the rows chunk by chunk (a stable sort of rows in order keeps them)."""
    counts = np.zeros(num_series, dtype=np.int64)
    in_order = True
    stamps_int = stamps.view(np.int64)
    for a in range(0, len(codes), CHUNK_ROWS):
        b = min(a + CHUNK_ROWS, len(codes))
        start = max(a - 1, 0)  # with the previous chunk's last row
        part = codes.rows(start, b)
        counts += np.bincount(part[a - start :], minlength=num_series)
        if in_order:
            code_step = np.diff(part)
            later = np.diff(stamps_int[start:b]) >= 0
            in_order = bool(np.all((code_step > 0) | ((code_step == 0) & later)))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if in_order:
        return None, offsets
    return np.lexsort((stamps, codes.whole())), offsets


def _factorize(column: pd.Series, observed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(codes [N], labels)``: each row's label as an index into the labels (as strings), -1 where
    missing; without building a string per row. A categorical column keeps its own small codes (no
    ``[N]`` int64 copy); its labels are all its categories, None for those no row holds where
    ``observed``."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        codes, uniques = pd.factorize(column)
        return codes, np.asarray(uniques.astype(str), dtype=object)
    codes = column.cat.codes.to_numpy()
    categories = np.arange(len(column.cat.categories))
    if observed:
        held = np.zeros(len(categories), dtype=bool)
        for a in range(0, len(codes), CHUNK_ROWS):
            part = codes[a : a + CHUNK_ROWS]
            held |= np.bincount(part[part >= 0], minlength=len(categories)) > 0
        categories = categories[held]
    # The labels as pd.factorize of the column spells them (its uniques, as strings).
    _, uniques = pd.factorize(pd.Series(pd.Categorical.from_codes(categories, dtype=column.dtype)))
    labels = np.full(len(column.cat.categories), None, dtype=object)
    labels[categories] = np.asarray(uniques.astype(str), dtype=object)
    return codes, labels


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
