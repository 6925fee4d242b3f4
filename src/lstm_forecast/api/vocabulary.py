"""The Python API speaks its own words: errors name the API's arguments, results the input's columns.

The apps below the API word their hints for the command line (``future.path=FILE``,
``data.source.extra_columns``); :func:`api_words` rewrites the hints a call can meet into the
argument that fixes them in Python. Config keys the API takes as overrides
(``data.source.fill_method=ffill``) stay as they are: ``overrides=[...]`` sets them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pandas as pd

from lstm_forecast.data.frame import SeriesFrame
from lstm_forecast.data.sources import IN_MEMORY_NAME
from lstm_forecast.errors import UserError

# (the command line's words, the API's), applied in order.
API_WORDS = (
    ("pass future.path=FILE", "pass future=<DataFrame>"),
    (f"future file {IN_MEMORY_NAME}", "future= DataFrame"),
    ("data.source.series_column", "columns={'series': ...}"),
    ("data.source.timestamp_column", "columns={'timestamp': ...}"),
    ("data.source.value_column", "columns={'value': ...}"),
    ("data.source.extra_columns", "extra_columns="),
    ("data.source.static_columns", "static_columns="),
)


def in_api_words(message: str) -> str:
    """``message`` with each command-line hint of :data:`API_WORDS` in the API's words."""
    for cli, api in API_WORDS:
        message = message.replace(cli, api)
    return message


@contextlib.contextmanager
def api_words() -> Iterator[None]:
    """Re-raise a :class:`~lstm_forecast.errors.UserError` in the API's words (:func:`in_api_words`)."""
    try:
        yield
    except UserError as error:
        raise UserError(in_api_words(str(error))) from None


def in_input_names(forecast: pd.DataFrame, frame: SeriesFrame) -> pd.DataFrame:
    """``forecast`` (``series, timestamp, ...``) with the series and timestamp columns named as in the
    table ``frame`` was read from: a long table's (``unique_id, ds`` for Nixtla's), a wide table's
    timestamp column; a wide table has no series column, so ``series`` stays."""
    read = {} if frame.notes is None else frame.notes.columns
    return forecast.rename(columns={role: read[role] for role in ("series", "timestamp") if role in read})
