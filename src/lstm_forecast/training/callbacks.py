"""Callbacks that make TensorBoard explain a run: gradient norms, epoch time and throughput; the
:class:`RunEndCallback` hook the figures (:mod:`lstm_forecast.training.figures`) log through; and the
terminal's progress bar (:class:`ThrottledProgressBar`).

Everything is written from rank 0 only. Scalars go to every configured logger; figures and embeddings
need a TensorBoard logger and are skipped without one.

Two kinds of hooks: Lightning's, during the fit, and :meth:`RunEndCallback.on_run_end`, which
:func:`lstm_forecast.training.loggers.log_run_end` calls once the run has scored its best checkpoint on
the test split (after ``fit`` returns, so Lightning's hooks cannot see it).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
from pytorch_lightning import callbacks
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import grad_norm

from lstm_forecast.errors import UserError

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from lstm_forecast.data.datamodule import ForecastDataModule
    from lstm_forecast.evaluation.report import SplitScores
    from lstm_forecast.evaluation.window_forecasts import WindowForecasts
    from lstm_forecast.models.module import ForecastModule


# --------------------------------------------------------------------------------------------- plumbing
def tensorboard_writer(trainer: pl.Trainer) -> SummaryWriter | None:
    """The SummaryWriter of the first TensorBoard logger, on rank 0; None elsewhere or without one."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def log_epoch_scalars(pl_module: pl.LightningModule, metrics: dict[str, tuple[float, str]]) -> None:
    """Log ``{name: (value, reduction over ranks)}`` from ``on_train_epoch_end``, at the step of the
    epoch's losses; under DDP the values are reduced across ranks and logged once, by rank 0."""
    for name, (value, reduce_fx) in metrics.items():
        pl_module.log(name, value, on_step=False, on_epoch=True, sync_dist=True, reduce_fx=reduce_fx)


class RunEndCallback(Callback):
    """A callback with something to log once the run has scored its best checkpoint on the test split.

    Attributes
    ----------
    tensorboard_output : str or None
        What it writes to TensorBoard only (figures, embeddings), named for the one line that says it is
        skipped in a run without a TensorBoard logger; None when it writes nothing TensorBoard-only.
    """

    tensorboard_output: str | None = None

    def series_to_keep(self, datamodule: ForecastDataModule) -> list[int]:
        """Series (from 0) whose test windows' forecasts :meth:`on_run_end` reads; the test split is
        scored a chunk at a time and only those windows are kept."""
        return []

    def on_run_end(
        self,
        trainer: pl.Trainer,
        module: ForecastModule,
        datamodule: ForecastDataModule,
        test_forecasts: WindowForecasts | None,
        test_scores: SplitScores | None = None,
    ) -> None:
        """Called on rank 0 with the best weights loaded, ``test_forecasts`` of every test window of
        the series of :meth:`series_to_keep` and ``test_scores``, the test split's scores with their
        per-series table (both None when the run does not score the test split:
        ``test_after_fit=false``)."""


# ----------------------------------------------------------------------------------------- progress bar
class ThrottledProgressBar(callbacks.TQDMProgressBar):
    """Lightning's TQDM progress bar, redrawn at most every ``min_interval_s`` seconds (and on each
    bar's last batch), as tqdm itself throttles by time (its ``mininterval``).

    Lightning redraws its bars every ``refresh_rate`` batches, a count that is too often for a fast
    step and too rarely for a slow one. At one batch (the default) the TQDM bar cost 0.5 ms a step
    and the rich bar (Lightning's choice when ``rich`` happens to be installed) 1.4 ms
    (``scripts/bench_loop_overhead.py``, docs/performance.md): 2 % and 6 % of a 23 ms ``seg_bilstm``
    step, for redraws no one can read, and a log line per batch when the output is a file.
    """

    def __init__(self, min_interval_s: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if min_interval_s < 0:
            raise UserError(f"the progress bar's min_interval_s must be >= 0, got {min_interval_s}")
        self.min_interval_s = min_interval_s
        self._last_redraw = -float("inf")

    def _should_update(self, current: int, total: int) -> bool:
        # Lightning's hook for every bar (train, validation, test, predict): its own refresh_rate test.
        if not super()._should_update(current, total):
            return False
        now = time.perf_counter()
        if current == total or now - self._last_redraw >= self.min_interval_s:
            self._last_redraw = now
            return True
        return False


# --------------------------------------------------------------------------------------------- scalars
class LearningRateMonitor(callbacks.LearningRateMonitor):
    """Lightning's ``LearningRateMonitor`` (tags ``lr-<Optimizer>``), standing aside in runs without
    loggers (``logger=none``) instead of failing, so the default callbacks suit every logger choice."""

    def on_train_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)


