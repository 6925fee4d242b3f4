"""DDP end to end: the real CLI with two CPU processes (``trainer=ddp_cpu``), outputs read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY_OVERRIDES, run_app
from lstm_forecast.evaluation.streaming import evaluate_windows
from lstm_forecast.evaluation.window_forecasts import predict_windows
from lstm_forecast.inference.checkpoints import datamodule_from_checkpoint, evaluation_options
from lstm_forecast.models.checkpoint import module_from_checkpoint, read_checkpoint
from lstm_forecast.training.sweeps import JOB_FILE

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


def test_ddp_on_two_cpu_processes_writes_one_run_scored_once(tmp_path):
    # The default run folder (a timestamp): the re-executed rank must land in the same one.
    # A real process: Lightning's DDP re-executes the command line for rank 1.
    # A setting other than the default: the single-process reference must take the run's own.
    result = run_app(
        "train",
        *TINY_OVERRIDES,
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "evaluation.seasonal_period=5",
        cwd=tmp_path,
        subprocess=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    assert "MEMBER: 2/2" in output  # really two processes

    runs = list((tmp_path / "outputs" / "runs" / "train").iterdir())
    assert len(runs) == 1, runs
    run = runs[0]
    assert not (tmp_path / "outputs" / "multiruns").exists()
    assert len(list(tmp_path.rglob("metrics.json"))) == 1
    assert len(list(tmp_path.rglob("config.yaml"))) == 1  # rank 1 saves no second Hydra config
    metrics = json.loads((run / "metrics.json").read_text())
    assert json.loads((run / JOB_FILE).read_text())["status"] == "completed"
    best = Path(metrics["best_checkpoint"])
    assert best.parent == run / "checkpoints"
    assert {p.name for p in best.parent.iterdir()} == {best.name, "last.ckpt"}  # no partial or rank copies

    # One TensorBoard log, one validation point per epoch (not one per rank).
    assert {p.parent for p in tmp_path.rglob("events.out.tfevents.*")} == {run / "tensorboard"}
    scalars = EventAccumulator(str(run / "tensorboard")).Reload()
    steps = [event.step for event in scalars.Scalars("val/loss")]
    assert metrics["epochs"] == 2
    assert len(steps) >= 2 and len(set(steps)) == len(steps)  # each epoch's validation written once

    checkpoint = read_checkpoint(metrics["best_checkpoint"])
    module = module_from_checkpoint(checkpoint)
    datamodule = datamodule_from_checkpoint(checkpoint)
    datamodule.setup("test")

    # Validation was reduced over both ranks' unrepeated shards: the logged best equals the best
    # checkpoint's loss over the whole validation split, computed in this one process.
    val = predict_windows(module.net, datamodule.windows["val"])
    assert metrics["val/loss_best"] == pytest.approx(
        float(np.mean((val.prediction - val.target) ** 2)), rel=1e-4
    )

    # Every test window scored exactly once, and the same numbers (per-series coverage included) as a
    # single-process evaluation with the run's own settings, and as lstm-evaluate's.
    assert metrics["test/num_targets"] == len(datamodule.windows["test"]) * datamodule.horizon
    options = evaluation_options(checkpoint)
    assert options.seasonal_period == 5 and options.intervals_per_series
    windows = datamodule.windows["test"]
    single, _, _ = evaluate_windows(module.net, datamodule, windows, "test", options=options)
    assert {"test/coverage@80", "test/coverage@95", "baseline/seasonal_naive/mse_z"} <= set(single.metrics)
    for name, value in single.metrics.items():
        assert metrics[name] == pytest.approx(value, rel=1e-5), name
    evaluated = run_app("evaluate", f"run={run}", f"hydra.run.dir={tmp_path / 'evaluate'}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    for name, value in json.loads((tmp_path / "evaluate" / "metrics.json").read_text()).items():
        if name != "checkpoint":
            assert metrics[name] == pytest.approx(value, rel=1e-5), name
