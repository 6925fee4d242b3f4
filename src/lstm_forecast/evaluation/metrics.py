"""Forecast metrics in scaled units, original units and z-normalised units (the published convention).

Every metric is a mean of a per-element quantity over the forecasts it covers, so the same errors
reduce to one number (averaged over windows and horizon steps), to one number per horizon step, or to
one number per series. RMSE is the square root of the mean squared error of the group.

Metrics
-------
``mse``, ``mae``
    In the network's scaled units ([-1, 1] min-max of the training rows).
``mse_z``, ``mae_z``
    On values z-normalised with each series' training mean and standard deviation: the numbers the
    ETTh1 literature publishes.
``mae_orig``, ``rmse_orig``
    In the data's original units.
``smape``
    Symmetric MAPE in percent, ``200 |F - A| / (|F| + |A|)``; 0 where forecast and actual are both 0.
``mase``
    Original-unit absolute error divided by the series' in-sample one-step naive MAE on the training
    rows (Hyndman and Koehler, 2006); 1 means "as good as persistence was on the training data".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ToOriginal = Callable[[np.ndarray, np.ndarray], np.ndarray]

METRIC_NAMES = ("mse", "mae", "mse_z", "mae_z", "mae_orig", "rmse_orig", "smape", "mase")
# Metrics published per horizon step in metrics.json (every metric per step goes to the CSV table).
PER_STEP_KEYS = ("mse_z", "mae_z")


@dataclass(frozen=True)
class ForecastErrors:
    """Per-element error terms of forecasts ``[N, H]``, ready to be averaged over any grouping.

    Attributes
    ----------
    terms : dict of str to ndarray
        ``[N, H]`` float64 per metric: the quantity whose mean is the metric (the squared error for
        ``rmse_orig``, whose square root is taken after averaging).
    series_index : ndarray
        ``[N]`` series of each window, from 0.
    """

    terms: dict[str, np.ndarray]
    series_index: np.ndarray

    @classmethod
    def compute(
        cls,
        prediction: np.ndarray,
        target: np.ndarray,
        series_index: np.ndarray,
        to_original: ToOriginal,
        to_z: ToOriginal,
        mase_scale: np.ndarray | None = None,
    ) -> ForecastErrors:
        """Error terms of ``prediction`` against ``target``.

        Parameters
        ----------
        prediction, target : ndarray
            ``[N, H]`` scaled values.
        series_index : ndarray
            ``[N]`` series of each window, from 0.
        to_original : callable
            ``(scaled [N, H], series [N, 1]) -> original units``.
        to_z : callable
            ``(original [N, H], series [N, 1]) -> z-normalised with training mean and std``.
        mase_scale : ndarray, optional
            ``[S]`` MASE denominators (``report.training_naive_scale``); 1 for every series when omitted.
        """
        series_index = np.asarray(series_index)
        series = series_index[:, None]  # [N, 1] broadcasts over the horizon
        prediction = np.asarray(prediction, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        error = prediction - target
        pred_orig, target_orig = to_original(prediction, series), to_original(target, series)
        error_orig = pred_orig - target_orig
        error_z = to_z(pred_orig, series) - to_z(target_orig, series)
        magnitude = np.abs(pred_orig) + np.abs(target_orig)
        smape = np.divide(
            200.0 * np.abs(error_orig), magnitude, out=np.zeros_like(magnitude), where=magnitude > 0
        )
        scale = np.ones(int(series_index.max(initial=0)) + 1) if mase_scale is None else mase_scale
        terms = {
            "mse": error**2,
            "mae": np.abs(error),
            "mse_z": error_z**2,
            "mae_z": np.abs(error_z),
            "mae_orig": np.abs(error_orig),
            "rmse_orig": error_orig**2,
            "smape": smape,
            "mase": np.abs(error_orig) / scale[series],
        }
        return cls(terms=terms, series_index=series_index)

    def totals(self, num_series: int) -> ErrorTotals:
        """These errors' sums, to be added to those of other windows (:class:`ErrorTotals`)."""
        totals = ErrorTotals.empty(num_series, next(iter(self.terms.values())).shape[1], list(self.terms))
        totals.add(self)
        return totals

    def overall(self) -> dict[str, float]:
        """Each metric averaged over every window and horizon step."""
        return self.totals(int(self.series_index.max(initial=-1)) + 1).overall()

    def per_step(self) -> dict[str, np.ndarray]:
        """Each metric per horizon step: ``[H]`` arrays (step ``h`` at index ``h - 1``)."""
        return self.totals(int(self.series_index.max(initial=-1)) + 1).per_step()

    def per_series(self, num_series: int) -> dict[str, np.ndarray]:
        """Each metric per series: ``[S]`` arrays (NaN for a series without windows)."""
        return self.totals(num_series).per_series()


