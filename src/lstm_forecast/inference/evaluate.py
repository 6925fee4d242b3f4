"""``lstm-evaluate``: recompute the metrics of a checkpoint on a split, beside the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lstm_forecast.data.split import SPLITS
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.report import EvaluationOptions, evaluate_windows, print_summary
from lstm_forecast.evaluation.tables import forecast_table
from lstm_forecast.files import write_json, write_table
from lstm_forecast.inference.checkpoints import load_model


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score the checkpoint (``ckpt_path`` or ``run``) on ``cfg.split``; write ``metrics.json``, the
    per-step and per-series tables and the per-window forecasts (``cfg.forecasts_file``) into the
    run folder."""
    if cfg.split not in SPLITS:
        raise UserError(f"split must be one of {list(SPLITS)}, got {cfg.split!r}")
    options = EvaluationOptions.from_config(cfg.get("evaluation"))
    loaded = load_model(cfg)
    datamodule = loaded.datamodule
    datamodule.setup("test")
    scores, forecasts, _ = evaluate_windows(
        loaded.module,
        datamodule,
        datamodule.windows[cfg.split],
        cfg.split,
        device=loaded.device,
        options=options,
    )
    metrics: dict[str, Any] = {**scores.metrics, "checkpoint": str(loaded.path.resolve())}
    output_dir = Path(cfg.paths.output_dir)
    if options.tables:
        scores.write_tables(output_dir)
    if cfg.get("forecasts_file"):
        write_table(output_dir / cfg.forecasts_file, forecast_table(forecasts, datamodule))
    write_json(output_dir / "metrics.json", metrics)
    print_summary(metrics, output_dir / "metrics.json")
    return metrics
