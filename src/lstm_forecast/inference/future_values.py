"""Values known after the data: the future table of ``lstm-predict future.path=FILE`` (or a DataFrame).

Two layouts, told apart by the columns:

- wide (shared by every series): the data's timestamp column, extra columns and, optionally, series
  columns, whose values are written as actuals;
- long (per series): the long data's series and timestamp columns, extra columns and, optionally,
  its value column (actuals). A table with the long data's series column is long.

Extra columns are needed for the forecast steps the network sees: every user extra column at steps
fed back as context, the future-known columns (``data.future_columns``) at every forecast step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lstm_forecast.data.column_names import ROLES, recognised_long_columns, recognised_wide_timestamp
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.sources import WIDE_TIMESTAMP_COLUMN, numeric_column
from lstm_forecast.data.table_checks import parse_timestamps
from lstm_forecast.errors import UserError

# Missing (series, timestamp) pairs named in an error message; the rest are counted.
NAMED_MISSING = 3


@dataclass(frozen=True)
class FutureValues:
    """A future table as numbers.

    Attributes
    ----------
    values : DataFrame
        Numeric columns indexed by timestamp (wide: shared by every series) or by ``(series,
        timestamp)`` (long: per series).
    per_series : bool
        Long layout.
    actual_column : str or None
        The long layout's value column (actuals), when present.
    source : str
        The table's name in messages (its path).
    """

    values: pd.DataFrame
    per_series: bool
    actual_column: str | None
    source: str

    def lookup(
        self, series: list[str], timestamps: pd.DatetimeIndex, columns: list[str], needed: np.ndarray
    ) -> np.ndarray:
        """``[M, C]`` float64 values of ``columns`` for the rows ``series [M]`` (names) and
        ``timestamps [M]``; NaN where not ``needed [M]``. Refuses absent columns, and needed rows that
        are absent or blank, naming the first few (series and) timestamps."""
        out = np.full((len(timestamps), len(columns)), np.nan)
        if not columns or not needed.any():
            return out
        span = f"{timestamps[needed].min()} .. {timestamps[needed].max()}"
        absent = [c for c in columns if c not in self.values.columns]
        if absent:
            raise UserError(
                f"the future file {self.source} lacks the extra column(s) {absent} the model uses; add them "
                f"for {span}"
            )
        keys = pd.MultiIndex.from_arrays([series, timestamps]) if self.per_series else timestamps
        found = self.values.reindex(keys[needed])[columns].to_numpy(dtype=np.float64)  # [m, C]
        blank = np.isnan(found).any(axis=1)
        if blank.any():
            rows = np.flatnonzero(needed)[blank]
            what = "(series, timestamp) pairs" if self.per_series else "timestamps"
            named = ", ".join(
                f"{series[r]} {timestamps[r]}" if self.per_series else str(timestamps[r])
                for r in rows[:NAMED_MISSING]
            )
            raise UserError(
                f"the future file {self.source} has no values of {columns} for {len(rows)} forecast "
                f"{what}: {named}{', ...' if len(rows) > NAMED_MISSING else ''}; give them for every "
                f"{'series and ' if self.per_series else ''}timestamp in {span}"
            )
        out[needed] = found
        return out

    def actuals(self, series: pd.Series, timestamps: pd.Series) -> np.ndarray:
        """``[M]`` actual of each forecast row (NaN where the table has none): a wide table's series
        columns, a long table's value column."""
        if self.per_series:
            if self.actual_column is None:
                return np.full(len(series), np.nan)
            keys = pd.MultiIndex.from_arrays([series.astype(str), pd.DatetimeIndex(timestamps)])
            return self.values[self.actual_column].reindex(keys).to_numpy(dtype=np.float64)
        actual = np.full(len(series), np.nan)
        for name in series.unique():
            if name in self.values.columns:
                rows = (series == name).to_numpy()
                actual[rows] = self.values[name].reindex(timestamps[rows]).to_numpy()
        return actual


def future_values(table: pd.DataFrame, datamodule: ForecastDataModule, source: str) -> FutureValues:
    """The future ``table`` (as read from ``source``, columns as in the data) for ``datamodule``'s data."""
    options = datamodule.source
    long_data = options.get("kind") == "long_file"
    # A long table's roles as the data's, or Nixtla's names where it has those (data/column_names.py).
    named = recognised_long_columns(
        table.columns, **{role: str(options.get(f"{role}_column") or role) for role in ROLES}
    )
    wide_timestamp = str(options.get("timestamp_column") or WIDE_TIMESTAMP_COLUMN)
    timestamp_column = (
        named["timestamp"] if long_data else recognised_wide_timestamp(table.columns, wide_timestamp)
    )
    series_column = named["series"] if long_data else None
    if timestamp_column not in table.columns:
        raise UserError(
            f"future file {source} has no timestamp column {timestamp_column!r} "
            f"(it has {list(table.columns)}); name it as in the data"
        )
    # Read as the data's timestamps are (data.source.dayfirst, date_format).
    timestamps = parse_timestamps(
        table[timestamp_column],
        f"future file {source}",
        timestamp_column,
        key=f"column {timestamp_column!r}",
        dayfirst=bool(options.get("dayfirst", False)),
        date_format=options.get("date_format"),
    )
    extra_names = [str(c) for c in datamodule.load_frame().extras.columns]
    per_series = series_column is not None and series_column in table.columns
    if per_series:
        actual_column = named["value"]
        columns = [c for c in [actual_column, *extra_names] if c in table.columns]
        index = pd.MultiIndex.from_arrays([table[series_column].astype(str), pd.DatetimeIndex(timestamps)])
    else:
        actual_column = None
        columns = [c for c in [*datamodule.series_names, *extra_names] if c in table.columns]
        index = pd.DatetimeIndex(timestamps)
    if index.has_duplicates:
        first = index[index.duplicated()][0]
        raise UserError(
            f"future file {source} has repeated rows for {first}; give one row per "
            f"{'series and ' if per_series else ''}timestamp"
        )
    values = pd.DataFrame(
        {c: numeric_column(table[c], c, source) for c in columns}, index=index, columns=columns
    )
    return FutureValues(values, per_series, actual_column if actual_column in columns else None, source)
