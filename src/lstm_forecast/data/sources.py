"""Data sources: where rows of series values (and extra columns) come from.

Every source returns a :class:`~lstm_forecast.data.frame.SeriesFrame`: the built-in synthetic panel,
a wide file (a timestamp column, series columns, extra columns: every series on one timeline) and a
long file (:mod:`lstm_forecast.data.long_source`). Calendar features are added later, from the
timestamps.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from lstm_forecast.data.column_names import recognised_wide_timestamp
from lstm_forecast.data.frame import (
    FILL_METHODS,
    LOOKAHEAD_FILLS,
    ReadNotes,
    SeriesFrame,
    fill_reaching_edges,
    fill_within_series,
    frame_from_wide,
    regular_freq,
)
from lstm_forecast.data.table_checks import (
    day_first_regular,
    has_no_values,
    list_override,
    parse_timestamps,
    refuse_empty_columns,
    require_columns,
    row_place,
)
from lstm_forecast.errors import UserError
from lstm_forecast.memory import check_memory

log = logging.getLogger(__name__)


def synthetic_frame(
    num_series: int = 5,
    num_rows: int = 2400,
    freq: str = "h",
    start: str = "2024-01-01",
    noise: float = 0.05,
    seed: int = 0,
) -> SeriesFrame:
    """Hourly-style series with different level, trend, daily and weekly seasonality and noise.

    Deterministic for a given ``seed``; the default training data, so a fresh clone trains offline.
    """
    if num_series < 1 or num_rows < 2:
        raise UserError("the synthetic source needs data.source.num_series >= 1 and num_rows >= 2")
    rng = np.random.default_rng(seed)
    timestamps = pd.date_range(start=start, periods=num_rows, freq=freq)
    step = np.arange(num_rows, dtype=np.float64)[:, None]  # [T, 1]
    level = rng.uniform(5, 50, num_series)  # [S]
    trend = rng.uniform(-1, 1, num_series) * level / num_rows  # [S]
    daily = rng.uniform(0.1, 0.5, num_series) * level
    weekly = rng.uniform(0.0, 0.3, num_series) * level
    phase = rng.uniform(0, 2 * np.pi, num_series)
    values = (
        level
        + trend * step
        + daily * np.sin(2 * np.pi * step / 24 + phase)
        + weekly * np.sin(2 * np.pi * step / 168 + phase / 2)
        + noise * level * rng.standard_normal((num_rows, num_series))
    )  # [T, S]
    names = [f"series_{i + 1}" for i in range(num_series)]
    return frame_from_wide(
        timestamps,
        pd.DataFrame(values, index=timestamps, columns=names),
        pd.DataFrame(index=timestamps, dtype="float64"),
        to_offset(freq),
    )


def read_table(
    path: str | Path, columns: list[str] | None = None, key: str = "data.source.path"
) -> pd.DataFrame:
    """Read a CSV or Parquet file chosen by its suffix; ``key`` is the setting that names it.

    ``columns``: the only columns the caller uses. A Parquet file that has them all (each once) is read
    column by column, each converted to pandas while its Arrow memory is released, so the read peaks
    at the table plus one column rather than twice the table; the other columns are never read.
    Otherwise (and for CSV, where pandas' ``usecols`` would accept rows with too many fields and
    change which column it takes as the index) the whole file is read, so a missing column is reported
    with the file's own columns.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file not found: {path}; set {key}=FILE to an existing CSV or Parquet file")
    suffix = path.suffix.lower()
    check_memory(f"reading {path}", {"data read": (read_bytes(path, columns), READ_REMEDY)})
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in {".parquet", ".pq"}:
            if columns is not None and _parquet_has(path, columns):
                return _read_parquet_columns(path, columns)
            return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise UserError(f"could not read {path}: {str(error).splitlines()[0]}") from error
    raise UserError(f"unsupported file type {suffix!r} for {path}; use .csv or .parquet")


