"""Score a network on a split of a datamodule: the model and its baselines on the same targets.

Keys written to ``metrics.json`` (``<prefix>`` is the split, or ``backtest``):

- ``<prefix>/<metric>`` and ``baseline/<name>/<metric>``: averaged over windows and horizon steps, for
  every metric of :data:`~lstm_forecast.evaluation.metrics.METRIC_NAMES`;
- ``<prefix>/mse_z@<h>``, ``<prefix>/mae_z@<h>`` (and the same per baseline): horizon step ``h`` from 1;
- ``baseline/ridge/alpha``, ``baseline/seasonal_naive/period``: what the baselines used;
- ``<prefix>/coverage@<level>``, ``<prefix>/width@<level>`` and, for quantile models,
  ``<prefix>/pinball``: the conformal intervals calibrated on validation
  (:mod:`~lstm_forecast.evaluation.intervals`).

Every metric per step and per series goes to ``metrics_per_step.csv`` and ``metrics_per_series.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.windows import Windows
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.baselines import (
    DEFAULT_RIDGE_ALPHAS,
    RidgeBaseline,
    default_seasonal_period,
    persistence,
    seasonal_naive,
)
from lstm_forecast.evaluation.intervals import ConformalIntervals, check_interval_levels, interval_metrics
from lstm_forecast.evaluation.metrics import METRIC_NAMES, PER_STEP_KEYS, ForecastErrors
from lstm_forecast.evaluation.window_forecasts import WindowForecasts, predict_windows
from lstm_forecast.files import write_atomic

BASELINES = ("persistence", "seasonal_naive", "ridge")
MODEL = "model"  # the network's name in the CSV tables


@dataclass(frozen=True)
class EvaluationOptions:
    """The ``evaluation`` config group.

    Attributes
    ----------
    baselines : tuple of str
        Which of :data:`BASELINES` to score beside the model.
    seasonal_period : int or None
        Season length of the seasonal naive baseline; None: from the data's sampling interval.
    ridge_alphas : tuple of float
        Candidate ridge regularisations (relative to the mean diagonal of the Gram matrix).
    tables : bool
        Write the per-step and per-series CSV tables next to ``metrics.json``.
    interval_levels : tuple of float
        Coverage levels of the conformal intervals calibrated on validation (empty: none).
    intervals_per_series : bool
        Calibrate each series' margins on its own validation windows instead of pooling them.
    """

    baselines: tuple[str, ...] = BASELINES
    seasonal_period: int | None = None
    ridge_alphas: tuple[float, ...] = DEFAULT_RIDGE_ALPHAS
    tables: bool = True
    interval_levels: tuple[float, ...] = (0.8, 0.95)
    intervals_per_series: bool = False

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> EvaluationOptions:
        if isinstance(node, DictConfig):
            node = OmegaConf.to_container(node, resolve=True)
        node = dict(node or {})
        unknown = sorted(set(node) - set(cls.__dataclass_fields__))
        if unknown:
            raise UserError(
                f"unknown evaluation option(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}"
            )
        options = cls(**{k: tuple(v) if isinstance(v, list | tuple) else v for k, v in node.items()})
        levels = check_interval_levels(options.interval_levels, "evaluation.interval_levels")
        options = replace(options, interval_levels=levels)
        bad = sorted(set(options.baselines) - set(BASELINES))
        if bad:
            raise UserError(
                f"unknown baseline(s) {bad} in evaluation.baselines; choose from {list(BASELINES)}"
            )
        return options


@dataclass(frozen=True)
class SplitScores:
    """Scores of the model and its baselines on one set of windows.

    Attributes
    ----------
    metrics : dict
        Flat ``metrics.json`` keys (see the module docstring).
    per_step : DataFrame
        One row per (model, horizon step) with every metric.
    per_series : DataFrame
        One row per (model, series) with every metric.
    """

    metrics: dict[str, float]
    per_step: pd.DataFrame
    per_series: pd.DataFrame

    def write_tables(self, folder: str | Path) -> None:
        """``metrics_per_step.csv`` and ``metrics_per_series.csv`` in ``folder``, each written atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, table in (
            ("metrics_per_step.csv", self.per_step),
            ("metrics_per_series.csv", self.per_series),
        ):
            write_atomic(folder / name, lambda tmp, table=table: table.to_csv(tmp, index=False))