class GradNormMonitor(Callback):
    """Gradient norm before clipping: the mean and the largest over each epoch's optimizer steps.

    Logged as ``train/grad_norm`` and ``train/grad_norm_max``; compared with
    ``trainer.gradient_clip_val`` it shows how often clipping bites. Lightning calls
    ``on_before_optimizer_step`` after the gradients are unscaled and all-reduced and before it clips.
    The total norm stays on the device until the epoch ends, so the step never waits for it.

    Parameters
    ----------
    norm_type : float
        The p of the p-norm (2: the norm clipping uses by default).
    per_parameter : bool
        Also log each parameter's epoch-mean norm (``grad_norm/<name>``, via Lightning's ``grad_norm``,
        which syncs with the device once per parameter and step: for debugging, not by default).
    """

    def __init__(self, norm_type: float = 2.0, per_parameter: bool = False) -> None:
        if float(norm_type) <= 0:
            raise UserError(f"grad_norm_monitor.norm_type must be positive or inf, got {norm_type}")
        self.norm_type = float(norm_type)
        self.per_parameter = per_parameter
        self._reset()

    def _reset(self) -> None:
        self._sum: torch.Tensor | None = None
        self._max: torch.Tensor | None = None
        self._steps = 0
        self._parameter_sums: dict[str, torch.Tensor] = {}

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        grads = [p.grad.detach() for p in pl_module.parameters() if p.grad is not None]
        if not grads:
            return
        # The function clip_grad_norm_ computes its norm with (its foreach kernel where it has one).
        total = torch.nn.utils.get_total_norm(grads, self.norm_type)
        self._sum = total if self._sum is None else self._sum + total
        self._max = total if self._max is None else torch.maximum(self._max, total)
        self._steps += 1
        if self.per_parameter:
            for name, value in grad_norm(pl_module, self.norm_type).items():
                if not name.endswith("_total"):
                    name = "grad_norm/" + name.split("/", 1)[1]
                    self._parameter_sums[name] = self._parameter_sums.get(name, 0.0) + value

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._steps:
            return
        # Gradients are all-reduced before this hook, so every rank sees the same norms.
        metrics = {
            "train/grad_norm": (float(self._sum) / self._steps, "mean"),
            "train/grad_norm_max": (float(self._max), "max"),
        }
        for name, total in self._parameter_sums.items():
            metrics[name] = (float(total) / self._steps, "mean")
        log_epoch_scalars(pl_module, metrics)


class EpochTimeMonitor(Callback):
    """Wall time per epoch and training throughput.

    Logs ``time/epoch_s`` (the whole epoch), ``time/val_s`` (validation and what runs with it:
    checkpointing, validation figures) and ``time/train_windows_per_s`` (windows of all ranks per
    second of the training part). Clocks are read after a device synchronisation, so queued GPU work
    is counted where it belongs.
    """

    def __init__(self) -> None:
        self._start = 0.0
        self._val_start: float | None = None
        self._windows = 0

    @staticmethod
    def _now(pl_module: pl.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._now(pl_module)
        self._val_start = None
        self._windows = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._windows += int(batch["series_id"].shape[0])

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and self._val_start is None:
            self._val_start = self._now(pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        end = self._now(pl_module)
        train_end = self._val_start if self._val_start is not None else end
        # The slowest rank's times; the throughput of all ranks together.
        metrics = {"time/epoch_s": (end - self._start, "max")}
        if self._val_start is not None:
            metrics["time/val_s"] = (end - self._val_start, "max")
        if train_end > self._start:
            metrics["time/train_windows_per_s"] = (self._windows / (train_end - self._start), "sum")
        log_epoch_scalars(pl_module, metrics)
