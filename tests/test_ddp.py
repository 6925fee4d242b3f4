"""DDP end to end: the real CLI with two CPU processes (``trainer=ddp_cpu``), outputs read back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from conftest import TINY_OVERRIDES, run_app
from lstm_forecast.evaluation.streaming import evaluate_windows
from lstm_forecast.evaluation.window_forecasts import predict_windows
from lstm_forecast.inference.checkpoints import datamodule_from_checkpoint, evaluation_options
from lstm_forecast.models.checkpoint import module_from_checkpoint, read_checkpoint
from lstm_forecast.training.sweeps import JOB_FILE, SUMMARY_CSV, SUMMARY_MD
from test_tensorboard import event_files, summary_tags

pytestmark = [pytest.mark.ddp, pytest.mark.slow]

TESTS = Path(__file__).resolve().parent
EPOCHS, WINDOWS_PER_EPOCH, VAL_WINDOWS = 3, 300, 90


def assert_sampled_epochs_over_two_ranks(folder: Path) -> None:
    """Each epoch the two ranks trained on equal, disjoint shares of a new draw of distinct windows,
    and validated on disjoint halves of one fixed sample (``window_recorder.WindowRecorder``'s files)."""
    seen = {rank: json.loads((folder / f"rank{rank}.json").read_text()) for rank in (0, 1)}
    epochs = [str(epoch) for epoch in range(EPOCHS)]
    for epoch in epochs:
        train = [set(seen[rank]["train"][epoch]) for rank in (0, 1)]
        assert len(train[0]) == len(train[1]) == WINDOWS_PER_EPOCH // 2  # equal shards of distinct windows
        assert not train[0] & train[1]  # disjoint
        val = [seen[rank]["val"][epoch] for rank in (0, 1)]
        assert not set(val[0]) & set(val[1]) and len(val[0]) + len(val[1]) == VAL_WINDOWS
        assert sorted(val[0] + val[1]) == sorted(seen[0]["val"]["0"] + seen[1]["val"]["0"])  # fixed
    draws = [set(seen[0]["train"][e]) | set(seen[1]["train"][e]) for e in epochs]
    assert draws[0] != draws[1] != draws[2]  # a new draw every epoch


def test_ddp_on_two_cpu_processes_writes_one_run_scored_and_logged_once(tmp_path, monkeypatch):
    # The default run folder (a timestamp): the re-executed rank must land in the same one.
    # A real process: Lightning's DDP re-executes the command line for rank 1.
    # A setting other than the default: the single-process reference must take the run's own.
    # Big-panel sampling (data.windows_per_epoch, data.val_windows) over the two ranks, with a test-only
    # callback recording which windows each rank trained and validated on, each epoch.
    seen_folder = tmp_path / "seen"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    result = run_app(
        "train",
        *TINY_OVERRIDES,
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "evaluation.seasonal_period=5",
        f"trainer.max_epochs={EPOCHS}",
        "callbacks.early_stopping=null",
        f"data.windows_per_epoch={WINDOWS_PER_EPOCH}",
        f"data.val_windows={VAL_WINDOWS}",
        "+callbacks.window_recorder._target_=window_recorder.WindowRecorder",
        f"+callbacks.window_recorder.folder={seen_folder}",
        cwd=tmp_path,
        subprocess=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    assert "MEMBER: 2/2" in output  # really two processes
    assert_sampled_epochs_over_two_ranks(seen_folder)

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

    # One TensorBoard log from rank 0, one validation point per epoch (not one per rank).
    assert {p.parent for p in tmp_path.rglob("events.out.tfevents.*")} == {run / "tensorboard"}
    assert len(event_files(run)) == 1
    assert summary_tags(run / "tensorboard").count(hparams_metadata.SESSION_START_INFO_TAG) == 1
    scalars = EventAccumulator(str(run / "tensorboard")).Reload()
    steps = [event.step for event in scalars.Scalars("val/loss")]
    assert metrics["epochs"] == EPOCHS
    assert len(steps) >= EPOCHS and len(set(steps)) == len(steps)  # each epoch's validation written once
    assert len(scalars.Scalars("train/grad_norm")) == metrics["epochs"]
    assert len(scalars.Images("forecast/test/series_1")) == 1
    # Throughput counts both ranks' windows (each trains on half of the epoch's sample).
    epoch, val, rate = (
        scalars.Scalars(t)[-1].value for t in ("time/epoch_s", "time/val_s", "time/train_windows_per_s")
    )
    assert 0.5 * WINDOWS_PER_EPOCH < rate * (epoch - val) < 2 * WINDOWS_PER_EPOCH
    for tag in ("train/grad_norm", "time/epoch_s"):
        assert f"self.log('{tag}'" not in result.stderr  # reduced across ranks, no sync warning

    checkpoint = read_checkpoint(metrics["best_checkpoint"])
    module = module_from_checkpoint(checkpoint)
    datamodule = datamodule_from_checkpoint(checkpoint)
    datamodule.setup("test")

    # Validation was reduced over both ranks' unrepeated shards: the logged best equals the best
    # checkpoint's loss over the validation sample, computed in this one process.
    assert len(datamodule.validation_windows()) == VAL_WINDOWS
    val = predict_windows(module.net, datamodule.validation_windows())
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


def assert_full_epochs_shared_by_two_spawned_ranks(one: dict, two: dict[int, dict]) -> None:
    """Each epoch of the two ranks (``two``: ``window_recorder.WindowRecorder``'s records) trained on
    equal halves of every training window the one-process run (``one``) trained on, in a new order
    each epoch, and validated on every validation window exactly once."""
    for epoch in one["train"]:
        train = [two[rank]["train"][epoch] for rank in (0, 1)]
        assert len(train[0]) == len(train[1]) == -(-len(one["train"][epoch]) // 2)
        assert set(train[0]) | set(train[1]) == set(one["train"][epoch])
        assert sorted(two[0]["val"][epoch] + two[1]["val"][epoch]) == sorted(one["val"][epoch])
    assert len(one["train"]) == 2 and two[0]["train"]["0"] != two[0]["train"]["1"], "reshuffled"


def test_a_local_sweep_over_accelerators_runs_every_job_as_typed(tmp_path, monkeypatch):
    base = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs")]
    base.append("trainer.max_epochs=2")
    # The sweep runs in this process, as the Hydra app of a console launch; the DDP job's ranks are
    # processes it spawns (ddp_spawn), as they are then. A test-only callback records which windows
    # each job's ranks trained and validated on.
    sweep_dir, seen = tmp_path / "sweep", tmp_path / "seen"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    recorder = [
        "+callbacks.window_recorder._target_=window_recorder.WindowRecorder",
        f"+callbacks.window_recorder.folder={seen}/${{hydra:job.num}}",
    ]
    result = run_app(
        "train", "-m", *base, "trainer=cpu,ddp_cpu", *recorder, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr and "error:" not in result.stderr, result.stderr[-4000:]
    console = result.stdout + result.stderr
    # One line says the DDP job spawns its ranks, and only that job does.
    assert (
        console.count("in a local multirun: this job spawns its 2 processes (trainer.strategy=ddp_spawn)")
        == 1
    )
    assert "MEMBER: 2/2" in console  # the DDP job in two processes of its own
    summary = pd.read_csv(sweep_dir / SUMMARY_CSV).set_index("overrides")
    assert sorted(summary.index) == ["trainer=cpu", "trainer=ddp_cpu"]
    assert summary["status"].eq("completed").all(), summary
    assert summary["epochs"].eq(2).all(), summary
    assert (summary["wall_time_s"] > 0).all(), summary
    assert "wall_time_s" in (sweep_dir / SUMMARY_MD).read_text()
    for job in ("0", "1"):
        assert (sweep_dir / job / "metrics.json").is_file()
    jobs = {(sweep_dir / job / ".hydra" / "overrides.yaml").read_text().count("ddp_cpu"): job for job in "01"}
    one = json.loads((seen / jobs[0] / "rank0.json").read_text())
    two = {rank: json.loads((seen / jobs[1] / f"rank{rank}.json").read_text()) for rank in (0, 1)}
    assert_full_epochs_shared_by_two_spawned_ranks(one, two)

    # The ddp_spawn job fitted in processes it spawned: the launching one got the weights and the best
    # checkpoint's path back but never set the datamodule up, nor ran the loops (epochs 1, not 0), and
    # scored the test split with the best checkpoint as one process scoring it afresh does.
    job = sweep_dir / str(summary.loc["trainer=ddp_cpu", "job"])
    metrics = json.loads((job / "metrics.json").read_text())
    best = Path(metrics["best_checkpoint"])
    assert best.parent == job / "checkpoints" and best.is_file()
    checkpoint = read_checkpoint(best)
    datamodule = datamodule_from_checkpoint(checkpoint)
    datamodule.setup("test")
    module = module_from_checkpoint(checkpoint)
    windows = datamodule.windows["test"]
    single, _, _ = evaluate_windows(
        module.net, datamodule, windows, "test", options=evaluation_options(checkpoint)
    )
    assert metrics["test/num_targets"] == len(windows) * datamodule.horizon
    for name, value in single.metrics.items():
        assert metrics[name] == pytest.approx(value, rel=1e-5), name
