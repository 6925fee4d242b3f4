"""What a :class:`~lstm_forecast.api.forecaster.Forecaster` does with its checkpoint beside predicting:
intervals in percent (``level=``), the future table to fill in, and export; each through the console
apps' own code and configs (``conf/predict.yaml``, ``conf/export.yaml``)."""

from __future__ import annotations

import numbers
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from omegaconf import open_dict

from lstm_forecast.api.tables import check_frame
from lstm_forecast.cli.app import compose_config, one_line_errors
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.intervals import ConformalIntervals, check_interval_levels, interval_columns
from lstm_forecast.inference.checkpoints import LoadedModel
from lstm_forecast.inference.export import export
from lstm_forecast.inference.future_frame import future_frame
from lstm_forecast.inference.predict import calibrated_intervals, latest_intervals, load_for_prediction


def interval_levels(level: object) -> tuple[float, ...]:
    """``level`` (coverage in percent, neuralforecast's convention: ``[80, 95]``) as the fractions the
    ``intervals`` setting of ``lstm-predict`` takes (``(0.8, 0.95)``); None or empty: none."""
    if level is None:
        return ()
    if not isinstance(level, Sequence) or isinstance(level, str):
        raise UserError(f"level is a list of coverage percentages, e.g. level=[80, 95]; got {level!r}")
    bad = [c for c in level if isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0 < c < 100]
    if bad:
        raise UserError(
            f"level holds coverage percentages strictly between 0 and 100, e.g. level=[80, 95]; {bad} are not"
        )
    if level and max(level) < 1:
        raise UserError(
            f"level={list(level)} reads as coverage below 1 %; levels are percentages: "
            f"level={[round(100 * c, 6) for c in level]}"
        )
    if len(set(level)) != len(level):
        raise UserError(f"level repeats a level ({list(level)}); give each level once")
    return check_interval_levels([c / 100 for c in level], "level")


def api_intervals(loaded: LoadedModel, levels: tuple[float, ...]) -> ConformalIntervals | None:
    """Conformal intervals of the forecast past the data's end as ``lstm-predict intervals=...``
    calibrates them (the run's ``evaluation`` settings: per series and on each series' latest windows,
    unless the run said otherwise); None without levels."""
    if not levels:
        return None
    per_series = loaded.evaluation.intervals_per_series
    return latest_intervals(loaded, calibrated_intervals(loaded, levels, per_series), per_series)


def interval_names(levels: tuple[float, ...]) -> list[str]:
    """The forecast table's interval columns of ``levels``: ``lo-80, hi-80, lo-95, hi-95``."""
    return [name for level in levels for name in interval_columns(level)]


def load_checkpoint_for(checkpoint: Path, data: pd.DataFrame) -> LoadedModel:
    """The checkpoint's model on the DataFrame's rows, as ``lstm-predict`` loads it."""
    cfg = compose_config("predict", [])
    with open_dict(cfg):
        cfg.ckpt_path = str(checkpoint)
    return load_for_prediction(cfg, check_frame(data))


def blank_future_table(checkpoint: Path, data: pd.DataFrame, horizon: int | None) -> pd.DataFrame:
    """:func:`~lstm_forecast.inference.future_frame.future_frame` of the checkpoint's model on ``data``
    (``horizon`` None: the model's own)."""
    with one_line_errors():
        loaded = load_checkpoint_for(checkpoint, data)
        model_horizon = loaded.module.net.horizon
        steps = model_horizon if horizon is None else horizon
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise UserError(f"horizon must be a positive integer (steps after the data), got {steps!r}")
        return future_frame(loaded.datamodule, steps, model_horizon)


def export_checkpoint(checkpoint: Path, folder: str | Path, fmt: str | None) -> Path:
    """``lstm-export`` of the checkpoint into ``folder`` (``model.onnx`` or ``model.pt``, and
    ``model.json``); ``fmt`` None: the config's ``format``. Returns the model file."""
    with one_line_errors():
        cfg = compose_config("export", [])
        with open_dict(cfg):
            cfg.ckpt_path = str(checkpoint)
            cfg.format = cfg.format if fmt is None else fmt
            cfg.paths.output_dir = str(Path(folder).absolute())
        output_dir = Path(cfg.paths.output_dir)
        made = not output_dir.exists()
        output_dir.mkdir(parents=True, exist_ok=True)
        try:
            return export(cfg)["model"]
        except BaseException:
            if made:  # bad input leaves nothing behind
                shutil.rmtree(output_dir, ignore_errors=True)
            raise
