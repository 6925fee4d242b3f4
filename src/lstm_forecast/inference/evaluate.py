"""``lstm-evaluate``: recompute the metrics of a checkpoint on a split, beside the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from lstm_forecast.data.split import SPLITS
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.drift import DEFAULT_WARN_SHARE, check_warn_share, warn_drift
from lstm_forecast.evaluation.report import SplitScores, print_summary
from lstm_forecast.evaluation.streaming import ScoredStream
from lstm_forecast.evaluation.tables import dates_only, forecast_table
from lstm_forecast.files import write_json, write_table_chunks
from lstm_forecast.inference.checkpoints import LoadedModel, load_model


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score the checkpoint (``ckpt_path`` or ``run``) on ``cfg.split``; write ``metrics.json``, the
    per-step and per-series tables and the per-window forecasts (``cfg.forecasts_file``, written a chunk
    of windows at a time as they are scored) into the run folder."""
    stream, loaded = checkpoint_stream(cfg)
    datamodule = loaded.datamodule
    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("forecasts_file"):
        write_table_chunks(
            output_dir / cfg.forecasts_file,
            (forecast_table(chunk.forecasts, datamodule) for chunk in stream),
            dates_only=dates_only(datamodule.load_frame(), datamodule.horizon),
        )
    scores = stream.scores()
    metrics = checkpoint_metrics(scores, loaded)
    if loaded.evaluation.tables:
        scores.write_tables(output_dir)
    write_json(output_dir / "metrics.json", metrics)
    print_summary(metrics, output_dir / "metrics.json")
    return metrics


def checkpoint_stream(cfg: DictConfig, table: pd.DataFrame | None = None) -> tuple[ScoredStream, LoadedModel]:
    """The checkpoint (``ckpt_path`` or ``run``) and its forecasts of ``cfg.split``'s windows, beside the
    baselines, ready to be scored a chunk at a time (:class:`ScoredStream`); drift warned about first.

    ``table`` holds the data's rows in memory (the Python API's DataFrame) in place of its file.
    """
    if cfg.split not in SPLITS:
        raise UserError(f"split must be one of {list(SPLITS)}, got {cfg.split!r}")
    warn_share = check_warn_share(OmegaConf.select(cfg, "drift.warn_share", default=DEFAULT_WARN_SHARE))
    loaded = load_model(cfg, table=table)
    datamodule = loaded.datamodule
    datamodule.setup("test")
    data_name = str(datamodule.source.get("path") or f"the {datamodule.source['kind']} data")
    windows = datamodule.windows[cfg.split]
    warn_drift(datamodule, windows, warn_share, f"{data_name} ({cfg.split} split)")
    stream = ScoredStream(
        loaded.module, datamodule, windows, cfg.split, device=loaded.device, options=loaded.evaluation
    )
    return stream, loaded


def checkpoint_metrics(scores: SplitScores, loaded: LoadedModel) -> dict[str, Any]:
    """What ``metrics.json`` holds: the scores and the checkpoint they are of."""
    return {**scores.metrics, "checkpoint": str(loaded.path.resolve())}


def score_checkpoint(
    cfg: DictConfig, table: pd.DataFrame | None = None
) -> tuple[dict[str, Any], SplitScores, LoadedModel]:
    """The metrics ``lstm-evaluate`` writes for the checkpoint on ``cfg.split``, writing nothing.

    Returns
    -------
    tuple
        ``(metrics, scores, loaded)``: the ``metrics.json`` dict, the scores with their per-step and
        per-series tables, and the model.
    """
    stream, loaded = checkpoint_stream(cfg, table)
    scores = stream.scores()
    return checkpoint_metrics(scores, loaded), scores, loaded
