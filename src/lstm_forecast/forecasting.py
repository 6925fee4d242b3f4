"""Forecasts from a trained network in the data's units: every full window of a table, and recursive
forecasts of the steps after its last row.

Everything here works on a :class:`~lstm_forecast.data.datamodule.ForecastDataModule` whose scaler was
restored from a checkpoint (never refitted) and on the plain network, so the training run, the
``lstm-predict`` app and notebooks share one implementation of the window layout.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pandas.tseries.frequencies import to_offset
from torch import nn

from lstm_forecast.data.calendar import calendar_features
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.panel import PanelDataModule
from lstm_forecast.data.panel_windows import PanelArrays, PanelWindows, index_ranges
from lstm_forecast.data.windows import PaddedArrays, WideWindows
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.inference import WindowForecasts, predict_windows
from lstm_forecast.evaluation.outputs import future_forecasts_frame

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- timestamps
def future_timestamps(last: pd.Timestamp, freq: str, steps: int) -> pd.DatetimeIndex:
    """The ``steps`` timestamps after ``last`` at frequency ``freq`` (a pandas alias such as ``"h"``)."""
    return pd.date_range(start=last, periods=steps + 1, freq=freq)[1:]


def check_frequency(timestamps: pd.DatetimeIndex, expected: str, source: str) -> str:
    """The frequency of ``timestamps``, refusing irregular steps and a frequency other than ``expected``.

    Parameters
    ----------
    timestamps : DatetimeIndex
        ``[T]`` increasing timestamps of the data to predict on.
    expected : str
        The training data's frequency alias; ``""`` when it was not regular (then any regular
        frequency is accepted).
    source : str
        Names the data in messages.

    Returns
    -------
    str
        The frequency alias forecasts step by.
    """
    inferred = pd.infer_freq(timestamps) if len(timestamps) >= 3 else None
    if expected and inferred and to_offset(inferred) != to_offset(expected):
        raise UserError(
            f"{source} has timestamps every {inferred!r} but the model was trained on {expected!r} data; "
            f"resample the file to {expected!r}"
        )
    freq = expected or inferred
    if not freq:
        raise UserError(
            f"cannot tell the timestamp frequency of {source} (irregular steps or fewer than 3 rows); "
            "give at least 3 evenly spaced rows"
        )
    regular = pd.date_range(start=timestamps[0], periods=len(timestamps), freq=freq)
    off_grid = np.flatnonzero(regular != timestamps)
    if len(off_grid):
        row = int(off_grid[0])
        step = timestamps[row] - timestamps[row - 1] if row else pd.NaT
        raise UserError(
            f"timestamps in {source} are irregular: row {row} ({timestamps[row]}) comes {step} after the "
            f"previous row but the frequency is {freq!r}; fill the gaps or resample the file to {freq!r}"
        )
    return freq


# ----------------------------------------------------------------------------- windows over a table
def scaled_table(
    datamodule: ForecastDataModule, last_rows: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The datamodule's table scaled with its (restored, never refitted) scaler.

    Returns
    -------
    tuple
        ``(values [T, S], extras [T, E])`` float32; ``last_rows`` keeps only the final rows.
    """
    if datamodule.scaler is None:
        raise ValueError("the datamodule has no scaler: load it from a checkpoint first")
    table = datamodule.feature_table()
    if last_rows is not None:
        table = table[-last_rows:]
    if table.shape[1] != len(datamodule.scaler.data_min):
        raise UserError(
            f"the data has {table.shape[1]} value and feature columns but the model was trained on "
            f"{len(datamodule.scaler.data_min)}; use data with the training columns"
        )
    scaled = torch.from_numpy(datamodule.scaler.transform(table).astype(np.float32))
    num_series = datamodule.num_series
    return scaled[:, :num_series], scaled[:, num_series:]


