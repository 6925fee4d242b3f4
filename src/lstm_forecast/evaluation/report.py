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

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.windows import Windows, index_chunks
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.baselines import (
    DEFAULT_RIDGE_ALPHAS,
    RidgeBaseline,
    default_seasonal_period,
    persistence,
    seasonal_naive,
)
from lstm_forecast.evaluation.intervals import SeriesCoverage, check_interval_levels, interval_metrics
from lstm_forecast.evaluation.metrics import METRIC_NAMES, PER_STEP_KEYS, ErrorTotals, ForecastErrors
from lstm_forecast.evaluation.rolling import check_calibration
from lstm_forecast.evaluation.window_forecasts import WindowForecasts
from lstm_forecast.files import write_atomic

BASELINES = ("persistence", "seasonal_naive", "ridge")
MODEL = "model"  # the network's name in the CSV tables
# Windows forecast and scored at a time: a few MiB of float64 error terms per metric, whatever the
# number of windows (peak memory grows with the series and this chunk, never with the split).
SCORE_CHUNK_WINDOWS = 1 << 14


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
    calibration : str
        ``split`` (the validation residuals for every window) or ``rolling`` (each series' most recent
        residuals observed before the window's origin; :mod:`~lstm_forecast.evaluation.rolling`).
    calibration_windows : int
        Residual windows per series a rolling calibration keeps.
    adaptive_step : float
        Adaptive conformal inference's step for each series' level (0: off).
    """

    # Equal to conf/evaluation/default.yaml (tests/test_evaluation_settings.py compares them).
    baselines: tuple[str, ...] = BASELINES
    seasonal_period: int | None = None
    ridge_alphas: tuple[float, ...] = DEFAULT_RIDGE_ALPHAS
    tables: bool = True
    interval_levels: tuple[float, ...] = (0.8, 0.95)
    intervals_per_series: bool = True
    calibration: str = "rolling"
    calibration_windows: int = 100
    adaptive_step: float = 0.005

    @classmethod
    def from_config(
        cls, node: Mapping[str, Any] | None, base: EvaluationOptions | None = None
    ) -> EvaluationOptions:
        """The options of an ``evaluation`` node: its keys over ``base`` (default: these defaults).

        ``seasonal_period: auto`` means None (from the data's sampling interval).
        """
        if isinstance(node, DictConfig):
            node = OmegaConf.to_container(node, resolve=True)
        node = dict(node or {})
        unknown = sorted(set(node) - set(cls.__dataclass_fields__))
        if unknown:
            raise UserError(
                f"unknown evaluation option(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}"
            )
        if node.get("seasonal_period") == "auto":
            node["seasonal_period"] = None
        given = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in node.items()}
        options = replace(base or cls(), **given)
        levels = check_interval_levels(options.interval_levels, "evaluation.interval_levels")
        options = replace(options, interval_levels=levels)
        check_calibration(options)
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
    wide tables and ragged long panels alike; a chunk of windows at a time, reading two values each."""
    datamodule.setup("test")
    windows = datamodule.windows["train"]
    total = np.zeros(datamodule.num_series)
    count = np.zeros(datamodule.num_series, dtype=np.int64)
    for chunk in index_chunks(len(windows)):
        observed = windows.observed(chunk)
        series_index = (observed["series_id"] - 1).cpu().numpy()
        series = series_index[:, None]
        change = np.abs(
            datamodule.inverse_values(observed["y"][:, :1].cpu().numpy(), series)
            - datamodule.inverse_values(observed["last_value"][:, None].cpu().numpy(), series)
        )[:, 0]
        total += np.bincount(series_index, weights=change, minlength=datamodule.num_series)
        count += np.bincount(series_index, minlength=datamodule.num_series)
    scale = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return np.where(scale > 0, scale, 1.0)


def seasonal_period_of(datamodule: ForecastDataModule, options: EvaluationOptions) -> int:
    if options.seasonal_period is None:
        # One timeline says the sampling interval: the longest series' (all of a wide file's share it),
        # not the millions of rows of a big panel.
        frame = datamodule.load_frame()
        longest = int(np.argmax(frame.lengths))
        return default_seasonal_period(frame.timestamps[frame.offsets[longest] : frame.offsets[longest + 1]])
    return options.seasonal_period


def fit_ridge(datamodule: ForecastDataModule, options: EvaluationOptions) -> RidgeBaseline | None:
    """The ridge baseline, fitted on the training windows (alpha chosen on validation), when asked for."""
    if "ridge" not in options.baselines:
        return None
    datamodule.setup("test")
    return RidgeBaseline.fit(datamodule.windows["train"], datamodule.windows["val"], options.ridge_alphas)


def baseline_forecasts(
    forecasts: WindowForecasts,
    datamodule: ForecastDataModule,
    windows: Windows,
    index: torch.Tensor | None = None,
    options: EvaluationOptions | None = None,
    ridge: RidgeBaseline | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The baselines' forecasts of the windows ``index`` of ``windows`` (those of ``forecasts``).

    ``ridge``: the fitted ridge baseline (fitted here when asked for and not given).

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
        ridge = ridge or fit_ridge(datamodule, options)
        predictions["ridge"] = ridge.predict(windows, index)
        settings["baseline/ridge/alpha"] = ridge.alpha
    return predictions, settings


class SplitScorer:
    """The metrics of the model and its baselines on a set of windows, added up chunk by chunk.

    Holds ``O(S + H)`` sums per model (:class:`~lstm_forecast.evaluation.metrics.ErrorTotals`) and the
    MASE scale, never the windows' forecasts: :meth:`add` each chunk of forecasts (with their
    baselines' and, once calibrated, their intervals), then :meth:`scores`.

    Parameters
    ----------
    datamodule : ForecastDataModule
        The data the windows come from (its scalers invert the forecasts).
    prefix : str
        The model's key prefix, ``test``, ``val`` or ``backtest``.
    include_model : bool
        Score the model (False: the baselines alone, ``baseline/<name>/...``).
    """

    def __init__(self, datamodule: ForecastDataModule, prefix: str, include_model: bool = True) -> None:
        self.datamodule = datamodule
        self.prefix = prefix
        self.include_model = include_model
        self.mase_scale = training_naive_scale(datamodule)
        self.totals: dict[str, ErrorTotals] = {}
        self.interval_sums: dict[str, float] = {}
        self.series_coverage = SeriesCoverage(datamodule.num_series)
        self.num_targets = 0

    def add(
        self,
        forecasts: WindowForecasts,
        baselines: Mapping[str, np.ndarray],
        datamodule: ForecastDataModule | None = None,
    ) -> None:
        """Add a chunk of windows: the model's ``forecasts`` (with targets) and each baseline's ``[C, H]``.

        ``datamodule``: the data whose scalers the chunk is in (a refitted model's, in a backtest with
        ``refit_every``); default the scorer's own.
        """
        assert forecasts.target is not None, "scoring needs windows with targets"
        scored = {MODEL: forecasts.prediction} if self.include_model else {}
        datamodule = datamodule or self.datamodule
        for name, prediction in {**scored, **baselines}.items():
            errors = ForecastErrors.compute(
                prediction,
                forecasts.target,
                forecasts.series_index,
                datamodule.inverse_values,
                datamodule.z_normalise,
                self.mase_scale,
            )
            if name not in self.totals:
                self.totals[name] = ErrorTotals.empty(datamodule.num_series, forecasts.target.shape[1])
            self.totals[name].add(errors)
        if self.include_model and (forecasts.intervals or forecasts.quantiles is not None):
            # Means of the chunk weighted by its windows: every interval metric is a mean over [C, H].
            chunk = interval_metrics(forecasts, datamodule.inverse_values, self.prefix)
            for key, value in chunk.items():
                self.interval_sums[key] = self.interval_sums.get(key, 0.0) + value * len(forecasts.target)
            self.series_coverage.add(forecasts, datamodule.inverse_values)
        self.num_targets += int(forecasts.target.size)

    def scores(self) -> SplitScores:
        """The metrics of every window added so far, with their per-step and per-series tables."""
        metrics: dict[str, float] = {}
        step_tables, series_tables = [], []
        windows = 0
        for name, totals in self.totals.items():
            windows = totals.num_windows
            key = self.prefix if name == MODEL else f"baseline/{name}"
            metrics.update({f"{key}/{metric}": value for metric, value in totals.overall().items()})
            per_step = totals.per_step()
            for metric in PER_STEP_KEYS:
                metrics.update({f"{key}/{metric}@{h + 1}": float(v) for h, v in enumerate(per_step[metric])})
            steps = pd.DataFrame(per_step, columns=list(METRIC_NAMES))
            steps.insert(0, "step", np.arange(1, len(steps) + 1))
            steps.insert(0, "model", name)
            step_tables.append(steps)
            series = pd.DataFrame(totals.per_series(), columns=list(METRIC_NAMES))
            if name == MODEL:  # each series' interval coverage and width beside its errors
                series = series.assign(**self.series_coverage.table())
            series.insert(0, "series", self.datamodule.series_names)
            series.insert(0, "model", name)
            # Only the series scored: one left out of the split (short, unscaled) has no row.
            series_tables.append(series[totals.series_windows > 0])
        metrics.update({key: total / windows for key, total in self.interval_sums.items()})
        metrics.update(self.series_coverage.metrics(self.prefix))
        metrics[f"{self.prefix}/num_targets"] = self.num_targets
        return SplitScores(
            metrics=metrics,
            per_step=pd.concat(step_tables, ignore_index=True) if step_tables else pd.DataFrame(),
            per_series=pd.concat(series_tables, ignore_index=True) if series_tables else pd.DataFrame(),
        )


def score_models(
    forecasts: WindowForecasts,
    datamodule: ForecastDataModule,
    prefix: str,
    baselines: Mapping[str, np.ndarray] | None = None,
    include_model: bool = True,
) -> SplitScores:
    """Metrics of the model (``{prefix}/...``, unless ``include_model`` is False) and of each baseline
    (``baseline/<name>/...``) on forecasts held in memory (:class:`SplitScorer` for one chunk)."""
    baselines = dict(baselines) if baselines is not None else {"persistence": persistence(forecasts)}
    scorer = SplitScorer(datamodule, prefix, include_model)
    scorer.add(replace(forecasts, intervals={}, quantiles=None), baselines)
    return scorer.scores()


def observed_windows(
    windows: Windows, index: torch.Tensor | None = None, batch_size: int = SCORE_CHUNK_WINDOWS
) -> WindowForecasts:
    """What the baselines need of windows ``index`` (default all) without a model: targets, last
    values, series and rows; ``prediction`` is NaN (score with ``include_model=False``)."""
    chunks = index_chunks(len(windows), batch_size) if index is None else torch.split(index, batch_size)
    batches = [windows.observed(chunk) for chunk in chunks]
    target = torch.cat([batch["y"].cpu() for batch in batches]).numpy()
    return WindowForecasts(
        prediction=np.full(target.shape, np.nan, dtype=np.float32),
        target=target,
        last_value=torch.cat([batch["last_value"].cpu() for batch in batches]).numpy(),
        series_index=torch.cat([batch["series_id"].cpu() - 1 for batch in batches]).numpy(),
        target_row=torch.cat([batch["target_row"].cpu() for batch in batches]).numpy(),
    )


def evaluate_baselines(
    datamodule: ForecastDataModule, split: str = "test", evaluation: Mapping[str, Any] | None = None
) -> SplitScores:
    """The baselines alone on every window of ``split`` (no model needed): ``baseline/...`` keys,
    scored a chunk of windows at a time."""
    options = EvaluationOptions.from_config(evaluation)
    datamodule.setup("test")
    windows = datamodule.windows[split]
    scorer = SplitScorer(datamodule, split, include_model=False)
    ridge = fit_ridge(datamodule, options)
    settings: dict[str, float] = {}
    for chunk in index_chunks(len(windows), SCORE_CHUNK_WINDOWS):
        forecasts = observed_windows(windows, chunk)
        baselines, settings = baseline_forecasts(forecasts, datamodule, windows, chunk, options, ridge)
        scorer.add(forecasts, baselines)
    scores = scorer.scores()
    scores.metrics.update(settings)
    return scores


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
