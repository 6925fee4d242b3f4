"""``lstm-backtest``: rolling-origin backtest of a checkpoint, refitted every ``refit_every`` origins
or never.

From every forecast origin in a split (every ``stride`` steps of each series), every series is
forecast ``H`` steps ahead from its true history and scored with the baselines on exactly the same
targets. The origins are a strided set of windows, forecast in whole batches; which model forecasts
which origin: :mod:`lstm_forecast.inference.origins`.

With intervals, ``coverage_per_origin.csv`` holds their coverage and width at each origin (over every
series) and ``metrics_per_series.csv`` each series'; ``metrics.json`` the worst 10 % of series' coverage.

An origin is the first forecast step ``t``: the model sees steps ``t - W .. t - 1`` and forecasts
``t .. t + H - 1``. Only origins whose ``H`` targets all lie inside the period are used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.split import SPLITS
from lstm_forecast.data.windows import Windows
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.intervals import interval_columns, level_label
from lstm_forecast.evaluation.report import print_summary
from lstm_forecast.evaluation.tables import dates_only, forecast_table
from lstm_forecast.files import write_json, write_table, write_table_chunks
from lstm_forecast.inference.checkpoints import load_model
from lstm_forecast.inference.origins import REFITS_FOLDER, OriginBacktest, Refit, origin_steps, windows_at

PERIODS = (*SPLITS, "all")


def _moment(name: str, value: Any, tz: Any) -> pd.Timestamp:
    try:
        moment = pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise UserError(
            f"{name}={value!r} is not a timestamp; write it like 2018-01-31 or '2018-01-31 12:00'"
        ) from error
    return moment.tz_localize(tz) if tz is not None and moment.tz is None else moment


def period_bounds(
    datamodule: ForecastDataModule, split: str, start: Any = None, end: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Steps ``[lo, hi)`` of each series (``[S]`` each) whose values may be forecast targets.

    ``split`` names a split (or ``all`` rows); ``start`` / ``end`` timestamps (inclusive), when given,
    narrow it. Targets start at step 1 (step 0 has no history at all).
    """
    if split not in PERIODS:
        raise UserError(f"split must be one of {list(PERIODS)}, got {split!r}")
    datamodule.setup("test")
    frame = datamodule.load_frame()
    lo, hi = (np.zeros_like(frame.lengths), frame.lengths) if split == "all" else datamodule.bounds[split]
    lo = np.maximum(lo, 1)
    tz = frame.timestamps.tz
    row_series = frame.row_series
    if start is not None:
        before = frame.timestamps < _moment("start", start, tz)
        lo = np.maximum(lo, np.bincount(row_series[before], minlength=frame.num_series))
    if end is not None:
        through = frame.timestamps <= _moment("end", end, tz)
        hi = np.minimum(hi, np.bincount(row_series[through], minlength=frame.num_series))
    return lo, hi


def backtest_horizon(asked: Any, trained: int) -> int:
    """The steps each origin is scored on: ``asked`` (``horizon=``; null: the model's own ``trained``).

    A backtest scores the model's direct forecasts of its own ``model.horizon`` steps, each from the
    true history: another horizon is refused in one line naming the fix (a shorter one is in the
    per-step scores already; a longer one needs a model trained for it).
    """
    if asked is None:
        return trained
    if not isinstance(asked, int) or isinstance(asked, bool) or asked < 1:
        raise UserError(f"horizon must be a positive integer (steps per origin), got {asked!r}")
    if asked > trained:
        raise UserError(
            f"horizon={asked} is longer than the {trained} steps the model forecasts (its model.horizon); "
            f"train one with model.horizon={asked} to backtest {asked} steps, or use horizon={trained}"
        )
    if asked < trained:
        raise UserError(
            f"horizon={asked} is shorter than the {trained} steps the model forecasts (its model.horizon); "
            f"use horizon={trained}: metrics.json scores each step (backtest/mse_z@1 .. @{trained})"
        )
    return asked


def origin_windows(datamodule: ForecastDataModule, lo: np.ndarray, hi: np.ndarray, stride: int) -> Windows:
    """Windows of every origin ``lo, lo + stride, ...`` of each series whose targets end before ``hi``."""
    series, step, _ = origin_steps(datamodule, lo, hi, stride)
    return windows_at(datamodule, series, step)


