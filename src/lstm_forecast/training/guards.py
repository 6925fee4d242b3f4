"""Training safeguards: finite losses, per-batch seeding, atomic checkpoints, run metadata in checkpoints,
a clean end to distributed processes.

:func:`reliability_callbacks` and :class:`AtomicCheckpointIO` are added to every trainer by
:func:`lstm_forecast.training.run.build`, whatever the ``callbacks`` group holds.
"""

from __future__ import annotations

import atexit
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.strategies.launchers import _MultiProcessingLauncher

from lstm_forecast.errors import UserError
from lstm_forecast.files import write_atomic


class NonFiniteLossError(UserError):
    """A NaN or inf loss: the run stops; the checkpoints written before it stay untouched."""


class FiniteLossGuard(pl.Callback):
    """Stop the run at the first NaN or inf training loss, before it reaches the weights.

    The loss is checked before the backward pass, so the optimiser never applies a non-finite
    step; validation loss and weights are checked again before the checkpoint callback (which
    Lightning always runs last) could save them, so ``last.ckpt`` and the best checkpoint always
    hold the last finite state.
    """

    def __init__(self) -> None:
        self._batch_idx = 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_idx = batch_idx

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        if not torch.isfinite(loss.detach()).all():
            raise NonFiniteLossError(
                f"training loss became {float(loss.detach()):g} at epoch {trainer.current_epoch}, "
                f"batch {self._batch_idx}; the last good checkpoint is kept. Lower model.lr, keep "
                "trainer.gradient_clip_val set, or check the data for extreme values"
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        val_loss = trainer.callback_metrics.get("val/loss")
        finite_weights = all(torch.isfinite(p).all() for p in pl_module.parameters())
        if finite_weights and (val_loss is None or math.isfinite(float(val_loss))):
            return
        what = "the weights" if not finite_weights else f"validation loss ({float(val_loss):g})"
        raise NonFiniteLossError(
            f"{what} became non-finite at epoch {trainer.current_epoch} (after its last batch); "
            "the last good checkpoint is kept. Lower model.lr or keep trainer.gradient_clip_val set"
        )


def batch_seed(seed: int, epoch: int, batch_idx: int) -> int:
    """A seed that depends only on ``(seed, epoch, batch_idx)``."""
    return int(np.random.SeedSequence([seed, epoch, batch_idx]).generate_state(1)[0])


class BatchSeeding(pl.Callback):
    """Reseed torch before every training batch from ``(seed, epoch, batch)``.

    Dropout draws from torch's global generator, whose state is not in the checkpoint, and which
    Lightning and the DataLoader also draw from at points that differ between a fresh and a resumed
    epoch. Reseeding per batch makes each batch's randomness independent of what ran before it, so a
    resumed run continues exactly as the uninterrupted one (the training shuffle already depends
    only on ``(seed, epoch)``).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        seed = batch_seed(self.seed, trainer.current_epoch, batch_idx)
        if pl_module.device.type == "cpu":
            # torch.manual_seed would also queue a seeding call for every uninitialised accelerator
            # backend (CUDA, XPU, MTIA), formatting a stack trace for each: 1.5 ms a batch on the CPU
            # (7 % of a seg_bilstm step) and a queue that grows all run. Dropout here draws from this one.
            torch.default_generator.manual_seed(seed)
        else:
            torch.manual_seed(seed)


class RunInfoInCheckpoint(pl.Callback):
    """Store the resolved config, package version and git commit in every checkpoint.

    Parameters
    ----------
    run_info : dict
        Plain data only (see :func:`lstm_forecast.training.run_folder.run_info`), so the checkpoint still
        loads with ``torch.load(weights_only=True)``.
    """

    KEY = "run_info"

    def __init__(self, run_info: dict[str, Any]) -> None:
        self.run_info = run_info

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[self.KEY] = self.run_info


class FlushLogsWithCheckpoints(pl.Callback):
    """Flush the loggers whenever a checkpoint is written.

    TensorBoard buffers events for up to two minutes; a run killed after a checkpoint would lose
    the logged epochs it covers, and its resumed log would have a hole.
    """

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        for logger in trainer.loggers:
            logger.save()


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class ProcessGroupRelease(pl.Callback):
    """Destroy this rank's process group before its process ends.

    Lightning does so at exit for NCCL only. A gloo group (DDP on CPUs) still alive when a rank's
    process ends can abort it after a finished fit, "terminate called without an active exception"
    (pytorch/pytorch#190489), and the run fails although every epoch completed.

    Lightning calls ``teardown`` only after a stage that succeeded on this rank, once its
    collectives are done. This callback comes after every other but the checkpoint callbacks
    (which Lightning moves to the end, and which use no collective when tearing down), so no
    later hook needs the group.
    """

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher):
            # A spawned or forked rank (ddp_spawn, ddp_fork, ddp_notebook): its process ends with
            # this stage and leaves through os._exit, which runs no atexit handler.
            torch.distributed.barrier()
            _destroy_process_group()
        else:
            # The ranks live on (a test after the fit; a multirun's next job): destroy at exit,
            # registered once however many stages run in this process.
            atexit.unregister(_destroy_process_group)
            atexit.register(_destroy_process_group)


# The number of epochs fitted, in the results a spawned rank 0 hands back (see EpochsInResults).
EPOCHS_RESULT = "run_epochs"


class EpochsInResults(pl.Callback):
    """Put the number of epochs fitted into ``trainer.callback_metrics`` when training ends.

    After a spawned fit (``ddp_spawn``, ``ddp_fork``) the trainer of the launching process gets
    rank 0's weights and callback metrics back but not its loops: its ``current_epoch`` stays 0.
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.callback_metrics[EPOCHS_RESULT] = torch.tensor(float(trainer.current_epoch))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file beside the target, then rename it into place.

    A process killed at any moment (``kill -9`` included) leaves either the previous checkpoint or
    the new one, never a truncated file, so ``last.ckpt`` can always be resumed from.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        write_atomic(Path(path), lambda tmp: torch.save(checkpoint, tmp))


def reliability_callbacks(cfg: DictConfig, run_info: dict[str, Any]) -> list[pl.Callback]:
    """The callbacks every training run gets."""
    callbacks: list[pl.Callback] = [
        FiniteLossGuard(),
        RunInfoInCheckpoint(run_info),
        FlushLogsWithCheckpoints(),
        EpochsInResults(),
    ]
    if cfg.get("seed") is not None:
        callbacks.append(BatchSeeding(int(cfg.seed)))
    callbacks.append(ProcessGroupRelease())  # last: the teardown hooks before it may need the group
    return callbacks


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def validate_train_config(cfg: DictConfig) -> None:
    """Reject model and trainer values that would otherwise fail deep inside PyTorch or Lightning.

    Only keys no constructor checks: the net's sizes and options (``model.net.*``) are checked by
    the network (:class:`~lstm_forecast.models.net.EmbeddingBiLSTM`,
    :class:`~lstm_forecast.models.segment_net.SegmentBiLSTM`), the data's by the datamodule.
    """

    def get(key: str) -> Any:
        return OmegaConf.select(cfg, key, default=None)

    # The datamodule, built before the net, checks this value too but names it data.horizon
    # (data.horizon: ${model.horizon}); checked here so the error names the key the user sets.
    horizon = get("model.horizon")
    if horizon is not None and not _positive_int(horizon):
        raise UserError(f"model.horizon must be a positive integer, got {horizon!r}")
    lr = get("model.lr")
    if lr is not None and not (isinstance(lr, int | float) and not isinstance(lr, bool) and lr > 0):
        raise UserError(f"model.lr must be a positive number, got {lr!r}")
    weight_decay = get("model.weight_decay")
    if weight_decay is not None and not (isinstance(weight_decay, int | float) and weight_decay >= 0):
        raise UserError(f"model.weight_decay must be a number >= 0, got {weight_decay!r}")
    for key in ("trainer.max_epochs", "trainer.min_epochs"):
        value = get(key)
        if value is not None and not (_positive_int(value) or (key == "trainer.max_epochs" and value == -1)):
            raise UserError(f"{key} must be a positive integer (max_epochs=-1: no limit), got {value!r}")
    seed = get("seed")
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise UserError(f"seed must be a non-negative integer or null, got {seed!r}")
