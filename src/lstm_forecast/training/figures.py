"""Figures of a run in TensorBoard: forecast vs actual for a few series, the per-series test error
chart, and the series embeddings in the projector.

Drawn on matplotlib's Agg canvas directly: no pyplot state, no display, nothing global changed for the
user's own plots. Written from rank 0 only, to the TensorBoard logger when there is one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytorch_lightning as pl
import torch

from lstm_forecast.data.windows import Windows
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.figure_layout import (
    COVERAGE_LABEL_SIZE,
    coverage_axis,
    figure_to_rgb,
    fit_margins,
    import_matplotlib,
    new_figure,
    y_tick_labels,
)
from lstm_forecast.evaluation.intervals import level_label, quantile_column
from lstm_forecast.evaluation.report import MODEL, SplitScores
from lstm_forecast.evaluation.window_forecasts import WindowForecasts, predict_windows
from lstm_forecast.training.callbacks import RunEndCallback, tensorboard_writer

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch.utils.tensorboard import SummaryWriter

    from lstm_forecast.data.datamodule import ForecastDataModule
    from lstm_forecast.models.module import ForecastModule

SPLIT_TITLES = {"val": "validation", "test": "test"}


# --------------------------------------------------------------------------------------------- helpers
def series_indices(names: list[str], wanted: list[str] | None, count: int) -> list[int]:
    """Indices (from 0) of the series to draw: ``wanted`` by name, else the first ``count``."""
    if wanted is None:
        return list(range(min(count, len(names))))
    unknown = [name for name in wanted if name not in names]
    if unknown:
        shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
        raise UserError(
            f"unknown series {unknown} in the figure callbacks' series list; the data has: {shown}"
        )
    return [names.index(name) for name in wanted]


def select_windows(forecasts: WindowForecasts, index: np.ndarray) -> WindowForecasts:
    """The forecasts of windows ``index [N]`` (positions in ``forecasts``)."""
    return forecasts.subset(index)


def one_step_band(forecasts: WindowForecasts) -> tuple[np.ndarray, np.ndarray, str] | None:
    """``(lo [N], hi [N], label)`` (scaled) of the first step: the widest conformal interval, else a
    quantile model's outermost quantiles (uncalibrated: validation epochs), else None."""
    if forecasts.intervals:
        level = max(forecasts.intervals)
        lo, hi = forecasts.intervals[level]
        return lo[:, 0], hi[:, 0], f"{level_label(level)}% interval"
    if forecasts.quantiles is not None and len(forecasts.quantile_levels) > 1:
        lo, hi = (quantile_column(forecasts.quantile_levels[i]) for i in (0, -1))
        return forecasts.quantiles[:, 0, 0], forecasts.quantiles[:, 0, -1], f"model {lo} to {hi}"
    return None


