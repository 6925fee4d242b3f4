"""Build data, model, callbacks, loggers and trainer from the config; fit; score the best checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.report import EvaluationOptions, evaluate_windows, score_models
from lstm_forecast.evaluation.window_forecasts import predict_windows
from lstm_forecast.files import write_json
from lstm_forecast.models.checkpoint import read_checkpoint
from lstm_forecast.models.module import ForecastModule
from lstm_forecast.training.guards import AtomicCheckpointIO, reliability_callbacks, validate_train_config
from lstm_forecast.training.loggers import log_run_end, overridden_hparams
from lstm_forecast.training.run_folder import resolve_ckpt_path, run_info
from lstm_forecast.training.sweeps import DEFAULT_OBJECTIVE

log = logging.getLogger(__name__)

# Hyperparameters shown in TensorBoard's HParams tab (when present in the config).
HPARAM_KEYS = (
    "data.window_size",
    "data.batch_size",
    "data.padding_mask",
    "model.horizon",
    "model.loss",
    "model.lr",
    "model.weight_decay",
    "model.net.embedding_dim",
    "model.net.num_units",
    "model.net.num_lstm_layers",
    "model.net.dense_size",
    "model.net.dropout",
    "model.net.window_norm",
    "model.net.last_value_skip",
    "trainer.accelerator",
    "trainer.precision",
    "trainer.gradient_clip_val",
    "seed",
)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate each entry of a name-keyed group (callbacks, loggers); skip empty ones."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node and "_target_" in node]


def selected_hparams(cfg: DictConfig) -> dict[str, Any]:
    """Scalar hyperparameters for the HParams tab."""
    out = {}
    for key in HPARAM_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, bool | int | float | str):
            out[key] = value
    out.update(overridden_hparams(cfg))  # whatever else a sweep varies
    return out


def build(cfg: DictConfig) -> tuple[ForecastDataModule, ForecastModule, pl.Trainer]:
    """The datamodule, the model sized from its data, and the trainer with callbacks and loggers."""
    datamodule: ForecastDataModule = instantiate(cfg.data)
    datamodule.load_frame()  # fail on bad data before anything else starts
    # Static category columns (long files) size the network's extra embeddings.
    model: ForecastModule = instantiate(
        cfg.model,
        num_series=datamodule.num_series,
        num_features=datamodule.num_features,
        static_cardinalities=datamodule.static_cardinalities,
    )
    if model.net.highway_window > datamodule.window_size:
        raise UserError(
            f"model.net.highway_window={model.net.highway_window} is longer than the window "
            f"(data.window_size={datamodule.window_size}); use at most the window size"
        )
    # Reliability (finite-loss guard, per-epoch seeding, run info in checkpoints, atomic checkpoint
    # writes) is not optional, so it is added here rather than in the callbacks group.
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_group(cfg.get("callbacks")) + reliability_callbacks(cfg, run_info(cfg)),
        logger=instantiate_group(cfg.get("logger")),
        **plugins,
    )
    return datamodule, model, trainer


def checked_resume_checkpoint(cfg: DictConfig, model: ForecastModule) -> str | None:
    """The checkpoint to continue from (``ckpt_path``), refused in one line if it is unreadable or
    does not fit the configured model."""
    ckpt_path = resolve_ckpt_path(cfg)
    if ckpt_path is None:
        return None
    state_dict = read_checkpoint(ckpt_path)["state_dict"]
    try:
        model.load_state_dict(state_dict)  # Lightning loads the same weights again in fit
    except RuntimeError as error:
        raise UserError(
            f"checkpoint {ckpt_path} does not fit the configured model "
            f"({str(error).splitlines()[-1].strip()}); resume with the run's own config"
        ) from None
    return ckpt_path


def best_weights(trainer: pl.Trainer, model: ForecastModule) -> str | None:
    """Load the best checkpoint's weights into ``model``; its path, or None if none was written."""
    callback = trainer.checkpoint_callback
    path = callback.best_model_path if isinstance(callback, ModelCheckpoint) else ""
    if not path:
        return None
    model.load_state_dict(read_checkpoint(path)["state_dict"])
    return path


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit, then score the best checkpoint on the test split on one device; write ``metrics.json``.

    Returns
    -------
    tuple
        ``(metrics, objects)``: metrics as written (on rank 0; other ranks return the fit's logged
        metrics), and the datamodule, model and trainer.
    """
    validate_train_config(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule, model, trainer = build(cfg)
    ckpt_path = checked_resume_checkpoint(cfg, model)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    objects = {"datamodule": datamodule, "model": model, "trainer": trainer}
    # Timings go to TensorBoard only: metrics.json holds results, repeatable bit for bit.
    metrics: dict[str, Any] = {
        k: float(v) for k, v in trainer.callback_metrics.items() if not k.startswith("time/")
    }
    if not trainer.is_global_zero:
        return metrics, objects

    best_checkpoint = best_weights(trainer, model)
    # Scored on one device, outside the distributed loop: every test window exactly once.
    output_dir = Path(cfg.paths.output_dir)
    # Lightning hands the model back on the CPU after fit; score on the training device.
    device = trainer.strategy.root_device
    model.to(device)
    options = EvaluationOptions.from_config(cfg.get("evaluation"))
    # The selection objective: val/loss is in scaled units, which differ between data.scaler choices;
    # the best checkpoint's z-normalised validation error compares any two runs on the same data.
    val_forecasts = predict_windows(model, datamodule.windows["val"], datamodule.eval_batch_size, device)
    val_scores = score_models(val_forecasts, datamodule, "val", baselines={})
    metrics.update({k: v for k, v in val_scores.metrics.items() if "@" not in k})
    # The test windows' intervals are calibrated on the validation forecasts just made.
    scores, test_forecasts, _ = evaluate_windows(
        model,
        datamodule,
        datamodule.windows["test"],
        "test",
        device=device,
        options=options,
        calibration=val_forecasts,
    )
    if options.tables:
        scores.write_tables(output_dir)
    metrics.update(scores.metrics)
    metrics.update({"best_checkpoint": best_checkpoint, "epochs": trainer.current_epoch})
    log_run_end(trainer, model, datamodule, test_forecasts, metrics, selected_hparams(cfg))
    write_json(output_dir / "metrics.json", metrics)
    baselines = ", ".join(
        f"{name} {metrics[f'baseline/{name}/mse_z']:.4f}"
        for name in ("persistence", "seasonal_naive", "ridge")
        if f"baseline/{name}/mse_z" in metrics
    )
    log.info(
        "test/mse_z %.4f (%s); metrics in %s", metrics["test/mse_z"], baselines, output_dir / "metrics.json"
    )
    return metrics, objects


def objective_value(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The number a sweeper minimises (``cfg.objective``, default ``val/mse_z``)."""
    value = metrics.get(cfg.get("objective", DEFAULT_OBJECTIVE))
    return float(value) if isinstance(value, float | int) else None


def torch_threads(cfg: DictConfig) -> None:
    """Apply ``cfg.num_threads`` (intra-op CPU threads) when set."""
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
