"""Data sources: where rows of series values (and extra columns) come from.

Every source returns a :class:`SourceFrame`: rows are time steps, ordered by timestamp; columns are
series and the user's extra feature columns. Calendar features are added later, from the timestamps.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lstm_forecast.errors import UserError


@dataclass(frozen=True)
class SourceFrame:
    """Rows of a wide table.

    Attributes
    ----------
    timestamps : DatetimeIndex
        ``[T]`` increasing timestamps.
    series : DataFrame
        ``[T, S]`` float64 series values; column names are the series names.
    extras : DataFrame
        ``[T, E]`` float64 user extra feature columns (possibly none).
    """

    timestamps: pd.DatetimeIndex
    series: pd.DataFrame
    extras: pd.DataFrame

    @property
    def num_rows(self) -> int:
        return len(self.timestamps)


def synthetic_frame(
    num_series: int = 5,
    num_rows: int = 2400,
    freq: str = "h",
    start: str = "2024-01-01",
    noise: float = 0.05,
    seed: int = 0,
) -> SourceFrame:
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
    return SourceFrame(
        timestamps=timestamps,
        series=pd.DataFrame(values, index=timestamps, columns=names),
        extras=pd.DataFrame(index=timestamps, dtype="float64"),
    )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file chosen by its suffix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"data file not found: {path}; set data.source.path to an existing CSV or Parquet file"
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise UserError(f"could not read {path}: {str(error).splitlines()[0]}") from error
    raise UserError(f"unsupported file type {suffix!r} for {path}; use .csv or .parquet")


def _require_columns(table: pd.DataFrame, columns: list[str], path: str | Path, key: str) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise UserError(f"column(s) {missing} not found in {path} (it has {list(table.columns)}); fix {key}")


FILL_METHODS = ("ffill", "bfill", "interpolate", "zero")


def _unknown_fill_method(method: object) -> str:
    return f"unknown data.source.fill_method {method!r}; choose null (reject) or one of {list(FILL_METHODS)}"


def fill_missing(values: pd.DataFrame, method: str) -> pd.DataFrame:
    """Fill NaNs of ``values [T, C]`` (rows ordered by time): carry the last value forward, the next
    one backward, interpolate linearly in time (edges take the nearest value), or use zero."""
    if method == "ffill":
        return values.ffill()
    if method == "bfill":
        return values.bfill()
    if method == "interpolate":
        return values.interpolate(method="linear", limit_direction="both")
    if method == "zero":
        return values.fillna(0.0)
    raise UserError(_unknown_fill_method(method))


def _numeric(
    table: pd.DataFrame, columns: list[str], path: str | Path, fill_method: str | None = None
) -> pd.DataFrame:
    """Columns as float64, refusing text, infinities and (unless ``fill_method``) missing values with
    the first offending row."""
    out = table[columns]
    for column in columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            converted = pd.to_numeric(out[column], errors="coerce")
            bad = converted.isna() & out[column].notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise UserError(
                    f"column {column!r} in {path} is not numeric (row {row}: {out[column].iloc[row]!r}); "
                    "fix the file or leave the column out of data.source"
                )
    out = out.apply(pd.to_numeric, errors="coerce").astype("float64")
    infinite = np.isinf(out.to_numpy())
    if infinite.any():
        row, col = (int(i) for i in np.argwhere(infinite)[0])
        raise UserError(
            f"infinite value in {path} at row {row}, column {columns[col]!r}; fix or drop those rows"
        )
    if fill_method is not None and len(columns):
        out = fill_missing(out, fill_method)
    missing = np.isnan(out.to_numpy())
    if missing.any():
        row, col = (int(i) for i in np.argwhere(missing)[0])
        fix = (
            f"data.source.fill_method={fill_method} leaves it (a gap at the edge); try interpolate"
            if fill_method
            else f"set data.source.fill_method to one of {list(FILL_METHODS)} or fix the file"
        )
        raise UserError(f"missing value in {path} at row {row}, column {columns[col]!r}; {fix}")
    return out


def _mostly_numeric(column: pd.Series) -> bool:
    """A numeric column, or one whose cells are mostly numbers: a few stray text cells make it a
    series column with bad cells (reported by row), not a column silently left out."""
    if pd.api.types.is_numeric_dtype(column):
        return True
    if column.notna().sum() == 0:
        return False
    parsed = pd.to_numeric(column, errors="coerce")
    return parsed.notna().sum() >= 0.5 * column.notna().sum()


def wide_file_frame(
    path: str,
    timestamp_column: str = "date",
    series_columns: list[str] | None = None,
    extra_columns: list[str] | None = None,
    fill_method: str | None = None,
) -> SourceFrame:
    """A wide CSV/Parquet file: a timestamp column, series columns and optional extra columns.

    By default every numeric column (or one whose cells are mostly numbers) that is neither the
    timestamp nor an extra column is a series. Missing values are refused with their row and column
    unless ``fill_method`` (one of :data:`FILL_METHODS`) fills them; infinities are always refused.
    """
    if fill_method is not None and fill_method not in FILL_METHODS:
        raise UserError(_unknown_fill_method(fill_method))
    table = read_table(path)
    extra_columns = list(extra_columns or [])
    _require_columns(table, [timestamp_column], path, "data.source.timestamp_column")
    _require_columns(table, extra_columns, path, "data.source.extra_columns")
    if series_columns is None:
        taken = {timestamp_column, *extra_columns}
        series_columns = [c for c in table.columns if c not in taken and _mostly_numeric(table[c])]
        if not series_columns:
            raise UserError(f"no numeric series columns in {path}; set data.source.series_columns")
    else:
        series_columns = list(series_columns)
        _require_columns(table, series_columns, path, "data.source.series_columns")
    overlap = sorted(set(series_columns) & set(extra_columns))
    if overlap:
        raise UserError(f"column(s) {overlap} are both series and extra columns; list each once")
    timestamps = pd.to_datetime(table[timestamp_column], errors="coerce")
    if timestamps.isna().any():
        row = int(np.flatnonzero(timestamps.isna().to_numpy())[0])
        raise UserError(
            f"unparseable timestamp in {path} at row {row} ({table[timestamp_column].iloc[row]!r}); "
            "fix data.source.timestamp_column or the file"
        )
    index = pd.DatetimeIndex(timestamps)
    if not index.is_monotonic_increasing or index.has_duplicates:
        raise UserError(
            f"timestamps in {path} are not strictly increasing; sort the file and drop duplicates"
        )
    series = _numeric(table, series_columns, path, fill_method).set_axis(index)
    extras = _numeric(table, extra_columns, path, fill_method).set_axis(index)
    return SourceFrame(timestamps=index, series=series, extras=extras)


def load_source(kind: str, **options: object) -> SourceFrame:
    """Build the frame of source ``kind`` (``synthetic`` or ``wide_file``) from config options."""
    builders = {"synthetic": synthetic_frame, "wide_file": wide_file_frame}
    if kind not in builders:
        raise UserError(f"unknown data.source.kind {kind!r}; choose one of {sorted(builders)}")
    builder = builders[kind]
    try:
        inspect.signature(builder).bind(**options)
    except TypeError as error:
        raise UserError(f"bad options for data.source.kind={kind}: {error}") from error
    return builder(**options)
