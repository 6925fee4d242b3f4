"""Forecasts from a trained network: every full window of the data, and recursive forecasts of the
steps after each series' last row.

Everything here works on a datamodule whose scalers were restored from a checkpoint (never refitted)
and on the plain network, so the training run, the ``lstm-predict`` app and notebooks share one
implementation, whatever the layout of the data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from pandas.tseries.frequencies import to_offset
from torch import nn

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.short_series import served_series
from lstm_forecast.data.table_checks import row_place
from lstm_forecast.data.windows import CHUNK_ROWS, SeriesArrays, Windows, index_ranges
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
                f"timestamps in {source} are irregular: {row_place(source, row)} ({timestamps[row]}) comes "
                f"{timestamps[row] - timestamps[row - 1]} after the previous row but the model was trained "
                f"on {expected!r} data; fill the gaps or resample the file to {expected!r}"
            )


def fed_back_steps(horizon: int, model_horizon: int) -> int:
    """Forecast steps that become context of a later step when forecasting ``horizon`` steps with a
    model that emits ``model_horizon`` at once (their extra features must be known)."""
    return ((horizon - 1) // model_horizon) * model_horizon


def forecastable_series(datamodule: ForecastDataModule, min_rows: int = 0) -> np.ndarray:
    """``[M]`` series (from 0) served by every app (:func:`~lstm_forecast.data.short_series.served_series`:
    a scale from training, at least ``data.window_size`` rows) with at least ``min_rows`` rows; none
    is refused, naming the rows a series needs."""
    lengths, window_size = datamodule.load_frame().lengths, datamodule.window_size
    served = served_series(lengths, datamodule.series_train_rows, window_size) & (lengths >= min_rows)
    if not served.any():
        needs = max(min_rows, window_size)
        if (lengths >= needs).any():
            raise UserError(
                "no series of the data with enough rows had training rows (the model has no scale for "
                "them); give the series the model was trained on"
            )
        what = f"one window of {window_size} (the model's data.window_size)"
        if needs > window_size:
            what += (
                f" and the {needs - window_size} forecast steps whose future-known features the model takes"
            )
        raise UserError(
            f"the data has {int(lengths.max(initial=0))} rows, fewer than {what}; give at least "
            f"{needs} rows per series"
        )
    return np.flatnonzero(served)


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


def scaled_rows(
    datamodule: ForecastDataModule, user: np.ndarray, rows: np.ndarray, series: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``[n]`` values and ``[n, E]`` extra features (float64) of frame rows ``rows [n]`` of series
    ``series [n]``, scaled with the checkpoint's scalers; ``user [N, E_user]``: the frame's extras."""
    frame = datamodule.load_frame()
    values = datamodule.scaled_values(frame.values[rows], series)  # [n]
    extras = datamodule.scaled_extras(datamodule.feature_table(frame.timestamps[rows], user[rows]))
    return values, extras


def row_arrays(
    datamodule: ForecastDataModule, user: np.ndarray, row_start: int, row_stop: int
) -> SeriesArrays:
    """Frame rows ``row_start .. row_stop - 1`` (consecutive, maybe cutting a series at either end)
    scaled into float32 arrays whose blocks are the series they touch; windows over them carry the
    frame's series and rows (:attr:`SeriesArrays.first_series`, :attr:`SeriesArrays.first_row`)."""
    frame = datamodule.load_frame()
    offsets = frame.offsets
    s0 = int(np.searchsorted(offsets, row_start, side="right")) - 1
    s1 = max(int(np.searchsorted(offsets, row_stop, side="left")), s0 + 1)
    local = np.clip(offsets[s0 : s1 + 1], row_start, row_stop) - row_start  # [s + 1]
    rows = np.arange(row_start, row_stop)
    values, extras = scaled_rows(datamodule, user, rows, np.repeat(np.arange(s0, s1), np.diff(local)))
    arrays = SeriesArrays.from_rows(values, extras, local, datamodule.window_size)
    return replace(arrays, first_series=s0, first_row=row_start)


def scaled_arrays(datamodule: ForecastDataModule) -> SeriesArrays:
    """Every row of every series scaled with the checkpoint's scalers (no split), float32."""
    frame = datamodule.load_frame()
    return row_arrays(datamodule, frame.extras.to_numpy(dtype=np.float64), 0, frame.num_rows)


