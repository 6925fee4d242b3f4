"""One source for every setting: the apps that read a checkpoint apply the training run's own
``evaluation`` settings (stored in the checkpoint) and only what their user overrides; the Python
defaults equal the config's; a checkpoint names its data file wherever the apps run."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import REPO_ROOT, TINY_MODEL, TINY_OVERRIDES, run_app
from lstm_forecast.evaluation.report import EvaluationOptions
from lstm_forecast.inference.checkpoints import evaluation_options
from lstm_forecast.models.checkpoint import read_checkpoint

CONF = REPO_ROOT / "conf"
# Every one differs from conf/evaluation/default.yaml, so an app scoring with the defaults differs too.
NON_DEFAULT = [
    "evaluation.seasonal_period=5",
    "evaluation.interval_levels=[0.5]",
    "evaluation.intervals_per_series=false",
    "evaluation.calibration=split",
    "evaluation.adaptive_step=0",
    "evaluation.baselines=[persistence,seasonal_naive]",
]


def scored_keys(metrics: dict) -> dict:
    """The scores ``lstm-evaluate`` writes (the checkpoint's path aside)."""
    return {k: v for k, v in metrics.items() if k != "checkpoint"}


def assert_same_scores(evaluated: dict, trained: dict) -> None:
    assert set(scored_keys(evaluated)) <= set(trained), set(scored_keys(evaluated)) - set(trained)
    for key, value in scored_keys(evaluated).items():
        assert value == pytest.approx(trained[key], rel=1e-6, abs=1e-9), key


def train_run(run_dir: Path, *overrides: str, cwd: Path | None = None) -> dict:
    result = run_app("train", *TINY_OVERRIDES, *overrides, f"hydra.run.dir={run_dir}", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


def evaluate_run(out: Path, *args: str, cwd: Path | None = None) -> dict:
    result = run_app("evaluate", *args, f"hydra.run.dir={out}", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


# ----------------------------------------------------------------------------- defaults
def test_python_evaluation_defaults_equal_the_config() -> None:
    config = OmegaConf.to_container(OmegaConf.load(CONF / "evaluation" / "default.yaml"))
    assert set(config) == {field.name for field in fields(EvaluationOptions)}
    assert EvaluationOptions.from_config(config) == EvaluationOptions()
    assert EvaluationOptions().intervals_per_series is True  # per-series margins are the default


@pytest.mark.parametrize("app", ["evaluate", "backtest"])
def test_checkpoint_apps_override_each_evaluation_setting_and_keep_the_rest(app: str) -> None:
    node = OmegaConf.load(CONF / f"{app}.yaml").evaluation
    assert set(node) == {field.name for field in fields(EvaluationOptions)}
    assert all(value is None for value in node.values())  # null: the training run's
    assert OmegaConf.load(CONF / "predict.yaml").intervals_per_series is None


def test_stored_settings_apply_with_only_the_given_overrides() -> None:
    stored = {"seasonal_period": 168, "intervals_per_series": False, "tables": False}
    checkpoint = {"run_info": {"config": {"evaluation": stored}}}
    options = evaluation_options(checkpoint, {"tables": True, "seasonal_period": None})
    # Stored before evaluation.calibration existed: scored with split calibration then, and now.
    assert options == EvaluationOptions(
        seasonal_period=168, intervals_per_series=False, tables=True, calibration="split", adaptive_step=0.0
    )
    assert evaluation_options(checkpoint, {"seasonal_period": "auto"}).seasonal_period is None
    # Written before the settings were stored: the config's defaults.
    assert evaluation_options({"state_dict": {}}) == EvaluationOptions()
    assert evaluation_options({"run_info": {"config": {}}}, {"baselines": []}).baselines == ()


# ----------------------------------------------------------------------------- evaluate == train
@pytest.mark.slow
@pytest.mark.parametrize("settings", [[], NON_DEFAULT], ids=["defaults", "non_default"])
def test_lstm_evaluate_reproduces_the_runs_own_metrics(tmp_path: Path, settings: list[str]) -> None:
    """Coverage (per-series margins by default), baselines, every score: lstm-evaluate on the same
    checkpoint writes what the training run wrote."""
    trained = train_run(tmp_path / "run", *settings)
    coverage = [key for key in trained if key.startswith("test/coverage@") and "_worst" not in key]
    assert coverage == (["test/coverage@50"] if settings else ["test/coverage@80", "test/coverage@95"])
    assert all(f"{key}_worst10" in trained for key in coverage)
    evaluated = evaluate_run(tmp_path / "eval", f"run={tmp_path / 'run'}")
    assert_same_scores(evaluated, trained)
    assert set(coverage) <= set(evaluated)


@pytest.mark.slow
def test_command_line_overrides_win_over_the_runs_settings(tmp_path: Path) -> None:
    trained = train_run(tmp_path / "run", *NON_DEFAULT)
    run = f"run={tmp_path / 'run'}"
    auto = evaluate_run(tmp_path / "auto", run, "evaluation.seasonal_period=auto")
    assert trained["baseline/seasonal_naive/period"] == 5
    assert auto["baseline/seasonal_naive/period"] == 24  # hourly data
    assert "test/coverage@50" in auto and "baseline/ridge/mse_z" not in auto  # the rest kept
    pooled = evaluate_run(tmp_path / "per_series", run, "evaluation.intervals_per_series=true")
    assert pooled["baseline/seasonal_naive/period"] == 5
    assert pooled["test/coverage@50"] != trained["test/coverage@50"]


@pytest.mark.slow
def test_a_checkpoint_without_stored_settings_uses_the_config_defaults(tmp_path: Path) -> None:
    import torch

    train_run(tmp_path / "run", *NON_DEFAULT)
    best = json.loads((tmp_path / "run" / "metrics.json").read_text())["best_checkpoint"]
    checkpoint = torch.load(best, weights_only=True)
    del checkpoint["run_info"]  # as written before run info (and its config) went into checkpoints
    torch.save(checkpoint, tmp_path / "old.ckpt")
    assert evaluation_options(read_checkpoint(tmp_path / "old.ckpt")) == EvaluationOptions()
    evaluated = evaluate_run(tmp_path / "eval", f"ckpt_path={tmp_path / 'old.ckpt'}")
    assert evaluated["baseline/seasonal_naive/period"] == 24
    assert {"test/coverage@80", "test/coverage@95", "baseline/ridge/mse_z"} <= set(evaluated)


# ----------------------------------------------------------------------------- data paths
def write_wide(path: Path) -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(240)
    table = pd.DataFrame(
        {"date": pd.date_range("2024-01-01", periods=240, freq="h")}
        | {f"s{i}": np.sin(2 * np.pi * steps / 24 + i) + 0.1 * rng.normal(size=240) for i in range(3)}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)


@pytest.mark.slow
def test_a_relative_data_path_is_recorded_absolute_and_a_moved_file_can_be_named(tmp_path: Path) -> None:
    data_dir, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    write_wide(data_dir / "wide.csv")
    elsewhere.mkdir()
    run = tmp_path / "run"
    wide = ["data=wide_file", "data.source.path=wide.csv", "data.split={train:0.6,val:0.2,test:0.2}"]
    result = run_app("train", *TINY_MODEL, *wide, f"hydra.run.dir={run}", cwd=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    trained = json.loads((run / "metrics.json").read_text())
    checkpoint = read_checkpoint(trained["best_checkpoint"])
    recorded = str(data_dir / "wide.csv")
    assert checkpoint["datamodule_hyper_parameters"]["source"]["path"] == recorded
    assert checkpoint["run_info"]["config"]["data"]["source"]["path"] == recorded

    # From another working directory, with the checkpoint alone.
    evaluated = evaluate_run(tmp_path / "eval", f"run={run}", cwd=elsewhere)
    assert_same_scores(evaluated, trained)

    # The file moved: a one-line error naming the fix, then the new path given.
    moved = elsewhere / "moved.csv"
    shutil.move(data_dir / "wide.csv", moved)
    result = run_app("evaluate", f"run={run}", f"hydra.run.dir={tmp_path / 'gone'}", cwd=elsewhere)
    assert result.returncode != 0
    assert "data.source.path" in result.stderr and "Traceback" not in result.stderr
    evaluated = evaluate_run(tmp_path / "moved", f"run={run}", "data.source.path=moved.csv", cwd=elsewhere)
    assert_same_scores(evaluated, trained)


@pytest.mark.slow
def test_lstm_predict_intervals_follow_the_runs_per_series_setting(tmp_path: Path, monkeypatch) -> None:
    import lstm_forecast.inference.predict as predict_module

    used = []
    calibrate = predict_module.calibrated_intervals

    def recording(loaded, levels, per_series):
        used.append(per_series)
        return calibrate(loaded, levels, per_series)

    monkeypatch.setattr(predict_module, "calibrated_intervals", recording)
    for trained in ("false", "true"):
        run = tmp_path / f"run_{trained}"
        # Rolling and adaptive calibration are per series.
        pooled = ["evaluation.calibration=split", "evaluation.adaptive_step=0"] if trained == "false" else []
        train_run(run, f"evaluation.intervals_per_series={trained}", *pooled)
        for name, extra in (("kept", ()), ("overridden", (f"intervals_per_series={trained == 'false'}",))):
            args = (f"run={run}", "intervals=[0.8]", "horizon=3", f"hydra.run.dir={run}_{name}")
            result = run_app("predict", *args, *extra)
            assert result.returncode == 0, result.stderr[-3000:]
    assert used == [False, True, True, False]


@pytest.mark.slow
def test_forecaster_evaluate_applies_the_runs_settings_and_the_calls_overrides(tmp_path: Path) -> None:
    from lstm_forecast import Forecaster
    from lstm_forecast.data.long_source import synthetic_long_table

    df = synthetic_long_table(num_series=3, min_length=200, max_length=240)
    f = Forecaster([*TINY_MODEL, *NON_DEFAULT], run_dir=tmp_path / "run").fit(df)
    assert_same_scores(f.evaluate(df), f.metrics)
    assert f.evaluate(df, overrides=["evaluation.seasonal_period=7"])["baseline/seasonal_naive/period"] == 7
