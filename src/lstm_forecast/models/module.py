"""The LightningModule ("system"): loss, metrics and optimiser around the network its
``architecture`` names (:class:`EmbeddingBiLSTM` or :class:`SegmentBiLSTM`)."""

from __future__ import annotations

import inspect
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError, MinMetric

from lstm_forecast.errors import UserError
from lstm_forecast.models.net import EmbeddingBiLSTM
from lstm_forecast.models.quantiles import (
    LOSSES,
    check_quantile_levels,
    pinball_loss,
    point_forecast,
    quantile_outputs,
)
from lstm_forecast.models.ridge import RidgeBaseline
from lstm_forecast.models.segment_net import SegmentBiLSTM

# Full precisions, whose plugins leave gradients unscaled: Adam may run fused.
FUSED_ADAM_PRECISIONS = ("32-true", "64-true")

Batch = dict[str, torch.Tensor]

# Written into every checkpoint; loaders refuse others. Bump it when hyperparameters, state or the
# window layout change incompatibly.
CHECKPOINT_FORMAT_KEY = "lstm_forecast_format"
CHECKPOINT_FORMAT = 1

# model.architecture -> the network. Checkpoints written before the key existed hold a bilstm.
NETWORKS: dict[str, type[nn.Module]] = {"bilstm": EmbeddingBiLSTM, "seg_bilstm": SegmentBiLSTM}


def build_network(architecture: str, net: dict[str, Any], **from_data: Any) -> nn.Module:
    """The network ``architecture`` names, built from the ``model.net`` options ``net`` and the sizes
    that come from the data and the model (``num_series``, ``horizon``...); unknown options are
    refused in one line."""
    if architecture not in NETWORKS:
        raise UserError(f"model.architecture must be one of {list(NETWORKS)}, got {architecture!r}")
    network = NETWORKS[architecture]
    accepted = set(inspect.signature(network).parameters) - set(from_data)
    unknown = sorted(set(net) - accepted)
    if unknown:
        raise UserError(
            f"model.net.{unknown[0]} is not an option of model.architecture={architecture}; "
            f"remove it (options: {', '.join(sorted(accepted))})"
        )
    return network(**from_data, **net)


