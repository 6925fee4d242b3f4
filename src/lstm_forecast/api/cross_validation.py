"""``Forecaster.cross_validation``: forecasts from the last cut-offs of every series, scored against
the actuals, over ``lstm-backtest``'s code (neuralforecast's ``cross_validation``, darts'
``historical_forecasts``).

A cut-off is the last step a forecast sees; its ``horizon`` steps follow it. Each series gets
``n_windows`` cut-offs, ``step`` steps apart, the last one ``horizon`` steps before its end (a
series too short for all of them keeps the latest that fit). With ``refit_every=0`` the fitted model
forecasts every window: honest scores need windows inside the test split (the last
``data.split.test`` steps), as the model trained on the steps before it. With ``refit_every=k``
each series' windows are taken ``k`` at a time and a model trained with the run's own settings on
the steps before the group's first window forecasts them (:mod:`lstm_forecast.inference.origins`);
those models live in a temporary folder, gone when the call returns.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import open_dict

from lstm_forecast.api.tables import check_frame
from lstm_forecast.api.vocabulary import in_input_names
from lstm_forecast.cli.app import compose_config
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.streaming import ScoredChunk
from lstm_forecast.evaluation.tables import forecast_table
from lstm_forecast.inference.backtest import backtest_horizon, check_refit_every
from lstm_forecast.inference.checkpoints import load_model
from lstm_forecast.inference.origins import OriginBacktest
from lstm_forecast.training.refit import refit_checkpoint

# Before the interval columns (lo-80, hi-80, ...) of a run that calibrates them.
CROSS_VALIDATION_COLUMNS = ["series", "cutoff", "timestamp", "prediction", "actual"]


def last_windows(
    lengths: np.ndarray, horizon: int, n_windows: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """``[lo, hi)`` (``[S]`` each) whose origins ``lo, lo + step, ...`` are each series' last
    ``n_windows`` (the last one ``horizon`` steps before its end); origins start at step 1."""
    hi = np.asarray(lengths, dtype=np.int64)
    lo = hi - horizon - (n_windows - 1) * step
    too_early = np.maximum(1 - lo, 0)  # steps before step 1: drop the windows starting there
    return lo + -(-too_early // step) * step, hi


def _positive(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return value


def _window_table(chunk: ScoredChunk, datamodule: ForecastDataModule) -> pd.DataFrame:
    """The chunk's forecasts with each window's cut-off (the step before its first forecast step)."""
    table = forecast_table(chunk.forecasts, datamodule)
    first_rows = chunk.forecasts.target_row.astype(np.int64)
    cutoff = datamodule.load_frame().timestamps[first_rows - 1]
    table.insert(1, "cutoff", np.repeat(cutoff, chunk.forecasts.prediction.shape[1]))
    return table.drop(columns="step")


def cross_validation(
    checkpoint: Path,
    data: pd.DataFrame,
    horizon: int | None,
    n_windows: int,
    step: int | None,
    refit_every: int | None,
) -> pd.DataFrame:
    """See :meth:`lstm_forecast.api.forecaster.Forecaster.cross_validation`."""
    table = check_frame(data)
    cfg = compose_config("backtest", [])  # its stride and refit_every are the defaults
    step = _positive("step", cfg.stride if step is None else step)
    refit_every = check_refit_every(cfg.refit_every if refit_every is None else refit_every)
    n_windows = _positive("n_windows", n_windows)
    with open_dict(cfg):
        cfg.ckpt_path = str(checkpoint)
    loaded = load_model(cfg, table=table)
    datamodule = loaded.datamodule
    datamodule.setup("test")
    horizon = backtest_horizon(horizon, datamodule.horizon)
    lo, hi = last_windows(datamodule.load_frame().lengths, horizon, n_windows, step)
    with tempfile.TemporaryDirectory(prefix="cross_validation_") as folder:
        run = OriginBacktest(loaded, lo, hi, step, refit_every, refit_checkpoint, table, Path(folder))
        parts = [_window_table(chunk, chunk_data) for chunk, chunk_data in run]
    return in_input_names(pd.concat(parts, ignore_index=True), datamodule.load_frame())
