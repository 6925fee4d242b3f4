"""``lstm-predict``: forecasts in the data's units from a checkpoint alone.

The model, the fitted scaler and the data config all come from the checkpoint; the scaler is never
refitted on the new file. Writes into the run folder, in the one forecast-table layout
(:mod:`lstm_forecast.evaluation.tables`):

- ``predictions.csv``: every full window of each series; the last one forecasts the step(s) after
  its data;
- ``forecast.csv`` with ``horizon=H``: the H steps after each series' last row (``actual`` where
  ``future.path`` holds the series; see :mod:`~lstm_forecast.inference.future_values` for its layouts);
- ``predictions.png``: history, predictions, forecast and known actuals of a few series.

With ``intervals=[0.8,0.95]`` both tables get conformal intervals ``lo-80, hi-80, lo-95, hi-95``
calibrated on the validation split of the data (the checkpoint's ``data.split``) and the plot their
bands; a quantile model's tables hold its quantiles ``q0.1 ...`` in any case.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from lstm_forecast.data.sources import IN_MEMORY_NAME, source_of_file, source_table
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.drift import DEFAULT_WARN_SHARE, check_warn_share, warn_drift
from lstm_forecast.evaluation.intervals import ConformalIntervals, check_interval_levels
from lstm_forecast.evaluation.tables import forecast_table
from lstm_forecast.evaluation.window_forecasts import predict_windows
from lstm_forecast.files import write_table
from lstm_forecast.inference.checkpoints import LoadedModel, load_model
from lstm_forecast.inference.forecasting import check_frequency, forecast_future, prediction_windows
from lstm_forecast.inference.future_values import future_values
from lstm_forecast.inference.plots import plot_forecasts

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> dict[str, Path]:
    """Predict every full window of the data and, with ``cfg.horizon``, forecast past its end.

    Returns
    -------
    dict
        Paths written: ``predictions`` (CSV), ``forecast`` (CSV, with a horizon) and ``plot`` (PNG).
    """
    horizon = cfg.get("horizon")
    if horizon is not None and (not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1):
        raise UserError(f"horizon must be a positive integer (steps after the data), got {horizon!r}")
    future_path = OmegaConf.select(cfg, "future.path")
    if horizon is None and future_path is not None:
        raise UserError("future.path is only read when forecasting past the data; add horizon=H")
    warn_share = check_warn_share(OmegaConf.select(cfg, "drift.warn_share", default=DEFAULT_WARN_SHARE))
    levels = check_interval_levels(cfg.get("intervals"), "intervals")
    loaded = load_for_prediction(cfg)
    datamodule, module, device = loaded.datamodule, loaded.module, loaded.device
    data_name = str(datamodule.source.get("path") or f"the {datamodule.source['kind']} data")
    intervals = (
        calibrated_intervals(loaded, levels, bool(cfg.get("intervals_per_series"))) if levels else None
    )
    windows = prediction_windows(datamodule, module.net.horizon)
    warn_drift(datamodule, windows, warn_share, data_name)
    window_forecasts = predict_windows(module, windows, datamodule.eval_batch_size, device)
    if intervals is not None:
        window_forecasts = intervals.apply(window_forecasts)
    predictions = forecast_table(window_forecasts, datamodule)
    forecast = None if horizon is None else future_forecast(cfg, loaded, horizon, intervals=intervals)
    # Written once every forecast is made, so bad input leaves no output behind.
    output_dir = Path(cfg.paths.output_dir)
    written = {"predictions": write_table(output_dir / "predictions.csv", predictions)}
    if forecast is not None:
        written["forecast"] = write_table(output_dir / "forecast.csv", forecast)
    written["plot"] = plot_forecasts(
        output_dir / "predictions.png",
        datamodule.load_frame(),
        predictions,
        forecast,
        max_series=int(cfg.plot.max_series),
        history=int(cfg.plot.history),
    )
    for name, path in written.items():
        log.info("%s: %s", name, path)
    return written


def load_for_prediction(cfg: DictConfig, table: pd.DataFrame | None = None) -> LoadedModel:
    """The checkpoint's model and the data to predict on (``data.source.path``, or ``table``: its rows
    in memory), refused when its frequency differs from the training data's."""
    loaded = load_model(cfg, source_for=source_of_file, table=table)
    datamodule = loaded.datamodule
    data_name = str(datamodule.source.get("path") or f"the {datamodule.source['kind']} data")
    data_name = IN_MEMORY_NAME if table is not None else data_name
    check_frequency(datamodule, str(loaded.trained_state.get("freq") or ""), data_name)
    return loaded


def calibrated_intervals(
    loaded: LoadedModel, levels: tuple[float, ...], per_series: bool
) -> ConformalIntervals:
    """Conformal margins from the model's forecasts of the validation windows of the data."""
    datamodule = loaded.datamodule
    try:
        datamodule.setup("test")
    except UserError as error:
        raise UserError(
            f"intervals are calibrated on the data's validation split, which failed: {error}"
        ) from None
    calibration = predict_windows(
        loaded.module, datamodule.windows["val"], datamodule.eval_batch_size, loaded.device
    )
    return ConformalIntervals.calibrate(calibration, levels, per_series, datamodule.num_series)


def future_forecast(
    cfg: DictConfig,
    loaded: LoadedModel,
    horizon: int,
    future_table: pd.DataFrame | None = None,
    intervals: ConformalIntervals | None = None,
) -> pd.DataFrame:
    """The forecast table of the ``horizon`` steps after each series' end.

    Parameters
    ----------
    cfg : DictConfig
        The predict config; ``future.path`` names the future file.
    loaded : LoadedModel
        The checkpoint's model and the data with its scalers (:func:`load_for_prediction`).
    horizon : int
        Steps after each series' last row.
    future_table : DataFrame or None
        The future file's rows in memory, instead of ``future.path``. Values after the data, columns
        as in the data (:mod:`~lstm_forecast.inference.future_values`): wide (the timestamp column,
        extra columns, series columns as actuals) or long (the series and timestamp columns, extra
        columns, the value column as actuals). Needed when the model takes extra columns that are not
        calendar features; the future-known columns (``data.future_columns``) at every forecast step.
    intervals : ConformalIntervals or None
        Applied to the forecasts (bounds NaN past the model's own horizon, where no residuals were
        calibrated).
    """
    datamodule, net = loaded.datamodule, loaded.module.net
    values = None
    future_path = OmegaConf.select(cfg, "future.path")
    if future_path is not None or future_table is not None:
        table, source = source_table(future_path, future_table)
        values = future_values(table, datamodule, source)
    forecasts = forecast_future(loaded.module, datamodule, horizon, net.horizon, values, loaded.device)
    if intervals is not None:
        if horizon > net.horizon:
            log.warning(
                "intervals cover the model's %d-step horizon; steps %d..%d of the forecast have none "
                "(train with model.horizon=%d for calibrated intervals on every step)",
                net.horizon,
                net.horizon + 1,
                horizon,
                horizon,
            )
        forecasts = intervals.apply(forecasts)
    forecast = forecast_table(forecasts, datamodule)
    if values is not None:
        forecast["actual"] = values.actuals(forecast["series"], forecast["timestamp"])
    return forecast
