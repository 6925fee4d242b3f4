"""Which data source a DataFrame is: its layout (long or wide) and the role of each column.

The DataFrame itself is read by the data sources' own code (:mod:`lstm_forecast.data.sources`,
:mod:`lstm_forecast.data.long_source`), exactly as a file of that layout; this module only picks
the ``data`` config group and the ``data.source`` column keys a file of that layout would be given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from lstm_forecast.data.column_names import KNOWN_LONG_NAMES, KNOWN_WIDE_TIMESTAMPS, ROLES
from lstm_forecast.errors import UserError

LAYOUTS = {"long": "long_csv", "wide": "wide_file"}  # layout -> the data config group reading it
SOURCE_KINDS = {"long": "long_file", "wide": "wide_file"}


@dataclass(frozen=True)
class TableLayout:
    """How a DataFrame maps onto a data source.

    Attributes
    ----------
    layout : {"long", "wide"}
        One row per (series, timestamp), or one timestamp column and one column per series.
    source : dict
        ``data.source`` keys for that layout's config: the column roles (``path`` is None, the
        rows come from the DataFrame).
    """

    layout: str
    source: dict[str, Any]

    @property
    def data_group(self) -> str:
        """The ``data`` config group of this layout (``long_csv`` or ``wide_file``)."""
        return LAYOUTS[self.layout]

    @property
    def kind(self) -> str:
        """``data.source.kind`` of this layout."""
        return SOURCE_KINDS[self.layout]


def check_frame(data: object) -> pd.DataFrame:
    """``data`` if it is a non-empty pandas DataFrame; a one-line UserError otherwise."""
    if not isinstance(data, pd.DataFrame):
        raise UserError(
            f"expected a pandas DataFrame, got {type(data).__name__}; pass the data as a DataFrame"
        )
    if data.empty:
        raise UserError("the DataFrame has no rows; pass the series' rows")
    return data


def _long_names(table: pd.DataFrame, columns: dict[str, str]) -> dict[str, str | None]:
    """Each role's column: the one named in ``columns``, else the first known name the table has."""
    return {
        role: columns.get(role) or next((n for n in KNOWN_LONG_NAMES[role] if n in table.columns), None)
        for role in ROLES
    }


def _missing(table: pd.DataFrame, names: list[str], what: str, fix: str) -> None:
    absent = [name for name in names if name not in table.columns]
    if absent:
        raise UserError(
            f"the DataFrame has no {what} column(s) {absent} (it has {list(table.columns)}); {fix}"
        )


def table_layout(
    table: pd.DataFrame,
    layout: str | None = None,
    columns: dict[str, str] | None = None,
    extra_columns: list[str] | None = None,
    static_columns: list[str] | None = None,
) -> TableLayout:
    """The layout of ``table`` and the ``data.source`` column keys to read it with.

    Parameters
    ----------
    table : pandas.DataFrame
        Long (``series, timestamp, value[, features]``) or wide (a timestamp column, one column
        per series, optional feature columns).
    layout : {"long", "wide"} or None
        None detects it: long when the table has a series and a value column (named in
        ``columns``, or ``series``/``value``, or Nixtla's ``unique_id``/``y``), else wide.
    columns : dict, optional
        Column of each role, keys ``series``, ``timestamp``, ``value`` (a wide table uses
        ``timestamp`` only; every other numeric column that is not a feature is a series).
    extra_columns : list of str, optional
        Numeric per-step feature columns; None keeps the config's (``data.source.extra_columns``).
    static_columns : list of str, optional
        Long tables: per-series category columns; None keeps the config's.
    """
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(ROLES))
    if unknown:
        raise UserError(f"unknown column role(s) {unknown} in columns=; use keys {list(ROLES)}")
    if layout not in (None, *LAYOUTS):
        raise UserError(f"unknown layout {layout!r}; use layout='long', 'wide' or None (detect it)")
    names = _long_names(table, columns)
    if layout is None:
        long = all(names[role] in table.columns for role in ("series", "value"))
        layout = "long" if long else "wide"
    source: dict[str, Any] = {"path": None}
    if extra_columns is not None:
        _missing(table, list(extra_columns), "extra", "fix extra_columns=")
        source["extra_columns"] = list(extra_columns)
    if layout == "long":
        _missing(
            table,
            [names[role] or role for role in ROLES],
            "long-table",
            "name the series, timestamp and value columns with columns={'series': ..., 'timestamp': ..., "
            "'value': ...}",
        )
        source.update({f"{role}_column": names[role] for role in ROLES})
        if static_columns is not None:
            _missing(table, list(static_columns), "static", "fix static_columns=")
            source["static_columns"] = list(static_columns)
        return TableLayout("long", source)
    if static_columns:
        raise UserError("static_columns= needs a long table (one row per series and timestamp); drop it")
    timestamp = columns.get("timestamp") or next(
        (name for name in KNOWN_WIDE_TIMESTAMPS if name in table.columns), None
    )
    if timestamp is None or timestamp not in table.columns:
        raise UserError(
            f"the wide DataFrame has no timestamp column {timestamp or 'date'!r} (it has "
            f"{list(table.columns)}); name it with columns={{'timestamp': ...}} (a timestamp index: "
            "df.reset_index()), or pass a long table with series, timestamp and value columns"
        )
    source["timestamp_column"] = timestamp
    return TableLayout("wide", source)
