"""``lstm-predict``: forecasts in the data's units from a checkpoint alone.

The model, the fitted scaler and the data config all come from the checkpoint; the scaler is never
refitted on the new file. Writes into the run folder:

- ``predictions.csv``: every full window of the file (``timestamp, series, prediction, actual``; a
  ``step`` column for multi-step models); the last window forecasts the step(s) after the data.
- ``forecast.csv`` with ``horizon=H``: the H steps after the last row, per series
  (``timestamp, series, step, prediction`` and ``actual`` where ``future.path`` holds the series).
- ``predictions.png``: history, predictions, forecast and known actuals of a few series.

Examples
--------
    python -m lstm_forecast.predict ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt data.path=new.csv
    lstm-predict ckpt_path=... data.path=new.csv horizon=24 future.path=future_extras.csv
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from pandas.tseries.frequencies import to_offset

from lstm_forecast.apps import hydra_app
from lstm_forecast.checkpoints import (
    datamodule_from_checkpoint,
    datamodule_state_key,
    module_from_checkpoint,
    read_checkpoint,
)
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.long_source import PanelFrame
from lstm_forecast.data.panel import PanelDataModule
from lstm_forecast.data.sources import SourceFrame, read_table, wide_file_frame
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.inference import predict_windows
from lstm_forecast.files import write_atomic
from lstm_forecast.forecast_plot import plot_forecasts
from lstm_forecast.forecasting import (
    FutureForecast,
    check_frequency,
    forecast_future,
    forecast_panel_future,
    prediction_windows,
    window_predictions_table,
)
from lstm_forecast.run import torch_threads

log = logging.getLogger(__name__)

FILE_SOURCE = "wide_file"
FILE_SOURCES = (FILE_SOURCE, "long_file")
DEFAULT_TIMESTAMP_COLUMN = "date"


def prediction_source(cfg: DictConfig, trained_source: dict[str, Any]) -> dict[str, Any] | None:
    """The ``data.source`` override: ``data.path`` (or ``data.source.path``) and the other set keys.

    A model trained on another kind of source (the synthetic one) reads the file as a wide file
    whose series columns carry the training series' names.
    """
    data = OmegaConf.to_container(cfg.get("data") or {}, resolve=True)
    source = {k: v for k, v in (data.get("source") or {}).items() if v is not None}
    short_path = data.get("path")
    if short_path is not None:
        if source.get("path") not in (None, short_path):
            raise UserError(
                f"data.path={short_path} and data.source.path={source['path']} disagree; give one of them"
            )
        source["path"] = short_path
    if not source:
        return None
    if trained_source.get("kind") not in FILE_SOURCES:
        if "path" not in source:
            raise UserError("give the file to predict on: data.path=FILE.csv")
        source = {"kind": FILE_SOURCE, "timestamp_column": DEFAULT_TIMESTAMP_COLUMN, **source}
    return source


def check_columns(datamodule: ForecastDataModule, trained: dict[str, Any], source: str) -> None:
    """Refuse data whose series or extra feature columns differ from the training data's."""
    for kind, found, expected in (
        ("series", datamodule.series_names, list(trained["series_names"])),
        ("extra feature", datamodule.feature_names, list(trained["feature_names"])),
    ):
        if found != expected:
            missing = [c for c in expected if c not in found]
            unexpected = [c for c in found if c not in expected]
            detail = f"missing {missing}, unexpected {unexpected}" if missing or unexpected else "reordered"
            raise UserError(
                f"the {kind} columns of {source} differ from the training data's {expected} ({detail}); "
                "give a file with the training columns"
            )


def read_future(
    path: str, timestamp_column: str, series_names: list[str], extra_names: list[str]
) -> SourceFrame:
    """The future file: its timestamps, the series columns it has (actuals) and the extra columns."""
    columns = set(read_table(path).columns)
    if timestamp_column not in columns:
        raise UserError(
            f"future file {path} has no timestamp column {timestamp_column!r} (it has {sorted(columns)}); "
            "name it as in the data"
        )
    return wide_file_frame(
        path,
        timestamp_column=timestamp_column,
        series_columns=[c for c in series_names if c in columns],
        extra_columns=[c for c in extra_names if c in columns],
    )


