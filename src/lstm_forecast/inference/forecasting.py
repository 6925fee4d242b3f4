"""Forecasts from a trained network: every full window of the data, and recursive forecasts of the
steps after each series' last row.

Everything here works on a datamodule whose scalers were restored from a checkpoint (never refitted)
and on the plain network, so the training run, the ``lstm-predict`` app and notebooks share one
implementation, whatever the layout of the data.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from pandas.tseries.frequencies import to_offset
from torch import nn

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.windows import SeriesArrays, Windows, index_ranges
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.window_forecasts import WindowForecasts, predict_windows
from lstm_forecast.inference.future_values import FutureValues

log = logging.getLogger(__name__)


def check_frequency(datamodule: ForecastDataModule, expected: str, source: str) -> None:
    """Refuse data whose frequency differs from the training data's ``expected`` alias, and irregular
    timestamps (a wide file with gaps) when the training data was regular."""
    freq = datamodule.freq
    if expected and freq and to_offset(expected) != to_offset(freq):
        raise UserError(
            f"{source} has timestamps every {freq!r} but the model was trained on {expected!r} data; "
            f"resample the file to {expected!r} (long files: or set data.source.freq={expected})"
        )
    if expected and not freq and datamodule.load_frame().num_rows:
        frame = datamodule.load_frame()
        timestamps = frame.timestamps[frame.offsets[0] : frame.offsets[1]]  # a wide file's one timeline
        off_grid = np.flatnonzero(
            pd.date_range(timestamps[0], periods=len(timestamps), freq=expected) != timestamps
        )
        if len(off_grid):
            row = int(off_grid[0])
            raise UserError(
                f"timestamps in {source} are irregular: row {row} ({timestamps[row]}) comes "
                f"{timestamps[row] - timestamps[row - 1]} after the previous row but the model was trained "
                f"on {expected!r} data; fill the gaps or resample the file to {expected!r}"
            )


def fed_back_steps(horizon: int, model_horizon: int) -> int:
    """Forecast steps that become context of a later step when forecasting ``horizon`` steps with a
    model that emits ``model_horizon`` at once (their extra features must be known)."""
    return ((horizon - 1) // model_horizon) * model_horizon


def forecastable_series(datamodule: ForecastDataModule, min_rows: int = 1) -> np.ndarray:
    """``[M]`` series (from 0) with at least ``min_rows`` rows and a scale from training."""
    lengths = datamodule.load_frame().lengths
    return np.flatnonzero((lengths >= max(min_rows, 1)) & (datamodule.series_train_rows > 0))


# ----------------------------------------------------------------------------- scaled rows
def future_user_extras(
    datamodule: ForecastDataModule,
    series: np.ndarray,
    timestamps: pd.DatetimeIndex,
    step: np.ndarray,
    horizon: int,
    model_horizon: int,
    future: FutureValues | None,
) -> np.ndarray:
    """``[M, E_user]`` values of the user's (non-calendar) extra columns at forecast step ``step [M]``
    (from 0) of series ``series [M]`` (from 0), at ``timestamps [M]``.

    They come from ``future`` where the network sees them: every column at the steps fed back as
    context, the future-known columns (``data.future_columns``) at each of the ``horizon`` steps.
    Elsewhere they are NaN, which scales to nothing the network sees.
    """
    names = [str(c) for c in datamodule.load_frame().extras.columns]
    out = np.full((len(timestamps), len(names)), np.nan)
    if not names:
        return out
    fed_back = step < fed_back_steps(horizon, model_horizon)  # [M] context of a later pass
    forecast_step = (step < horizon) & bool(datamodule.future_columns)  # [M] read as x_future
    needs = [(datamodule.future_columns, forecast_step), (names, fed_back)]
    if future is None:
        for columns, needed in needs:
            if needed.any():
                raise UserError(missing_future_message(columns, columns is names, timestamps[needed]))
        return out
    series_names = np.asarray(datamodule.series_names, dtype=object)[series].tolist()
    for columns, needed in needs:
        positions = [names.index(c) for c in columns]
        values = future.lookup(series_names, timestamps, columns, needed)  # [M, C], NaN where not needed
        out[np.ix_(np.flatnonzero(needed), positions)] = values[needed]
    return out


def missing_future_message(columns: list[str], fed_back: bool, timestamps: pd.DatetimeIndex) -> str:
    """Why forecasting needs ``future.path``: the columns, the steps, and the file's layouts."""
    span = f"{timestamps.min()} .. {timestamps.max()}"
    why = (
        f"the model uses extra column(s) {columns} that are not calendar features, so forecasting past "
        "the data needs their future values"
        if fed_back
        else f"the model takes future-known column(s) {columns} (data.future_columns) at each forecast step"
    )
    return (
        f"{why} for {span}; pass future.path=FILE with the timestamp column and those columns (one row per "
        "timestamp, or per series and timestamp with the series column: docs/covariates.md)"
    )


