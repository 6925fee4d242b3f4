"""Calendar extra features computed from the timestamps (also for future timestamps)."""

from __future__ import annotations

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


def calendar_features(timestamps: pd.DatetimeIndex, names: list[str]) -> pd.DataFrame:
    """Columns ``names`` (from :data:`CALENDAR_FEATURES`) for each timestamp, as floats.

    ``workday`` is Monday to Friday; holidays are not known without a calendar the user supplies,
    which they can add as an extra column.
    """
    unknown = sorted(set(names) - set(CALENDAR_FEATURES))
    if unknown:
        raise UserError(
            f"unknown calendar feature(s) {unknown}; choose from {sorted(CALENDAR_FEATURES)} "
            "in data.calendar_features"
        )
    return pd.DataFrame(
        {name: CALENDAR_FEATURES[name](timestamps) for name in names}, index=timestamps, dtype="float64"
    )
