"""Real faults injected into real training runs (used through the config, ``+callbacks.poison=...``)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class PoisonWeightsAtEpoch(pl.Callback):
    """Turn the output bias into NaN at the start of training epoch ``epoch``: a divergence on cue."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                list(pl_module.parameters())[-1].view(-1)[0] = float("nan")
