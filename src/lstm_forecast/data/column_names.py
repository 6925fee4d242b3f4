"""The column names found without being named: one vocabulary for the CLI and the API.

A long table's roles default to this project's names, ``series, timestamp, value`` (the long
readers' and ``conf/data/long_csv.yaml``'s defaults); a table without them but with Nixtla's names
(neuralforecast, statsforecast: ``unique_id, ds, y``) is read with those. A wide table's timestamp
column defaults to ``date`` (``conf/data/wide_file.yaml``); ``timestamp`` or ``ds`` stands in for it.
A name the user gave is never replaced: only a default absent from the table is.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

ROLES = ("series", "timestamp", "value")
# Each role's names, the default first.
KNOWN_LONG_NAMES = {
    "series": ("series", "unique_id"),
    "timestamp": ("timestamp", "ds"),
    "value": ("value", "y"),
}

# A wide table's timestamp column, the default first.
KNOWN_WIDE_TIMESTAMPS = ("date", "timestamp", "ds")


def _recognised(present: set[str], name: str, known: tuple[str, ...]) -> str:
    """``name``, or where it is the default (``known[0]``) and absent, the first known name present."""
    if name == known[0] and name not in present:
        return next((other for other in known[1:] if other in present), name)
    return name


def recognised_wide_timestamp(columns: Iterable[object], name: str) -> str:
    """A wide table's timestamp column: ``name``, or ``timestamp``/``ds`` for an absent default."""
    return _recognised({str(column) for column in columns}, name, KNOWN_WIDE_TIMESTAMPS)


def recognised_long_columns(columns: Iterable[object] | None, **named: str) -> dict[str, str]:
    """Each role's column (``series=``, ``timestamp=``, ``value=`` as configured): the configured
    name, or, where that is the role's default and ``columns`` lacks it, the first known name they
    have. ``columns`` None (not known) keeps the configured names."""
    if columns is None:
        return dict(named)
    present = {str(column) for column in columns}
    return {role: _recognised(present, name, KNOWN_LONG_NAMES[role]) for role, name in named.items()}


def file_columns(path: str | Path | None) -> list[str] | None:
    """The column names of a CSV or Parquet file, read from its header or schema alone; None where
    they cannot be read (the read itself then says why)."""
    if path is None:
        return None
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            return [str(c) for c in pd.read_csv(path, nrows=0).columns]
        if path.suffix.lower() in {".parquet", ".pq"}:
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
    except Exception:  # a missing or unreadable file: read_table reports it in one line
        return None
    return None
