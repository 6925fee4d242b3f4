"""Checks of a table's columns as read from a file, each refusal naming where to look and what to set.

Places in a file are named as its user sees them: a CSV row by its line in the file (the header is
line 1), a row of a Parquet file or of a DataFrame by its position from 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from lstm_forecast.errors import UserError


def row_place(source: str, row: int) -> str:
    """Where row ``row`` (from 0, in file order) of ``source`` is: ``line N`` of a CSV file (header
    line 1, one line per row), else ``row N`` from 0 (Parquet, a DataFrame)."""
    if str(source).lower().endswith(".csv"):
        return f"line {row + 2}"
    return f"row {row}"


def require_columns(table: pd.DataFrame, roles: list[tuple[list[str], str]], path: str | object) -> None:
    """Refuse, all at once, the columns named by ``roles`` (``(columns, config key)`` pairs) that
    ``table`` lacks, with the key naming each and the columns the table has."""
    missing = [(key, [column for column in columns if column not in table.columns]) for columns, key in roles]
    missing = [(key, columns) for key, columns in missing if columns]
    if not missing:
        return
    if len(missing) == 1:
        key, named = missing[0]
    else:
        key, named = " and ".join(k for k, _ in missing), ", ".join(f"{c} ({k})" for k, c in missing)
    raise UserError(f"column(s) {named} not found in {path} (it has {list(table.columns)}); fix {key}")


# Rows looked at a time by :func:`has_no_values`: its temporary stays small on a big panel.
CHECK_ROWS = 1 << 20


def has_no_values(values: np.ndarray) -> bool:
    """Whether a column (``[N]`` float64) has rows but not one value: every cell empty or NaN. Looks
    :data:`CHECK_ROWS` rows at a time and stops at the first value (at once, for a column of data)."""
    return len(values) > 0 and all(
        np.isnan(values[a : a + CHECK_ROWS]).all() for a in range(0, len(values), CHECK_ROWS)
    )


def list_override(key: str, names: list[str]) -> str:
    """``'key=[a,b]'``, quoted as a shell command line needs it."""
    return f"'{key}=[{','.join(names)}]'"


def refuse_empty_columns(empty: list[str], path: str, fix: str) -> None:
    """Refuse the columns ``empty`` (each without one value), naming them all; ``fix`` says which
    settings leave them out."""
    if empty:
        raise UserError(f"column(s) {empty} in {path} have no values (every cell empty); fill them or {fix}")


def parse_timestamps(
    column: pd.Series,
    path: str,
    name: str,
    key: str = "data.source.timestamp_column",
    dayfirst: bool = False,
    date_format: str | None = None,
) -> pd.Series:
    """The timestamp column ``name`` of ``path`` parsed (a column already of datetimes is kept as is),
    month-first unless ``dayfirst``, or by ``date_format`` (a ``strftime`` format) when given.

    An unparseable cell is refused with its place in the file; where it reads as a day-first date,
    the message names ``data.source.dayfirst=true``.
    """
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column.dtype):
        return column
    try:
        parsed = pd.to_datetime(column, errors="coerce", dayfirst=dayfirst, format=date_format)
    except (ValueError, TypeError) as error:  # a format string pandas cannot use
        raise UserError(
            f"data.source.date_format={date_format!r} cannot read {path} ({str(error).splitlines()[0]}); "
            "give a strftime format such as '%d/%m/%Y'"
        ) from error
    bad = parsed.isna()
    if not bad.any():
        return parsed
    row = int(np.flatnonzero(bad.to_numpy())[0])
    value = column.iloc[row]
    where = f"unparseable timestamp in {path} at {row_place(path, row)} ({value!r})"
    if date_format is not None:
        raise UserError(f"{where} does not match data.source.date_format={date_format!r}; fix it or the file")
    if not dayfirst and _reads_dayfirst(value):
        raise UserError(f"{where}: it reads as a day-first date; set data.source.dayfirst=true")
    raise UserError(f"{where}; fix {key} ({name!r}) or the file")


def _reads_dayfirst(value: object) -> bool:
    """Whether the text ``value`` is a valid date read day-first."""
    if not isinstance(value, str):
        return False
    try:
        return not pd.isna(_day_first(value))
    except (ValueError, TypeError, OverflowError):
        return False


def day_first_regular(column: pd.Series, dayfirst: bool, date_format: str | None) -> str | None:
    """The frequency text dates ``column`` have when read day-first, where they were read month-first
    (``dayfirst`` false, no ``date_format``) into an irregular timeline; None otherwise. For a wide
    file's one timeline (the caller found it irregular), so it is read once more only then."""
    if dayfirst or date_format is not None or not pd.api.types.is_string_dtype(column.dtype):
        return None
    parsed = _day_first(column)
    if len(parsed) < 3 or parsed.isna().any():
        return None
    return pd.infer_freq(pd.DatetimeIndex(parsed))


def _day_first(dates: pd.Series | str) -> pd.Series | pd.Timestamp:
    """``dates`` read day-first (NaT where they cannot be), without pandas' warning that dates such
    as 2024-01-31, which have no day-first reading, were read as they are."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parsing dates in .* format when dayfirst=True")
        return pd.to_datetime(dates, errors="coerce", dayfirst=True)
