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

    @staticmethod
    def _finish(means: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.sqrt(value) if name == "rmse_orig" else value for name, value in means.items()}

    def overall(self) -> dict[str, float]:
        """Each metric averaged over every window and horizon step."""
        means = {name: np.mean(term) for name, term in self.terms.items()}
        return {name: float(value) for name, value in self._finish(means).items()}

    def per_step(self) -> dict[str, np.ndarray]:
        """Each metric per horizon step: ``[H]`` arrays (step ``h`` at index ``h - 1``)."""
        return self._finish({name: term.mean(axis=0) for name, term in self.terms.items()})

    def per_series(self, num_series: int) -> dict[str, np.ndarray]:
        """Each metric per series: ``[S]`` arrays (NaN for a series without windows)."""
        counts = np.bincount(self.series_index, minlength=num_series).astype(np.float64)
        horizon = next(iter(self.terms.values())).shape[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = {
                name: np.bincount(self.series_index, weights=term.sum(axis=1), minlength=num_series)
                / (counts * horizon)
                for name, term in self.terms.items()
            }
        return self._finish(means)


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
