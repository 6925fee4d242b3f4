"""End-to-end: the real Hydra apps on tiny data."""

import json
import logging
import os
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import assert_one_line_error, run_app, tiny_cli_args
from lstm_forecast.training.run import train


def test_train_writes_metrics(compose_train_cfg, tmp_path):
    cfg = compose_train_cfg("trainer.max_epochs=1")
    metrics, _ = train(cfg)
    written = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test/mse", "test/mae", "test/mse_z", "test/mae_z", "test/mae_orig", "test/rmse_orig"):
        assert written[key] == pytest.approx(metrics[key]) and written[key] > 0
        assert written[key.replace("test/", "baseline/persistence/")] > 0
    assert written["epochs"] == 1
    assert written["test/num_targets"] == 36 * 3  # every test row of every series, once


def test_validation_objective_is_the_best_checkpoints_z_normalised_error(compose_train_cfg):
    # With z-score scaling the scaled validation loss is the z-normalised MSE, so the objective
    # recomputed from the best checkpoint must equal the best validation loss Lightning logged.
    cfg = compose_train_cfg("trainer.max_epochs=3", "data.scaler=standard", "model.net.highway_window=4")
    metrics, _ = train(cfg)
    assert metrics["val/mse_z"] == pytest.approx(metrics["val/loss_best"], rel=1e-4)
    assert metrics["val/num_targets"] == 36 * 3


def test_least_squares_highway_starts_training_at_the_ridge_baseline(compose_train_cfg):
    # lr=1e-12 keeps the initial weights: the net is then the closed-form ridge on its window.
    fitted = ("model.net.highway_window=12", "model.highway_init=least_squares")
    metrics, _ = train(compose_train_cfg("trainer.max_epochs=1", "model.lr=1e-12", *fitted))
    assert metrics["test/mse_z"] == pytest.approx(metrics["baseline/ridge/mse_z"], rel=1e-4)
    # And with the window referenced to its last value the start is a different linear model.
    start = ("trainer.max_epochs=1", "model.lr=1e-12", *fitted)
    referenced, _ = train(compose_train_cfg(*start, "model.net.window_norm=last"))
    assert referenced["test/mse_z"] != pytest.approx(metrics["test/mse_z"], rel=1e-4)
    assert referenced["test/mse_z"] < metrics["baseline/persistence/mse_z"]
    # One highway per series: each series' own least squares.
    per_series, objects = train(compose_train_cfg(*start, "model.net.highway_per_series=true"))
    assert per_series["test/mse_z"] != pytest.approx(metrics["test/mse_z"], rel=1e-4)
    weights = objects["model"].net.highway.weight
    assert not torch.allclose(weights[1], weights[2])
    assert torch.count_nonzero(weights[0]) == 0  # the reserved id has no windows


def test_fast_dev_run_cli(tmp_path):
    result = run_app("train", *tiny_cli_args(tmp_path / "run", "+trainer.fast_dev_run=true"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.slow
def test_run_then_evaluate_from_the_checkpoint_alone(tmp_path):
    run_dir = tmp_path / "run"
    # In-process, as the other app tests: the wheel test launches the installed apps for real (a
    # fresh process that has only the checkpoint), the DDP, sweep and resume tests lstm-train.
    result = run_app("train", *tiny_cli_args(run_dir, "trainer.max_epochs=3"))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = run_dir / "checkpoints" / metrics["best_checkpoint"].split("/")[-1]
    assert best.is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert metrics["epochs"] == 3

    # Only tensors and plain data: loads with weights_only=True.
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["num_series"] == 3
    assert checkpoint["ForecastDataModule"]["series_names"] == ["series_1", "series_2", "series_3"]

    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "val/loss"} <= set(tags)
    assert len(events.Scalars("val/loss")) == 3

    evaluated = run_app("evaluate", f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for key in ("test/mse_z", "test/mae_orig", "baseline/persistence/mse_z"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-6)


def test_missing_mandatory_value_is_one_line_and_leaves_no_run_folder(tmp_path):
    """The rest of the bad-input catalogue lives in test_bad_inputs.py."""
    run_dir = tmp_path / "run"
    result = run_app("train", "data=etth1", f"hydra.run.dir={run_dir}")
    assert_one_line_error(result, "missing value", "data.source.path")
    assert result.returncode == 2
    assert not run_dir.exists()


def test_frozen_highway_keeps_its_least_squares_fit_while_the_rest_trains(compose_train_cfg):
    fitted = ("model.net.highway_window=12", "model.highway_init=least_squares")
    _, start = train(compose_train_cfg("trainer.max_epochs=1", "model.lr=1e-12", *fitted))
    _, frozen = train(compose_train_cfg("trainer.max_epochs=2", "model.freeze_highway=true", *fitted))
    _, free = train(compose_train_cfg("trainer.max_epochs=2", *fitted))
    start_weights = start["model"].net.highway.weight
    torch.testing.assert_close(frozen["model"].net.highway.weight, start_weights)
    assert not torch.allclose(free["model"].net.highway.weight, start_weights, atol=1e-4)
    assert torch.count_nonzero(frozen["model"].net.head.weight) > 0  # the LSTM's head trained


def test_hybrid_model_preset_trains_with_a_frozen_highway_over_the_whole_window(compose_train_cfg):
    metrics, objects = train(compose_train_cfg("model=bilstm_hybrid", "trainer.max_epochs=1"))
    net = objects["model"].net
    assert net.highway_window == 12  # data.window_size of the tiny config
    assert net.window_norm == "last" and not net.highway.weight.requires_grad
    assert metrics["test/mse_z"] < metrics["baseline/persistence/mse_z"]


def test_unexpected_error_in_process_is_a_traceback_and_exit_status_1(tmp_path, monkeypatch):
    """The in-process runner reports what the interpreter would: Hydra's traceback, status 1; and
    it leaves the test process as it found it (cwd, argv, threads, log handlers)."""

    def crash(cfg):
        raise RuntimeError("boom from the task")

    monkeypatch.setattr("lstm_forecast.training.run.train", crash)  # imported by main when it runs
    state = (os.getcwd(), sys.argv[:], torch.get_num_threads(), logging.getLogger().handlers[:])
    other_threads = 2 if torch.get_num_threads() != 2 else 1
    run_dir = tmp_path / "run"
    result = run_app("train", *tiny_cli_args(run_dir, f"num_threads={other_threads}"), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" in result.stderr and "RuntimeError: boom from the task" in result.stderr
    assert not any(line.startswith("error:") for line in result.stderr.splitlines()), result.stderr
    assert (os.getcwd(), sys.argv[:], torch.get_num_threads(), logging.getLogger().handlers[:]) == state