def training_naive_scale(datamodule: ForecastDataModule) -> np.ndarray:
    """MASE denominators ``[S]``: each series' mean absolute one-step change over its training windows
    (target minus the value before it, in original units). Read through the windows, so it holds for
    wide tables and ragged long panels alike."""
    datamodule.setup("test")
    observed = observed_windows(datamodule.windows["train"])
    series = observed.series_index[:, None]
    change = np.abs(
        datamodule.inverse_values(observed.target[:, :1], series)
        - datamodule.inverse_values(observed.last_value[:, None], series)
    )[:, 0]
    total = np.bincount(observed.series_index, weights=change, minlength=datamodule.num_series)
    count = np.bincount(observed.series_index, minlength=datamodule.num_series)
    scale = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return np.where(scale > 0, scale, 1.0)


def seasonal_period_of(datamodule: ForecastDataModule, options: EvaluationOptions) -> int:
    if options.seasonal_period is None:
        return default_seasonal_period(datamodule.timestamps)
    return options.seasonal_period


def baseline_forecasts(
    forecasts: WindowForecasts,
    datamodule: ForecastDataModule,
    windows: Windows,
    index: torch.Tensor | None = None,
    options: EvaluationOptions | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The baselines' forecasts of the windows ``index`` of ``windows`` (those of ``forecasts``).

    Returns
    -------
    tuple
        ``({name: [N, H] scaled forecasts}, {metrics.json key: what the baseline used})``.
    """
    options = options or EvaluationOptions()
    horizon = forecasts.prediction.shape[1]
    predictions: dict[str, np.ndarray] = {}
    settings: dict[str, float] = {}
    if "persistence" in options.baselines:
        predictions["persistence"] = persistence(forecasts)
    if "seasonal_naive" in options.baselines:
        period = seasonal_period_of(datamodule, options)
        predictions["seasonal_naive"] = seasonal_naive(
            windows.arrays, forecasts.target_row, forecasts.series_index, horizon, period
        )
        settings["baseline/seasonal_naive/period"] = period
    if "ridge" in options.baselines:
        datamodule.setup("test")
        ridge = RidgeBaseline.fit(
            datamodule.windows["train"], datamodule.windows["val"], options.ridge_alphas
        )
        predictions["ridge"] = ridge.predict(windows, index)
        settings["baseline/ridge/alpha"] = ridge.alpha
    return predictions, settings


def score_models(
    forecasts: WindowForecasts,
    datamodule: ForecastDataModule,
    prefix: str,
    baselines: Mapping[str, np.ndarray] | None = None,
    include_model: bool = True,
) -> SplitScores:
    """Metrics of the model (``{prefix}/...``, unless ``include_model`` is False) and of each baseline
    (``baseline/<name>/...``)."""
    assert forecasts.target is not None, "scoring needs windows with targets"
    baselines = dict(baselines) if baselines is not None else {"persistence": persistence(forecasts)}
    mase_scale = training_naive_scale(datamodule)
    metrics: dict[str, float] = {}
    step_tables, series_tables = [], []
    scored = {MODEL: forecasts.prediction} if include_model else {}
    for name, prediction in {**scored, **baselines}.items():
        errors = ForecastErrors.compute(
            prediction,
            forecasts.target,
            forecasts.series_index,
            datamodule.inverse_values,
            datamodule.z_normalise,
            mase_scale,
        )
        key = prefix if name == MODEL else f"baseline/{name}"
        metrics.update({f"{key}/{metric}": value for metric, value in errors.overall().items()})
        per_step = errors.per_step()
        for metric in PER_STEP_KEYS:
            metrics.update({f"{key}/{metric}@{h + 1}": float(v) for h, v in enumerate(per_step[metric])})
        steps = pd.DataFrame(per_step, columns=list(METRIC_NAMES))
        steps.insert(0, "step", np.arange(1, len(steps) + 1))
        steps.insert(0, "model", name)
        step_tables.append(steps)
        series = pd.DataFrame(errors.per_series(datamodule.num_series), columns=list(METRIC_NAMES))
        series.insert(0, "series", datamodule.series_names)
        series.insert(0, "model", name)
        series_tables.append(series)
    metrics[f"{prefix}/num_targets"] = int(forecasts.target.size)
    return SplitScores(
        metrics=metrics,
        per_step=pd.concat(step_tables, ignore_index=True),
        per_series=pd.concat(series_tables, ignore_index=True),
    )


def observed_windows(
    windows: Windows, index: torch.Tensor | None = None, batch_size: int = 4096
) -> WindowForecasts:
    """What the baselines need of windows ``index`` (default all) without a model: targets, last
    values, series and rows; ``prediction`` is NaN (score with ``include_model=False``)."""
    index = torch.arange(len(windows)) if index is None else index
    batches = [windows.gather(chunk) for chunk in torch.split(index, batch_size)]
    target = torch.cat([batch["y"].cpu() for batch in batches]).numpy()
    return WindowForecasts(
        prediction=np.full(target.shape, np.nan, dtype=np.float32),
        target=target,
        last_value=torch.cat([batch["x"][:, -1, -1].cpu() for batch in batches]).numpy(),
        series_index=torch.cat([batch["series_id"].cpu() - 1 for batch in batches]).numpy(),
        target_row=torch.cat([batch["target_row"].cpu() for batch in batches]).numpy(),
    )


def evaluate_baselines(
    datamodule: ForecastDataModule, split: str = "test", evaluation: Mapping[str, Any] | None = None
) -> SplitScores:
    """The baselines alone on every window of ``split`` (no model needed): ``baseline/...`` keys."""
    options = EvaluationOptions.from_config(evaluation)
    datamodule.setup("test")
    windows = datamodule.windows[split]
    forecasts = observed_windows(windows)
    baselines, settings = baseline_forecasts(forecasts, datamodule, windows, None, options)
    scores = score_models(forecasts, datamodule, split, baselines, include_model=False)
    scores.metrics.update(settings)
    return scores


def evaluate_windows(
    net: nn.Module,
    datamodule: ForecastDataModule,
    windows: Windows,
    prefix: str,
    index: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    options: EvaluationOptions | None = None,
    calibration: WindowForecasts | None = None,
) -> tuple[SplitScores, WindowForecasts, dict[str, np.ndarray]]:
    """Forecast the windows ``index`` (default all) of ``windows`` with the model and the baselines; score.

    With ``options.interval_levels``, the forecasts get conformal intervals calibrated on
    ``calibration`` (the model's forecasts of the validation windows; computed when not given) and the
    scores their coverage and width.

    Returns
    -------
    tuple
        ``(scores, the model's forecasts, {baseline: [N, H] scaled forecasts})``.
    """
    options = options or EvaluationOptions()
    datamodule.setup("test")
    forecasts = predict_windows(net, windows, datamodule.eval_batch_size, device, index)
    baselines, settings = baseline_forecasts(forecasts, datamodule, windows, index, options)
    scores = score_models(forecasts, datamodule, prefix, baselines)
    scores.metrics.update(settings)
    if options.interval_levels:
        if calibration is None:
            calibration = predict_windows(net, datamodule.windows["val"], datamodule.eval_batch_size, device)
        intervals = ConformalIntervals.calibrate(
            calibration,
            options.interval_levels,
            options.intervals_per_series,
            datamodule.num_series,
            skip_uncalibrated=True,
        )
        forecasts = intervals.apply(forecasts)
        scores.metrics.update(interval_metrics(forecasts, datamodule.inverse_values, prefix))
    return scores, forecasts, baselines


def print_summary(metrics: dict[str, Any], path: Path) -> None:
    """The headline numbers on the console (per-step keys stay in ``path``): one line per model."""
    groups: dict[str, list[str]] = {}
    for key, value in sorted(metrics.items()):
        if "@" in key or not isinstance(value, int | float) or "/" not in key:
            continue
        model, metric = key.rsplit("/", 1)
        groups.setdefault(model, []).append(f"{metric} {value:.4g}")
    for model, values in groups.items():
        print(f"{model}: {', '.join(values)}")
    print(f"all metrics: {path}")
