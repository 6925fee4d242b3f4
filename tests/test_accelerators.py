"""Trainer configs, the DDP-in-multirun rule, rank detection, precision, and summaries of odd folders."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from hydra.types import RunMode
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from conftest import assert_one_line_error, run_app, tiny_cli_args
from lstm_forecast.errors import UserError
from lstm_forecast.models.module import ForecastModule
from lstm_forecast.training import distributed
from lstm_forecast.training.distributed import (
    _cpu_supports_bf16,
    is_rank_zero,
    refuse_unsupported_precision,
    relaunches_command_line,
)
from lstm_forecast.training.run import build
from lstm_forecast.training.sweeps import JOB_FILE, SUMMARY_CSV, SweepSummaryCallback, summarize_sweep


@pytest.mark.parametrize(
    ("trainer", "expected"),
    [
        ({"strategy": "ddp", "accelerator": "cpu", "devices": 2}, True),
        ({"strategy": "ddp", "accelerator": "gpu", "devices": [0, 1]}, True),
        ({"strategy": "ddp", "accelerator": "gpu", "devices": "0,1"}, True),
        ({"strategy": "fsdp", "accelerator": "gpu", "devices": 4}, True),
        ({"strategy": "auto", "accelerator": "cpu", "devices": 2}, True),
        ({"strategy": "ddp_spawn", "accelerator": "cpu", "devices": 2}, False),
        ({"strategy": "ddp", "accelerator": "gpu", "devices": 1, "num_nodes": 4}, False),
        ({"strategy": "auto", "accelerator": "cpu", "devices": "auto"}, False),
        ({"strategy": "auto", "accelerator": "cpu", "devices": 1}, False),
    ],
)
def test_relaunches_command_line(trainer, expected):
    assert relaunches_command_line(OmegaConf.create(trainer)) is expected


BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


@pytest.mark.parametrize(
    ("mode", "launcher", "strategy", "devices", "expected"),
    [
        (RunMode.MULTIRUN, BASIC_LAUNCHER, "ddp", 2, "ddp_spawn"),
        (RunMode.MULTIRUN, JOBLIB_LAUNCHER, "auto", 2, "ddp_spawn"),
        (RunMode.MULTIRUN, BASIC_LAUNCHER, "ddp_find_unused_parameters_true", 2,
         "ddp_spawn_find_unused_parameters_true"),
        (RunMode.MULTIRUN, BASIC_LAUNCHER, "ddp", 1, "ddp"),  # one process: nothing re-executed
        (RunMode.MULTIRUN, SLURM_LAUNCHER, "ddp", 2, "ddp"),  # SLURM starts the ranks
        (RunMode.RUN, BASIC_LAUNCHER, "ddp", 2, "ddp"),  # a single run re-executes its own command line
        (RunMode.MULTIRUN, BASIC_LAUNCHER, "fsdp", 2, UserError),  # no spawning FSDP in Lightning
        (RunMode.MULTIRUN, BASIC_LAUNCHER, "fsdp", 1, "fsdp"),  # the refusal's hint followed: one device
        (RunMode.MULTIRUN, SLURM_LAUNCHER, "fsdp", 2, "fsdp"),  # ... or SLURM
        (RunMode.RUN, BASIC_LAUNCHER, "fsdp", 2, "fsdp"),  # ... or a single run
    ],
)  # fmt: skip
def test_a_local_multiruns_ddp_job_spawns_its_ranks(
    monkeypatch, caplog, mode, launcher, strategy, devices, expected
):
    """Re-executing the command line would start the sweep again in every DDP job of a local multirun."""
    hydra = OmegaConf.create({"mode": mode, "launcher": {"_target_": launcher}})
    monkeypatch.setattr(distributed.HydraConfig, "get", staticmethod(lambda: hydra))
    trainer = OmegaConf.create({"accelerator": "cpu", "devices": devices, "strategy": strategy})
    OmegaConf.set_struct(trainer, True)
    if expected is UserError:
        with pytest.raises(
            UserError, match=r"trainer.devices=1\) or hydra/launcher=slurm, or run it as a single run"
        ):
            distributed.spawn_ranks_in_local_multirun(trainer)
        return
    with caplog.at_level(logging.WARNING, logger=distributed.__name__):
        distributed.spawn_ranks_in_local_multirun(trainer)
    assert trainer.strategy == expected
    notices = [r.getMessage() for r in caplog.records if "local multirun" in r.getMessage()]
    notice = (
        f"trainer.strategy={strategy} in a local multirun: this job spawns its 2 processes "
        f"(trainer.strategy={expected}), as re-executing the command line would start the sweep again"
    )
    assert notices == ([notice] if expected != strategy else [])


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, True),
        ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, True),
        ({"LOCAL_RANK": "1"}, False),  # Lightning's re-executed rank
        ({"RANK": "3", "LOCAL_RANK": "0"}, False),  # torchrun, second node
        ({"SLURM_PROCID": "2"}, False),
    ],
)
def test_is_rank_zero_reads_the_launchers_environment(monkeypatch, env, expected):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_rank_zero() is expected


@pytest.mark.parametrize("name", ["cpu", "gpu", "ddp", "ddp_cpu", "auto"])
def test_trainer_configs_compose(compose_train_cfg, name):
    trainer = compose_train_cfg(f"trainer={name}").trainer
    assert trainer["_target_"] == "pytorch_lightning.Trainer"
    assert trainer.use_distributed_sampler is False  # our samplers shard the windows
    if name.startswith("ddp"):
        assert trainer.strategy == "ddp"
        assert trainer.num_nodes == 1


@pytest.mark.parametrize(("name", "processes"), [("default", ""), ("cpu", ""), ("ddp_cpu", ", 2 processes")])
def test_the_run_says_which_device_it_trains_on(compose_train_cfg, caplog, name, processes):
    """The default trainer takes the GPU when there is one, else the CPU; trainer=cpu forces the CPU."""
    caplog.set_level(logging.INFO, logger="lstm_forecast.training.run")
    cfg = compose_train_cfg(f"trainer={name}")
    expected_choice = {"default": ("auto", 1), "cpu": ("cpu", 1), "ddp_cpu": ("cpu", 2)}[name]
    assert (cfg.trainer.accelerator, cfg.trainer.devices) == expected_choice
    _, _, trainer = build(cfg)
    threads = torch.get_num_threads()
    if name == "default" and torch.cuda.is_available():
        expected = f"training on cuda:0 ({torch.cuda.get_device_name(0)})"
    else:
        expected = f"training on cpu ({threads} thread{'s' if threads > 1 else ''}){processes}"
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("training on")] == [expected]
    assert str(trainer.strategy.root_device) == expected.split()[2]


def test_bf16_with_the_auto_accelerator_and_no_gpu_is_refused_as_on_the_cpu(monkeypatch):
    trainer = OmegaConf.create({"accelerator": "auto", "precision": "bf16-mixed"})
    monkeypatch.setattr(distributed, "_cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"bf16-mixed needs a GPU .* use trainer.precision=32-true"):
        refuse_unsupported_precision(trainer)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    refuse_unsupported_precision(trainer)  # auto takes the GPU, which runs bf16


@pytest.mark.slow
def test_bf16_on_a_cpu_without_bf16_is_one_line_error(tmp_path):
    if _cpu_supports_bf16():
        pytest.skip("this CPU runs bf16; the refusal is for CPUs without it")
    run_dir = tmp_path / "run"
    result = run_app("train", *tiny_cli_args(run_dir, "trainer.precision=bf16-mixed"), cwd=tmp_path)
    assert_one_line_error(result, "trainer.precision=bf16-mixed", "32-true")
    assert result.returncode == 2
    assert not run_dir.exists()


def test_summary_of_a_sweep_with_an_unfinished_and_a_record_less_job(tmp_path):
    """A job killed mid-run keeps ``status: running``; an older job folder has only Hydra's files."""
    killed, older = tmp_path / "0", tmp_path / "1"
    killed.mkdir()
    (killed / JOB_FILE).write_text(json.dumps({"status": "running", "overrides": ["seed=1"]}))
    (older / ".hydra").mkdir(parents=True)
    (older / ".hydra" / "overrides.yaml").write_text("- seed=2\n")
    (older / "metrics.json").write_text(json.dumps({"val/mse_z": 0.5, "test/mse_z": 0.7, "epochs": 3}))
    (tmp_path / ".submitit").mkdir()  # not a job

    table = summarize_sweep(tmp_path, show_test=True)
    assert list(table["job"]) == ["1", "0"]
    assert list(table["status"]) == ["completed", "incomplete"]
    assert list(table["overrides"]) == ["seed=2", "seed=1"]
    assert table.loc[0, "test/mse_z"] == 0.7
    assert "stopped" in table.loc[1, "reason"]