def prediction_windows(datamodule: ForecastDataModule, horizon: int) -> WideWindows | PanelWindows:
    """Every window full of real rows (the method's prediction layout, no warm-up padding).

    Window targets are rows ``W .. T`` (time-major, then series): every row that has a full window
    of context, plus row ``T``, the step after the data. Each window forecasts ``horizon`` steps.
    Long panels get the same per series, over each series' own rows (:func:`panel_prediction_windows`).
    """
    if isinstance(datamodule, PanelDataModule):
        return panel_prediction_windows(datamodule, horizon)
    window_size, num_rows = datamodule.window_size, len(datamodule.timestamps)
    if num_rows < window_size:
        raise UserError(
            f"the data has {num_rows} rows, fewer than one window of {window_size} (the model's "
            f"data.window_size); give at least {window_size} rows"
        )
    arrays = PaddedArrays.from_arrays(*scaled_table(datamodule), window_size)
    return WideWindows(
        arrays,
        first_target=window_size,
        num_targets=num_rows - window_size + 1,
        horizon=horizon,
        padding_mask=datamodule.padding_mask,
        with_target=False,
    )


def window_predictions_table(
    forecasts: WindowForecasts, datamodule: ForecastDataModule, freq: str
) -> pd.DataFrame:
    """Long table of window forecasts in original units.

    Returns
    -------
    DataFrame
        One row per window and horizon step: ``timestamp`` (of the forecast step), ``series``,
        ``prediction``, ``actual`` (NaN past the data) and, for multi-step models, ``step`` (1..H).
    """
    num_windows, horizon = forecasts.prediction.shape
    rows = forecasts.target_row[:, None] + np.arange(horizon)  # [N, H]
    series = np.broadcast_to(forecasts.series_index[:, None], rows.shape)  # [N, H]
    if isinstance(datamodule, PanelDataModule):
        timestamps, actual = panel_steps(datamodule, series.ravel(), rows.ravel())
    else:
        frame = datamodule.load_frame()
        stamps = frame.timestamps.append(future_timestamps(frame.timestamps[-1], freq, horizon))
        values = np.concatenate([frame.series.to_numpy(), np.full((horizon, frame.series.shape[1]), np.nan)])
        timestamps, actual = stamps[rows.ravel()], values[rows.ravel(), series.ravel()]
    table = {
        "timestamp": timestamps,
        "series": np.asarray(datamodule.series_names, dtype=object)[series.ravel()],
        "prediction": datamodule.inverse_values(forecasts.prediction, series).ravel(),
        "actual": actual,
    }
    if horizon > 1:
        table["step"] = np.tile(np.arange(1, horizon + 1), num_windows)
    return pd.DataFrame(table)


