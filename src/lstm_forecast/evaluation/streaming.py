"""Scoring a set of windows a chunk at a time: the model's forecasts, the baselines' and the intervals,
added up as they come (:class:`~lstm_forecast.evaluation.report.SplitScorer`), so memory grows with the
series and the chunk, never with the windows.

:class:`ScoredStream` yields each scored chunk (for a table written piece by piece) and then the
scores; :func:`evaluate_windows` keeps the windows its caller selects; :func:`validation_scores` scores
every validation window and keeps the ones intervals are calibrated on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

import lstm_forecast.evaluation.report as report
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.windows import Windows, index_chunks
from lstm_forecast.evaluation.baselines import RidgeBaseline
from lstm_forecast.evaluation.intervals import ConformalIntervals
from lstm_forecast.evaluation.report import (
    EvaluationOptions,
    SplitScorer,
    SplitScores,
    baseline_forecasts,
    fit_ridge,
    seasonal_period_of,
)
from lstm_forecast.evaluation.rolling import RollingIntervals
from lstm_forecast.evaluation.window_forecasts import WindowForecasts, predict_windows


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk of scored windows (:class:`ScoredStream`).

    Attributes
    ----------
    positions : ndarray
        ``[C]`` positions of the chunk's windows in the scored index (0 for its first window).
    forecasts : WindowForecasts
        The model's forecasts of the chunk (with their intervals, when calibrated).
    baselines : dict
        ``{name: [C, H] scaled forecasts}`` of each baseline.
    """

    positions: np.ndarray
    forecasts: WindowForecasts
    baselines: dict[str, np.ndarray]


# Which windows of a chunk to hand back at the end: ``(chunk) -> [C] bool``.
KeepWindows = Callable[[ScoredChunk], np.ndarray]


def _index_chunks(windows: Windows, index: torch.Tensor | None) -> Iterator[torch.Tensor]:
    if index is None:
        return index_chunks(len(windows), report.SCORE_CHUNK_WINDOWS)
    return iter(torch.split(index, report.SCORE_CHUNK_WINDOWS))


def calibration_forecasts(
    net: nn.Module, datamodule: ForecastDataModule, device: torch.device | str | None = None
) -> WindowForecasts:
    """The model's forecasts of the windows conformal intervals are calibrated on: the validation
    windows, or their fixed sample when ``data.val_windows`` is set (a uniform subsample keeps the
    calibration's exchangeability, in memory of the sample's size)."""
    datamodule.setup("test")
    return predict_windows(
        net, datamodule.windows["val"], datamodule.eval_batch_size, device, datamodule.val_sample
    )


def validation_scores(
    net: nn.Module,
    datamodule: ForecastDataModule,
    device: torch.device | str | None = None,
    baselines: EvaluationOptions | None = None,
    ridge: RidgeBaseline | None = None,
) -> tuple[SplitScores, WindowForecasts]:
    """The model's scores on every validation window (``val/...``) and, from the same pass, its
    forecasts of the windows intervals are calibrated on (:func:`calibration_forecasts`).

    ``baselines``: the evaluation options whose baselines are scored beside the model on the same
    windows (``baseline/<name>/...`` keys; none when None), with the fitted ``ridge`` when given.
    """
    datamodule.setup("test")
    sample = None if datamodule.val_sample is None else datamodule.val_sample.cpu().numpy()

    def calibration_windows(chunk: ScoredChunk) -> np.ndarray:
        if sample is None:
            return np.ones(len(chunk.positions), dtype=bool)
        return np.isin(chunk.positions, sample)

    options = replace(baselines or EvaluationOptions(baselines=()), interval_levels=())
    scores, calibration, _ = evaluate_windows(
        net, datamodule, datamodule.windows["val"], "val", device=device, options=options,
        keep=calibration_windows, ridge=ridge,
    )  # fmt: skip
    return scores, calibration


def calibrated_over_time(
    split: ConformalIntervals,
    calibration: WindowForecasts,
    options: EvaluationOptions,
) -> ConformalIntervals | RollingIntervals:
    """The intervals ``options`` ask for: ``split`` itself, or rolling / adaptive intervals seeded with
    the ``calibration`` forecasts (to be applied to the windows in time order)."""
    if options.calibration == "split" and not options.adaptive_step:
        return split
    window = options.calibration_windows if options.calibration == "rolling" else None
    return RollingIntervals(split, calibration, window, options.adaptive_step)


