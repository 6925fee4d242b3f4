"""Reference forecasts scored on exactly the model's targets.

All baselines work in the network's scaled units on the same windows as the model:

- persistence: the last observed value, repeated over the horizon;
- seasonal naive: the value one season before each target step (``period`` rows back, or a multiple
  of it for steps beyond one season), so it never uses a value after the forecast origin;
- ridge: one linear model of the window's values, shared by every series, fitted in closed form on
  the training windows, its regularisation chosen on the validation windows (a DLinear/NLinear-style
  linear baseline without the decomposition).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lstm_forecast.data.windows import SeriesArrays
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.window_forecasts import WindowForecasts
from lstm_forecast.models.ridge import DEFAULT_RIDGE_ALPHAS, RidgeBaseline

__all__ = [
    "DEFAULT_RIDGE_ALPHAS",
    "RidgeBaseline",
    "default_seasonal_period",
    "persistence",
    "seasonal_naive",
]


def persistence(forecasts: WindowForecasts) -> np.ndarray:
    """Repeat the last observed value for every horizon step: ``[N, H]`` scaled."""
    horizon = forecasts.prediction.shape[1]
    return np.repeat(forecasts.last_value[:, None], horizon, axis=1)


def default_seasonal_period(timestamps: pd.DatetimeIndex) -> int:
    """The season length implied by the sampling interval.

    Sub-daily data: the steps in one day (24 for hourly, 96 for 15-minute data); daily: 7; weekly: 52;
    monthly: 12; quarterly: 4; anything coarser (or a single row): 1.
    """
    if len(timestamps) < 2:
        return 1
    step = pd.Series(timestamps).diff().median()
    day = pd.Timedelta(days=1)
    if step < day:
        return max(1, round(day / step))
    for limit, period in ((day, 7), (7 * day, 52), (31 * day, 12), (92 * day, 4)):
        if step <= limit * 1.01:
            return period
    return 1


def seasonal_naive(
    arrays: SeriesArrays,
    target_row: np.ndarray,
    series_index: np.ndarray,
    horizon: int,
    period: int,
) -> np.ndarray:
    """The value ``k * period`` rows before each target step, the smallest ``k`` that reaches the past.

    Step ``h`` (from 0) of a window whose first target row is ``t`` takes row
    ``t + h - period * ceil((h + 1) / period)``: always before ``t``. Rows before the data read the
    zero warm-up padding, as the network's windows do.

    Parameters
    ----------
    arrays : SeriesArrays
        The scaled data the windows were cut from.
    target_row, series_index : ndarray
        ``[N]`` first target row and series (from 0) of each window.

    Returns
    -------
    ndarray
        ``[N, H]`` scaled forecasts.
    """
    if not isinstance(period, int) or period < 1:
        raise UserError(f"evaluation.seasonal_period must be a positive integer, got {period!r}")
    steps = np.arange(horizon)
    back = period * ((steps + 1 + period - 1) // period)  # [H] rows back from each target step
    series = np.asarray(series_index)
    # Series s's rows follow its own block of zero rows (block_start[s]); rows further back than the
    # block read its first zero row, never another series.
    block_start = arrays.block_start.cpu().numpy()[series][:, None]  # [N, 1]
    rows = (
        np.asarray(target_row)[:, None] + (series[:, None] + 1) * arrays.window_size + steps - back
    )  # [N, H]
    return arrays.values.cpu()[torch.from_numpy(np.maximum(rows, block_start))].double().numpy()