# ----------------------------------------------------------------------------- past the end
def fed_back_steps(horizon: int, model_horizon: int) -> int:
    """Forecast steps that become context of a later step when forecasting ``horizon`` steps with a
    model that emits ``model_horizon`` at once (their extra features must be known)."""
    return ((horizon - 1) // model_horizon) * model_horizon


@torch.no_grad()
def recursive_forecast(
    net: nn.Module,
    values: torch.Tensor,
    extras: torch.Tensor,
    horizon: int,
    window_size: int,
    model_horizon: int = 1,
    padding_mask: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Forecast ``horizon`` steps after the data, feeding forecasts back as context.

    Each pass forecasts every series at once from the last ``window_size`` rows of observed and
    already forecast values (the training window layout); a model emitting ``model_horizon`` steps
    per pass advances by that many.

    Parameters
    ----------
    net : nn.Module
        ``(x [B, W, F], series_id [B]) -> [B, model_horizon]`` scaled.
    values : Tensor
        ``[T, S]`` scaled observed values (the last ``window_size`` rows are enough; fewer are
        zero-padded as in training).
    extras : Tensor
        ``[T + F, E]`` scaled extra features of those rows and of at least the
        ``F = fed_back_steps(horizon, model_horizon)`` future rows that are fed back.
    horizon : int
        Steps to forecast.
    window_size : int
        The model's context length ``W``.

    Returns
    -------
    Tensor
        ``[horizon, S]`` scaled forecasts.
    """
    observed, num_series = values.shape
    needed = observed + fed_back_steps(horizon, model_horizon)
    if extras.shape[0] < needed:
        raise ValueError(f"extras cover {extras.shape[0]} rows; {needed} are needed")
    # Room for every forecast row; extras of rows that are never context stay zero.
    total = observed + horizon
    extras = torch.cat([extras[:total], extras.new_zeros(max(total - extras.shape[0], 0), extras.shape[1])])
    arrays = PaddedArrays.from_arrays(
        torch.cat([values, values.new_zeros(horizon, num_series)]), extras, window_size
    )
    forecast = arrays.values[window_size + observed :]  # [horizon, S], a view filled in place
    for start in range(0, horizon, model_horizon):
        window = WideWindows(
            arrays,
            first_target=observed + start,
            num_targets=1,
            horizon=model_horizon,
            padding_mask=padding_mask,
            with_target=False,
        )
        step = predict_windows(net, window, batch_size=num_series, device=device).prediction  # [S, Hm]
        take = min(model_horizon, horizon - start)
        forecast[start : start + take] = torch.from_numpy(step[:, :take]).T.to(forecast.dtype)
    return forecast.clone()


@dataclass(frozen=True)
class FutureForecast:
    """Forecasts of the steps after the data, in original units.

    Attributes
    ----------
    timestamps : DatetimeIndex
        ``[H]`` forecast timestamps.
    values : ndarray
        ``[H, S]`` forecasts.
    series_names : list of str
        ``[S]`` column names.
    """

    timestamps: pd.DatetimeIndex
    values: np.ndarray
    series_names: list[str]

    def table(self, actuals: pd.DataFrame | None = None) -> pd.DataFrame:
        """Long table ``timestamp, series, step, prediction`` (step 1..H), series by series, with
        ``actual`` from ``actuals`` (timestamp index, series columns; NaN where unknown) if given."""
        horizon, num_series = self.values.shape
        table = pd.DataFrame(
            {
                "timestamp": np.tile(self.timestamps, num_series),
                "series": np.repeat(np.asarray(self.series_names, dtype=object), horizon),
                "step": np.tile(np.arange(1, horizon + 1), num_series),
                "prediction": self.values.T.ravel(),
            }
        )
        if actuals is not None:
            known = actuals.reindex(index=self.timestamps, columns=self.series_names)
            table["actual"] = known.to_numpy().T.ravel()
        return table


def future_extra_values(
    names: list[str], timestamps: pd.DatetimeIndex, future_extras: pd.DataFrame | None
) -> pd.DataFrame:
    """Values of the user's (non-calendar) extra columns ``names`` at ``timestamps``, from
    ``future_extras`` (timestamp index); a clear error when they are not there."""
    if not names or not len(timestamps):
        return pd.DataFrame(index=timestamps, columns=names, dtype="float64")
    span = f"{timestamps[0]} .. {timestamps[-1]}"
    if future_extras is None:
        raise UserError(
            f"the model uses extra column(s) {names} that are not calendar features, so forecasting past "
            f"the data needs their future values for {span}; pass future.path=FILE with the timestamp "
            "column and those columns"
        )
    missing = [name for name in names if name not in future_extras.columns]
    if missing:
        raise UserError(
            f"the future file lacks the extra column(s) {missing} the model uses; add them for {span}"
        )
    absent = timestamps.difference(future_extras.index)
    if len(absent):
        raise UserError(
            f"the future file has no row for {absent[0]} ({len(absent)} of the {len(timestamps)} forecast "
            f"steps missing); give the extra columns for every timestamp in {span}"
        )
    return future_extras.loc[timestamps, names].astype("float64")


def forecast_future(
    net: nn.Module,
    datamodule: ForecastDataModule,
    horizon: int,
    freq: str,
    model_horizon: int = 1,
    future_extras: pd.DataFrame | None = None,
    device: torch.device | str | None = None,
) -> FutureForecast:
    """Forecast the ``horizon`` steps after the datamodule's last row, per series, recursively.

    Calendar features of the future timestamps are computed; the user's own extra columns come from
    ``future_extras`` (timestamp index), needed only for the steps fed back as context.

    Parameters
    ----------
    net : nn.Module
        The trained network, emitting ``model_horizon`` steps per window.
    datamodule : ForecastDataModule
        The data, with the checkpoint's scaler.
    horizon : int
        Steps to forecast (``H``).
    freq : str
        Frequency alias of the timestamps (see :func:`check_frequency`).
    """
    if not isinstance(horizon, int) or horizon < 1:
        raise UserError(f"horizon must be a positive integer, got {horizon!r}")
    frame = datamodule.load_frame()
    window_size, num_series = datamodule.window_size, datamodule.num_series
    timestamps = future_timestamps(frame.timestamps[-1], freq, horizon)
    fed_back = timestamps[: fed_back_steps(horizon, model_horizon)]
    user_extras = future_extra_values([str(c) for c in frame.extras.columns], fed_back, future_extras)
    calendar = calendar_features(fed_back, datamodule.calendar_feature_names)
    # The scaler's columns: series (unknown yet, NaN), user extras, calendar features.
    future_table = np.concatenate(
        [np.full((len(fed_back), num_series), np.nan), user_extras.to_numpy(), calendar.to_numpy()], axis=1
    )
    future_scaled = datamodule.scaler.transform(future_table)[:, num_series:]  # [F, E]
    values, extras = scaled_table(datamodule, last_rows=window_size)
    extras = torch.cat([extras, torch.from_numpy(future_scaled.astype(np.float32))])
    scaled = recursive_forecast(
        net, values, extras, horizon, window_size, model_horizon, datamodule.padding_mask, device
    )  # [H, S]
    values = datamodule.inverse_values(scaled.numpy(), np.arange(num_series))
    return FutureForecast(timestamps=timestamps, values=values, series_names=datamodule.series_names)


# ----------------------------------------------------------------------------- long panels
def panel_arrays(datamodule: PanelDataModule, future_rows: int = 0) -> PanelArrays:
    """The panel scaled with the checkpoint's scalers (no split: every row of every series), each
    series followed by ``future_rows`` rows to forecast into.

    Future rows hold value 0 and the calendar features of the series' own next timestamps; the
    user's extra columns are unknown there (0), so they may only be context when there are none.
    """
    if datamodule.scaler is None or datamodule.extra_scaler is None:
        raise ValueError("the datamodule has no scaler: load it from a checkpoint first")
    frame = datamodule.load_frame()
    extras = datamodule.feature_table()
    if extras.shape[1] != len(datamodule.extra_scaler.data_min):
        raise UserError(
            f"the data has {extras.shape[1]} extra features but the checkpoint's scaler was fitted on "
            f"{len(datamodule.extra_scaler.data_min)}; use data with the training columns"
        )
    values = datamodule.scaler.transform(frame.values, column_index=frame.row_series)  # [N]
    extras = datamodule.extra_scaler.transform(extras)  # [N, E]
    offsets = frame.offsets
    if future_rows:
        num_series = len(frame.lengths)
        grown = frame.offsets + np.arange(num_series + 1) * future_rows  # [S + 1]
        observed = np.arange(frame.num_rows) + frame.row_series * future_rows  # [N] rows after growing
        ahead = index_ranges(grown[1:] - future_rows, np.full(num_series, future_rows))  # [S * F]
        known = frame.lengths > 0
        stamps = datamodule.future_timestamps(np.flatnonzero(known), future_rows)
        future = np.full((len(stamps), extras.shape[1]), np.nan)
        calendar = calendar_features(stamps, datamodule.calendar_feature_names).to_numpy()
        future[:, extras.shape[1] - calendar.shape[1] :] = calendar
        grown_values = np.zeros(len(values) + len(ahead))
        grown_extras = np.zeros((len(values) + len(ahead), extras.shape[1]))
        grown_values[observed], grown_extras[observed] = values, extras
        ahead_of_known = ahead.reshape(num_series, future_rows)[known].ravel()
        grown_extras[ahead_of_known] = np.nan_to_num(datamodule.extra_scaler.transform(future))
        values, extras, offsets = grown_values, grown_extras, grown
    return PanelArrays.from_rows(values, extras, offsets, datamodule.window_size)


def forecastable_series(datamodule: PanelDataModule, min_rows: int = 1) -> np.ndarray:
    """``[M]`` series (from 0) with at least ``min_rows`` rows and a scale from training."""
    lengths = datamodule.load_frame().lengths
    return np.flatnonzero((lengths >= max(min_rows, 1)) & (datamodule.series_train_rows > 0))


def panel_prediction_windows(datamodule: PanelDataModule, horizon: int) -> PanelWindows:
    """Every full window of each series: targets ``W .. L`` of a series of ``L`` rows (``L``: the
    step after its last row). Series shorter than one window, or unscaled in training, are left out."""
    window_size, lengths = datamodule.window_size, datamodule.load_frame().lengths
    series = forecastable_series(datamodule, window_size)
    if not len(series):
        raise UserError(
            f"no series has a full window of {window_size} rows (the model's data.window_size; the longest "
            f"has {int(lengths.max(initial=0))}); give at least {window_size} rows per series"
        )
    short = len(forecastable_series(datamodule)) - len(series)
    if short:
        log.warning("%d series shorter than one window (%d rows) are not predicted", short, window_size)
    count = lengths[series] - window_size + 1
    arrays = panel_arrays(datamodule)
    local = index_ranges(np.full(len(series), window_size), count)
    targets = torch.from_numpy(arrays.padded_rows(np.repeat(series, count), local))
    return PanelWindows(arrays, targets, horizon, datamodule.padding_mask, False, datamodule.static_codes())


def panel_steps(
    datamodule: PanelDataModule, series: np.ndarray, rows: np.ndarray
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Timestamps and actuals of long-table ``rows [M]`` of ``series [M]``; a row at or past the end of
    its series is a step after its last row (its own next timestamp, actual NaN)."""
    frame = datamodule.load_frame()
    local = rows - frame.offsets[series]
    past = local - frame.lengths[series]  # >= 0 past the series' end
    inside = past < 0
    timestamps = pd.Series(frame.timestamps[np.where(inside, rows, 0)])
    if not inside.all():
        steps = int(past.max()) + 1
        ahead = datamodule.future_timestamps(series[~inside], steps)
        timestamps[~inside] = ahead[np.arange((~inside).sum()) * steps + past[~inside]]
    actual = np.where(inside, frame.values[np.where(inside, rows, 0)], np.nan)
    return pd.DatetimeIndex(timestamps), actual


def forecast_panel_future(
    net: nn.Module,
    datamodule: PanelDataModule,
    horizon: int,
    model_horizon: int = 1,
    device: torch.device | str | None = None,
) -> pd.DataFrame:
    """Forecast the ``horizon`` steps after each series' own last row, feeding forecasts back.

    Returns
    -------
    DataFrame
        ``series, timestamp, step, prediction`` (original units), series by series.
    """
    if not isinstance(horizon, int) or horizon < 1:
        raise UserError(f"horizon must be a positive integer, got {horizon!r}")
    frame = datamodule.load_frame()
    if fed_back_steps(horizon, model_horizon) and frame.extras.shape[1]:
        raise UserError(
            f"the model uses extra column(s) {list(frame.extras.columns)} whose future values long data "
            f"cannot provide, so it forecasts at most {model_horizon} step(s) past the data; "
            f"use horizon<={model_horizon}"
        )
    series = forecastable_series(datamodule)
    arrays = panel_arrays(datamodule, future_rows=horizon)
    # Each series now ends with ``horizon`` rows to fill; its first one is padded row ``start``.
    start = arrays.padded_rows(series, frame.lengths[series])  # [M]
    forecast = np.empty((len(series), horizon), dtype=np.float32)
    for step in range(0, horizon, model_horizon):
        windows = PanelWindows(
            arrays,
            torch.from_numpy(start + step),
            model_horizon,
            datamodule.padding_mask,
            False,
            datamodule.static_codes(),
        )
        predicted = predict_windows(net, windows, datamodule.eval_batch_size, device).prediction
        take = min(model_horizon, horizon - step)
        forecast[:, step : step + take] = predicted[:, :take]
        # The windows index in window order; the forecasts become context of the next pass.
        arrays.values[torch.from_numpy(start[:, None] + step + np.arange(take))] = torch.from_numpy(
            predicted[:, :take]
        )
    forecasts = WindowForecasts(
        prediction=forecast,
        target=None,
        last_value=np.zeros(len(series), dtype=np.float32),
        series_index=series,
        target_row=frame.offsets[series + 1],
    )
    return future_forecasts_frame(forecasts, datamodule)