def test_summary_is_refreshed_after_each_job_of_a_multirun(tmp_path):
    """A sweep that aborts (an Optuna study whose every trial failed) still leaves its summary."""
    (tmp_path / "multirun.yaml").write_text("{}\n")
    job = tmp_path / "0"
    job.mkdir()
    (job / JOB_FILE).write_text(json.dumps({"status": "failed", "reason": "boom", "overrides": ["seed=1"]}))
    config = OmegaConf.create({"hydra": {"mode": "MULTIRUN", "runtime": {"output_dir": str(job)}}})

    SweepSummaryCallback().on_job_end(config)
    table = pd.read_csv(tmp_path / SUMMARY_CSV)
    assert list(table["status"]) == ["failed"] and list(table["reason"]) == ["boom"]

    (tmp_path / SUMMARY_CSV).unlink()
    single_run = OmegaConf.create({"hydra": {"mode": "RUN", "runtime": {"output_dir": str(job)}}})
    SweepSummaryCallback().on_job_end(single_run)
    assert not (tmp_path / SUMMARY_CSV).exists()


@pytest.mark.parametrize(("precision", "fused"), [("32-true", True), ("bf16-mixed", False)])
def test_adam_runs_fused_at_full_precision_and_mixed_precision_still_clips(precision, fused):
    """Fused Adam saves a Python loop over the tensors each step, but Lightning refuses it with
    gradient clipping under mixed precision: such a run must train, on the default Adam."""
    torch.manual_seed(0)
    # The linear ablation: oneDNN has no bf16 LSTM on CPUs without bf16 instructions (as here).
    net = dict(num_units=4, embedding_dim=2, dense_size=4, recurrent="linear")
    module = ForecastModule(num_series=2, num_features=2, window_size=6, net=net)
    x = torch.rand(8, 6, 2) * 2 - 1
    batches = [{"x": x, "series_id": torch.randint(1, 3, (8,)), "y": x[:, -1, -1:]}] * 2
    trainer = pl.Trainer(
        accelerator="cpu",
        precision=precision,
        gradient_clip_val=1.0,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert trainer.global_step == 2
    assert bool(trainer.optimizers[0].defaults["fused"]) is fused