def check_panel_frequency(datamodule: PanelDataModule, expected: str, source: str) -> str:
    """The panel's frequency (every series is on its grid), refusing one other than ``expected``."""
    freq = datamodule.freq
    if expected and to_offset(expected) != to_offset(freq):
        raise UserError(
            f"{source} has timestamps every {freq!r} but the model was trained on {expected!r} data; "
            f"resample the file to {expected!r} or set data.source.freq={expected}"
        )
    return freq


def wide_view(frame: PanelFrame) -> SourceFrame:
    """A panel as a wide table (timestamp rows, series columns, NaN where a series has no row)."""
    series = pd.DataFrame(
        {
            "timestamp": frame.timestamps,
            "series": np.repeat(frame.series_names, frame.lengths),
            "value": frame.values,
        }
    ).pivot(index="timestamp", columns="series", values="value")
    series = series.reindex(
        columns=[n for n, length in zip(frame.series_names, frame.lengths, strict=True) if length]
    )
    return SourceFrame(
        timestamps=pd.DatetimeIndex(series.index), series=series, extras=pd.DataFrame(index=series.index)
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no GPU is available; use device=cpu")
    return device


def write_csv(path: Path, table: pd.DataFrame) -> Path:
    return write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))


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
    if horizon is None and OmegaConf.select(cfg, "future.path") is not None:
        raise UserError("future.path is only read when forecasting past the data; add horizon=H")
    device = resolve_device(str(cfg.get("device") or "auto"))
    checkpoint = read_checkpoint(cfg.ckpt_path)
    trained = checkpoint[datamodule_state_key(checkpoint)]
    module = module_from_checkpoint(checkpoint).to(device)
    overrides: dict[str, Any] = {}
    source = prediction_source(cfg, checkpoint["datamodule_hyper_parameters"]["source"])
    if source is not None:
        overrides["source"] = source
    if OmegaConf.select(cfg, "data.eval_batch_size") is not None:
        overrides["eval_batch_size"] = int(cfg.data.eval_batch_size)
    datamodule = datamodule_from_checkpoint(checkpoint, overrides)
    data_name = str(datamodule.source.get("path") or f"the {datamodule.source['kind']} data")
    check_columns(datamodule, trained, data_name)
    panel = isinstance(datamodule, PanelDataModule)
    if panel:
        freq = check_panel_frequency(datamodule, str(trained.get("freq") or ""), data_name)
    else:
        freq = check_frequency(datamodule.timestamps, str(trained.get("freq") or ""), data_name)

    model_horizon = module.net.horizon
    windows = prediction_windows(datamodule, model_horizon)
    forecasts = predict_windows(module.net, windows, datamodule.eval_batch_size, device)
    predictions = window_predictions_table(forecasts, datamodule, freq)

    future: FutureForecast | None = None
    future_table: pd.DataFrame | None = None
    if horizon is not None and panel:
        if OmegaConf.select(cfg, "future.path") is not None:
            raise UserError(
                "future.path is read for wide data only; long data forecasts from calendar features "
                "alone (drop future.path)"
            )
        future_table = forecast_panel_future(module.net, datamodule, horizon, model_horizon, device)
    elif horizon is not None:
        frame = datamodule.load_frame()
        future_frame = None
        future_path = OmegaConf.select(cfg, "future.path")
        if future_path is not None:
            future_frame = read_future(
                str(future_path),
                str(datamodule.source.get("timestamp_column", DEFAULT_TIMESTAMP_COLUMN)),
                datamodule.series_names,
                [str(c) for c in frame.extras.columns],
            )
        future = forecast_future(
            module.net,
            datamodule,
            horizon,
            freq,
            model_horizon,
            future_extras=None if future_frame is None else future_frame.extras,
            device=device,
        )
        actuals = future_frame.series if future_frame is not None and future_frame.series.shape[1] else None
        future_table = future.table(actuals)

    output_dir = Path(cfg.paths.output_dir)
    written = {"predictions": write_csv(output_dir / "predictions.csv", predictions)}
    if future_table is not None:
        written["forecast"] = write_csv(output_dir / "forecast.csv", future_table)
    written["plot"] = plot_forecasts(
        output_dir / "predictions.png",
        wide_view(datamodule.load_frame()) if panel else datamodule.load_frame(),
        predictions,
        future_table,
        max_series=int(cfg.plot.max_series),
        history=int(cfg.plot.history),
    )
    for name, path in written.items():
        log.info("%s: %s", name, path)
    return written


@hydra_app("predict")
def main(cfg: DictConfig) -> None:
    torch_threads(cfg)
    predict(cfg)


if __name__ == "__main__":
    main()