def scaled_arrays(
    datamodule: ForecastDataModule,
    horizon: int = 0,
    future: FutureValues | None = None,
    model_horizon: int = 1,
) -> SeriesArrays:
    """Every row of every series scaled with the checkpoint's scalers (no split), each series with
    data followed by rows to forecast ``horizon`` steps into, ``model_horizon`` at a time (value 0,
    the calendar features of the series' own next timestamps, the user's extra columns from
    ``future``; the last pass's steps past ``horizon``, forecast and dropped, have none)."""
    frame = datamodule.load_frame()
    values = datamodule.scaled_values(frame.values, frame.row_series)  # [N]
    extras = datamodule.scaled_extras(datamodule.feature_table())  # [N, E]
    offsets = frame.offsets
    if horizon:
        future_rows = -(-horizon // model_horizon) * model_horizon  # whole passes
        num_series = frame.num_series
        grown = offsets + np.arange(num_series + 1) * future_rows  # [S + 1]
        observed = np.arange(frame.num_rows) + frame.row_series * future_rows  # [N] rows after growing
        known = np.flatnonzero(frame.lengths > 0)
        ahead = index_ranges(grown[known + 1] - future_rows, np.full(len(known), future_rows))  # [M * F]
        stamps = frame.future_timestamps(known, future_rows)  # [M * F]
        step = np.tile(np.arange(future_rows), len(known))  # [M * F]
        series = np.repeat(known, future_rows)  # [M * F]
        user = future_user_extras(datamodule, series, stamps, step, horizon, model_horizon, future)
        future_extras = np.nan_to_num(datamodule.scaled_extras(datamodule.feature_table(stamps, user)))
        grown_values = np.zeros(len(values) + num_series * future_rows)
        grown_extras = np.zeros((len(grown_values), extras.shape[1]))
        grown_values[observed], grown_extras[observed] = values, extras
        grown_extras[ahead] = future_extras
        values, extras, offsets = grown_values, grown_extras, grown
    return SeriesArrays.from_rows(values, extras, offsets, datamodule.window_size)


# ----------------------------------------------------------------------------- windows of the data
def prediction_windows(datamodule: ForecastDataModule, horizon: int) -> Windows:
    """Every window full of real rows (the method's prediction layout, no warm-up padding): targets
    ``W .. L`` of each series of ``L`` rows (``L``: the step after its last row). A model that takes
    future-known features needs them for its ``horizon`` forecast steps, which the data holds for
    targets ``W .. L - horizon`` only. Series shorter than that, or unscaled in training, are left out."""
    window_size, lengths = datamodule.window_size, datamodule.load_frame().lengths
    min_rows = window_size + (horizon if datamodule.future_columns else 0)
    what = f"one window of {window_size} (the model's data.window_size)"
    if min_rows > window_size:
        what += f" and the {horizon} forecast steps whose future-known features the model takes"
    series = forecastable_series(datamodule, min_rows)
    if not len(series):
        raise UserError(
            f"the data has {int(lengths.max(initial=0))} rows, fewer than {what}; give at least "
            f"{min_rows} rows per series"
        )
    short = len(forecastable_series(datamodule)) - len(series)
    if short:
        log.warning("%d series with fewer rows than %s are not predicted", short, what)
    count = lengths[series] - min_rows + 1
    arrays = scaled_arrays(datamodule)
    local = index_ranges(np.full(len(series), window_size), count)
    targets = torch.from_numpy(arrays.padded_rows(np.repeat(series, count), local))
    return datamodule.window_set(arrays, targets, horizon, with_target=False)


# ----------------------------------------------------------------------------- past the end
@torch.no_grad()
def forecast_future(
    net: nn.Module,
    datamodule: ForecastDataModule,
    horizon: int,
    model_horizon: int = 1,
    future: FutureValues | None = None,
    device: torch.device | str | None = None,
) -> WindowForecasts:
    """Forecast the ``horizon`` steps after each series' own last row, feeding forecasts back.

    Each pass forecasts every series at once from the last ``window_size`` rows of observed and
    already forecast values (the training window layout); a model emitting ``model_horizon`` steps
    per pass advances by that many. Calendar features of the future timestamps are computed; the
    user's own extra columns come from ``future`` (see :func:`future_user_extras`), needed for the
    steps fed back as context and, for future-known columns, for every forecast step. ``net`` is a
    network or a :class:`~lstm_forecast.models.module.ForecastModule` (see
    :func:`~lstm_forecast.evaluation.window_forecasts.predict_windows`).

    Returns
    -------
    WindowForecasts
        One window per series: ``[M, horizon]`` scaled forecasts, ``target_row`` one past the series'
        last row (see :func:`~lstm_forecast.evaluation.tables.forecast_table`); a quantile model's
        ``[M, horizon, Q]`` quantiles of the first pass (NaN after it: later passes are conditional on
        the point forecasts fed back, not on the quantiles).
    """
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
        raise UserError(f"horizon must be a positive integer (steps after the data), got {horizon!r}")
    frame = datamodule.load_frame()
    series = forecastable_series(datamodule)
    arrays = scaled_arrays(datamodule, horizon, future, model_horizon)
    # Each series now ends with ``horizon`` rows to fill; its first one is padded row ``start``.
    start = arrays.padded_rows(series, frame.lengths[series])  # [M]
    forecast = np.empty((len(series), horizon), dtype=np.float32)
    quantiles = None
    for step in range(0, horizon, model_horizon):
        windows = datamodule.window_set(
            arrays, torch.from_numpy(start + step), model_horizon, with_target=False
        )
        predicted = predict_windows(net, windows, datamodule.eval_batch_size, device)
        take = min(model_horizon, horizon - step)
        forecast[:, step : step + take] = predicted.prediction[:, :take]
        if step == 0 and predicted.quantiles is not None:
            quantiles = np.full((len(series), horizon, predicted.quantiles.shape[-1]), np.nan, np.float32)
            quantiles[:, :take] = predicted.quantiles[:, :take]
        # The forecasts become context of the next pass.
        arrays.values[torch.from_numpy(start[:, None] + step + np.arange(take))] = torch.from_numpy(
            predicted.prediction[:, :take]
        ).to(arrays.values.device)
    return WindowForecasts(
        prediction=forecast,
        target=None,
        last_value=np.zeros(len(series), dtype=np.float32),
        series_index=series,
        target_row=frame.offsets[series + 1],
        quantiles=quantiles,
        quantile_levels=predicted.quantile_levels,
    )
