"""``lstm-predict``: forecasts in the data's units from a checkpoint alone.

The model, the fitted scaler and the data config all come from the checkpoint; the scaler is never
refitted on the new file. Writes into the run folder, in the one forecast-table layout
(:mod:`lstm_forecast.evaluation.tables`):

- ``forecast.csv`` with ``horizon=H``: the H steps after each series' last row (``actual`` where
  ``future.path`` holds the series; see :mod:`~lstm_forecast.inference.future_values` for its layouts);
- ``predictions.csv`` without a horizon, or with ``window_predictions=true``: every full window of
  each series (the last one forecasts the step(s) after its data), streamed to disk a chunk of
  windows at a time;
- ``predictions.png``: history, the last window predictions, forecast and known actuals of a few
  series.

Forecasts past the end read each series' last ``data.window_size`` rows only, a chunk of series at a
time; a job that would not fit in the memory available is refused before it starts, naming the option
that makes it fit.

With ``intervals=[0.8,0.95]`` both tables get conformal intervals ``lo-80, hi-80, lo-95, hi-95`` and
the plot their bands: the window table's calibrated on the validation split of the data (the
checkpoint's ``data.split``), the forecast's, with rolling or adaptive calibration (the run's
``evaluation`` settings, or ``evaluation.*`` given), on each series' latest windows with actuals
(:func:`latest_intervals`). A quantile model's tables hold its quantiles ``q0.1 ...`` in any case.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from lstm_forecast.data.sources import IN_MEMORY_NAME, source_of_file, source_table
from lstm_forecast.data.windows import CHUNK_ROWS, index_chunks
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.drift import DEFAULT_WARN_SHARE, check_warn_share, warn_drift
from lstm_forecast.evaluation.intervals import ConformalIntervals, check_interval_levels
from lstm_forecast.evaluation.report import SCORE_CHUNK_WINDOWS
from lstm_forecast.evaluation.rolling import RollingIntervals
from lstm_forecast.evaluation.streaming import calibrated_over_time
from lstm_forecast.evaluation.tables import FORECAST_COLUMNS, dates_only, forecast_table
from lstm_forecast.evaluation.window_forecasts import predict_windows
from lstm_forecast.files import write_table, write_table_chunks
from lstm_forecast.inference.checkpoints import LoadedModel, load_model
from lstm_forecast.inference.forecasting import (
    check_frequency,
    forecast_future,
    prediction_counts,
    prediction_windows,
)
from lstm_forecast.inference.future_values import future_values
from lstm_forecast.inference.plots import plot_forecasts
from lstm_forecast.memory import check_memory

log = logging.getLogger(__name__)

TABLE_ROWS = 1 << 18  # rows of the window table per chunk written


def predict(cfg: DictConfig) -> dict[str, Path]:
    """Forecast past the end of each series with ``cfg.horizon``, and every full window of the data
    when ``cfg.window_predictions`` asks for it (see :func:`writes_window_predictions`).

    Returns
    -------
    dict
        Paths written: ``predictions`` (CSV, the window table), ``forecast`` (CSV, with a horizon) and
        ``plot`` (PNG).
    """
    horizon = cfg.get("horizon")
    if horizon is not None and (not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1):
        raise UserError(f"horizon must be a positive integer (steps after the data), got {horizon!r}")
    future_path = OmegaConf.select(cfg, "future.path")
    if horizon is None and future_path is not None:
        raise UserError("future.path is only read when forecasting past the data; add horizon=H")
    window_table = writes_window_predictions(cfg.get("window_predictions", "auto"), horizon)
    warn_share = check_warn_share(OmegaConf.select(cfg, "drift.warn_share", default=DEFAULT_WARN_SHARE))
    levels = check_interval_levels(cfg.get("intervals"), "intervals")
    loaded = load_for_prediction(cfg)
    datamodule, module = loaded.datamodule, loaded.module
    data_name = str(datamodule.source.get("path") or f"the {datamodule.source['kind']} data")
    counts = prediction_counts(datamodule, module.net.horizon)
    check_memory(
        "lstm-predict" + ("" if horizon is None else f" horizon={horizon}"),
        prediction_memory(loaded, horizon, window_table, len(levels or ())),
    )
    per_series = cfg.get("intervals_per_series")  # null: the training run's evaluation setting
    per_series = loaded.evaluation.intervals_per_series if per_series is None else bool(per_series)
    intervals = calibrated_intervals(loaded, levels, per_series) if levels else None
    latest = latest_intervals(loaded, intervals, per_series) if levels and horizon is not None else None
    series, count = counts
    rows_read = np.zeros(datamodule.num_series, dtype=np.int64)
    rows_read[series] = datamodule.window_size + count - 1  # every full window's context
    warn_drift(datamodule, rows_read, warn_share, data_name)
    forecast = None if horizon is None else future_forecast(cfg, loaded, horizon, intervals=latest)
    # The held forecast is made first and the window table streamed to a temporary file, so bad input
    # leaves no output behind.
    output_dir = Path(cfg.paths.output_dir)
    written = {}
    if window_table:
        written["predictions"] = write_table_chunks(
            output_dir / "predictions.csv",
            window_tables(loaded, counts, intervals),
            dates_only=dates_only(datamodule.load_frame(), module.net.horizon),
        )
    if forecast is not None:
        written["forecast"] = write_table(output_dir / "forecast.csv", forecast)
    max_series = int(cfg.plot.max_series)
    history = int(cfg.plot.history)
    written["plot"] = plot_forecasts(
        output_dir / "predictions.png",
        datamodule.load_frame(),
        plotted_windows(loaded, counts, intervals, max_series, history),
        forecast,
        max_series=max_series,
        history=history,
    )
    for name, path in written.items():
        log.info("%s: %s", name, path)
    return written


def writes_window_predictions(option: object, horizon: int | None) -> bool:
    """``window_predictions``: ``auto`` writes the window table without a horizon (it is then the whole
    output) and not with one; ``true`` / ``false`` force it."""
    if option == "auto":
        return horizon is None
    if not isinstance(option, bool):
        raise UserError(f"window_predictions must be auto, true or false, got {option!r}")
    if not option and horizon is None:
        raise UserError("window_predictions=false without a horizon forecasts nothing; add horizon=H")
    return option


def window_tables(
    loaded: LoadedModel, counts: tuple[np.ndarray, np.ndarray], intervals: ConformalIntervals | None
) -> Iterator[pd.DataFrame]:
    """The forecast table of every full window of the data (:func:`prediction_counts`), a chunk of
    whole batches of windows at a time (about :data:`TABLE_ROWS` rows each)."""
    datamodule, module = loaded.datamodule, loaded.module
    horizon, batch = module.net.horizon, datamodule.eval_batch_size
    size = window_chunk(batch, horizon)
    user = datamodule.load_frame().extras.to_numpy(dtype=np.float64)  # [N, E_user] (a view)
    for first in range(0, int(counts[1].sum()), size):
        windows = prediction_windows(datamodule, horizon, first, first + size, counts, user)
        forecasts = predict_windows(module, windows, batch, loaded.device)
        yield forecast_table(forecasts if intervals is None else intervals.apply(forecasts), datamodule)


def window_chunk(batch: int, horizon: int) -> int:
    """Windows per chunk of the window table: whole batches (the numbers of one pass over every
    window), about :data:`TABLE_ROWS` table rows."""
    return batch * max(1, TABLE_ROWS // (batch * horizon))


def plotted_windows(
    loaded: LoadedModel,
    counts: tuple[np.ndarray, np.ndarray],
    intervals: ConformalIntervals | None,
    max_series: int,
    history: int,
) -> pd.DataFrame:
    """The window table of the last ``history + 1`` windows of the series the plot draws (the first
    ``max_series`` with rows), whose first steps reach back ``history`` rows."""
    datamodule, module = loaded.datamodule, loaded.module
    drawn = np.flatnonzero(datamodule.load_frame().lengths > 0)[: max(max_series, 1)]
    series, count = counts
    ends = np.cumsum(count)
    tables = []
    for position in np.flatnonzero(np.isin(series, drawn)):
        first = int(ends[position] - min(count[position], history + 1))
        windows = prediction_windows(datamodule, module.net.horizon, first, int(ends[position]), counts)
        forecasts = predict_windows(module, windows, datamodule.eval_batch_size, loaded.device)
        if intervals is not None:
            forecasts = intervals.apply(forecasts)
        tables.append(forecast_table(forecasts, datamodule))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(FORECAST_COLUMNS))


def prediction_memory(
    loaded: LoadedModel, horizon: int | None, window_table: bool, num_levels: int
) -> dict[str, tuple[int, str]]:
    """What ``lstm-predict`` needs beyond the data already read, part by part, with the option that
    shrinks each (see :func:`~lstm_forecast.memory.check_memory`): rough upper bounds from the sizes
    of the data, the model and the chunks."""
    datamodule, net = loaded.datamodule, loaded.module.net
    frame = datamodule.load_frame()
    rows, num_series, window = frame.num_rows, frame.num_series, datamodule.window_size
    features = len(datamodule.feature_names) + 1
    batch, model_horizon = datamodule.eval_batch_size, net.horizon
    quantiles = len(getattr(loaded.module, "quantile_levels", ()) or ())
    # A table row, its temporaries and its CSV text (measured: about 480 bytes a row of 5 columns).
    row_bytes = 6 * (80 + 8 * (quantiles + 2 * num_levels))
    array_bytes = 4 + 8 * 3  # a float32 feature, its float64 temporaries
    needs = {"drift check": (CHUNK_ROWS * 64, "drift.warn_share=null")}
    smaller = f"data.eval_batch_size={max(batch // 4, 1)}"
    if horizon is not None:
        future_rows = -(-horizon // model_horizon) * model_horizon
        chunk_series = CHUNK_ROWS // (2 * window + future_rows) + batch
        forecast = (
            num_series * future_rows * features * array_bytes  # every series' future rows
            + chunk_series * (2 * window + future_rows) * features * array_bytes  # a chunk's arrays
            + num_series * horizon * row_bytes  # forecast.csv
        )
        needs["forecast"] = (forecast, f"forecast fewer steps (horizon) or set {smaller}")
    if window_table:
        windows = window_chunk(batch, model_horizon)
        table = windows * model_horizon * row_bytes + (windows + window) * features * array_bytes
        needs["window table"] = (table, f"set window_predictions=false or {smaller}")
    if num_levels:
        # Calibration scales every row into float32 arrays and indexes every split's windows.
        padded = rows + num_series * window
        needs["interval calibration"] = (padded * (4 * features + 2) + rows * 36, "set intervals=null")
    return needs


def load_for_prediction(cfg: DictConfig, table: pd.DataFrame | None = None) -> LoadedModel:
    """The checkpoint's model and the data to predict on (``data.source.path``, or ``table``: its rows
    in memory), refused when its frequency differs from the training data's; series unseen in training
    as ``unseen_series`` says."""
    unseen = str(cfg.get("unseen_series") or "refuse")
    loaded = load_model(cfg, source_for=source_of_file, table=table, unseen_series=unseen)
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


def latest_intervals(
    loaded: LoadedModel, split: ConformalIntervals, per_series: bool
) -> ConformalIntervals | RollingIntervals:
    """The intervals of the forecast past the data's end: ``split`` itself, or (with the run's
    ``evaluation.calibration: rolling`` or an ``adaptive_step``, per-series margins) calibrated on each
    series' latest windows with actuals: the validation windows seed them and the test split's windows
    are scored through in time order, as ``lstm-evaluate`` scores them."""
    options, datamodule = loaded.evaluation, loaded.datamodule
    if not per_series or (options.calibration == "split" and not options.adaptive_step):
        return split
    batch, device = datamodule.eval_batch_size, loaded.device
    calibration = predict_windows(loaded.module, datamodule.windows["val"], batch, device)
    latest = calibrated_over_time(split, calibration, options)
    test = datamodule.windows["test"]
    for chunk in index_chunks(len(test), SCORE_CHUNK_WINDOWS):
        latest.apply(predict_windows(loaded.module, test, batch, device, chunk))
    return latest


def future_forecast(
    cfg: DictConfig,
    loaded: LoadedModel,
    horizon: int,
    future_table: pd.DataFrame | None = None,
    intervals: ConformalIntervals | RollingIntervals | None = None,
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
    intervals : ConformalIntervals, RollingIntervals or None
        Applied to the forecasts (bounds NaN past the model's own horizon, where no residuals were
        calibrated).
    """
    datamodule, net = loaded.datamodule, loaded.module.net
    values = None
    future_path = OmegaConf.select(cfg, "future.path")
    if future_path is not None or future_table is not None:
        table, source = source_table(future_path, future_table, key="future.path")
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
