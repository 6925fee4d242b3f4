"""The forecast origins of a backtest, and the models that forecast them.

An origin is the first forecast step ``t`` of a series: the model sees steps ``t - W .. t - 1`` and
forecasts ``t .. t + H - 1``. Without refitting (``refit_every=0``) the trained model forecasts every
origin. With ``refit_every=k`` each series' origins are taken ``k`` at a time: a model trained with
the training run's own settings on the data before the group's first origin of each series (the
first group included) forecasts those ``k`` origins, so no forecast comes from a model that saw its
targets. Every group's scores add up into one set (:class:`SplitScorer`), each chunk inverted with
the scalers of the model that forecast it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.frame import SeriesFrame
from lstm_forecast.data.short_series import served_series
from lstm_forecast.data.sources import source_table
from lstm_forecast.data.windows import Windows, index_ranges
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.report import SplitScorer, SplitScores
from lstm_forecast.evaluation.streaming import ScoredChunk, ScoredStream, calibration_forecasts
from lstm_forecast.inference.checkpoints import LoadedModel, datamodule_from_checkpoint
from lstm_forecast.models.checkpoint import module_from_checkpoint, read_checkpoint
from lstm_forecast.models.module import ForecastModule

# (the trained checkpoint, the data's rows before a group's origins, a folder for the run) -> the
# checkpoint of a model trained on those rows with the trained run's settings.
Refit = Callable[[Path, pd.DataFrame, Path], Path]
# The refitted runs' folders, inside the backtest's.
REFITS_FOLDER = "refits"


def origin_steps(
    datamodule: ForecastDataModule, lo: np.ndarray, hi: np.ndarray, stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(series, step, ordinal)``, each ``[M]``, of every origin ``lo, lo + stride, ...`` of each series
    whose targets end before ``hi``: its series, its first forecast step and its number in the series."""
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise UserError(f"stride must be a positive integer (steps between origins), got {stride!r}")
    horizon = datamodule.horizon
    served = served_series(
        datamodule.load_frame().lengths, datamodule.series_train_rows, datamodule.window_size
    )
    usable = np.where(served, hi - horizon + 1 - lo, 0)  # origins t: t + H <= hi
    count = -(-np.maximum(usable, 0) // stride)
    if count.sum() == 0:
        raise UserError(
            f"the period holds {int(np.maximum(hi - lo, 0).max(initial=0))} steps, fewer than the horizon "
            f"{horizon}; choose a longer period (split=..., start=..., end=...)"
        )
    series = np.repeat(np.arange(len(lo)), count)
    ordinal = index_ranges(np.zeros_like(count), count)
    return series, lo[series] + ordinal * stride, ordinal


def windows_at(datamodule: ForecastDataModule, series: np.ndarray, step: np.ndarray) -> Windows:
    """The windows forecasting from step ``step[m]`` of series ``series[m]`` (both ``[M]``)."""
    arrays = datamodule.arrays
    return datamodule.window_set(arrays, torch.from_numpy(arrays.padded_rows(series, step)))


def rows_before(
    rows: pd.DataFrame, source: dict[str, Any], frame: SeriesFrame, cut: np.ndarray
) -> pd.DataFrame:
    """The rows of the data source's table ``rows`` before step ``cut[s]`` of each series ``s``.

    A long table is cut series by series; a wide table's series share their timestamps, so it is cut
    before the earliest of them.
    """
    cut_times = frame.timestamps[frame.offsets[:-1] + cut]  # [S]
    stamps = pd.to_datetime(rows[source["timestamp_column"]])
    if source["kind"] == "long_file":
        limits = dict(zip(frame.series_names, cut_times, strict=True))
        keep = stamps < rows[source["series_column"]].astype(str).map(limits)
    else:
        keep = stamps < cut_times.min()
    return rows[keep.to_numpy()]


class OriginBacktest:
    """The origins ``lo, lo + stride, ...`` (before ``hi``) of every series, forecast and scored.

    Iterate for each scored chunk with the data its forecasts are scaled by, then read
    :meth:`scores`. ``refit_every > 0`` needs ``refit`` (see the module docstring); its runs are
    written into ``refits_dir``; ``table`` holds the data's rows in place of the source's file.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        lo: np.ndarray,
        hi: np.ndarray,
        stride: int,
        refit_every: int = 0,
        refit: Refit | None = None,
        table: pd.DataFrame | None = None,
        refits_dir: Path | None = None,
    ) -> None:
        self.loaded, self.hi, self.stride, self.refit_every = loaded, hi, stride, refit_every
        self.refit, self.table, self.refits_dir = refit, table, refits_dir
        self.lo = lo
        self.series, self.step, ordinal = origin_steps(loaded.datamodule, lo, hi, stride)
        self.group = ordinal // refit_every if refit_every else np.zeros_like(ordinal)
        self.num_models = int(self.group.max()) + 1
        if refit_every and loaded.datamodule.source["kind"] == "synthetic":
            raise UserError(
                "refit_every needs data from a file: the built-in synthetic data cannot be cut at an "
                "origin; backtest with refit_every=0, or train on a file"
            )
        assert not refit_every or (refit is not None and refits_dir is not None), "refitting needs refit"
        self.scorer = SplitScorer(loaded.datamodule, "backtest")
        self.settings: dict[str, float] = {}
        self._done = False

    def __iter__(self) -> Iterator[tuple[ScoredChunk, ForecastDataModule]]:
        assert not self._done, "a backtest is scored once"
        loaded = self.loaded
        names = loaded.datamodule.load_frame().series_names
        for group in range(self.num_models):
            chosen = self.group == group
            net, datamodule, calibration = self._model(group)
            datamodule.setup("test")
            # A refit's data may order its series otherwise: the same series by name.
            position = {name: s for s, name in enumerate(datamodule.load_frame().series_names)}
            series = np.array([position[name] for name in names])[self.series[chosen]]
            windows = windows_at(datamodule, series, self.step[chosen])
            stream = ScoredStream(
                net, datamodule, windows, "backtest", device=loaded.device, options=loaded.evaluation,
                calibration=calibration, scorer=self.scorer,
            )  # fmt: skip
            for chunk in stream:
                yield chunk, datamodule
            self.settings = stream.settings
        self._done = True

    def scores(self) -> SplitScores:
        """The scores of every origin (forecasts the origins not iterated over yet first)."""
        if not self._done:
            for _ in self:
                pass
        scores = self.scorer.scores()
        scores.metrics.update(self.settings)
        return scores

    def _model(self, group: int) -> tuple[ForecastModule, ForecastDataModule, Any]:
        """The network forecasting ``group``'s origins, the data scaled as it was trained, and the
        forecasts its intervals are calibrated on (None: the stream calibrates on its own data)."""
        loaded = self.loaded
        if not self.refit_every:
            return loaded.module, loaded.datamodule, None
        source = loaded.datamodule.source
        rows, _ = source_table(source.get("path"), self.table)
        cut = np.minimum(self.lo + group * self.refit_every * self.stride, self.hi)
        before = rows_before(rows, source, loaded.datamodule.load_frame(), cut)
        checkpoint = read_checkpoint(self.refit(loaded.path, before, self.refits_dir / f"{group:03d}"))
        net = module_from_checkpoint(checkpoint).to(loaded.device)
        # Scaled as the refit was trained, over every row of the data (the origins' windows).
        source_override = None if self.table is not None else {"source": {"path": source["path"]}}
        datamodule = datamodule_from_checkpoint(checkpoint, source_override, self.table)
        calibration = None
        if loaded.evaluation.interval_levels:  # on the refit's own validation windows, before the origins
            trained_on = datamodule_from_checkpoint(checkpoint, None, before)
            calibration = calibration_forecasts(net, trained_on, loaded.device)
        return net, datamodule, calibration