class ScoredStream:
    """The windows ``index`` (default all) of ``windows`` forecast by the model and the baselines and
    scored, :data:`SCORE_CHUNK_WINDOWS` at a time: iterate over it for each :class:`ScoredChunk` (e.g.
    to write a table piece by piece), then read :meth:`scores`.

    Memory grows with the series and the chunk, not with the windows. With ``options.interval_levels``
    the forecasts get conformal intervals calibrated on ``calibration`` (the model's forecasts of the
    validation windows, :func:`calibration_forecasts`; computed when not given) and the scores their
    coverage and width. Arguments as :func:`evaluate_windows`; ``scorer``, when given, adds these
    windows' scores to another stream's (the models of a backtest that refits, each with its own data);
    ``ridge``: the fitted ridge baseline (fitted here when asked for and not given).
    """

    def __init__(
        self,
        net: nn.Module,
        datamodule: ForecastDataModule,
        windows: Windows,
        prefix: str,
        index: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        options: EvaluationOptions | None = None,
        calibration: WindowForecasts | None = None,
        scorer: SplitScorer | None = None,
        ridge: RidgeBaseline | None = None,
    ) -> None:
        self.net, self.datamodule, self.windows, self.index, self.device = (
            net,
            datamodule,
            windows,
            index,
            device,
        )
        options = options or EvaluationOptions()
        if "seasonal_naive" in options.baselines:  # found once, not for every chunk
            options = replace(options, seasonal_period=seasonal_period_of(datamodule, options))
        self.options = options
        datamodule.setup("test")
        self.intervals = None
        if self.options.interval_levels:
            if calibration is None:
                calibration = calibration_forecasts(net, datamodule, device)
            self.intervals = ConformalIntervals.calibrate(
                calibration,
                self.options.interval_levels,
                self.options.intervals_per_series,
                datamodule.num_series,
                skip_uncalibrated=True,
            )
            self.intervals = calibrated_over_time(self.intervals, calibration, self.options)
        self.scorer = scorer or SplitScorer(datamodule, prefix)
        self.ridge = ridge if ridge is not None else fit_ridge(datamodule, self.options)
        self.settings: dict[str, float] = {}
        self._done = False

    def __iter__(self) -> Iterator[ScoredChunk]:
        assert not self._done, "a stream is scored once"
        start = 0
        for chunk in _index_chunks(self.windows, self.index):
            datamodule, windows = self.datamodule, self.windows
            forecasts = predict_windows(self.net, windows, datamodule.eval_batch_size, self.device, chunk)
            baselines, self.settings = baseline_forecasts(
                forecasts, datamodule, windows, chunk, self.options, self.ridge
            )
            if self.intervals is not None:
                forecasts = self.intervals.apply(forecasts)
            self.scorer.add(forecasts, baselines, datamodule)
            yield ScoredChunk(np.arange(start, start + len(chunk)), forecasts, baselines)
            start += len(chunk)
        self._done = True

    def scores(self) -> SplitScores:
        """The scores of every window (iterates over what is left of the stream first)."""
        if not self._done:
            for _ in self:
                pass
        scores = self.scorer.scores()
        scores.metrics.update(self.settings)
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
    keep: KeepWindows | None = None,
    ridge: RidgeBaseline | None = None,
) -> tuple[SplitScores, WindowForecasts, dict[str, np.ndarray]]:
    """Forecast the windows ``index`` (default all) of ``windows`` with the model and the baselines; score.

    Scored a chunk at a time (:class:`ScoredStream`); only the windows ``keep`` selects (default:
    every one) are handed back. With ``options.interval_levels``, the forecasts get conformal
    intervals calibrated on ``calibration`` (computed when not given) and the scores their coverage
    and width. ``ridge``: the fitted ridge baseline (fitted here when asked for and not given).

    Returns
    -------
    tuple
        ``(scores, the model's forecasts of the kept windows, {baseline: [K, H] scaled forecasts of
        them})``.
    """
    stream = ScoredStream(net, datamodule, windows, prefix, index, device, options, calibration, ridge=ridge)
    kept: list[ScoredChunk] = []
    last = None
    for scored in stream:
        last = scored
        mask = np.ones(len(scored.positions), dtype=bool) if keep is None else keep(scored)
        if mask.all():
            kept.append(scored)
        elif mask.any():
            rows = np.flatnonzero(mask)
            kept.append(
                ScoredChunk(
                    scored.positions[rows],
                    scored.forecasts.subset(rows),
                    {name: values[rows] for name, values in scored.baselines.items()},
                )
            )
    if not kept and last is not None:  # an empty selection keeps the shape of the forecasts: [0, H]
        empty = np.empty(0, dtype=np.int64)
        kept = [
            ScoredChunk(empty, last.forecasts.subset(empty), {n: v[empty] for n, v in last.baselines.items()})
        ]
    forecasts = concat_forecasts([c.forecasts for c in kept])
    baselines = {name: np.concatenate([c.baselines[name] for c in kept]) for name in kept[0].baselines}
    return stream.scores(), forecasts, baselines


def concat_forecasts(parts: list[WindowForecasts]) -> WindowForecasts:
    """The forecasts of several chunks of windows, in order, as one."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]

    def joined(name: str) -> np.ndarray | None:
        values = [getattr(part, name) for part in parts]
        return None if values[0] is None else np.concatenate(values)

    return WindowForecasts(
        prediction=joined("prediction"),
        target=joined("target"),
        last_value=joined("last_value"),
        series_index=joined("series_index"),
        target_row=joined("target_row"),
        quantiles=joined("quantiles"),
        quantile_levels=first.quantile_levels,
        intervals={
            level: (
                np.concatenate([part.intervals[level][0] for part in parts]),
                np.concatenate([part.intervals[level][1] for part in parts]),
            )
            for level in first.intervals
        },
    )
