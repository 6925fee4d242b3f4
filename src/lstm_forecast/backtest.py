"""``lstm-backtest``: rolling-origin backtest of a checkpoint, without retraining.

From every forecast origin in a period (every ``stride`` rows), every series is forecast ``H`` steps
ahead from its true history, and scored with the baselines on exactly the same targets. The origins
are a strided set of window indices, forecast in whole batches.

An origin is the first forecast row ``t``: the model sees rows ``t - W .. t - 1`` and forecasts rows
``t .. t + H - 1``. Only origins whose ``H`` targets all lie inside the period are used.

Examples
--------
    python -m lstm_forecast.backtest ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt
    python -m lstm_forecast.backtest ckpt_path=... period=val stride=24
    python -m lstm_forecast.backtest ckpt_path=... start="2018-01-01" end="2018-02-28 23:00" stride=6
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from lstm_forecast.apps import hydra_app
from lstm_forecast.checkpoints import datamodule_from_checkpoint, module_from_checkpoint, read_checkpoint
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.windows import WideWindows
from lstm_forecast.errors import UserError
from lstm_forecast.evaluate import data_overrides
from lstm_forecast.evaluation.inference import WindowForecasts
from lstm_forecast.evaluation.outputs import write_table
from lstm_forecast.evaluation.report import EvaluationOptions, evaluate_windows
from lstm_forecast.files import write_json

log = logging.getLogger(__name__)

PERIODS = ("train", "val", "test", "all")


def period_rows(
    datamodule: ForecastDataModule, period: str, start: str | None = None, end: str | None = None
) -> tuple[int, int]:
    """``(first, last)`` data rows (inclusive) whose values may be forecast targets.

    ``period`` names a split (or ``all`` rows); ``start`` / ``end`` timestamps, when given, narrow it.
    Training targets start at row 1 (row 0 has no history at all).
    """
    datamodule.setup("test")
    assert datamodule.split_rows is not None
    n_train, n_val, n_test = datamodule.split_rows
    bounds = {
        "train": (1, n_train - 1),
        "val": (n_train, n_train + n_val - 1),
        "test": (n_train + n_val, n_train + n_val + n_test - 1),
        "all": (1, len(datamodule.timestamps) - 1),
    }
    if period not in bounds:
        raise UserError(f"period must be one of {list(PERIODS)}, got {period!r}")
    first, last = bounds[period]
    timestamps = datamodule.timestamps
    for name, value in (("start", start), ("end", end)):
        if value is None:
            continue
        try:
            moment = pd.Timestamp(value)
        except (ValueError, TypeError) as error:
            raise UserError(
                f"{name}={value!r} is not a timestamp; write it like 2018-01-31 or '2018-01-31 12:00'"
            ) from error
        if name == "start":
            first = max(first, int(timestamps.searchsorted(moment, side="left")))
        else:
            last = min(last, int(timestamps.searchsorted(moment, side="right")) - 1)
    return first, last


def origin_windows(
    datamodule: ForecastDataModule, first: int, last: int, stride: int
) -> tuple[WideWindows, torch.Tensor]:
    """Windows of every origin ``first, first + stride, ...`` whose targets end by row ``last``.

    Returns
    -------
    tuple
        ``(windows over the period, index [origins * S])``: the strided window indices, time-major.
    """
    if not isinstance(stride, int) or stride < 1:
        raise UserError(f"stride must be a positive integer (rows between origins), got {stride!r}")
    horizon = datamodule.horizon
    num_origins = last - first - horizon + 2  # origins t with t + H - 1 <= last
    if num_origins < 1:
        raise UserError(
            f"the period holds {max(last - first + 1, 0)} rows, fewer than the horizon {horizon}; "
            "choose a longer period (period=..., start=..., end=...)"
        )
    arrays = datamodule.windows["test"].arrays
    windows = WideWindows(arrays, first, num_origins, horizon, datamodule.padding_mask)
    num_series = windows.num_series
    origins = torch.arange(0, num_origins, stride)  # [O] offsets from the first origin
    index = (origins[:, None] * num_series + torch.arange(num_series)).flatten()  # [O * S]
    return windows, index


def forecast_table(
    datamodule: ForecastDataModule, forecasts: WindowForecasts, baselines: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Long table, one row per (origin, series, step), forecasts and actual in original units."""
    num_windows, horizon = forecasts.prediction.shape
    series = forecasts.series_index[:, None]  # [N, 1]
    rows = forecasts.target_row[:, None] + np.arange(horizon)  # [N, H]
    timestamps = datamodule.timestamps

    def original(values: np.ndarray) -> np.ndarray:
        return datamodule.inverse_values(values, series).ravel()

    table = pd.DataFrame(
        {
            "origin": np.repeat(timestamps[forecasts.target_row], horizon),
            "series": np.repeat(np.asarray(datamodule.series_names)[forecasts.series_index], horizon),
            "step": np.tile(np.arange(1, horizon + 1), num_windows),
            "timestamp": timestamps[rows.ravel()],
            "actual": original(forecasts.target),
            "model": original(forecasts.prediction),
        }
    )
    for name, values in baselines.items():
        table[name] = original(values)
    return table


def backtest(cfg: DictConfig) -> dict[str, Any]:
    """Backtest ``cfg.ckpt_path`` over ``cfg.period``; write metrics, tables and forecasts to the run."""
    options = EvaluationOptions.from_config(cfg.get("evaluation"))
    checkpoint = read_checkpoint(cfg.ckpt_path)
    module = module_from_checkpoint(checkpoint)
    datamodule = datamodule_from_checkpoint(checkpoint, data_overrides(cfg))
    first, last = period_rows(datamodule, cfg.period, cfg.get("start"), cfg.get("end"))
    windows, index = origin_windows(datamodule, first, last, cfg.stride)
    scores, forecasts, baselines = evaluate_windows(
        module.net, datamodule, windows, "backtest", index, options=options
    )
    timestamps = datamodule.timestamps
    metrics: dict[str, Any] = {
        **scores.metrics,
        "backtest/num_origins": len(index) // windows.num_series,
        "backtest/stride": cfg.stride,
        "backtest/first_origin": str(timestamps[int(forecasts.target_row[0])]),
        "backtest/last_origin": str(timestamps[int(forecasts.target_row[-1])]),
        "checkpoint": str(Path(cfg.ckpt_path).resolve()),
    }
    output_dir = Path(cfg.paths.output_dir)
    if options.tables:
        scores.write_tables(output_dir)
    if cfg.save_forecasts:
        table = forecast_table(datamodule, forecasts, baselines)
        write_table(output_dir / "forecasts.csv", table)
    write_json(output_dir / "metrics.json", metrics)
    summary = {k: v for k, v in metrics.items() if "@" not in k}
    print(json.dumps(summary, indent=2, sort_keys=True))
    return metrics


@hydra_app("backtest")
def main(cfg: DictConfig) -> None:
    backtest(cfg)


if __name__ == "__main__":
    main()