class ForecastModule(pl.LightningModule):
    """MSE- or quantile-trained forecaster. Hyperparameters are plain data, so checkpoints load with
    ``torch.load(weights_only=True)``.

    Gradient clipping, early stopping and checkpointing are Trainer and callback config, not code here.

    Parameters
    ----------
    num_series, num_features : int
        From the data (see :class:`~lstm_forecast.data.datamodule.ForecastDataModule`).
    horizon : int
        Steps predicted at once.
    net : dict
        Keyword arguments of the network (sizes, dropout...).
    architecture : {"bilstm", "seg_bilstm"}
        The network: :class:`EmbeddingBiLSTM` (the method) or :class:`SegmentBiLSTM`.
    window_size : int or None
        Steps per window, from the data (``seg_bilstm`` and ``net.recurrent=linear`` need it).
    lr, weight_decay : float
        Adam's learning rate and L2 weight decay.
    lr_decay : float
        Factor in (0, 1] the learning rate is multiplied by after each epoch once ``lr_constant_epochs``
        have run (an epoch-interval ``LambdaLR``). 1.0 keeps it constant, the method's Adam; SegRNN
        trains with 0.8 after 4 constant epochs.
    lr_constant_epochs : int
        Epochs at the full learning rate before ``lr_decay`` starts.
    highway_init : {"random", "least_squares"}
        How a highway (``net.highway_window > 0``) starts. ``least_squares`` fits it in closed form
        on the training windows before the first step (ridge, regularisation chosen on validation) and
        zeroes the dense head, so training starts at the linear model and the LSTM learns what it
        misses (a zero-initialised residual branch). ``random``: PyTorch's default initialisation.
        Highways are ``bilstm``'s only.
    freeze_highway : bool
        Keep a least-squares highway fixed during training, so the network fits only the linear
        model's residuals (the hybrid of Zhang 2003). Adam moves every weight by about ``lr`` a step
        whatever its gradient, which walks a fitted linear map away from its optimum.
    static_cardinalities : list of int or None
        Codes per static category column of the data (long panels); batches then carry ``static``.
    num_future_features : int
        Future-known features per forecast step of the data (``data.future_columns`` and the calendar
        features); batches then carry ``x_future``. 0: the method's net.
    loss : {"mse", "mae", "quantile"}
        ``mse``: one output per step, the method. ``mae``: one output per step trained on the mean
        absolute error, as SegRNN (less pulled by spikes). ``quantile``: one output per level of
        ``quantiles`` (the net's ``outputs_per_step``), sorted so they never cross, trained with the
        pinball loss; the point forecast is the 0.5 quantile, or the mean of the quantiles without one.
    quantiles : list of float or None
        Levels in (0, 1), sorted without repeats, e.g. ``[0.1, 0.5, 0.9]``; read only with
        ``loss=quantile``.
    """

    def __init__(
        self,
        num_series: int,
        num_features: int,
        horizon: int = 1,
        net: dict[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_decay: float = 1.0,
        lr_constant_epochs: int = 0,
        static_cardinalities: list[int] | None = None,
        highway_init: str = "random",
        freeze_highway: bool = False,
        num_future_features: int = 0,
        architecture: str = "bilstm",
        window_size: int | None = None,
        loss: str = "mse",
        quantiles: list[float] | None = None,
    ) -> None:
        super().__init__()
        if highway_init not in ("random", "least_squares"):
            raise UserError(f"model.highway_init must be random or least_squares, got {highway_init!r}")
        if architecture != "bilstm" and (highway_init != "random" or freeze_highway):
            raise UserError(
                f"model.highway_init and model.freeze_highway are options of model=bilstm, not of "
                f"model.architecture={architecture}; remove them"
            )
        if loss not in LOSSES:
            raise UserError(f"model.loss must be one of {list(LOSSES)}, got {loss!r}")
        if isinstance(lr_decay, bool) or not isinstance(lr_decay, int | float) or not 0 < lr_decay <= 1:
            raise UserError(f"model.lr_decay must be a number in (0, 1] (1: constant), got {lr_decay!r}")
        if type(lr_constant_epochs) is not int or lr_constant_epochs < 0:
            raise UserError(f"model.lr_constant_epochs must be an integer >= 0, got {lr_constant_epochs!r}")
        # Empty for a point (MSE) model; the levels of the last output axis for a quantile model.
        self.quantile_levels: tuple[float, ...] = (
            check_quantile_levels(quantiles) if loss == "quantile" else ()
        )
        # logger=False: the run logs hyperparameters once, with the final metrics.
        self.save_hyperparameters(logger=False)
        self.net = build_network(
            architecture,
            net or {},
            num_series=num_series,
            num_features=num_features,
            horizon=horizon,
            static_cardinalities=static_cardinalities,
            num_future_features=num_future_features,
            window_size=window_size,
            outputs_per_step=max(len(self.quantile_levels), 1),
        )
        if highway_init == "least_squares" and self.net.highway is None:
            raise UserError("model.highway_init=least_squares needs a highway: set model.net.highway_window")
        if freeze_highway:
            if highway_init != "least_squares":
                raise UserError(
                    "model.freeze_highway=true keeps a fitted highway: set model.highway_init=least_squares"
                )
            self.net.highway.requires_grad_(False)
        self.loss_fn = nn.L1Loss() if loss == "mae" else nn.MSELoss()
        # TorchMetrics objects reduce over every rank at epoch end, weighting uneven shards correctly.
        # nan_strategy="disable": the default NaN check reads the GPU every step (a host sync);
        # a NaN loss still shows, as a NaN epoch mean.
        self.train_loss = MeanMetric(nan_strategy="disable")
        # val/loss (early stopping's) is the loss trained on, in scaled units.
        point_losses = {"mse": MeanSquaredError, "mae": MeanAbsoluteError}
        self.val_loss = point_losses[loss]() if loss in point_losses else MeanMetric(nan_strategy="disable")
        self.val_loss_best = MinMetric()
        self._resumed_val_loss_best: torch.Tensor | None = None

    def forward(
        self,
        x: torch.Tensor,
        series_id: torch.Tensor,
        static: torch.Tensor | None = None,
        x_future: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [B, W, F]``, ``series_id [B]``, optional ``static [B, K]`` and ``x_future [B, H, Ff]``
        -> scaled forecasts: ``[B, H]`` for a point model, non-crossing quantiles ``[B, H, Q]``
        (levels :attr:`quantile_levels`) for a quantile model."""
        output = self.net(x, series_id, static, x_future)  # [B, H] or [B, H, Q]
        return quantile_outputs(output, self.quantile_levels)  # [B, H] or [B, H, Q]

    def model_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shared by training, validation and test: ``(loss, preds [B, H], target [B, H])``; a quantile
        model's ``preds`` are its point forecasts."""
        output = self(
            batch["x"], batch["series_id"], batch.get("static"), batch.get("x_future")
        )  # [B, H] or [B, H, Q]
        if not self.quantile_levels:
            return self.loss_fn(output, batch["y"]), output, batch["y"]
        loss = pinball_loss(output, batch["y"], self.quantile_levels)
        return loss, point_forecast(output, self.quantile_levels), batch["y"]

    def on_train_start(self) -> None:
        if self.hparams.highway_init == "least_squares" and self.trainer.ckpt_path is None:
            self.fit_highway()
        self.val_loss_best.reset()  # forget the sanity check's loss
        if self._resumed_val_loss_best is not None:  # a resumed run continues its best so far
            self.val_loss_best.update(self._resumed_val_loss_best.to(self.device))

    @torch.no_grad()
    def fit_highway(self) -> None:
        """Set the highway to the least-squares fit of the training targets on its inputs (both as
        the network references them) and zero the head, so the net starts as that linear model."""
        net = self.net

        def referenced(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
            values = batch["values"]  # [B, W] (Windows.gather_values)
            normalised, offset, scale = net.normalise(values)  # [B, W], [B, 1], [B, 1]
            inputs = normalised[:, -net.highway_window :]
            skip = values[:, -1:] if net.last_value_skip else 0.0  # added after the highway
            return inputs, (batch["y"] - skip - offset) / scale

        windows = self.trainer.datamodule.windows
        per_series = net.highway.weight.shape[0] > 1
        weights = RidgeBaseline.fit(
            windows["train"], windows["val"], regression=referenced, per_series=per_series
        ).weights  # [K + 1, H], or [S + 1, K + 1, H] per series
        weights = weights.reshape(-1, *weights.shape[-2:])
        net.highway.weight.zero_()  # rows of series without training windows stay at 0
        net.highway.bias.zero_()
        net.highway.weight[: len(weights)] = weights[:, :-1].to(net.highway.weight)
        net.highway.bias[: len(weights)] = weights[:, -1].to(net.highway.bias)
        net.head.weight.zero_()
        net.head.bias.zero_()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_val_loss_best = checkpoint.get("val_loss_best")

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self.model_step(batch)
        # update(), not the metric's __call__: that also computes the batch's own value, a state copy,
        # compute and merge every step (2.4 ms of a 20 ms seg_bilstm step), which on_step=False never shows.
        self.train_loss.update(loss.detach(), weight=batch["y"].shape[0])
        return loss

    def on_train_epoch_end(self) -> None:
        # Logged once an epoch, not from training_step: Lightning's per-call logging bookkeeping cost
        # 2.8 ms of a 44 ms seg_bilstm step (a profile on a loaded machine), for an epoch mean either way.
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, preds, target = self.model_step(batch)
        if self.quantile_levels:  # val/loss is the loss trained on: the pinball loss
            self.val_loss.update(loss, weight=target.numel())
        else:
            self.val_loss.update(preds, target)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.val_loss_best(self.val_loss.compute())
        self.log("val/loss_best", self.val_loss_best.compute(), prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_FORMAT_KEY] = CHECKPOINT_FORMAT
        # TorchMetrics states are not in the state_dict; a resumed run needs the best loss so far.
        checkpoint["val_loss_best"] = self.val_loss_best.min_value.detach().cpu().clone()

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        hparams = self.hparams
        # The fused kernel updates every tensor in one call; the default loops over them in Python
        # (1.3 ms of seg_bilstm's ~23 ms CPU step, 0.3 ms fused). The update is the same up to float
        # rounding. Lightning refuses it with gradient clipping under mixed precision (it unscales
        # inside step()), so mixed precision keeps the default.
        trainer = self._trainer
        fused = trainer is None or trainer.precision in FUSED_ADAM_PRECISIONS
        optimizer = torch.optim.Adam(
            self.parameters(), lr=hparams.lr, weight_decay=hparams.weight_decay, fused=fused
        )
        decay, constant_epochs = hparams.lr_decay, hparams.lr_constant_epochs
        if decay == 1.0:
            return optimizer
        # LambdaLR's epoch counts finished epochs (Lightning steps it after each): epoch
        # constant_epochs, the first past the constant ones, trains at lr * decay.
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: decay ** max(0, epoch - constant_epochs + 1)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
