"""The future table to fill in: the rows and columns a forecast of ``horizon`` steps reads from a future
file (:mod:`~lstm_forecast.inference.future_values`), the user's columns left blank.

Like neuralforecast's ``make_future_dataframe``: one row per forecast series and step (long data) or per
step (wide data, whose series share one timeline), keyed by the data's own series and timestamp
columns. Calendar features (``data.calendar_features``) are computed from the timestamps, so they are
never columns of it; only the user's extra columns that the forecast reads are.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.sources import WIDE_TIMESTAMP_COLUMN
from lstm_forecast.inference.forecasting import fed_back_steps, forecastable_series


def needed_columns(datamodule: ForecastDataModule, horizon: int, model_horizon: int) -> list[str]:
    """The user's extra columns a forecast of ``horizon`` steps reads after the data: every one when
    forecasts are fed back as context (``horizon > model_horizon``), else the future-known ones
    (``data.future_columns``), in the data's column order."""
    names = [str(c) for c in datamodule.load_frame().extras.columns]
    if fed_back_steps(horizon, model_horizon):
        return names
    return [name for name in names if name in datamodule.future_columns]


def future_frame(datamodule: ForecastDataModule, horizon: int, model_horizon: int) -> pd.DataFrame:
    """The future table of a ``horizon``-step forecast of ``datamodule``'s data, its value columns NaN.

    Returns
    -------
    pandas.DataFrame
        Long data: the series and timestamp columns (the data's names), one row per forecast series and
        step, series-major. Wide data: the timestamp column, one row per step. Then the columns of
        :func:`needed_columns` (float, NaN: to fill in). Filled, it is the ``future`` table of a
        forecast of those steps.
    """
    frame = datamodule.load_frame()
    source = datamodule.source
    series = forecastable_series(datamodule)  # what forecast_future forecasts
    stamps = frame.future_timestamps(series, horizon)  # [M * horizon], series-major
    if source.get("kind") == "long_file":
        keys = {
            str(source.get("series_column") or "series"): np.repeat(
                np.asarray(frame.series_names, dtype=object)[series], horizon
            ),
            str(source.get("timestamp_column") or "timestamp"): stamps,
        }
    else:  # wide: every series shares the one timeline
        keys = {str(source.get("timestamp_column") or WIDE_TIMESTAMP_COLUMN): stamps.unique().sort_values()}
    table = pd.DataFrame(keys)
    for name in needed_columns(datamodule, horizon, model_horizon):
        table[name] = np.nan
    return table
