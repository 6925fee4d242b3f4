"""Conformal intervals calibrated on each series' most recent residuals, updated as actuals arrive.

Split conformal (:class:`~lstm_forecast.evaluation.intervals.ConformalIntervals`) trusts the validation
residuals for every later window; when errors drift, its coverage drifts with them. Here each window
is calibrated on the scores (``|y - f|``, or CQR's ``max(q_lo - y, y - q_hi)``) of the most recent
``calibration_windows`` windows of its own series whose targets were all observed before its origin,
the validation windows seeding the start (rolling calibration, as darts' ``cal_length``). With
``adaptive_step`` the miscoverage level of each series, level and horizon step follows adaptive
conformal inference (Gibbs and Candes 2021): ``alpha <- alpha + step * (1 - c - miss)`` after each
observed window, so a run of misses widens the next intervals.

Windows arrive a chunk at a time (:meth:`RollingIntervals.apply`), those of one series in time order;
the state is a ring of at most ``calibration_windows + H`` scores per series (the newest ``H - 1``
are not observed yet at the next origin), never the windows scored. A window whose series has too few
usable scores for a level gets the pooled validation margin (split conformal).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.intervals import ConformalIntervals
from lstm_forecast.evaluation.window_forecasts import WindowForecasts

CALIBRATIONS = ("split", "rolling")  # evaluation.calibration
# Scores gathered at once while computing margins: bounds the temporary [windows, n, bands, H] block.
GATHER_ELEMENTS = 1 << 22


@dataclasses.dataclass
class _SeriesState:
    """One series' calibration state.

    ``ends [m]`` last target row of each kept window (increasing), ``scores [m, B, H]`` their scores
    per distinct band; ``pending_ends [P]`` and ``pending_updates [P, L, H]`` the level updates of
    scored windows not yet observed at the latest origin, ``done [L, H]`` the sum of those observed;
    ``scored``: windows of the series were scored; ``last``: the latest origin scored.
    """

    ends: np.ndarray
    scores: np.ndarray
    pending_ends: np.ndarray
    pending_updates: np.ndarray
    done: np.ndarray
    scored: bool = False
    last: int = -1


class RollingIntervals:
    """Rolling (and adaptive) conformal intervals: :meth:`apply` each chunk of windows in order.

    Parameters
    ----------
    split : ConformalIntervals
        The split-conformal calibration (its levels, CQR bands and pooled margins, the fallback).
    calibration : WindowForecasts
        Forecasts with targets that seed each series' scores (the validation windows).
    window : int or None
        Scores kept per series (``calibration_windows``); None: every seed score, and the scored
        windows never join them (split conformal, with ``step`` adapting the level).
    step : float
        Adaptive conformal inference's step (0: the nominal level throughout).
    """

    def __init__(
        self,
        split: ConformalIntervals,
        calibration: WindowForecasts,
        window: int | None,
        step: float,
    ) -> None:
        self.split, self.window, self.step = split, window, float(step)
        self.levels = split.levels
        self.horizon = split.margins.shape[1]
        bands = split.bands or (None,) * len(self.levels)
        self.distinct_bands = list(dict.fromkeys(bands))
        self.band_of_level = np.array([self.distinct_bands.index(band) for band in bands], dtype=np.int64)
        self.nominal = np.array(self.levels)  # [L]
        self.states: dict[int, _SeriesState] = {}
        self._seed(calibration)

    def _scores(self, forecasts: WindowForecasts) -> np.ndarray:
        """``[N, B, H]`` scores of every distinct band."""
        return np.stack([ConformalIntervals.scores(forecasts, band) for band in self.distinct_bands], axis=1)

    def _seed(self, calibration: WindowForecasts) -> None:
        """Each series' newest seed scores (series without any start empty, when first met)."""
        order = np.lexsort((calibration.target_row, calibration.series_index))
        series = calibration.series_index[order]
        ends = calibration.target_row[order].astype(np.int64) + self.horizon - 1
        scores = self._scores(calibration.subset(order)).astype(np.float32)
        present, starts = np.unique(series, return_index=True)
        bounds = [*starts[1:], len(series)]
        for one, first, stop in zip(present, starts, bounds, strict=True):
            if self.window is not None:
                first = max(first, stop - self.window - self.horizon)
            self.states[int(one)] = self._state(ends[first:stop], scores[first:stop])

    def _state(self, ends: np.ndarray, scores: np.ndarray) -> _SeriesState:
        levels = len(self.levels)
        return _SeriesState(
            ends=ends,
            scores=scores,
            pending_ends=np.empty(0, dtype=np.int64),
            pending_updates=np.empty((0, levels, self.horizon)),
            done=np.zeros((levels, self.horizon)),
        )

    def apply(self, forecasts: WindowForecasts) -> WindowForecasts:
        """``forecasts`` (the next chunk; each series' windows in time order, after those of earlier
        chunks) with ``intervals`` set, each window calibrated on scores observed before its origin.
        Windows with targets then join their series' scores (and update its level)."""
        count, steps = forecasts.prediction.shape
        known = min(steps, self.horizon)
        margins = np.full((len(self.levels), count, steps), np.nan)  # [L, N, H_forecast]
        order = np.argsort(forecasts.series_index, kind="stable")
        present, starts = np.unique(forecasts.series_index[order], return_index=True)
        for one, rows in zip(present, np.split(order, starts[1:]), strict=True):
            margins[:, rows, :known] = self._series_margins(int(one), forecasts, rows, known)
        return self._bounds(forecasts, margins)

    def _bounds(self, forecasts: WindowForecasts, margins: np.ndarray) -> WindowForecasts:
        """Intervals from margins ``[L, N, H]`` (NaN: the pooled split margin of that step)."""
        known = min(forecasts.prediction.shape[1], self.horizon)
        intervals = {}
        for i, level in enumerate(self.levels):
            margin = margins[i].copy()
            pooled = np.broadcast_to(self.split.margins[i, :known], margin[:, :known].shape)
            margin[:, :known] = np.where(np.isnan(margin[:, :known]), pooled, margin[:, :known])
            intervals[level] = self._interval(forecasts, margin, i)
        return dataclasses.replace(forecasts, intervals=intervals)

    def _interval(
        self, forecasts: WindowForecasts, margin: np.ndarray, i: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` of level ``i`` with ``margin`` (as split conformal: never excluding the point
        forecast)."""
        if self.split.bands:
            lo_index, hi_index = self.split.bands[i]
            lower = forecasts.quantiles[..., lo_index] - margin
            upper = forecasts.quantiles[..., hi_index] + margin
        else:
            lower, upper = forecasts.prediction - margin, forecasts.prediction + margin
        return np.minimum(lower, forecasts.prediction), np.maximum(upper, forecasts.prediction)

    def _series_margins(
        self, series: int, forecasts: WindowForecasts, rows: np.ndarray, known: int
    ) -> np.ndarray:
        """Margins ``[L, R, known]`` of the windows ``rows`` of one series (NaN: too few scores)."""
        state = self.states.get(series) or self._state(
            np.empty(0, dtype=np.int64), np.empty((0, len(self.distinct_bands), self.horizon), np.float32)
        )
        origins = forecasts.target_row[rows].astype(np.int64)
        if np.any(np.diff(origins) <= 0) or (state.scored and len(state.ends) and origins[0] <= state.last):
            raise ValueError("rolling intervals need each series' windows in time order, once each")
        if not state.scored:
            # Seed scores of the period now scored (a backtest over validation) would look ahead.
            keep = state.ends - (self.horizon - 1) < origins[0]
            state.ends, state.scores = state.ends[keep], state.scores[keep]
            state.scored = True
        has_target = forecasts.target is not None
        part = forecasts.subset(rows)
        new_scores = self._scores(part).astype(np.float32) if has_target else None
        ends = origins + self.horizon - 1
        joined_ends = (
            state.ends if not has_target or self.window is None else np.concatenate([state.ends, ends])
        )
        joined = (
            state.scores
            if new_scores is None or self.window is None
            else np.concatenate([state.scores, new_scores])
        )
        margins = np.full((len(self.levels), len(rows), known), np.nan)
        first = 0
        while first < len(rows):
            # A wave: windows that no earlier window of the wave is observed before (their levels
            # depend only on windows before it); without adaptation, every window at once.
            stop = len(rows) if self.step == 0 else int(np.searchsorted(origins, ends[first], "right"))
            wave = np.arange(first, stop)
            level = self._levels(state, origins[wave])  # [W, L, H]
            margins[:, wave] = self._margins(joined_ends, joined, origins[wave], level)[..., :known]
            if has_target and self.step:
                lo_hi = self._bounds(part.subset(wave), margins[:, wave])
                target = part.target[wave]
                misses = np.stack(
                    [(target < lo) | (target > hi) for lo, hi in lo_hi.intervals.values()], axis=1
                )[..., : self.horizon]  # [W, L, H]
                updates = (1 - self.nominal)[None, :, None] - misses
                state.pending_ends = np.concatenate([state.pending_ends, ends[wave]])
                state.pending_updates = np.concatenate([state.pending_updates, updates])
            first = stop
        if has_target:
            state.last = origins[-1]
            self._observe(state, joined_ends, joined, origins[-1])
        self.states[series] = state
        return margins

    def _levels(self, state: _SeriesState, origins: np.ndarray) -> np.ndarray:
        """Coverage levels ``[W, L, H]`` at each origin: nominal, moved by the observed updates."""
        nominal = np.broadcast_to(self.nominal[None, :, None], (len(origins), len(self.levels), self.horizon))
        if not self.step:
            return nominal
        observed = state.pending_ends[None, :] < origins[:, None]  # [W, P]
        total = state.done[None] + np.einsum("wp,plh->wlh", observed, state.pending_updates)
        return nominal - self.step * total  # alpha = 1 - level grows by step * (1 - c - miss)

    def _margins(
        self, ends: np.ndarray, scores: np.ndarray, origins: np.ndarray, level: np.ndarray
    ) -> np.ndarray:
        """``[L, W, H]`` margins from the most recent ``window`` scores ending before each origin."""
        stop = np.searchsorted(ends, origins, "left")  # scores [.., stop) are observed before the origin
        start = stop - (stop if self.window is None else np.minimum(stop, self.window))
        out = np.full((len(self.levels), len(origins), self.horizon), np.nan)
        for n in np.unique(stop - start):
            group = np.flatnonzero(stop - start == n)
            if n == 0:
                continue
            per_window = max(1, GATHER_ELEMENTS // (n * scores.shape[1] * self.horizon))
            for part in np.array_split(group, -(-len(group) // per_window)):
                taken = np.sort(scores[start[part, None] + np.arange(n)], axis=1)  # [G, n, B, H]
                for i, nominal in enumerate(self.levels):
                    if math.ceil((n + 1) * nominal - 1e-9) > n:
                        continue  # too few for the nominal level: the pooled margin
                    rank = np.ceil((n + 1) * level[part, i] - 1e-9).astype(np.int64)  # [G, H]
                    rank = np.clip(rank, 1, n)  # an adapted level past the scores' range: their extreme
                    band = taken[:, :, self.band_of_level[i]]  # [G, n, H]
                    out[i, part] = np.take_along_axis(band, rank[:, None] - 1, axis=1)[:, 0]
        return out

    def _observe(self, state: _SeriesState, ends: np.ndarray, scores: np.ndarray, origin: int) -> None:
        """Keep the scores still needed after ``origin`` and fold the observed level updates."""
        if self.window is not None:
            usable = int(np.searchsorted(ends, origin + 1, "left"))
            first = max(0, usable - self.window)
            state.ends, state.scores = ends[first:], scores[first:]
        if self.step:
            done = state.pending_ends <= origin  # observed before any later origin
            state.done = state.done + state.pending_updates[done].sum(axis=0)
            state.pending_ends, state.pending_updates = (
                state.pending_ends[~done],
                state.pending_updates[~done],
            )


def check_calibration(options) -> None:
    """One-line errors for bad ``calibration``, ``calibration_windows`` and ``adaptive_step`` of an
    :class:`~lstm_forecast.evaluation.report.EvaluationOptions`."""
    if options.calibration not in CALIBRATIONS:
        raise UserError(
            f"evaluation.calibration must be one of {list(CALIBRATIONS)}, got {options.calibration!r}"
        )
    windows = options.calibration_windows
    if not isinstance(windows, int) or isinstance(windows, bool) or windows < 1:
        raise UserError(
            f"evaluation.calibration_windows must be a positive integer (residual windows per series), "
            f"got {windows!r}"
        )
    step = options.adaptive_step
    if isinstance(step, bool) or not isinstance(step, int | float) or not 0 <= step < 1:
        raise UserError(
            f"evaluation.adaptive_step must be a number in [0, 1) (0: off), e.g. 0.005; got {step!r}"
        )
    if not options.intervals_per_series and (options.calibration == "rolling" or step):
        raise UserError(
            "rolling and adaptive calibration follow each series' own residuals; with "
            "evaluation.intervals_per_series=false also set evaluation.calibration=split and "
            "evaluation.adaptive_step=0"
        )