def check_refit_every(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UserError(
            f"refit_every must be 0 (never refit) or a positive integer (origins per refit), got {value!r}"
        )
    return value


def interval_sums_per_origin(table: pd.DataFrame, levels) -> pd.DataFrame:
    """Per origin of a chunk's forecast table: targets inside each interval, widths, and targets."""
    sums = {"origin": table["origin"], "targets": np.ones(len(table))}
    for level in levels:
        lo, hi = (table[column] for column in interval_columns(level))
        sums[f"coverage@{level_label(level)}"] = ((lo <= table["actual"]) & (table["actual"] <= hi)).astype(
            float
        )
        sums[f"width@{level_label(level)}"] = hi - lo
    return pd.DataFrame(sums).groupby("origin", sort=False).sum()


def coverage_per_origin(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """``origin, coverage@80, width@80, ...`` (original units): coverage over time, over every series."""
    if not parts:
        return pd.DataFrame(columns=["origin"])
    sums = pd.concat(parts).groupby(level=0).sum().sort_index()
    means = sums.drop(columns="targets").div(sums["targets"], axis=0)
    return means.reset_index()


def backtest(
    cfg: DictConfig, table: pd.DataFrame | None = None, refit: Refit | None = None
) -> dict[str, Any]:
    """Backtest the checkpoint over ``cfg.split``; write metrics, tables and forecasts to the run.

    The origins are forecast and scored a chunk at a time (:class:`ScoredStream`); the forecasts file
    (with each row's origin and the baselines' forecasts) is written chunk by chunk as they come.
    ``refit`` trains the models of ``cfg.refit_every`` (:class:`OriginBacktest`); ``table`` holds the
    data's rows in memory, in place of the source's file.
    """
    loaded = load_model(cfg, table=table)  # the run's evaluation settings, with the command line's over them
    datamodule = loaded.datamodule
    horizon = backtest_horizon(cfg.get("horizon"), datamodule.horizon)
    refit_every = check_refit_every(cfg.get("refit_every", 0))
    lo, hi = period_bounds(datamodule, cfg.split, cfg.get("start"), cfg.get("end"))
    output_dir = Path(cfg.paths.output_dir)
    run = OriginBacktest(loaded, lo, hi, cfg.stride, refit_every, refit, table, output_dir / REFITS_FOLDER)
    origins: set[pd.Timestamp] = set()
    per_origin: list[pd.DataFrame] = []  # sums per origin of each chunk: O(origins) rows in all

    def tables() -> Iterator[pd.DataFrame]:
        for chunk, chunk_data in run:
            table = forecast_table(chunk.forecasts, chunk_data, extra=chunk.baselines)
            first_steps = table.loc[table["step"] == 1, "timestamp"]
            origins.update(first_steps)
            table.insert(0, "origin", np.repeat(first_steps.to_numpy(), chunk.forecasts.prediction.shape[1]))
            per_origin.append(interval_sums_per_origin(table, chunk.forecasts.intervals))
            yield table

    if cfg.get("forecasts_file"):
        write_table_chunks(
            output_dir / cfg.forecasts_file,
            tables(),
            dates_only=dates_only(datamodule.load_frame(), horizon),
        )
    else:
        for _ in tables():
            pass
    scores = run.scores()
    metrics: dict[str, Any] = {
        **scores.metrics,
        "backtest/horizon": horizon,
        "backtest/num_origins": len(origins),
        "backtest/stride": cfg.stride,
        "backtest/refit_every": refit_every,
        "backtest/num_models": run.num_models,
        "backtest/first_origin": str(min(origins)),
        "backtest/last_origin": str(max(origins)),
        "checkpoint": str(loaded.path.resolve()),
    }
    if loaded.evaluation.tables:
        scores.write_tables(output_dir)
        coverage = coverage_per_origin(per_origin)
        if len(coverage.columns) > 1:
            write_table(output_dir / "coverage_per_origin.csv", coverage)
    write_json(output_dir / "metrics.json", metrics)
    print_summary(metrics, output_dir / "metrics.json")
    return metrics
