"""Per-window forecasts as a long table (one row per series, timestamp and horizon step)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.panel import PanelDataModule
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.inference import WindowForecasts
from lstm_forecast.files import write_atomic


def forecasts_frame(forecasts: WindowForecasts, datamodule: ForecastDataModule) -> pd.DataFrame:
    """Forecasts and actuals in original units, long format, in window order.

    Works for wide and long data alike: a window's ``target_row`` indexes ``datamodule.timestamps``
    and the ``H`` steps it forecasts are the rows after it (of its own series, for long data).

    Returns
    -------
    DataFrame
        ``[N * H]`` rows: ``series``, ``timestamp`` (of the forecast step), ``step`` (1..H),
        ``prediction`` and, for windows with targets, ``target``.
    """
    num_windows, horizon = forecasts.prediction.shape
    series = forecasts.series_index.astype(np.int64)[:, None]  # [N, 1]
    rows = forecasts.target_row.astype(np.int64)[:, None] + np.arange(horizon)  # [N, H]
    names = np.asarray(datamodule.series_names, dtype=object)
    frame = pd.DataFrame(
        {
            "series": names[np.repeat(series[:, 0], horizon)],
            "timestamp": datamodule.timestamps[rows.ravel()],
            "step": np.tile(np.arange(1, horizon + 1), num_windows),
            "prediction": datamodule.inverse_values(forecasts.prediction, series).ravel(),
        }
    )
    if forecasts.target is not None:
        frame["target"] = datamodule.inverse_values(forecasts.target, series).ravel()
    return frame


def future_forecasts_frame(forecasts: WindowForecasts, datamodule: PanelDataModule) -> pd.DataFrame:
    """Forecasts past the end of each series of a long panel (``datamodule.forecast_windows()``),
    in original units, long format: ``series``, ``timestamp``, ``step`` (1..H), ``prediction``."""
    num_windows, horizon = forecasts.prediction.shape
    series = forecasts.series_index.astype(np.int64)
    names = np.asarray(datamodule.series_names, dtype=object)
    return pd.DataFrame(
        {
            "series": names[np.repeat(series, horizon)],
            "timestamp": datamodule.future_timestamps(series, horizon),
            "step": np.tile(np.arange(1, horizon + 1), num_windows),
            "prediction": datamodule.inverse_values(forecasts.prediction, series[:, None]).ravel(),
        }
    )


def write_table(path: str | Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` atomically as CSV or Parquet, chosen by the suffix of ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))
    if suffix in {".parquet", ".pq"}:
        return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
    raise UserError(f"unsupported output file type {suffix!r} for {path}; use .csv or .parquet")
