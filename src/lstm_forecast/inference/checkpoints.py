"""The one checkpoint loader of ``lstm-evaluate``, ``lstm-predict`` and ``lstm-backtest``.

Checkpoints are read safely (``torch.load(weights_only=True)`` only, never arbitrary pickles); the
model, the data config, the fitted scaler and the training run's ``evaluation`` settings all come from
the checkpoint; an app applies only the settings its user overrides.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.frame import check_same_names
from lstm_forecast.data.summary import read_summary
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.report import EvaluationOptions
from lstm_forecast.inference.unseen_series import (
    check_unseen_choice,
    scale_unseen_series,
    unseen_names,
    with_unseen_series,
)
from lstm_forecast.models.checkpoint import DATAMODULE_STATE_KEYS, module_from_checkpoint, read_checkpoint
from lstm_forecast.models.module import ForecastModule

log = logging.getLogger(__name__)

LATEST_RUN = "latest"  # run=latest: the newest finished training run


def datamodule_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's datamodule state (scalers, series and feature names)."""
    return next(checkpoint[key] for key in DATAMODULE_STATE_KEYS if key in checkpoint)


def trained_evaluation(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The training run's ``evaluation`` config group, as its checkpoint stores it (``run_info``'s
    resolved config); None for a checkpoint written without it."""
    config = (checkpoint.get("run_info") or {}).get("config") or {}
    stored = config.get("evaluation") if isinstance(config, dict) else None
    return stored if isinstance(stored, dict) else None


def evaluation_options(checkpoint: dict[str, Any], given: Any = None) -> EvaluationOptions:
    """The training run's evaluation settings with the non-null keys of ``given`` (an app's
    ``evaluation`` node: null keeps the run's) over them. A checkpoint that stored none falls back
    to the defaults of ``conf/evaluation/default.yaml`` (which :class:`EvaluationOptions` equals).
    Settings stored before ``calibration`` existed were scored with split calibration at the nominal
    level: so they still are."""
    stored = trained_evaluation(checkpoint) or {}
    known = {k: v for k, v in stored.items() if k in EvaluationOptions.__dataclass_fields__}
    if stored:
        known.setdefault("calibration", "split")
        known.setdefault("adaptive_step", 0.0)
    trained = EvaluationOptions.from_config(known)
    if isinstance(given, DictConfig):
        given = OmegaConf.to_container(given, resolve=True)
    overrides = {k: v for k, v in (given or {}).items() if v is not None}
    return EvaluationOptions.from_config(overrides, base=trained)


def datamodule_from_checkpoint(
    checkpoint: dict[str, Any], overrides: dict[str, Any] | None = None, table: pd.DataFrame | None = None
) -> ForecastDataModule:
    """The training data config with ``overrides`` applied, holding the fitted scaler.

    A ``source`` override of the same kind updates the training source; one of another kind
    replaces it. ``table``, when given, holds the source's rows in memory (a DataFrame read with the
    source's column roles, in place of its file).
    """
    hparams = dict(checkpoint["datamodule_hyper_parameters"])
    for key, value in (overrides or {}).items():
        if key == "source" and value.get("kind", hparams["source"]["kind"]) == hparams["source"]["kind"]:
            hparams["source"] = {**hparams["source"], **value}
        else:
            hparams[key] = value
    datamodule = ForecastDataModule(**hparams)
    if table is not None:
        datamodule.use_table(table)
    state = datamodule_state(checkpoint)
    datamodule.load_state_dict(state)
    check_same_names(
        "extra feature", datamodule.feature_names, list(state["feature_names"]), datamodule.source.get("path")
    )
    return datamodule


def best_checkpoint_of(run: str | Path) -> Path:
    """The best checkpoint of a training run folder (``best_checkpoint`` in its ``metrics.json``)."""
    run = Path(run)
    metrics_file = run / "metrics.json"
    if not metrics_file.is_file():
        raise UserError(
            f"{run} is not a finished lstm-train run (no metrics.json); pass run=outputs/runs/train/<time> "
            "or ckpt_path=<file>.ckpt"
        )
    best = json.loads(metrics_file.read_text()).get("best_checkpoint")
    if not best:
        raise UserError(f"the run {run} recorded no best checkpoint; pass ckpt_path=<file>.ckpt")
    path = Path(best)
    # A moved run folder: its own checkpoints folder holds the file.
    return path if path.is_file() else run / "checkpoints" / path.name


def latest_run(train_runs: str | Path) -> Path:
    """The newest finished training run folder in ``train_runs`` (``<paths.runs_dir>/train``): the one
    whose ``metrics.json`` was written last, so a run still training (no ``metrics.json`` yet) or one
    that failed is passed over."""
    train_runs = Path(train_runs)
    finished = [metrics.parent for metrics in train_runs.glob("*/metrics.json")]
    if not finished:
        raise UserError(
            f"run=latest found no finished lstm-train run in {train_runs.absolute()}; train one first, "
            "or pass run=<training run folder> or ckpt_path=<file>.ckpt"
        )
    newest = max(finished, key=lambda run: ((run / "metrics.json").stat().st_mtime_ns, run.name))
    log.info("run=latest: %s", newest.absolute())
    return newest


def checkpoint_path(cfg: DictConfig) -> Path:
    """``ckpt_path``, or the best checkpoint of ``run`` (``latest``: :func:`latest_run` under
    ``paths.runs_dir``); exactly one of them."""
    ckpt_path, run = cfg.get("ckpt_path"), cfg.get("run")
    if (ckpt_path is None) == (run is None):
        raise UserError(
            "name the model with one of run=<training run folder> (its best checkpoint), run=latest "
            "or ckpt_path=<file>.ckpt"
        )
    if ckpt_path is not None:
        return Path(ckpt_path)
    if str(run) == LATEST_RUN:
        run = latest_run(Path(cfg.paths.runs_dir) / "train")
    return best_checkpoint_of(run)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no GPU is available; use device=cpu")
    return device


def data_overrides(cfg: DictConfig) -> dict[str, Any]:
    """The ``data.*`` keys set on the command line (nulls mean: keep the checkpoint's)."""
    data = OmegaConf.to_container(cfg.get("data") or {}, resolve=True)
    source = {k: v for k, v in (data.pop("source", None) or {}).items() if v is not None}
    overrides = {k: v for k, v in data.items() if v is not None}
    if source:
        overrides["source"] = source
    return overrides


@dataclass
class LoadedModel:
    """A trained model, ready to forecast: the network on its device, the data with its scaler."""

    path: Path
    module: ForecastModule
    datamodule: ForecastDataModule
    device: torch.device
    trained_state: dict[str, Any]  # the datamodule state at training time (series, features, freq)
    evaluation: EvaluationOptions  # the training run's, with the app's ``evaluation.*`` overrides


def load_model(
    cfg: DictConfig,
    source_for: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    table: pd.DataFrame | None = None,
    unseen_series: str = "refuse",
) -> LoadedModel:
    """Everything a checkpoint app needs, from its config: ``ckpt_path`` or ``run``, ``device``,
    ``num_threads`` and the ``data.*`` and ``evaluation.*`` overrides (nulls keep the checkpoint's).

    ``source_for(trained_source)`` may rewrite the ``data.source`` override (predict reads a file
    even for a model trained on data it did not read from a file). ``table`` holds the data's rows
    in memory (the Python API's DataFrame), in place of the source's file. ``unseen_series``:
    ``mean_embedding`` forecasts series of a long table that the model was not trained on
    (:mod:`~lstm_forecast.inference.unseen_series`); ``refuse`` refuses them.
    """
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    device = resolve_device(str(cfg.get("device") or "auto"))
    path = checkpoint_path(cfg)
    checkpoint = read_checkpoint(path)
    overrides = data_overrides(cfg)
    if source_for is not None and "source" in overrides:
        overrides["source"] = source_for(
            checkpoint["datamodule_hyper_parameters"]["source"], overrides["source"]
        )
    trained_series = len(datamodule_state(checkpoint)["series_names"])
    if check_unseen_choice(unseen_series) == "mean_embedding":
        trained, given = checkpoint["datamodule_hyper_parameters"]["source"], overrides.get("source", {})
        source = {**trained, **given} if given.get("kind", trained["kind"]) == trained["kind"] else given
        checkpoint = with_unseen_series(checkpoint, unseen_names(checkpoint, source, table))
    module = module_from_checkpoint(checkpoint).to(device)
    datamodule = datamodule_from_checkpoint(checkpoint, overrides, table)
    if datamodule.num_series > trained_series:
        scale_unseen_series(datamodule, trained_series)
    log.info("%s", read_summary(datamodule))  # what was read, as lstm-train says it
    evaluation = evaluation_options(checkpoint, cfg.get("evaluation"))
    return LoadedModel(path, module, datamodule, device, datamodule_state(checkpoint), evaluation)
