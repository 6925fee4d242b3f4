"""Build data, model, callbacks, loggers and trainer from the config; fit; score the best checkpoint."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.loading import in_process_loading
from lstm_forecast.data.summary import read_summary
from lstm_forecast.errors import UserError, causes, one_line_reason
from lstm_forecast.evaluation.comparison import validation_baseline_key, validation_comparison
from lstm_forecast.evaluation.report import EvaluationOptions, fit_ridge
from lstm_forecast.evaluation.streaming import KeepWindows, ScoredChunk, evaluate_windows, validation_scores
from lstm_forecast.files import write_json
from lstm_forecast.models.checkpoint import read_checkpoint
from lstm_forecast.models.module import ForecastModule
from lstm_forecast.training.callbacks import RunEndCallback, ThrottledProgressBar
from lstm_forecast.training.distributed import is_rank_zero
from lstm_forecast.training.guards import (
    EPOCHS_RESULT,
    AtomicCheckpointIO,
    reliability_callbacks,
    validate_train_config,
)
from lstm_forecast.training.loggers import log_run_end, overridden_hparams, report_skipped_tensorboard_outputs
from lstm_forecast.training.run_folder import resolve_ckpt_path, run_info
from lstm_forecast.training.sweeps import DEFAULT_OBJECTIVE

log = logging.getLogger(__name__)

# Hyperparameters shown in TensorBoard's HParams tab (when present in the config).
HPARAM_KEYS = (
    "data.window_size",
    "data.batch_size",
    "data.padding_mask",
    "model.architecture",
    "model.horizon",
    "model.loss",
    "model.lr",
    "model.weight_decay",
    "model.lr_decay",
    "model.lr_constant_epochs",
    "model.net.embedding_dim",
    "model.net.num_units",
    "model.net.num_lstm_layers",
    "model.net.dense_size",
    "model.net.dropout",
    "model.net.window_norm",
    "model.net.last_value_skip",
    "model.net.recurrent",
    "model.net.seg_len",
    "trainer.accelerator",
    "trainer.precision",
    "trainer.gradient_clip_val",
    "seed",
)


# Optional packages with an extra of their own (pyproject.toml), named like their logger config.
OPTIONAL_EXTRAS = ("mlflow", "wandb")


def instantiate_group(cfg: DictConfig, group: str) -> list[Any]:
    """Instantiate each entry of the name-keyed group ``cfg.<group>`` (callbacks, logger); skip empty ones.

    An entry whose package is not installed (``logger=wandb`` without wandb) is a one-line UserError.
    """
    nodes = cfg.get(group)
    if not nodes:
        return []
    out = []
    for name, node in nodes.items():
        if not node or "_target_" not in node:
            continue
        try:
            out.append(instantiate(node))
        except Exception as error:
            missing = next((c for c in causes(error) if isinstance(c, ModuleNotFoundError)), None)
            if missing is None:
                raise
            fix = f"pip install 'lstm-forecast[{name}]'" if name in OPTIONAL_EXTRAS else "install it"
            raise UserError(
                f"{group}.{name} needs a package that is not installed ({one_line_reason(missing)}); "
                f"{fix}, or leave it out ({group}.{name}=null)"
            ) from None
    return out


def selected_hparams(cfg: DictConfig) -> dict[str, Any]:
    """Scalar hyperparameters for the HParams tab."""
    out = {}
    for key in HPARAM_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, bool | int | float | str):
            out[key] = value
    out.update(overridden_hparams(cfg))  # whatever else a sweep varies
    return out


def record_absolute_data_path(cfg: DictConfig) -> None:
    """Make a relative ``data.source.path`` absolute (from the working directory) in ``cfg``, so the
    checkpoint (data hyperparameters, run info) names the file wherever the apps reading it run."""
    path = OmegaConf.select(cfg, "data.source.path", default=None, throw_on_missing=False)
    if isinstance(path, str) and path and not Path(path).is_absolute():
        cfg.data.source.path = str(Path(path).absolute())


def build(
    cfg: DictConfig, table: pd.DataFrame | None = None
) -> tuple[ForecastDataModule, ForecastModule, pl.Trainer]:
    """The datamodule, the model sized from its data, and the trainer with callbacks and loggers.

    ``table``, when given, holds the rows of the configured file source (wide or long) in memory:
    the Python API's DataFrame, read with the same code as a file (``data.source.path`` unused).
    """
    record_absolute_data_path(cfg)
    datamodule: ForecastDataModule = instantiate(cfg.data)
    if table is not None:
        datamodule.use_table(table)
    datamodule.load_frame()  # fail on bad data before anything else starts
    if is_rank_zero():
        log.info("%s", read_summary(datamodule))
    # Static category columns (long files) size the network's extra embeddings.
    model: ForecastModule = instantiate(
        cfg.model,
        num_series=datamodule.num_series,
        num_features=datamodule.num_features,
        static_cardinalities=datamodule.static_cardinalities,
        num_future_features=len(datamodule.future_feature_names),
        window_size=datamodule.window_size,
    )
    callbacks = instantiate_group(cfg, "callbacks")
    # Without a bar in the callbacks group, Lightning would pick the rich bar or TQDM's depending on
    # what else is installed, both updated every batch: ours is the same everywhere, and cheap.
    has_bar = any(isinstance(callback, ProgressBar) for callback in callbacks)
    if cfg.trainer.get("enable_progress_bar", True) and not has_bar:
        callbacks.append(ThrottledProgressBar())
    # Reliability (finite-loss guard, per-epoch seeding, run info in checkpoints, atomic checkpoint
    # writes, the process group's release) is not optional, so it is added here rather than in the
    # callbacks group, and last: the release must follow every other teardown hook.
    callbacks += reliability_callbacks(cfg, run_info(cfg))
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=instantiate_group(cfg, "logger"),
        **plugins,
    )
    log_device(trainer)
    report_skipped_tensorboard_outputs(trainer)
    return datamodule, model, trainer


class _NoAdvertisements(logging.Filter):
    """Drops Lightning's "Tip: try installing ..." lines: advertisements for its cloud services."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith("\N{ELECTRIC LIGHT BULB} Tip:")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """While a run is built and fitted, silence what Lightning prints that does not concern the user:
    its advertisements, the deprecation warning its own code triggers in torch (``LeafSpec``) and the
    advice to log more often than ``log_every_n_steps`` (the run logs the training loss once an epoch).
    Warnings and logging are restored on the way out."""
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    no_ads = _NoAdvertisements()
    rank_zero.addFilter(no_ads)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")
            warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")
            yield
    finally:
        rank_zero.removeFilter(no_ads)


def log_device(trainer: pl.Trainer) -> None:
    """Say in one info line (rank 0) where the run trains: ``training on cuda:0 (NVIDIA H100 80GB HBM3)``,
    ``training on cpu (8 threads)``; with the number of processes when there are several."""
    if not is_rank_zero():
        return
    device = trainer.strategy.root_device
    if device.type == "cuda":
        detail = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        threads = torch.get_num_threads()
        detail = f"{threads} thread{'s' if threads > 1 else ''}"
    else:
        detail = device.type
    processes = f", {trainer.world_size} processes" if trainer.world_size > 1 else ""
    log.info("training on %s (%s)%s", device, detail, processes)


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


def train(cfg: DictConfig, table: pd.DataFrame | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit, then score the best checkpoint on the test split on one device; write ``metrics.json``.

    With ``test_after_fit=false`` the test split is not scored (nor read): ``metrics.json`` then holds
    the fit's and the validation metrics only, as a run that selects a configuration needs.

    Parameters
    ----------
    cfg : DictConfig
        The composed ``conf/train.yaml``.
    table : pandas.DataFrame, optional
        The data source's rows in memory (see :func:`build`).

    Returns
    -------
    tuple
        ``(metrics, objects)``: metrics as written (on rank 0; other ranks return the fit's logged
        metrics), and the datamodule, model and trainer.
    """
    validate_train_config(cfg)
    options = EvaluationOptions.from_config(cfg.get("evaluation"))  # checked before any fitting
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    with quiet_lightning():
        datamodule, model, trainer = build(cfg, table)
        ckpt_path = checked_resume_checkpoint(cfg, model)
        with in_process_loading():
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    objects = {"datamodule": datamodule, "model": model, "trainer": trainer}
    # Timings go to TensorBoard only: metrics.json holds results, repeatable bit for bit.
    metrics: dict[str, Any] = {
        k: float(v) for k, v in trainer.callback_metrics.items() if not k.startswith("time/")
    }
    # The fitted loops' epoch count, also where the fit ran in spawned processes (ddp_spawn).
    epochs = int(metrics.pop(EPOCHS_RESULT, trainer.current_epoch))
    if not trainer.is_global_zero:
        return metrics, objects

    # After a spawned fit (ddp_spawn) this process has the best checkpoint's path but never set the
    # datamodule up: validation_scores sets it up (splits, scalers, windows) before scoring.
    best_checkpoint = best_weights(trainer, model)
    # Scored on one device, outside the distributed loop: every test window exactly once.
    output_dir = Path(cfg.paths.output_dir)
    # Lightning hands the model back on the CPU after fit; score on the training device.
    device = trainer.strategy.root_device
    model.to(device)
    # The selection objective: val/loss is in scaled units, which differ between data.scaler choices;
    # the best checkpoint's z-normalised validation error compares any two runs on the same data.
    # Every validation window is scored (a chunk at a time), also when the fit validated on a sample,
    # beside the baselines on the same windows; the ridge baseline is fitted once, for both splits.
    ridge = fit_ridge(datamodule, options)
    val_scores, calibration = validation_scores(model, datamodule, device, options, ridge)
    metrics.update(
        {k: v for k, v in val_scores.metrics.items() if "@" not in k and not k.startswith("baseline/")}
    )
    for name in options.baselines:
        metrics[validation_baseline_key(name)] = val_scores.metrics[f"baseline/{name}/mse_z"]
    comparison = validation_comparison(metrics)
    if comparison is not None:
        line, loses = comparison
        # A model that a baseline beats says so as loudly as the drift check: small data often makes one.
        log.log(logging.WARNING if loses else logging.INFO, "%s", line)
    test_forecasts = test_scores = None
    # Off while selecting a configuration (the accuracy protocol): the test split is not even read.
    if cfg.get("test_after_fit", True):
        # The test windows' intervals are calibrated on the validation forecasts just made; only the
        # windows the run-end figures draw are kept, the rest is scored and let go chunk by chunk.
        test_scores, test_forecasts, _ = evaluate_windows(
            model,
            datamodule,
            datamodule.windows["test"],
            "test",
            device=device,
            options=options,
            calibration=calibration,
            keep=run_end_windows(trainer, datamodule),
            ridge=ridge,
        )
        if options.tables:
            test_scores.write_tables(output_dir)
        metrics.update(test_scores.metrics)
    metrics.update({"best_checkpoint": best_checkpoint, "epochs": epochs})
    log_run_end(trainer, model, datamodule, test_forecasts, metrics, selected_hparams(cfg), test_scores)
    write_json(output_dir / "metrics.json", metrics)
    log.info("%s; metrics in %s", result_line(metrics), output_dir / "metrics.json")
    return metrics, objects


