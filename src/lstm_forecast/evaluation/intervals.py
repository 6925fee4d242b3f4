"""Prediction intervals for any trained model, calibrated on the validation windows (conformal).

Point models get **split conformal** intervals: the absolute validation residuals ``|y - f|`` of each
horizon step give a margin ``m`` per step and level, and the interval is ``f -+ m``. Quantile models
get **conformalised quantile regression** (CQR, Romano et al. 2019): the model's own band
``[q_lo, q_hi]`` (the levels ``(1 - c) / 2`` and ``(1 + c) / 2`` when the model has them, else its
outermost pair) is widened or narrowed by the margin of the scores ``max(q_lo - y, y - q_hi)``, so the
band keeps the model's shape (wide where the model is unsure) with calibrated coverage.

The margin of level ``c`` from ``n`` scores is the ``ceil((n + 1) c)``-th smallest: coverage at least
``c`` on exchangeable new windows. Scores are in the scaled units, so series of very different sizes
pool into one margin per step (scaled per series, an interval is as wide relative to each series'
training range); with ``per_series`` each series gets its own margins, falling back to the pooled one
where it has too few validation windows. Intervals never exclude the point forecast (a CQR band that
a negative margin would shrink past it is clipped to it, which can only add coverage).

Calibration is done where the intervals are needed, from the validation split of the data being
forecast, so every checkpoint (also those written before intervals existed) gets them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.window_forecasts import WindowForecasts
from lstm_forecast.models.quantiles import pinball_loss

log = logging.getLogger(__name__)


def level_label(level: float) -> str:
    """``0.8 -> "80"``, ``0.975 -> "97.5"``: the level in percent, as in ``lo-80`` and ``coverage@80``."""
    return f"{round(level * 100, 6):g}"


def interval_columns(level: float) -> tuple[str, str]:
    """The forecast table's columns of a level (Nixtla's convention): ``("lo-80", "hi-80")``."""
    return f"lo-{level_label(level)}", f"hi-{level_label(level)}"


def quantile_column(level: float) -> str:
    """The forecast table's column of a model quantile: ``0.1 -> "q0.1"``."""
    return f"q{level:g}"


def check_interval_levels(levels: object, key: str) -> tuple[float, ...]:
    """``levels`` (the config key ``key``) as sorted distinct floats in (0, 1); empty means none."""
    if levels is None:
        return ()
    if not isinstance(levels, Sequence) or isinstance(levels, str):
        raise UserError(f"{key} must be a list of coverage levels in (0, 1), e.g. [0.8,0.95]; got {levels!r}")
    bad = [c for c in levels if isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0 < c < 1]
    if bad:
        raise UserError(
            f"{key} must hold coverage levels strictly between 0 and 1, e.g. [0.8,0.95]; {bad} are not"
        )
    if len(set(levels)) != len(levels):
        raise UserError(f"{key} repeats a level ({list(levels)}); give each level once")
    return tuple(sorted(float(c) for c in levels))


def conformal_margin(scores: np.ndarray, level: float) -> np.ndarray:
    """The ``ceil((n + 1) level)``-th smallest of the ``n`` scores ``[n, H]`` of each step: ``[H]``;
    NaN when ``n`` is too small for the level (the interval would be unbounded)."""
    count = scores.shape[0]
    rank = math.ceil((count + 1) * level - 1e-9)  # the tolerance keeps (n + 1) * level exact for n=19, 95 %
    if rank > count:
        return np.full(scores.shape[1], np.nan)
    return np.partition(scores, rank - 1, axis=0)[rank - 1]


def band_of(level: float, quantile_levels: tuple[float, ...]) -> tuple[int, int]:
    """Positions of the model quantiles that bound the CQR band of coverage ``level``: the pair
    ``(1 - level) / 2, (1 + level) / 2`` when the model has both, else the outermost pair."""
    lower, upper = round((1 - level) / 2, 9), round((1 + level) / 2, 9)
    rounded = [round(q, 9) for q in quantile_levels]
    if lower in rounded and upper in rounded:
        return rounded.index(lower), rounded.index(upper)
    return 0, len(quantile_levels) - 1


