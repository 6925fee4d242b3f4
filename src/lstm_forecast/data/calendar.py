"""Calendar extra features computed from the timestamps (also for future timestamps)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lstm_forecast.errors import UserError

CALENDAR_FEATURES = {
    "minute": lambda ts: ts.minute,
    "hour": lambda ts: ts.hour,
    "day_of_week": lambda ts: ts.dayofweek,
    "day_of_month": lambda ts: ts.day,
    "day_of_year": lambda ts: ts.dayofyear,
    "month": lambda ts: ts.month,
    "workday": lambda ts: (ts.dayofweek < 5).astype(int),
}
# How a caller outside this package encodes each feature (the exported model's contract): numbers of
# the step's own timestamp in local wall-clock time, as pandas' Timestamp attributes give them.
CALENDAR_ENCODING = {
    "minute": "minute of the hour, 0-59",
    "hour": "hour of the day, 0-23",
    "day_of_week": "day of the week, Monday=0 .. Sunday=6",
    "day_of_month": "day of the month, 1-31",
    "day_of_year": "day of the year, 1-366",
    "month": "month, 1-12",
    "workday": "1 Monday to Friday, 0 Saturday and Sunday",
}
DAY_NS = 86_400 * 10**9
INTRADAY_NS = ("hour", "minute")
MAX_SPAN_DAYS = 400_000  # about 1,100 years of days in a table


def calendar_features(timestamps: pd.DatetimeIndex, names: list[str]) -> pd.DataFrame:
    """Columns ``names`` (from :data:`CALENDAR_FEATURES`) for each timestamp, as floats.

    ``workday`` is Monday to Friday; holidays are not known without a calendar the user supplies,
    which they can add as an extra column.
    """
    check_calendar_names(names)
    return pd.DataFrame(
        {name: CALENDAR_FEATURES[name](timestamps) for name in names}, index=timestamps, dtype="float64"
    )


def check_calendar_names(names: list[str]) -> None:
    unknown = sorted(set(names) - set(CALENDAR_FEATURES))
    if unknown:
        raise UserError(
            f"unknown calendar feature(s) {unknown}; choose from {sorted(CALENDAR_FEATURES)} "
            "in data.calendar_features"
        )


@dataclass(frozen=True)
class CalendarKeys:
    """Calendar features as one small integer per row: a key into the table of their distinct
    combinations (daily data with ``day_of_week, workday, month``: 84 combinations, one byte a row
    instead of three floats).

    Features of the day come from a table of the days the data spans (wall-clock time), ``hour`` and
    ``minute`` from integer arithmetic; key ``k + 1`` is combination ``k`` (key 0 marks a padding row).

    Attributes
    ----------
    names : list of str
        The features, in ``x`` order.
    first_day : int
        Day number (days since 1970-01-01) of ``day_combination[0]``.
    day_combination : ndarray
        ``[D]`` combination of day features of each day of the span.
    per_day : int
        Combinations of ``hour``/``minute`` per day combination (1, 24, 60 or 1440).
    table : ndarray
        ``[K, C]`` float64 feature values of each combination.
    dtype : dtype
        uint8 or int16, the smallest that holds ``K + 1`` keys.
    """

    names: list[str]
    first_day: int
    day_combination: np.ndarray
    per_day: int
    table: np.ndarray
    dtype: np.dtype

    @classmethod
    def build(cls, first: pd.Timestamp, last: pd.Timestamp, names: list[str]) -> CalendarKeys | None:
        """Keys for timestamps from ``first`` to ``last``; None when there are too many combinations
        for two bytes (``minute`` with ``day_of_year``...) or the span is absurdly long."""
        check_calendar_names(names)
        first_day, last_day = (_wall_ns(pd.DatetimeIndex([t]))[0] // DAY_NS for t in (first, last))
        span = int(last_day - first_day + 1)
        if not names or span > MAX_SPAN_DAYS:
            return None
        days = pd.date_range(pd.Timestamp(int(first_day) * DAY_NS), periods=span, freq="D")
        by_day = [n for n in names if n not in INTRADAY_NS]
        day_values = np.stack([np.asarray(CALENDAR_FEATURES[n](days)) for n in by_day] or [np.zeros(span)], 1)
        combinations, day_combination = np.unique(day_values, axis=0, return_inverse=True)
        intraday = [n for n in ("hour", "minute") if n in names]
        per_day = {(): 1, ("hour",): 24, ("minute",): 60, ("hour", "minute"): 1440}[tuple(intraday)]
        num_keys = len(combinations) * per_day
        if num_keys + 1 > np.iinfo(np.int16).max:
            return None
        within = np.arange(num_keys) % per_day  # minute of the day, hour or minute
        columns = {n: combinations[np.arange(num_keys) // per_day, j] for j, n in enumerate(by_day)}
        if "hour" in names:
            columns["hour"] = within // 60 if "minute" in names else within
        if "minute" in names:
            columns["minute"] = within % 60
        return cls(
            names=list(names),
            first_day=int(first_day),
            day_combination=day_combination.ravel(),
            per_day=per_day,
            table=np.stack([columns[n] for n in names], axis=1).astype(np.float64),
            dtype=np.dtype(np.uint8 if num_keys + 1 <= 256 else np.int16),
        )

    @property
    def num_keys(self) -> int:
        """Keys including the padding key 0."""
        return len(self.table) + 1

    def keys(self, timestamps: pd.DatetimeIndex) -> np.ndarray:
        """``[N]`` key of each timestamp (within the span the keys were built for)."""
        stamps = _wall_ns(timestamps)
        key = self.day_combination[stamps // DAY_NS - self.first_day] * self.per_day
        if self.per_day > 1:
            unit = 60 * 10**9 if "minute" in self.names else 3_600 * 10**9
            key += stamps // unit % self.per_day
        return (key + 1).astype(self.dtype)


def _wall_ns(timestamps: pd.DatetimeIndex) -> np.ndarray:
    """``[N]`` int64 nanoseconds of the local wall-clock time, which the features describe."""
    if timestamps.tz is not None:
        timestamps = timestamps.tz_localize(None)
    return timestamps.as_unit("ns").asi8
