"""The end of a run in the loggers: test metrics and hyperparameters in every logger; in TensorBoard the
hyperparameters with the final metrics (the HParams tab), the run-end figures and embeddings, all in the
run's one event file."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.core.saving import save_hparams_to_yaml
from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from lstm_forecast.files import write_atomic
from lstm_forecast.training.callbacks import RunEndCallback
from lstm_forecast.training.distributed import is_rank_zero

if TYPE_CHECKING:
    from lstm_forecast.data.datamodule import ForecastDataModule
    from lstm_forecast.evaluation.report import SplitScores
    from lstm_forecast.evaluation.window_forecasts import WindowForecasts
    from lstm_forecast.models.module import ForecastModule

log = logging.getLogger(__name__)

# The HParams tab's metric columns: what a sweep is compared on.
HPARAM_METRICS = ("val/loss_best", "val/mse_z", "test/mse_z", "test/mae_z")


class RunTensorBoardLogger(TensorBoardLogger):
    """A TensorBoardLogger that keeps one event file for the whole run.

    Lightning finalizes its loggers when ``fit`` returns, but the run logs its test metrics, the
    hyperparameters with their final metrics, the test figures and the embeddings after that; a closed
    SummaryWriter would open a second event file for them. So a successful ``finalize`` only flushes,
    and :meth:`close` (called by :func:`log_run_end`) ends the file. A failed ``finalize`` closes at once.
    """

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if status != "success":
            super().finalize(status)
        elif self._experiment is not None:
            self.experiment.flush()

    @rank_zero_only
    def close(self) -> None:
        """Close the event file and write ``hparams.yaml`` with the hyperparameters logged by the run."""
        super().finalize("success")
        if self.hparams and os.path.isdir(self.log_dir):
            # Lightning writes hparams.yaml once, at the first logged metric, when it is still empty.
            path = os.path.join(self.log_dir, self.NAME_HPARAMS_FILE)
            write_atomic(path, lambda tmp: save_hparams_to_yaml(tmp, self.hparams))


class RunMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger, writing to a local file store (``tracking_uri: file:...``) without a server.

    MLflow 3 keeps its file store in maintenance mode and refuses to open one unless
    ``MLFLOW_ALLOW_FILE_STORE`` is true; a ``file:`` URI is this logger's purpose, so it sets that
    variable (unless the environment already sets it). Metric names with ``@`` (``test/mse_z@1``, the
    error at one horizon step), a character MLflow refuses, are logged as ``test/mse_z_at_1``:
    Lightning would drop the ``@`` with one warning per name.
    """

    def __init__(self, *args: Any, tracking_uri: str | None = None, **kwargs: Any) -> None:
        if tracking_uri is not None and tracking_uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        super().__init__(*args, tracking_uri=tracking_uri, **kwargs)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        super().log_metrics({name.replace("@", "_at_"): value for name, value in metrics.items()}, step)


def report_skipped_tensorboard_outputs(trainer: pl.Trainer) -> None:
    """Say in one info line (rank 0) which outputs the run leaves out for want of a TensorBoard logger."""
    if any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers) or not is_rank_zero():
        return
    skipped = [
        callback.tensorboard_output
        for callback in trainer.callbacks
        if isinstance(callback, RunEndCallback) and callback.tensorboard_output
    ]
    if skipped:
        log.info(
            "no TensorBoard logger: skipping %s (TensorBoard only; logger=many writes TensorBoard and CSV)",
            ", ".join(skipped),
        )


def overridden_hparams(cfg: DictConfig) -> dict[str, Any]:
    """Scalar config keys and config group choices set on the command line (what a sweep varies).

    ``model.lr=0.01`` gives ``{"model.lr": 0.01}``; ``data=etth1`` gives ``{"data": "etth1"}``.
    Empty when Hydra is not running.
    """
    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    out: dict[str, Any] = {}
    for override in OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task)):
        key = override.key_or_group
        if key.startswith("hydra") or override.is_delete():
            continue
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, bool | int | float | str):
            out[key] = value
        elif key in hydra_cfg.runtime.choices and isinstance(hydra_cfg.runtime.choices[key], str):
            out[key] = hydra_cfg.runtime.choices[key]
    return out


def log_run_end(
    trainer: pl.Trainer,
    module: ForecastModule,
    datamodule: ForecastDataModule,
    test_forecasts: WindowForecasts | None,
    metrics: dict[str, Any],
    hparams: dict[str, Any],
    test_scores: SplitScores | None = None,
) -> None:
    """On rank 0, after the best checkpoint is scored: log what the fit did not, then close the loggers.

    Every logger gets the test and baseline metrics and :data:`HPARAM_METRICS` as metrics at the final
    step, and the hyperparameters once. A TensorBoard logger gets the hyperparameters paired with
    :data:`HPARAM_METRICS` (their values are those scalars' last points, so the HParams tab and the
    Scalars tab agree); then each :class:`~lstm_forecast.training.callbacks.RunEndCallback` logs its figures
    (to TensorBoard, skipped without it).
    """
    step = trainer.global_step
    final = {k: metrics[k] for k in HPARAM_METRICS if isinstance(metrics.get(k), float | int)}
    new = {
        k: v
        for k, v in metrics.items()
        if isinstance(v, float | int) and "/" in k and k not in trainer.callback_metrics and k not in final
    }
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            # TensorBoard's own signature: it logs ``final`` as scalars, paired with the hyperparameters.
            logger.log_metrics(new, step=step)
            logger.log_hyperparams(hparams, metrics=final, step=step)
        else:  # the generic Logger signature (CSV, MLflow, W&B, Comet ...)
            logger.log_metrics({**new, **final}, step=step)
            logger.log_hyperparams(hparams)
    for callback in trainer.callbacks:
        if isinstance(callback, RunEndCallback):
            callback.on_run_end(trainer, module, datamodule, test_forecasts, test_scores)
    for logger in trainer.loggers:
        if isinstance(logger, RunTensorBoardLogger):
            logger.close()
        else:
            logger.finalize("success")