class WindowSubset:
    """Some windows of a :class:`Windows`, in a given order, for :func:`predict_windows` (which uses
    only ``len`` and ``gather``): the figures forecast a few series, not the whole split."""

    def __init__(self, windows: Windows, index: torch.Tensor) -> None:
        self.windows = windows
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def gather(self, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.windows.gather(self.index[positions])


# --------------------------------------------------------------------------------------------- figures
def forecast_figure(
    forecasts: WindowForecasts,
    datamodule: ForecastDataModule,
    title: str,
    size: tuple[float, float],
    dpi: int,
) -> Figure:
    """Actual vs forecast of one series' windows, in original units, against time.

    ``forecasts`` holds ``[N, H]`` windows of a single series in time order. The line is the one-step-ahead
    forecast, shaded with its band (:func:`one_step_band`); with ``H > 1`` the ``H``-steps-ahead forecast
    is drawn as well, at the time it forecasts.
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    series = forecasts.series_index[:, None]  # [N, 1]
    prediction = datamodule.inverse_values(forecasts.prediction, series)  # [N, H]
    actual = datamodule.inverse_values(forecasts.target, series)  # [N, H]
    timestamps = datamodule.timestamps
    horizon = prediction.shape[1]
    first = timestamps[forecasts.target_row].to_numpy()
    mae = float(np.mean(np.abs(prediction[:, 0] - actual[:, 0])))

    figure = new_figure(*size, dpi)
    axes = figure.add_subplot()
    axes.plot(first, actual[:, 0], color="black", linewidth=1.0, label="actual")
    right_labels: list[str] = []
    band = one_step_band(forecasts)
    if band is not None:
        lo, hi = (datamodule.inverse_values(bound[:, None], series)[:, 0] for bound in band[:2])
        axes.fill_between(first, lo, hi, color="tab:orange", alpha=0.25, linewidth=0, label=band[2])
        if forecasts.intervals:  # calibrated: coverage over time on a right-hand axis
            inside = (lo <= actual[:, 0]) & (actual[:, 0] <= hi)
            right = coverage_axis(axes, first, inside, max(forecasts.intervals), "coverage")
            right_labels = y_tick_labels(right)
    axes.plot(first, prediction[:, 0], color="tab:orange", linewidth=1.0, label="forecast, 1 step ahead")
    if horizon > 1:
        last = timestamps[forecasts.target_row + horizon - 1].to_numpy()
        axes.plot(
            last,
            prediction[:, -1],
            color="tab:blue",
            linewidth=0.8,
            alpha=0.8,
            label=f"forecast, {horizon} steps ahead",
        )
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set_title(f"{title}  (1-step MAE {mae:.4g})", fontsize=10)
    axes.set_ylabel("original units")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize=8)
    # Concise date ticks put their offset (the year, month...) on a second line under the labels.
    fit_margins(
        figure,
        y_tick_labels(axes),
        x_label_lines=2,
        has_y_label=True,
        right_labels=right_labels,
        right_label_size=COVERAGE_LABEL_SIZE,
    )
    return figure


class ForecastFigures(RunEndCallback):
    """Forecast vs actual for a few series: on the validation period every ``every_n_epochs`` epochs
    (the weights of that epoch) and on the test period at the end of the run (the best checkpoint).

    Images ``forecast/val/<series>`` and ``forecast/test/<series>``, each titled with the series name and
    its one-step MAE in original units. Only the drawn windows are forecast, so the cost does not grow
    with the number of series in the data.

    Parameters
    ----------
    every_n_epochs : int
        Validation figures after every N-th epoch: epochs N-1, 2N-1, ... counted from 0, as
        Lightning's ``check_val_every_n_epoch`` and ``ModelCheckpoint(every_n_epochs)`` count (a run
        shorter than N epochs has the test-period figures only).
    series : list of str, optional
        Names of the series to draw; default the first ``num_series``.
    num_series : int
        How many series when ``series`` is not given.
    max_points : int, optional
        Draw the first ``max_points`` steps of the period (None: all of it); long periods drawn whole
        are a blur at TensorBoard's image size.
    width, height : float
        Figure size in inches.
    dpi : int
        Pixels per inch.
    """

    tensorboard_output = "forecast figures"

    def __init__(
        self,
        every_n_epochs: int = 5,
        series: list[str] | None = None,
        num_series: int = 3,
        max_points: int | None = 500,
        width: float = 9.0,
        height: float = 3.0,
        dpi: int = 80,
    ) -> None:
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise UserError(
                f"forecast_figures.every_n_epochs must be a positive integer, got {every_n_epochs!r}"
            )
        if max_points is not None and max_points < 2:
            raise UserError(f"forecast_figures.max_points must be at least 2 or null, got {max_points!r}")
        self.every_n_epochs = every_n_epochs
        self.series = None if series is None else [str(name) for name in series]
        self.num_series = num_series
        self.max_points = max_points
        self.size = (width, height)
        self.dpi = dpi
        self._indices: list[int] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if datamodule is not None:
            self._indices = series_indices(datamodule.series_names, self.series, self.num_series)
        if trainer.is_global_zero:
            import_matplotlib()

    def _window_index(self, series_index: np.ndarray, series: int) -> np.ndarray:
        """Positions of series ``series``' first ``max_points`` windows (windows are in time order
        within a series)."""
        return np.flatnonzero(series_index == series)[: self.max_points]

    def _log_figures(
        self,
        writer: SummaryWriter,
        forecasts: WindowForecasts,
        datamodule: ForecastDataModule,
        split: str,
        label: str,
        step: int,
    ) -> None:
        names = datamodule.series_names
        for series in self._indices:
            mine = select_windows(forecasts, np.flatnonzero(forecasts.series_index == series))
            if not len(mine.series_index):
                continue
            title = f"{names[series]}: {SPLIT_TITLES[split]}, {label}"
            figure = forecast_figure(mine, datamodule, title, self.size, self.dpi)
            writer.add_image(
                f"forecast/{split}/{names[series]}", figure_to_rgb(figure), step, dataformats="HWC"
            )

    def draws_after(self, epoch: int) -> bool:
        """Whether the validation figures are drawn after ``epoch`` (counted from 0)."""
        return (epoch + 1) % self.every_n_epochs == 0

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.draws_after(trainer.current_epoch):
            return
        writer = tensorboard_writer(trainer)
        datamodule = trainer.datamodule
        if writer is None or datamodule is None or not self._indices:
            return
        windows = datamodule.windows["val"]
        series_index = windows.series_index()
        index = np.concatenate([self._window_index(series_index, series) for series in self._indices])
        forecasts = predict_windows(
            pl_module, WindowSubset(windows, torch.from_numpy(index)), datamodule.eval_batch_size
        )
        self._log_figures(
            writer, forecasts, datamodule, "val", f"epoch {trainer.current_epoch}", trainer.global_step
        )

    def series_to_keep(self, datamodule: ForecastDataModule) -> list[int]:
        if not self._indices:
            self._indices = series_indices(datamodule.series_names, self.series, self.num_series)
        return list(self._indices)

    def on_run_end(
        self,
        trainer: pl.Trainer,
        module: ForecastModule,
        datamodule: ForecastDataModule,
        test_forecasts: WindowForecasts | None,
        test_scores: SplitScores | None = None,
    ) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None or test_forecasts is None:
            return
        self.series_to_keep(datamodule)
        index = np.concatenate(
            [self._window_index(test_forecasts.series_index, series) for series in self._indices]
        )
        selected = select_windows(test_forecasts, index)
        self._log_figures(writer, selected, datamodule, "test", "best checkpoint", trainer.global_step)


def per_series_mse_z(scores: SplitScores, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Test MSE in z-normalised units of the model and of persistence, per series of ``names [S]``,
    from the test scores' per-series table: two ``[S]`` arrays (NaN where a series has no test window,
    hence no row, or for persistence when it was not scored)."""
    table = scores.per_series
    model_mse, baseline_mse = np.full(len(names), np.nan), np.full(len(names), np.nan)
    position = {series: s for s, series in enumerate(names)}
    for out, name in ((model_mse, MODEL), (baseline_mse, "persistence")):
        rows = table[table["model"] == name]
        if len(rows):
            out[[position[series] for series in rows["series"]]] = rows["mse_z"].to_numpy()
    return model_mse, baseline_mse


