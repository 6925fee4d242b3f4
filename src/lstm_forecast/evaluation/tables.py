"""The one forecast table: every CSV/Parquet of forecasts any app writes has these columns.

``series``, ``timestamp`` (of the forecast step), ``step`` (1..H), ``prediction`` and ``actual``
(original units; NaN where the step lies past the data), one row per window and horizon step, in
window order. Apps add their own columns beside them (a backtest's ``origin`` and baselines).

Forecasts with intervals add ``lo-80``, ``hi-80``, ``lo-95``, ``hi-95`` ... (one pair per coverage
level, Nixtla's convention), and a quantile model's own quantiles ``q0.1``, ``q0.5`` ... (original units).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lstm_forecast.data.calendar import DAY_NS
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.frame import SeriesFrame
from lstm_forecast.data.windows import CHUNK_ROWS
from lstm_forecast.evaluation.intervals import interval_columns, quantile_column
from lstm_forecast.evaluation.window_forecasts import WindowForecasts

FORECAST_COLUMNS = ("series", "timestamp", "step", "prediction", "actual")


def step_timestamps(
    datamodule: ForecastDataModule, series: np.ndarray, rows: np.ndarray
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Timestamps and actuals (original units) of frame ``rows [M]`` of ``series [M]``; a row at or
    past the end of its series is a step after its last row (its own next timestamp, actual NaN)."""
    frame = datamodule.load_frame()
    past = rows - frame.offsets[series + 1]  # >= 0 past the series' end
    inside = past < 0
    known_rows = np.where(inside, rows, 0)
    if inside.all():
        return frame.timestamps[known_rows], frame.values[known_rows]
    timestamps = pd.Series(frame.timestamps[known_rows])
    steps = int(past.max()) + 1
    ahead = frame.future_timestamps(series[~inside], steps)
    timestamps[~inside] = ahead[np.arange((~inside).sum()) * steps + past[~inside]]
    actual = np.where(inside, frame.values[known_rows], np.nan)
    return pd.DatetimeIndex(timestamps), actual


def forecast_table(
    forecasts: WindowForecasts,
    datamodule: ForecastDataModule,
    extra: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Forecasts of every window in original units, long format (see the module docstring).

    Parameters
    ----------
    forecasts : WindowForecasts
        ``[N, H]`` scaled forecasts with each window's series and first target row.
    datamodule : ForecastDataModule
        The data and its scaler.
    extra : dict, optional
        More ``[N, H]`` scaled forecasts (baselines), written as columns of their own.

    Interval and quantile columns are written when ``forecasts`` holds them.
    """
    num_windows, horizon = forecasts.prediction.shape
    series = forecasts.series_index.astype(np.int64)[:, None]  # [N, 1]
    rows = forecasts.target_row.astype(np.int64)[:, None] + np.arange(horizon)  # [N, H]
    flat_series = np.repeat(series[:, 0], horizon)
    timestamps, actual = step_timestamps(datamodule, flat_series, rows.ravel())
    if forecasts.target is not None:
        actual = datamodule.inverse_values(forecasts.target, series).ravel()
    table = pd.DataFrame(
        {
            "series": np.asarray(datamodule.series_names, dtype=object)[flat_series],
            "timestamp": timestamps,
            "step": np.tile(np.arange(1, horizon + 1), num_windows),
            "prediction": datamodule.inverse_values(forecasts.prediction, series).ravel(),
            "actual": actual,
        }
    )
    columns = {}
    for level, (lo, hi) in sorted(forecasts.intervals.items()):
        columns.update(dict(zip(interval_columns(level), (lo, hi), strict=True)))
    for position, level in enumerate(forecasts.quantile_levels):
        columns[quantile_column(level)] = forecasts.quantiles[..., position]
    for name, values in {**columns, **(extra or {})}.items():
        table[name] = datamodule.inverse_values(values, series).ravel()
    return table


def dates_only(frame: SeriesFrame, horizon: int) -> bool:
    """Whether every timestamp of the window table (the data's, and up to ``horizon`` steps after each
    series' end) is a naive midnight, read a chunk of rows at a time."""
    stamps = frame.timestamps
    if stamps.tz is not None:
        return False
    for start in range(0, len(stamps), CHUNK_ROWS):
        if (stamps[start : start + CHUNK_ROWS].asi8 % DAY_NS).any():
            return False
    if frame.freq is None or not len(stamps):
        return True
    last = np.flatnonzero(frame.lengths > 0)[:1]
    return not (frame.future_timestamps(last, horizon).asi8 % DAY_NS).any()
