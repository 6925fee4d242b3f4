"""Training a run again on less data, with its own settings: the models of a backtest that refits
(``lstm-backtest refit_every=k``, ``Forecaster.cross_validation(refit_every=k)``).

The checkpoint stores its run's resolved config (``run_info``); a refit is ``train`` of that config on
the rows it is handed, into its own folder, with the test split left unscored (the backtest scores the
origins) and nothing resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from lstm_forecast.errors import UserError
from lstm_forecast.models.checkpoint import read_checkpoint
from lstm_forecast.training.distributed import refuse_several_processes_in_python
from lstm_forecast.training.run import train


def moved(value: Any, old: str, new: str) -> Any:
    """``value`` (plain config data) with every path inside the folder ``old`` moved into ``new``."""
    if isinstance(value, dict):
        return {key: moved(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [moved(item, old, new) for item in value]
    if isinstance(value, str) and (value == old or value.startswith(old + "/")):
        return new + value[len(old) :]
    return value


def refit_checkpoint(checkpoint_path: Path, rows: pd.DataFrame, output_dir: Path) -> Path:
    """Train the run of ``checkpoint_path`` again on ``rows`` (its data source's table) into
    ``output_dir``, with the run's own settings; the new best checkpoint."""
    config = (read_checkpoint(checkpoint_path).get("run_info") or {}).get("config")
    if not isinstance(config, dict) or not isinstance(config.get("paths"), dict):
        raise UserError(
            f"{checkpoint_path} stores no training config to refit with (written by an older version); "
            "backtest it with refit_every=0, or train it again"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    config = moved(config, str(config["paths"]["output_dir"]), str(output_dir))
    cfg = OmegaConf.create(config)
    cfg.data.source.path = None  # the rows come from the table
    cfg.test_after_fit, cfg.resume, cfg.ckpt_path = False, None, None
    refuse_several_processes_in_python(cfg.trainer)
    metrics, _ = train(cfg, rows)
    if not metrics.get("best_checkpoint"):
        raise UserError(
            "the refit wrote no checkpoint (callbacks.model_checkpoint is off); keep the default callbacks"
        )
    return Path(metrics["best_checkpoint"])