def run_end_windows(trainer: pl.Trainer, datamodule: ForecastDataModule) -> KeepWindows:
    """Which scored test windows to keep for the run-end callbacks: those of the series they read."""
    wanted = sorted(
        {
            series
            for callback in trainer.callbacks
            if isinstance(callback, RunEndCallback)
            for series in callback.series_to_keep(datamodule)
        }
    )

    def keep(chunk: ScoredChunk) -> np.ndarray:
        return np.isin(chunk.forecasts.series_index, wanted)

    return keep


def result_line(metrics: dict[str, Any]) -> str:
    """The run's headline: test MSE beside the baselines', or the validation MSE of a run without test."""
    if "test/mse_z" not in metrics:
        return f"val/mse_z {metrics['val/mse_z']:.4f} (test not scored: test_after_fit=false)"
    baselines = ", ".join(
        f"{name} {metrics[f'baseline/{name}/mse_z']:.4f}"
        for name in ("persistence", "seasonal_naive", "ridge")
        if f"baseline/{name}/mse_z" in metrics
    )
    return f"test/mse_z {metrics['test/mse_z']:.4f} ({baselines})"


def objective_value(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The number a sweeper minimises (``cfg.objective``, default ``val/mse_z``)."""
    value = metrics.get(cfg.get("objective", DEFAULT_OBJECTIVE))
    return float(value) if isinstance(value, float | int) else None


def torch_threads(cfg: DictConfig) -> None:
    """Apply ``cfg.num_threads`` (intra-op CPU threads) when set."""
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
