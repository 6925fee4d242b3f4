"""Calendar extra features computed from the timestamps (also for future timestamps)."""

from __future__ import annotations

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
DAY_NS = 86_400 * 10**9
# Features within the day: (nanoseconds per unit, units per day).
INTRADAY_NS = {"minute": (60 * 10**9, 60), "hour": (3_600 * 10**9, 24)}
# The largest value of each feature: every one is a small non-negative integer.
CALENDAR_MAX = {
    "minute": 59,
    "hour": 23,
    "day_of_week": 6,
    "day_of_month": 31,
    "day_of_year": 366,
    "month": 12,
    "workday": 1,
}


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


def calendar_code_dtype(names: list[str]) -> np.dtype:
    """The smallest integer type holding every code of ``names`` (see :func:`calendar_codes`)."""
    return np.dtype(np.uint8 if max((CALENDAR_MAX[n] for n in names), default=0) < 255 else np.int16)


def calendar_codes(timestamps: pd.DatetimeIndex, names: list[str]) -> np.ndarray:
    """``[N, C]`` code of each feature of ``names`` per timestamp: its value plus one (code 0 marks a
    padding row), in :func:`calendar_code_dtype` (one or two bytes instead of a float64).

    The same values as :func:`calendar_features`, from the int64 wall-clock time: minute and hour by
    integer arithmetic, features of the day from a table of the days the timestamps span.
    """
    check_calendar_names(names)
    codes = np.empty((len(timestamps), len(names)), dtype=calendar_code_dtype(names))
    if len(timestamps) == 0:
        return codes
    if timestamps.tz is not None:
        timestamps = timestamps.tz_localize(None)  # local wall-clock time, which the features describe
    stamps = timestamps.as_unit("ns").asi8
    by_day = [name for name in names if name not in INTRADAY_NS]
    if by_day:
        day = stamps // DAY_NS  # floor: also right before 1970
        first = int(day.min())
        span = int(day.max()) - first + 1
        if span <= len(stamps):
            days = pd.date_range(pd.Timestamp(first * DAY_NS), periods=span, freq="D")
            table = {name: np.asarray(CALENDAR_FEATURES[name](days)) + 1 for name in by_day}
            rows = day - first
        else:  # a few rows over many days: the fields of each row
            table = {name: np.asarray(CALENDAR_FEATURES[name](timestamps)) + 1 for name in by_day}
            rows = slice(None)
    for column, name in enumerate(names):
        if name in INTRADAY_NS:
            unit, count = INTRADAY_NS[name]
            codes[:, column] = stamps // unit % count + 1
        else:
            codes[:, column] = table[name][rows]
    return codes