def series_error_figure(
    names: list[str], model_mse: np.ndarray, baseline_mse: np.ndarray, max_series: int, dpi: int
) -> Figure:
    """Horizontal bars of the model's and persistence's test MSE per series, worst model error on top."""
    order = np.argsort(-np.nan_to_num(model_mse, nan=-np.inf))[:max_series]
    shown = len(order)
    figure = new_figure(8.0, 1.2 + 0.32 * shown, dpi)
    axes = figure.add_subplot()
    rows = np.arange(shown)[::-1]  # worst at the top
    axes.barh(rows + 0.2, model_mse[order], height=0.4, color="tab:orange", label="model")
    axes.barh(rows - 0.2, baseline_mse[order], height=0.4, color="tab:gray", label="persistence")
    axes.set_yticks(rows, [names[i] for i in order], fontsize=8)
    axes.set_xlabel("test MSE, z-normalised")
    heading = (
        "Test error per series"
        if shown == len(names)
        else f"Test error, {shown} worst of {len(names)} series"
    )
    axes.set_title(heading, fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    fit_margins(figure, [names[i] for i in order], y_label_size=8, x_label_lines=2)
    return figure


class SeriesErrorChart(RunEndCallback):
    """Bar chart ``test/error_by_series``: test MSE (z-normalised) per series, model vs persistence, for
    the best checkpoint; shows which series the model helps and which it does not.

    Parameters
    ----------
    max_series : int
        Draw at most this many series (the worst by model error).
    dpi : int
        Pixels per inch.
    """

    tensorboard_output = "the per-series error chart"

    def __init__(self, max_series: int = 40, dpi: int = 80) -> None:
        if not isinstance(max_series, int) or max_series < 1:
            raise UserError(f"series_error_chart.max_series must be a positive integer, got {max_series!r}")
        self.max_series = max_series
        self.dpi = dpi

    def on_run_end(
        self,
        trainer: pl.Trainer,
        module: ForecastModule,
        datamodule: ForecastDataModule,
        test_forecasts: WindowForecasts | None,
        test_scores: SplitScores | None = None,
    ) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None or test_scores is None:
            return
        model_mse, baseline_mse = per_series_mse_z(test_scores, datamodule.series_names)
        figure = series_error_figure(
            datamodule.series_names, model_mse, baseline_mse, self.max_series, self.dpi
        )
        writer.add_image(
            "test/error_by_series", figure_to_rgb(figure), trainer.global_step, dataformats="HWC"
        )


# --------------------------------------------------------------------------------------------- projector
class EmbeddingProjector(RunEndCallback):
    """The learned series-id embeddings of the best checkpoint in TensorBoard's projector, labelled with
    the series names (row 0 of the embedding table is the reserved id and is left out).

    Univariate data has no embedding and logs nothing.

    Parameters
    ----------
    tag : str
        The embedding's name in the projector.
    """

    tensorboard_output = "the embedding projector"

    def __init__(self, tag: str = "series_embedding") -> None:
        self.tag = tag

    def on_run_end(
        self,
        trainer: pl.Trainer,
        module: ForecastModule,
        datamodule: ForecastDataModule,
        test_forecasts: WindowForecasts | None,
        test_scores: SplitScores | None = None,
    ) -> None:
        writer = tensorboard_writer(trainer)
        embedding = getattr(module.net, "embedding", None)
        if writer is None or embedding is None:
            return
        vectors = embedding.weight.detach()[1:].float().cpu()  # [S, D]; ids start at 1
        writer.add_embedding(
            vectors, metadata=datamodule.series_names, tag=self.tag, global_step=trainer.global_step
        )