def _finish(means: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Means of the error terms -> metrics (RMSE is the root of the mean squared error)."""
    return {name: np.sqrt(value) if name == "rmse_orig" else value for name, value in means.items()}


@dataclass
class ErrorTotals:
    """Sums of error terms per horizon step and per series, added up chunk by chunk of windows.

    What the metrics of any number of windows need in ``O(S + H)`` memory: every metric is a mean of
    its terms, so the overall, per-step and per-series means of all windows follow from these sums
    (float64) and the window counts, exactly as if the terms of every window had been held at once.

    Attributes
    ----------
    step_sums : dict of str to ndarray
        ``[H]`` sum of each metric's terms at each horizon step.
    series_sums : dict of str to ndarray
        ``[S]`` sum of each metric's terms over each series' windows and steps.
    series_windows : ndarray
        ``[S]`` windows of each series.
    """

    step_sums: dict[str, np.ndarray]
    series_sums: dict[str, np.ndarray]
    series_windows: np.ndarray

    @classmethod
    def empty(
        cls, num_series: int, horizon: int, names: list[str] | tuple[str, ...] = METRIC_NAMES
    ) -> ErrorTotals:
        return cls(
            step_sums={name: np.zeros(horizon) for name in names},
            series_sums={name: np.zeros(num_series) for name in names},
            series_windows=np.zeros(num_series, dtype=np.int64),
        )

    @property
    def num_windows(self) -> int:
        return int(self.series_windows.sum())

    def add(self, errors: ForecastErrors) -> None:
        """Add the terms of ``errors`` (a chunk of windows)."""
        num_series = len(self.series_windows)
        self.series_windows += np.bincount(errors.series_index, minlength=num_series)
        for name, term in errors.terms.items():
            self.step_sums[name] += term.sum(axis=0)
            self.series_sums[name] += np.bincount(
                errors.series_index, weights=term.sum(axis=1), minlength=num_series
            )

    def overall(self) -> dict[str, float]:
        """Each metric averaged over every window and horizon step (NaN without windows)."""
        count = self.num_windows * len(next(iter(self.step_sums.values())))
        with np.errstate(invalid="ignore", divide="ignore"):
            means = {name: np.float64(total.sum()) / count for name, total in self.step_sums.items()}
        return {name: float(value) for name, value in _finish(means).items()}

    def per_step(self) -> dict[str, np.ndarray]:
        """Each metric per horizon step: ``[H]`` arrays (step ``h`` at index ``h - 1``)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return _finish({name: total / self.num_windows for name, total in self.step_sums.items()})

    def per_series(self) -> dict[str, np.ndarray]:
        """Each metric per series: ``[S]`` arrays (NaN for a series without windows)."""
        horizon = len(next(iter(self.step_sums.values())))
        counts = self.series_windows.astype(np.float64) * horizon
        with np.errstate(invalid="ignore", divide="ignore"):
            return _finish({name: total / counts for name, total in self.series_sums.items()})


def forecast_metrics(
    prediction: np.ndarray,
    target: np.ndarray,
    series_index: np.ndarray,
    to_original: ToOriginal,
    to_z: ToOriginal,
    mase_scale: np.ndarray | None = None,
) -> dict[str, float]:
    """Average errors over every window and horizon step (arguments as :meth:`ForecastErrors.compute`):
    ``mse``, ``mae`` (scaled), ``mse_z``, ``mae_z``, ``mae_orig``, ``rmse_orig``, ``smape``, ``mase``."""
    return ForecastErrors.compute(prediction, target, series_index, to_original, to_z, mase_scale).overall()