# What reading a file and setting it up for training peak at, per row and column it holds: measured at
# M5 size (57 M rows, 4 columns read from Parquet: 1.56 GiB for the read, 1.7 GiB for the whole training
# run beyond the imports: about 8 bytes a row and column) and rounded up, so only a job that surely
# cannot fit is refused.
READ_BYTES_PER_CELL = 12
# CSV text: bytes of the file per byte of the frame pandas parses it into, rounded up likewise.
CSV_BYTES_PER_FILE_BYTE = 3
READ_REMEDY = (
    "split the series over several runs (a file per group of series) or use a machine with more memory"
)


def read_bytes(path: Path, columns: list[str] | None) -> int:
    """An upper estimate of the memory reading ``path`` and setting its rows up needs: from the row
    count in a Parquet file's footer, or from a CSV file's size; 0 where neither can be read."""
    if path.suffix.lower() == ".csv":
        return CSV_BYTES_PER_FILE_BYTE * path.stat().st_size
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path)
    except Exception:  # an unreadable file: the read itself reports it
        return 0
    cells = metadata.num_rows * (len(columns) if columns else metadata.num_columns)
    return READ_BYTES_PER_CELL * cells


def _parquet_has(path: Path, columns: list[str]) -> bool:
    """Whether the file's data columns (as pandas reads them, with no stored index column) include
    every one of ``columns``, each named once."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception:  # an unreadable file: the whole read reports it
        return False
    index_columns = (schema.pandas_metadata or {}).get("index_columns", [])
    if any(isinstance(index, str) for index in index_columns):
        return False  # a stored index (not a range): read as pandas always did
    names = schema.names
    return len(set(columns)) == len(columns) and all(names.count(column) == 1 for column in columns)


def _read_parquet_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """``columns`` of a Parquet file, read and converted one at a time.

    ``self_destruct`` frees each column's Arrow buffers as pandas' arrays are made, and the default
    pool (mimalloc) is asked to give them back before the next column. pandas' arrays often keep the
    Arrow buffer they were made in: those come from the system allocator's pool, which returns them
    as soon as the caller drops the column (mimalloc would hold on to them).
    """
    import pyarrow as pa

    to_pandas = {"self_destruct": True, "split_blocks": True, "memory_pool": pa.system_memory_pool()}
    read = {}
    for column in columns:
        read[column] = pd.read_parquet(path, columns=[column], to_pandas_kwargs=to_pandas)[column]
        pa.default_memory_pool().release_unused()
    return pd.DataFrame(read, copy=False)


IN_MEMORY_NAME = "the DataFrame"


def source_table(
    path: str | Path | None,
    table: pd.DataFrame | None,
    columns: list[str] | None = None,
    key: str = "data.source.path",
) -> tuple[pd.DataFrame, str]:
    """The rows of a file source and its name for messages: ``table`` when one was handed over in
    memory (the Python API's DataFrame), else the file at ``path`` (the setting ``key``), read by
    :func:`read_table` (only ``columns`` where it can)."""
    if table is not None:
        return table, IN_MEMORY_NAME
    if path is None:
        raise UserError(f"{key} is missing; give the CSV or Parquet file")
    return read_table(path, columns, key), str(path)


def check_fill_method(method: str | None) -> None:
    if method is not None and method not in FILL_METHODS:
        raise UserError(
            f"unknown data.source.fill_method {method!r}; choose null (reject) or one of {list(FILL_METHODS)}"
        )


def numeric_column(column: pd.Series, name: str, path: str | Path) -> np.ndarray:
    """A column as float64: text is refused with its first offending row, as are infinities; blanks
    become NaN (refused or filled later, per series)."""
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "fiu":
        values = column.to_numpy(dtype=np.float64)  # numbers already: no [N] copy to coerce
    else:
        converted = pd.to_numeric(column, errors="coerce")
        bad = converted.isna() & column.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(
                f"column {name!r} in {path} is not numeric ({row_place(path, row)}: {column.iloc[row]!r}); "
                "fix the file or leave the column out of data.source"
            )
        values = converted.to_numpy(dtype=np.float64)
    if np.isinf(values).any():
        row = int(np.flatnonzero(np.isinf(values))[0])
        raise UserError(
            f"infinite value in {path} at {row_place(path, row)}, column {name!r}; fix or drop those rows"
        )
    return values


def _mostly_numeric(column: pd.Series) -> bool:
    """A numeric column, or one whose cells are mostly numbers: a few stray text cells make it a
    series column with bad cells (reported by row), not a column silently left out."""
    if pd.api.types.is_numeric_dtype(column):
        return True
    if column.notna().sum() == 0:
        return False
    parsed = pd.to_numeric(column, errors="coerce")
    return parsed.notna().sum() >= 0.5 * column.notna().sum()


WIDE_TIMESTAMP_COLUMN = "date"


def wide_file_frame(
    path: str | None = None,
    timestamp_column: str = WIDE_TIMESTAMP_COLUMN,
    series_columns: list[str] | None = None,
    extra_columns: list[str] | None = None,
    fill_method: str | None = None,
    dayfirst: bool = False,
    date_format: str | None = None,
    table: pd.DataFrame | None = None,
    split_fill: bool = False,
) -> SeriesFrame:
    """A wide CSV/Parquet file: a timestamp column, series columns and optional extra columns.

    By default every numeric column (or one whose cells are mostly numbers) that is neither the
    timestamp nor an extra column is a series. Missing values are refused with their row and column
    unless ``fill_method`` (one of :data:`~lstm_forecast.data.frame.FILL_METHODS`) fills them within
    each series; infinities are always refused. Timestamps are read month-first unless ``dayfirst``,
    or by the strftime format ``date_format`` when given. ``table``, when given, holds the file's rows already
    read (a DataFrame in memory); ``path`` is then not read. ``split_fill`` leaves the values of the
    fills that look ahead (``bfill``, ``interpolate``) NaN, for
    :func:`~lstm_forecast.data.split_fill.fill_by_split` to fill after the split.
    """
    check_fill_method(fill_method)
    table, path = source_table(path, table)
    timestamp_column = recognised_wide_timestamp(table.columns, timestamp_column)  # or timestamp, ds
    extra_columns = list(extra_columns or [])
    require_columns(
        table,
        [
            ([timestamp_column], "data.source.timestamp_column"),
            (extra_columns, "data.source.extra_columns"),
            (list(series_columns or []), "data.source.series_columns"),
        ],
        path,
    )
    series_columns = _series_columns(table, timestamp_column, series_columns, extra_columns, path)
    index = _wide_timestamps(table, timestamp_column, path, dayfirst, date_format)
    columns = [*series_columns, *extra_columns]
    numeric = pd.DataFrame(
        {c: numeric_column(table[c], c, path) for c in columns}, index=index, columns=columns
    )
    empty = [c for c in columns if has_no_values(numeric[c].to_numpy())]
    fixes = [
        list_override(key, [c for c in listed if c not in empty])
        for key, listed in (
            ("data.source.series_columns", series_columns),
            ("data.source.extra_columns", extra_columns),
        )
        if set(listed) & set(empty)
    ]
    refuse_empty_columns(empty, path, f"leave them out: {' '.join(fixes)}")
    missing = np.isnan(numeric.to_numpy())
    if fill_method is None and missing.any():
        row, col = (int(i) for i in np.argwhere(missing)[0])
        raise UserError(
            f"missing value in {path} at {row_place(path, row)}, column {columns[col]!r}; "
            f"set data.source.fill_method to one of {list(FILL_METHODS)} or fix the file"
        )
    freq = regular_freq(index)
    if freq is None and (day_first := day_first_regular(table[timestamp_column], dayfirst, date_format)):
        log.warning(
            "the timestamps of %s are irregular read month-first but every %s read day-first; set "
            "data.source.dayfirst=true if they are day-first (01/02/2024: 1 February)",
            path,
            day_first,
        )
    frame = frame_from_wide(index, numeric[series_columns], numeric[extra_columns], freq)
    notes = ReadNotes(path, {"timestamp": timestamp_column}, filled_values=int(missing.sum()))
    frame = dataclasses.replace(frame, notes=notes)
    if not missing.any() or (split_fill and fill_method in LOOKAHEAD_FILLS):
        return frame
    filled = fill_within_series(
        np.column_stack([frame.values, frame.extras.to_numpy()]), frame.row_series, fill_method
    )
    if np.isnan(filled).any():
        row, col = (int(i) for i in np.argwhere(np.isnan(filled))[0])
        name = frame.series_names[int(frame.row_series[row])] if col == 0 else extra_columns[col - 1]
        raise UserError(
            f"missing value in {path} at {row_place(path, int(frame.local_index[row]))}, column {name!r}; "
            f"data.source.fill_method={fill_method} leaves it (a gap at the edge); "
            f"use data.source.fill_method={fill_reaching_edges(fill_method)}"
        )
    return SeriesFrame(
        series_names=frame.series_names,
        offsets=frame.offsets,
        timestamps=frame.timestamps,
        values=filled[:, 0],
        extras=pd.DataFrame(filled[:, 1:], columns=extra_columns),
        static=frame.static,
        freq=frame.freq,
        notes=frame.notes,
    )


def _series_columns(
    table: pd.DataFrame,
    timestamp_column: str,
    series_columns: list[str] | None,
    extra_columns: list[str],
    path: str,
) -> list[str]:
    """The series columns given, or every mostly numeric column that has no other role."""
    if series_columns is None:
        taken = {timestamp_column, *extra_columns}
        series_columns = [c for c in table.columns if c not in taken and _mostly_numeric(table[c])]
        if not series_columns:
            raise UserError(f"no numeric series columns in {path}; set data.source.series_columns")
    else:
        series_columns = list(series_columns)
    overlap = sorted(set(series_columns) & set(extra_columns))
    if overlap:
        raise UserError(f"column(s) {overlap} are both series and extra columns; list each once")
    return series_columns


def _wide_timestamps(
    table: pd.DataFrame, timestamp_column: str, path: str, dayfirst: bool, date_format: str | None
) -> pd.DatetimeIndex:
    """The timestamp column, refusing unparseable, unsorted or repeated timestamps."""
    timestamps = parse_timestamps(
        table[timestamp_column], path, timestamp_column, dayfirst=dayfirst, date_format=date_format
    )
    index = pd.DatetimeIndex(timestamps)
    if not index.is_monotonic_increasing or index.has_duplicates:
        raise UserError(
            f"timestamps in {path} are not strictly increasing; sort the file and drop duplicates"
        )
    return index


def source_of_file(trained: dict[str, object], given: dict[str, object]) -> dict[str, object]:
    """The ``data.source`` to read ``given["path"]`` with, for a model trained on source ``trained``.

    A model trained on a file reads another file the same way; one trained on the synthetic source
    reads a wide file whose series columns carry the training series' names.
    """
    if trained.get("kind") != "synthetic" or "kind" in given:
        return given
    if "path" not in given:
        raise UserError("give the file to predict on: data.source.path=FILE.csv")
    return {"kind": "wide_file", "timestamp_column": WIDE_TIMESTAMP_COLUMN, **given}


def load_source(kind: str, split_fill: bool = False, **options: object) -> SeriesFrame:
    """Build the frame of source ``kind`` (``synthetic``, ``wide_file`` or ``long_file``) from config
    options; ``split_fill`` leaves a file's bfill/interpolate values NaN for the fill after the split."""
    from lstm_forecast.data.long_source import long_file_frame

    builders = {"synthetic": synthetic_frame, "wide_file": wide_file_frame, "long_file": long_file_frame}
    if kind not in builders:
        raise UserError(f"unknown data.source.kind {kind!r}; choose one of {sorted(builders)}")
    builder = builders[kind]
    try:
        inspect.signature(builder).bind(**options)
    except TypeError as error:
        raise UserError(f"bad options for data.source.kind={kind}: {error}") from error
    return builder(**options, split_fill=True) if split_fill and kind != "synthetic" else builder(**options)