@dataclass(frozen=True)
class ConformalIntervals:
    """Margins per level and horizon step, calibrated on forecasts with targets.

    Attributes
    ----------
    levels : tuple of float
        Coverage levels ``L``.
    margins : ndarray
        ``[L, H]`` pooled margins (scaled units).
    series_margins : ndarray or None
        ``[L, S, H]`` per-series margins, NaN where a series has too few windows (the pooled margin is
        used there); None unless calibrated per series.
    bands : tuple
        Per level, the positions of the model quantiles it widens (CQR); empty for split conformal.
    """

    levels: tuple[float, ...]
    margins: np.ndarray
    series_margins: np.ndarray | None
    bands: tuple[tuple[int, int], ...]

    @classmethod
    def calibrate(
        cls,
        calibration: WindowForecasts,
        levels: Sequence[float],
        per_series: bool = False,
        num_series: int = 0,
        skip_uncalibrated: bool = False,
    ) -> ConformalIntervals:
        """Margins from the forecasts ``calibration`` (validation windows, targets known).

        Too few windows for a level raise a :class:`UserError`, or with ``skip_uncalibrated`` leave
        that level out with a warning (a training run on a short validation split still finishes).
        """
        levels = tuple(levels)
        if calibration.target is None:
            raise ValueError("calibration needs forecasts with targets")
        cqr = calibration.quantiles is not None
        bands = tuple(band_of(level, calibration.quantile_levels) for level in levels) if cqr else ()
        scores = [cls.scores(calibration, bands[i] if cqr else None) for i in range(len(levels))]  # [N, H]
        margins = np.stack(
            [conformal_margin(score, level) for score, level in zip(scores, levels, strict=True)]
        )
        if np.isnan(margins).any():
            needed = max(math.ceil(level / (1 - level)) for level in levels)
            problem = (
                f"{len(scores[0])} validation windows are too few to calibrate {level_label(max(levels))}% "
                f"intervals (at least {needed} are needed)"
            )
            if not skip_uncalibrated:
                raise UserError(f"{problem}; give the validation split more rows or ask for lower levels")
            log.warning("%s: those levels are left out", problem)
            kept = [i for i in range(len(levels)) if not np.isnan(margins[i]).any()]
            levels, margins = tuple(levels[i] for i in kept), margins[kept]
            scores, bands = [scores[i] for i in kept], tuple(bands[i] for i in kept) if cqr else ()
        series_margins = None
        if per_series:
            series_margins = np.full((len(levels), num_series, margins.shape[1]), np.nan)
            # Windows grouped by series with one sort (not one scan of every window per series).
            order = np.argsort(calibration.series_index, kind="stable")
            series, starts = np.unique(calibration.series_index[order], return_index=True)
            groups = np.split(order, starts[1:]) if len(order) else []
            for one, rows in zip(series, groups, strict=True):
                for i, level in enumerate(levels):
                    series_margins[i, one] = conformal_margin(scores[i][rows], level)
        return cls(levels, margins, series_margins, bands)

    @staticmethod
    def scores(forecasts: WindowForecasts, band: tuple[int, int] | None) -> np.ndarray:
        """Conformity scores ``[N, H]``: ``|y - f|``, or ``max(q_lo - y, y - q_hi)`` for a CQR band."""
        target = forecasts.target.astype(np.float64)
        if band is None:
            return np.abs(target - forecasts.prediction)
        return np.maximum(
            forecasts.quantiles[..., band[0]] - target, target - forecasts.quantiles[..., band[1]]
        )

    def apply(self, forecasts: WindowForecasts) -> WindowForecasts:
        """``forecasts`` with ``intervals`` set. Steps past the calibrated horizon (recursive forecasts
        beyond what the model emits at once) get NaN bounds: no residuals were seen for them."""
        count, steps = forecasts.prediction.shape
        known = min(steps, self.margins.shape[1])
        intervals = {}
        for i, level in enumerate(self.levels):
            margin = np.full((count, steps), np.nan)
            margin[:, :known] = self.margins[i, :known]
            if self.series_margins is not None:
                own = self.series_margins[i][forecasts.series_index, :known]  # [N, known]
                margin[:, :known] = np.where(np.isnan(own), margin[:, :known], own)
            if self.bands:
                lo_index, hi_index = self.bands[i]
                lower = forecasts.quantiles[..., lo_index] - margin
                upper = forecasts.quantiles[..., hi_index] + margin
            else:
                lower, upper = forecasts.prediction - margin, forecasts.prediction + margin
            # np.minimum / np.maximum keep the NaN of uncalibrated steps.
            intervals[level] = (
                np.minimum(lower, forecasts.prediction),
                np.maximum(upper, forecasts.prediction),
            )
        return dataclasses.replace(forecasts, intervals=intervals)


