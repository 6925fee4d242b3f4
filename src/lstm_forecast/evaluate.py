"""``lstm-evaluate``: recompute the test metrics from a checkpoint alone.

Examples
--------
    python -m lstm_forecast.evaluate ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt
    python -m lstm_forecast.evaluate ckpt_path=... data.source.path=../shared/data/ETTh1.csv split=val
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lstm_forecast.apps import hydra_app
from lstm_forecast.checkpoints import datamodule_from_checkpoint, module_from_checkpoint, read_checkpoint
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.outputs import forecasts_frame, write_table
from lstm_forecast.evaluation.report import EvaluationOptions, evaluate_windows
from lstm_forecast.files import write_json

log = logging.getLogger(__name__)


def data_overrides(cfg: DictConfig) -> dict[str, Any]:
    """The ``data.*`` keys set on the command line (nulls mean: keep the checkpoint's)."""
    data = OmegaConf.to_container(cfg.get("data") or {}, resolve=True)
    source = {k: v for k, v in (data.pop("source", None) or {}).items() if v is not None}
    overrides = {k: v for k, v in data.items() if v is not None}
    if source:
        overrides["source"] = source
    return overrides


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.ckpt_path`` on ``cfg.split``; write ``metrics.json`` and the per-window forecasts
    (long format, ``cfg.forecasts_file``) into the run folder."""
    if cfg.split not in ("train", "val", "test"):
        raise UserError(f"split must be train, val or test, got {cfg.split!r}")
    checkpoint = read_checkpoint(cfg.ckpt_path)
    module = module_from_checkpoint(checkpoint)
    datamodule = datamodule_from_checkpoint(checkpoint, data_overrides(cfg))
    options = EvaluationOptions.from_config(cfg.get("evaluation"))
    datamodule.setup("test")
    scores, forecasts, _ = evaluate_windows(
        module.net, datamodule, datamodule.windows[cfg.split], cfg.split, options=options
    )
    metrics: dict[str, Any] = scores.metrics
    metrics["checkpoint"] = str(Path(cfg.ckpt_path).resolve())
    output_dir = Path(cfg.paths.output_dir)
    if options.tables:
        scores.write_tables(output_dir)
    if cfg.get("forecasts_file"):
        write_table(output_dir / cfg.forecasts_file, forecasts_frame(forecasts, datamodule))
    write_json(output_dir / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


@hydra_app("evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
