"""Reliability of real runs: resume after kill -9, bit-for-bit repeatable seeds, non-finite losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO_ROOT, assert_one_line_error, forked_app, run_app, tiny_cli_args
from lstm_forecast.errors import UserError
from lstm_forecast.training.run import train

# Deterministic CPU mode, several epochs, no early stop inside them.
RESUMABLE = ("trainer.max_epochs=3", "trainer.deterministic=true", "callbacks.early_stopping.patience=10")


def comparable(metrics: dict) -> dict:
    """Metrics minus the path of the best checkpoint (it names the run folder)."""
    return {key: value for key, value in metrics.items() if key != "best_checkpoint"}


def assert_same_weights(first: Path, second: Path) -> None:
    a = torch.load(first, map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(second, map_location="cpu", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def git_head() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


@pytest.mark.slow
@pytest.mark.launches
def test_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    full = run_app("train", *tiny_cli_args(full_dir, *RESUMABLE))
    assert full.returncode == 0, full.stderr[-3000:]

    # A process of its own, killed with SIGKILL as soon as its first epoch has written last.ckpt.
    pid = forked_app("train", *tiny_cli_args(killed_dir, *RESUMABLE))
    last = killed_dir / "checkpoints" / "last.ckpt"
    deadline, ended = time.monotonic() + 300, (0, 0)
    while not last.exists() and ended == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.02)
        ended = os.waitpid(pid, os.WNOHANG)
    if ended == (0, 0):
        os.kill(pid, signal.SIGKILL)
        ended = os.waitpid(pid, 0)
    status = ended[1]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "ended before it was killed"
    assert not (killed_dir / "metrics.json").exists()
    killed_at_epoch = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    assert killed_at_epoch < 2

    resumed = run_app("train", f"resume={killed_dir}")  # the app started afresh, as after a crash
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored all states from the checkpoint" in resumed.stderr + resumed.stdout

    full_metrics = json.loads((full_dir / "metrics.json").read_text())
    resumed_metrics = json.loads((killed_dir / "metrics.json").read_text())
    assert comparable(resumed_metrics) == comparable(full_metrics)
    assert Path(resumed_metrics["best_checkpoint"]).name == Path(full_metrics["best_checkpoint"]).name
    assert_same_weights(Path(full_metrics["best_checkpoint"]), Path(resumed_metrics["best_checkpoint"]))
    assert_same_weights(full_dir / "checkpoints" / "last.ckpt", killed_dir / "checkpoints" / "last.ckpt")

    # One TensorBoard log, continued: every epoch's validation loss is in it, with the same values.
    full_events = EventAccumulator(str(full_dir / "tensorboard")).Reload()
    resumed_events = EventAccumulator(str(killed_dir / "tensorboard")).Reload()
    full_val = {s.step: s.value for s in full_events.Scalars("val/loss")}
    resumed_val = {s.step: s.value for s in resumed_events.Scalars("val/loss")}
    # Every epoch's point, equal. (The final summary point run.train logs after fit, at the last
    # step, is dropped by TensorBoard's reader in the resumed log: a known gap, see the report.)
    epoch_steps = sorted(full_val)[:3]
    assert {step: resumed_val.get(step) for step in epoch_steps} == {s: full_val[s] for s in epoch_steps}
    assert [p.name for p in killed_dir.iterdir() if p.is_dir()].count("tensorboard") == 1

    # What produced the run: in the folder (one entry per resume) and in every checkpoint.
    info = json.loads((killed_dir / "run_info.json").read_text())
    assert len(info["resumes"]) == 1
    assert info["package_version"] and info["config"]["seed"] == 42
    assert info["config"]["paths"]["output_dir"] == str(killed_dir)
    assert info["git_commit"] == git_head()
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["run_info"]["config"]["trainer"]["max_epochs"] == 3
    assert checkpoint["run_info"]["git_commit"] == git_head()

    # Done: running into it again is refused and changes nothing.
    before = sorted((p.relative_to(killed_dir), p.stat().st_mtime_ns) for p in killed_dir.rglob("*"))
    again = run_app("train", *tiny_cli_args(killed_dir, *RESUMABLE))
    assert_one_line_error(again, "already holds a run", f"resume={killed_dir}")
    assert sorted((p.relative_to(killed_dir), p.stat().st_mtime_ns) for p in killed_dir.rglob("*")) == before


@pytest.mark.slow
def test_seed_makes_cpu_runs_bit_for_bit_repeatable(compose_train_cfg, tmp_path):
    def run(name: str, seed: int) -> tuple[dict, Path]:
        cfg = compose_train_cfg(f"seed={seed}", f"paths.output_dir={tmp_path / name}", "trainer.max_epochs=2")
        metrics, _ = train(cfg)
        return json.loads((tmp_path / name / "metrics.json").read_text()), Path(metrics["best_checkpoint"])

    first, first_best = run("first", 7)
    second, second_best = run("second", 7)
    assert comparable(first) == comparable(second)
    assert_same_weights(first_best, second_best)
    other, _ = run("other", 8)
    assert comparable(other) != comparable(first)


@pytest.mark.slow
def test_nan_loss_stops_naming_epoch_and_batch_and_keeps_last_good_checkpoint(compose_train_cfg, tmp_path):
    cfg = compose_train_cfg(
        "trainer.max_epochs=3",
        "+callbacks.poison._target_=fault_injection.PoisonWeightsAtEpoch",
        "+callbacks.poison.epoch=1",
    )
    with pytest.raises(UserError, match=r"training loss became nan at epoch 1, batch 0; the last good"):
        train(cfg)
    assert not (tmp_path / "metrics.json").exists()
    for checkpoint_file in (tmp_path / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=True)
        assert checkpoint["epoch"] == 0, checkpoint_file
        assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values()), checkpoint_file


@pytest.mark.slow
def test_diverging_run_is_one_line_error_from_the_cli(tmp_path):
    run_dir = tmp_path / "run"
    result = run_app("train", *tiny_cli_args(run_dir, "model.lr=1e30", "trainer.gradient_clip_val=null"))
    assert_one_line_error(result, "training loss became", "at epoch 0, batch")
    assert result.returncode == 2
    assert not run_dir.exists()  # no checkpoint was written, so nothing is left