def interval_metrics(forecasts: WindowForecasts, to_original, prefix: str) -> dict[str, float]:
    """``{prefix}/coverage@80`` (share of targets inside the interval), ``{prefix}/width@80`` (mean
    width in original units) per level, and ``{prefix}/pinball`` (mean pinball loss over the model's
    quantile levels, scaled units) for a quantile model.

    ``to_original(scaled [N, H], series [N, 1])`` inverts the scaling.
    """
    series = forecasts.series_index[:, None]  # [N, 1]
    target = to_original(forecasts.target, series)  # [N, H]
    metrics: dict[str, float] = {}
    for level, (lo, hi) in forecasts.intervals.items():
        lower, upper = to_original(lo, series), to_original(hi, series)  # [N, H] each
        label = level_label(level)
        metrics[f"{prefix}/coverage@{label}"] = float(np.mean((lower <= target) & (target <= upper)))
        metrics[f"{prefix}/width@{label}"] = float(np.mean(upper - lower))
    if forecasts.quantiles is not None:
        loss = pinball_loss(
            torch.from_numpy(forecasts.quantiles).double(),
            torch.from_numpy(forecasts.target).double(),
            forecasts.quantile_levels,
        )
        metrics[f"{prefix}/pinball"] = float(loss)
    return metrics


WORST_SHARE = 0.1  # the share of series whose coverage ``coverage@80_worst10`` averages


class SeriesCoverage:
    """Coverage and width of each series' intervals, added up chunk by chunk.

    :meth:`metrics` gives ``{prefix}/coverage@80_worst10``: the mean coverage of the worst 10 % of the
    series with targets (at least one series), where a pooled coverage hides a series that is missed
    often; :meth:`table` each series' ``coverage@80`` and ``width@80`` (original units).
    """

    def __init__(self, num_series: int) -> None:
        self.num_series = num_series
        self.inside: dict[float, np.ndarray] = {}
        self.width: dict[float, np.ndarray] = {}
        self.targets = np.zeros(num_series)

    def add(self, forecasts: WindowForecasts, to_original) -> None:
        """Add a chunk of forecasts with intervals (``to_original`` as :func:`interval_metrics`)."""
        series = forecasts.series_index[:, None]  # [N, 1]
        target = to_original(forecasts.target, series)  # [N, H]
        steps = target.shape[1]
        for level, (lo, hi) in forecasts.intervals.items():
            lower, upper = to_original(lo, series), to_original(hi, series)  # [N, H] each
            inside = ((lower <= target) & (target <= upper)).sum(axis=1)  # [N]
            width = (upper - lower).sum(axis=1)  # [N]
            for totals, values in ((self.inside, inside), (self.width, width)):
                totals.setdefault(level, np.zeros(self.num_series))
                totals[level] += np.bincount(forecasts.series_index, values, self.num_series)
        self.targets += np.bincount(forecasts.series_index, minlength=self.num_series) * steps

    def table(self) -> dict[str, np.ndarray]:
        """``{"coverage@80": [S], "width@80": [S], ...}``: NaN for series without targets."""
        count = np.where(self.targets > 0, self.targets, np.nan)
        columns = {}
        for level in self.inside:
            columns[f"coverage@{level_label(level)}"] = self.inside[level] / count
            columns[f"width@{level_label(level)}"] = self.width[level] / count
        return columns

    def metrics(self, prefix: str) -> dict[str, float]:
        """``{prefix}/coverage@80_worst10`` per level."""
        metrics = {}
        scored = self.targets > 0
        worst = max(1, math.ceil(WORST_SHARE * int(scored.sum())))
        for level, inside in self.inside.items():
            coverage = np.sort(inside[scored] / self.targets[scored])
            label = f"{prefix}/coverage@{level_label(level)}_worst{round(WORST_SHARE * 100)}"
            metrics[label] = float(coverage[:worst].mean())
        return metrics


COVERAGE_SPAN = 48  # windows in the figures' rolling coverage line


def rolling_coverage(inside: np.ndarray, span: int = COVERAGE_SPAN) -> np.ndarray:
    """``[N]`` share of the last ``span`` windows (fewer at the start) whose target was inside the
    interval, from ``inside [N]`` bool in time order: coverage over time, for the figures."""
    counts = np.cumsum(np.concatenate([[0], inside.astype(np.float64)]))
    ends = np.arange(1, len(inside) + 1)
    starts = np.maximum(ends - span, 0)
    return (counts[ends] - counts[starts]) / (ends - starts)