@dataclass(frozen=True)
class FutureRows:
    """The rows each series gets after its data to forecast ``horizon`` steps into, ``model_horizon``
    at a time: value 0, the calendar features of the series' own next timestamps, the user's extra
    columns from the future values (the last pass's steps past ``horizon``, forecast and dropped,
    have none).

    Attributes
    ----------
    count : int
        Rows per series with rows (``F``, whole passes).
    position : ndarray
        ``[S]`` position of each series among those with rows (-1: none, no future rows).
    extras : ndarray
        ``[M * F, E]`` float32 scaled extra features, series-major.
    """

    count: int
    position: np.ndarray
    extras: np.ndarray

    @classmethod
    def build(
        cls, datamodule: ForecastDataModule, horizon: int, model_horizon: int, future: FutureValues | None
    ) -> FutureRows:
        frame = datamodule.load_frame()
        count = -(-horizon // model_horizon) * model_horizon  # whole passes
        known = forecastable_series(datamodule)
        stamps = frame.future_timestamps(known, count)  # [M * F]
        step = np.tile(np.arange(count), len(known))  # [M * F]
        series = np.repeat(known, count)  # [M * F]
        user = future_user_extras(datamodule, series, stamps, step, horizon, model_horizon, future)
        extras = np.nan_to_num(datamodule.scaled_extras(datamodule.feature_table(stamps, user)))
        position = np.full(frame.num_series, -1)
        position[known] = np.arange(len(known))
        return cls(count, position, extras.astype(np.float32))


def tail_arrays(
    datamodule: ForecastDataModule, user: np.ndarray, future: FutureRows, s0: int, s1: int
) -> tuple[SeriesArrays, np.ndarray]:
    """Series ``s0 .. s1 - 1``: the last ``window_size`` rows of each (the series forecast have that
    many, :func:`forecastable_series`), then its future rows; float32.

    Returns the arrays and ``[s1 - s0]`` the rows of data each block holds (its first future row's
    step, from 0)."""
    frame = datamodule.load_frame()
    tail = np.minimum(frame.lengths[s0:s1], datamodule.window_size)  # [s]
    ahead = np.where(future.position[s0:s1] >= 0, future.count, 0)  # [s]
    offsets = np.concatenate([[0], np.cumsum(tail + ahead)])  # [s + 1] of the blocks' rows
    series = np.repeat(np.arange(s0, s1), tail)  # [n] of each data row
    values, extras = scaled_rows(
        datamodule, user, index_ranges(frame.offsets[s0 + 1 : s1 + 1] - tail, tail), series
    )
    observed = index_ranges(offsets[:-1], tail)  # [n] rows of the blocks
    grown_values = np.zeros(offsets[-1], dtype=np.float32)
    grown_extras = np.zeros((offsets[-1], extras.shape[1]), dtype=np.float32)
    grown_values[observed], grown_extras[observed] = values, extras
    has_future = np.flatnonzero(ahead)
    future_rows = index_ranges(future.position[s0:s1][has_future] * future.count, ahead[has_future])
    grown_extras[index_ranges(offsets[:-1][has_future] + tail[has_future], ahead[has_future])] = (
        future.extras[future_rows]
    )
    arrays = SeriesArrays.from_rows(grown_values, grown_extras, offsets, datamodule.window_size)
    return replace(arrays, first_series=s0), tail


# ----------------------------------------------------------------------------- windows of the data
def prediction_counts(datamodule: ForecastDataModule, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """``(series [M], count [M])``: every window full of real rows (the method's prediction layout,
    no warm-up padding) as the series predicted and their windows, targets ``W .. W + count - 1`` of
    each (``W + count - 1``: the step after its last row). A model that takes future-known features
    needs them for its ``horizon`` forecast steps, which the data holds for targets ``W .. L -
    horizon`` only. Series shorter than that, or unscaled in training, are left out."""
    window_size, lengths = datamodule.window_size, datamodule.load_frame().lengths
    min_rows = window_size + (horizon if datamodule.future_columns else 0)
    series = forecastable_series(datamodule, min_rows)
    # Short series were named when the data was read; here those whose future-known features end early.
    without_future = len(forecastable_series(datamodule)) - len(series)
    if without_future:
        log.warning(
            "%d series with fewer than %d rows (one window and the %d forecast steps whose future-known "
            "features the model takes) get no rows in the window table",
            without_future,
            min_rows,
            horizon,
        )
    return series, lengths[series] - min_rows + 1


def prediction_windows(
    datamodule: ForecastDataModule,
    horizon: int,
    first: int = 0,
    stop: int | None = None,
    counts: tuple[np.ndarray, np.ndarray] | None = None,
    user: np.ndarray | None = None,
) -> Windows:
    """Windows ``first .. stop - 1`` (default: all) of every full window of the data, in order (see
    :func:`prediction_counts`, or ``counts`` from it), over arrays of just the rows they read."""
    series, count = prediction_counts(datamodule, horizon) if counts is None else counts
    frame = datamodule.load_frame()
    user = frame.extras.to_numpy(dtype=np.float64) if user is None else user
    ends = np.cumsum(count)  # [M]
    stop = int(ends[-1]) if stop is None else min(stop, int(ends[-1]))
    lo, hi = np.searchsorted(ends, [first, stop - 1], side="right")  # positions of the first and last series
    chosen, starts = series[lo : hi + 1], (ends - count)[lo : hi + 1]
    skip = np.maximum(first - starts, 0)  # windows of each chosen series before the first
    taken = np.minimum(stop - starts, count[lo : hi + 1]) - skip  # [m]
    local = index_ranges(datamodule.window_size + skip, taken)  # [n] targets within each series
    # Rows read: from the first window's context to the last window's target (and its future-known
    # features' steps).
    reach = horizon if datamodule.future_columns else 0
    row_start = int(frame.offsets[chosen[0]] + skip[0])
    row_stop = int(frame.offsets[chosen[-1]] + datamodule.window_size + skip[-1] + taken[-1] - 1 + reach)
    arrays = row_arrays(datamodule, user, row_start, row_stop)
    block_first = np.maximum(frame.offsets[chosen], row_start)  # [m] frame row of each block's first row
    within = np.repeat(frame.offsets[chosen] - block_first, taken) + local  # [n] rows of the blocks
    targets = arrays.padded_rows(np.repeat(chosen - arrays.first_series, taken), within)
    return datamodule.window_set(arrays, torch.from_numpy(targets), horizon, with_target=False)


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
    rows = FutureRows.build(datamodule, horizon, model_horizon, future)
    user = frame.extras.to_numpy(dtype=np.float64)  # [N, E_user] (a view of float columns)
    forecast = np.empty((len(series), horizon), dtype=np.float32)
    quantiles, levels = None, tuple(getattr(net, "quantile_levels", ()))
    for first, stop in forecast_chunks(len(series), datamodule, rows.count):
        chunk = series[first:stop]  # [m]
        arrays, tail = tail_arrays(datamodule, user, rows, int(chunk[0]), int(chunk[-1]) + 1)
        # Each series' block ends with the rows to fill; its first one is padded row ``start``.
        block = chunk - arrays.first_series
        start = arrays.padded_rows(block, tail[block])  # [m]
        for step in range(0, horizon, model_horizon):
            windows = datamodule.window_set(
                arrays, torch.from_numpy(start + step), model_horizon, with_target=False
            )
            predicted = predict_windows(net, windows, datamodule.eval_batch_size, device)
            take = min(model_horizon, horizon - step)
            forecast[first:stop, step : step + take] = predicted.prediction[:, :take]
            if step == 0 and predicted.quantiles is not None:
                if quantiles is None:
                    quantiles = np.full((len(series), horizon, len(levels)), np.nan, np.float32)
                quantiles[first:stop, :take] = predicted.quantiles[:, :take]
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
        quantile_levels=levels,
    )


def forecast_chunks(
    num_series: int, datamodule: ForecastDataModule, future_rows: int
) -> list[tuple[int, int]]:
    """``[(first, stop), ...]`` chunks of the series forecast, whole batches of ``eval_batch_size``
    (the batches of forecasting them all at once, so the same numbers) of about
    :data:`~lstm_forecast.data.windows.CHUNK_ROWS` padded rows."""
    batch = datamodule.eval_batch_size
    rows_per_series = 2 * datamodule.window_size + future_rows  # padding, data, future rows
    size = batch * max(1, CHUNK_ROWS // (batch * rows_per_series))
    return [(first, min(first + size, num_series)) for first in range(0, num_series, size)]
