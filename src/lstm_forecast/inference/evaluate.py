"""``lstm-evaluate``: recompute the metrics of a checkpoint on a split, beside the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from lstm_forecast.data.split import SPLITS
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.drift import DEFAULT_WARN_SHARE, check_warn_share, warn_drift
from lstm_forecast.evaluation.report import EvaluationOptions, SplitScores, print_summary
from lstm_forecast.evaluation.streaming import evaluate_windows
from lstm_forecast.evaluation.tables import forecast_table
from lstm_forecast.evaluation.window_forecasts import WindowForecasts
from lstm_forecast.files import write_json, write_table
from lstm_forecast.inference.checkpoints import LoadedModel, load_model


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score the checkpoint (``ckpt_path`` or ``run``) on ``cfg.split``; write ``metrics.json``, the
    per-step and per-series tables and the per-window forecasts (``cfg.forecasts_file``) into the
    run folder."""
    metrics, scores, forecasts, loaded = score_checkpoint(cfg)
    output_dir = Path(cfg.paths.output_dir)
    if EvaluationOptions.from_config(cfg.get("evaluation")).tables:
        scores.write_tables(output_dir)
    if cfg.get("forecasts_file"):
        write_table(output_dir / cfg.forecasts_file, forecast_table(forecasts, loaded.datamodule))
    write_json(output_dir / "metrics.json", metrics)
    print_summary(metrics, output_dir / "metrics.json")
    return metrics


def score_checkpoint(
    cfg: DictConfig, table: pd.DataFrame | None = None
) -> tuple[dict[str, Any], SplitScores, WindowForecasts, LoadedModel]:
    """The metrics ``lstm-evaluate`` writes for the checkpoint on ``cfg.split``, writing nothing.

    ``table`` holds the data's rows in memory (the Python API's DataFrame) in place of its file.

    Returns
    -------
    tuple
        ``(metrics, scores, forecasts, loaded)``: the ``metrics.json`` dict, the scores with their
        per-step and per-series tables, the per-window forecasts (``[N, H]``, scaled) and the model.
    """
    if cfg.split not in SPLITS:
        raise UserError(f"split must be one of {list(SPLITS)}, got {cfg.split!r}")
    options = EvaluationOptions.from_config(cfg.get("evaluation"))
    warn_share = check_warn_share(OmegaConf.select(cfg, "drift.warn_share", default=DEFAULT_WARN_SHARE))
    loaded = load_model(cfg, table=table)
    datamodule = loaded.datamodule
    datamodule.setup("test")
    data_name = str(datamodule.source.get("path") or f"the {datamodule.source['kind']} data")
    warn_drift(datamodule, datamodule.windows[cfg.split], warn_share, f"{data_name} ({cfg.split} split)")
    scores, forecasts, _ = evaluate_windows(
        loaded.module,
        datamodule,
        datamodule.windows[cfg.split],
        cfg.split,
        device=loaded.device,
        options=options,
    )
    metrics: dict[str, Any] = {**scores.metrics, "checkpoint": str(loaded.path.resolve())}
    return metrics, scores, forecasts, loaded
