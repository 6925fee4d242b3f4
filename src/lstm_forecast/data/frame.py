"""The one data model: every source becomes a :class:`SeriesFrame`, series of their own timelines.

A long table (one row per series and timestamp) is the general case; a wide file is the special
case in which every series shares one timeline, and becomes the same frame. Rows are kept sorted by
series then time as flat arrays: memory is O(total rows), never O(series x time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from lstm_forecast.errors import UserError

FILL_METHODS = ("ffill", "bfill", "interpolate", "zero")
LOOKAHEAD_FILLS = ("bfill", "interpolate")  # filled after the split (data/split_fill.py)


def fill_reaching_edges(failed: str) -> str:
    """The fill to name when ``failed`` left a value missing: ``interpolate`` takes the nearest value
    at either edge of a series, so it fills what ``ffill`` (a leading gap) and ``bfill`` (a trailing
    one) leave; what ``interpolate`` leaves (a series with no value in the column) only ``zero`` fills."""
    return "interpolate" if failed in ("ffill", "bfill") else "zero"


@dataclass(frozen=True)
class ReadNotes:
    """What reading a file chose and changed, for the summary line after reading.

    Attributes
    ----------
    source : str
        The file read, or ``the DataFrame`` for rows handed over in memory.
    columns : dict
        The column of each role read (a long table's ``series``, ``timestamp`` and ``value``, which
        may be Nixtla's names; a wide table's ``timestamp``).
    inserted_steps : int
        Missing steps a fill inserted (rows added).
    filled_values : int
        Missing values of rows the file has that a fill filled (cells: values and extras).
    """

    source: str
    columns: dict[str, str]
    inserted_steps: int = 0
    filled_values: int = 0


@dataclass(frozen=True)
class SeriesFrame:
    """Rows of many series, sorted by series then time, one row per step of a series.

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
        ``[N, E]`` float64 user extra columns (per row; a wide file's are the same for every series).
    static : DataFrame
        ``[S, K]`` per-series category labels (strings), one column per static column.
    freq : DateOffset or None
        The step between consecutive rows of a series; None when a wide file's rows are irregular
        (each row is then one step, and forecasting past the data is refused).
    notes : ReadNotes or None
        What reading the file chose and changed; None for the synthetic source.
    """

    series_names: list[str]
    offsets: np.ndarray
    timestamps: pd.DatetimeIndex
    values: np.ndarray
    extras: pd.DataFrame
    static: pd.DataFrame
    freq: pd.DateOffset | None
    notes: ReadNotes | None = None

    @property
    def num_rows(self) -> int:
        return len(self.values)

    @property
    def num_series(self) -> int:
        return len(self.series_names)

    @property
    def lengths(self) -> np.ndarray:
        """``[S]`` rows per series."""
        return np.diff(self.offsets)

    @property
    def row_series(self) -> np.ndarray:
        """``[N]`` series of each row, from 0."""
        return np.repeat(np.arange(self.num_series), self.lengths)

    @property
    def local_index(self) -> np.ndarray:
        """``[N]`` position of each row within its series, from 0."""
        return np.arange(self.num_rows) - np.repeat(self.offsets[:-1], self.lengths)

    @property
    def freqstr(self) -> str:
        """The pandas alias of :attr:`freq` (``"h"``), ``""`` when irregular."""
        return self.freq.freqstr if self.freq is not None else ""

    def last_timestamps(self, series: np.ndarray) -> pd.DatetimeIndex:
        """``[M]`` timestamp of the last row of each series in ``series`` (all with rows)."""
        return self.timestamps[self.offsets[np.asarray(series) + 1] - 1]

    def future_timestamps(self, series: np.ndarray, steps: int) -> pd.DatetimeIndex:
        """``[M * steps]`` timestamps of the ``steps`` steps after the last row of each series in
        ``series [M]`` (series-major)."""
        if self.freq is None:
            raise UserError(
                "the data's timestamps are irregular, so the steps after its end have no timestamps; "
                "give evenly spaced rows"
            )
        last = self.last_timestamps(series)  # [M]
        ahead = np.stack(
            [(last + (k + 1) * self.freq).as_unit("ns").asi8 for k in range(steps)], axis=1
        )  # [M, steps]
        stamps = pd.DatetimeIndex(ahead.ravel().view("datetime64[ns]"))
        return stamps if last.tz is None else stamps.tz_localize("UTC").tz_convert(last.tz)

    def wide_values(self, series: list[int]) -> pd.DataFrame:
        """Values of ``series`` as a wide table (timestamp index, one column each, NaN where a series
        has no row): what a plot of a few series needs."""
        columns = {}
        for s in series:
            rows = slice(self.offsets[s], self.offsets[s + 1])
            columns[self.series_names[s]] = pd.Series(self.values[rows], index=self.timestamps[rows])
        return pd.DataFrame(columns)


def frame_from_wide(
    timestamps: pd.DatetimeIndex, series: pd.DataFrame, extras: pd.DataFrame, freq: pd.DateOffset | None
) -> SeriesFrame:
    """A wide table (``[T, S]`` series columns, ``[T, E]`` extras on one timeline) as a frame.

    The extras are repeated for every series: each series' rows carry their step's extra values.
    """
    num_rows, num_series = series.shape
    return SeriesFrame(
        series_names=[str(c) for c in series.columns],
        offsets=np.arange(num_series + 1, dtype=np.int64) * num_rows,
        timestamps=pd.DatetimeIndex(np.tile(timestamps.to_numpy(), num_series)),
        values=series.to_numpy(dtype=np.float64).T.ravel(),
        extras=pd.DataFrame(
            np.tile(extras.to_numpy(dtype=np.float64), (num_series, 1)), columns=list(extras.columns)
        ),
        static=pd.DataFrame(index=pd.Index([str(c) for c in series.columns], name="series")),
        freq=freq,
    )


def regular_freq(timestamps: pd.DatetimeIndex) -> pd.DateOffset | None:
    """Pandas' inferred frequency of one timeline, or None when irregular or under 3 rows."""
    inferred = pd.infer_freq(timestamps) if len(timestamps) >= 3 else None
    return to_offset(inferred) if inferred else None


def fill_within_series(
    values: np.ndarray, row_series: np.ndarray, method: str, limit: np.ndarray | None = None
) -> np.ndarray:
    """Fill NaNs of ``values [N, C]`` (rows sorted by series then time) within each series, never from
    a neighbouring one: carry the last value forward (``ffill``), the next one backward (``bfill``),
    interpolate linearly with the edges taking the nearest value (``interpolate``), or use zero.

    ``limit [N]``, when given, is the row before which each row's fill may read (the end of its
    split): a missing value whose next known value lies at or after it is filled as ``ffill`` does
    (``bfill`` and ``interpolate``), and left NaN where its series has no earlier value either."""
    if method not in FILL_METHODS:
        raise UserError(
            f"unknown data.source.fill_method {method!r}; choose null (reject) or one of {list(FILL_METHODS)}"
        )
    if method == "zero":
        return np.nan_to_num(values, nan=0.0)
    filled = values.copy()
    rows = np.arange(len(values))
    for column in range(values.shape[1]):
        known = ~np.isnan(values[:, column])
        previous = np.maximum.accumulate(np.where(known, rows, -1))  # last known row at or before
        has_previous = (previous >= 0) & (row_series[np.maximum(previous, 0)] == row_series)
        following = np.minimum.accumulate(np.where(known, rows, len(rows))[::-1])[::-1]
        has_following = (following < len(rows)) & (
            row_series[np.minimum(following, len(rows) - 1)] == row_series
        )
        forward = ~known & has_previous
        if method == "ffill":
            filled[forward, column] = values[previous[forward], column]
            continue
        cut = np.zeros(len(rows), dtype=bool) if limit is None else has_following & (following >= limit)
        has_following &= ~cut  # a later value past the row's split is never read
        backward = ~known & has_following
        if method == "bfill":
            filled[backward, column] = values[following[backward], column]
            carried = ~known & cut & has_previous  # the gap ends its split: as ffill does
            filled[carried, column] = values[previous[carried], column]
            continue
        inside = forward & has_following
        lo, hi = previous[inside], following[inside]
        weight = (rows[inside] - lo) / (hi - lo)
        filled[inside, column] = (1 - weight) * values[lo, column] + weight * values[hi, column]
        edge_start, edge_end = backward & ~has_previous, forward & ~has_following
        filled[edge_start, column] = values[following[edge_start], column]
        filled[edge_end, column] = values[previous[edge_end], column]
    return filled


def check_same_names(kind: str, found: list[str], expected: list[str], source: str | None) -> None:
    """Refuse data whose series (or extra feature) names differ from the training data's."""
    if found == expected:
        return
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    detail = f"missing {missing[:10]}, unexpected {unexpected[:10]}" if missing or unexpected else "reordered"
    raise UserError(
        f"the {kind} columns of {source or 'the data'} differ from the training data's ({detail}); "
        "give data with the training columns"
    )


def static_vocabulary(static: pd.DataFrame) -> list[list[str]]:
    """Per column of ``static`` (``[S, K]`` labels), the labels of codes ``1..C`` (0: unseen, or empty)."""
    return [sorted(set(static[column]) - {""}) for column in static.columns]


def static_codes(static: pd.DataFrame, vocabulary: list[list[str]]) -> np.ndarray | None:
    """``[S, K]`` int64 code of each series' static labels in ``vocabulary`` (0: a label not in it), or
    None without static columns."""
    if static.shape[1] == 0:
        return None
    codes = [
        pd.Categorical(static[column], categories=labels).codes.astype(np.int64) + 1
        for column, labels in zip(static.columns, vocabulary, strict=True)
    ]
    return np.stack(codes, axis=1)
