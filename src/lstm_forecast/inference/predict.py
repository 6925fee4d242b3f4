"""``lstm-predict``: forecasts in the data's units from a checkpoint alone.

The model, the fitted scaler and the data config all come from the checkpoint; the scaler is never
refitted on the new file. Writes into the run folder, in the one forecast-table layout
(:mod:`lstm_forecast.evaluation.tables`):

- ``predictions.csv``: every full window of each series; the last one forecasts the step(s) after
  its data;
- ``forecast.csv`` with ``horizon=H``: the H steps after each series' last row (``actual`` where
  ``future.path`` holds the series; see :mod:`~lstm_forecast.inference.future_values` for its layouts);
- ``predictions.png``: history, predictions, forecast and known actuals of a few series.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.sources import read_table, source_of_file
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.drift import DEFAULT_WARN_SHARE, check_warn_share, warn_drift
from lstm_forecast.evaluation.tables import forecast_table
from lstm_forecast.evaluation.window_forecasts import predict_windows
from lstm_forecast.files import write_table
from lstm_forecast.inference.checkpoints import load_model
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
    loaded = load_model(cfg, source_for=source_of_file)
    datamodule, net, device = loaded.datamodule, loaded.module.net, loaded.device
    data_name = str(datamodule.source.get("path") or f"the {datamodule.source['kind']} data")
    check_frequency(datamodule, str(loaded.trained_state.get("freq") or ""), data_name)

    windows = prediction_windows(datamodule, net.horizon)
    warn_drift(datamodule, windows, warn_share, data_name)
    predictions = forecast_table(
        predict_windows(net, windows, datamodule.eval_batch_size, device), datamodule
    )
    forecast = None
    if horizon is not None:
        future = None if future_path is None else read_table(str(future_path))
        forecast = future_forecast(datamodule, net, horizon, future, device, str(future_path))
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


def future_forecast(
    datamodule: ForecastDataModule,
    net: nn.Module,
    horizon: int,
    future: pd.DataFrame | None = None,
    device: torch.device | str | None = None,
    source: str = "the future table",
) -> pd.DataFrame:
    """The forecast table of the ``horizon`` steps after each series' end.

    Parameters
    ----------
    datamodule, net
        The data with the checkpoint's scalers, and the trained network.
    horizon : int
        Steps after each series' last row.
    future : DataFrame or None
        Values after the data, columns as in the data (:mod:`~lstm_forecast.inference.future_values`):
        wide (the timestamp column, extra columns, series columns as actuals) or long (the series and
        timestamp columns, extra columns, the value column as actuals). Needed when the model takes
        extra columns that are not calendar features.
    source : str
        The table's name in error messages (its file).
    """
    values = None if future is None else future_values(future, datamodule, source)
    forecasts = forecast_future(net, datamodule, horizon, net.horizon, values, device)
    forecast = forecast_table(forecasts, datamodule)
    if values is not None:
        forecast["actual"] = values.actuals(forecast["series"], forecast["timestamp"])
    return forecast
