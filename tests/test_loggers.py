"""Every Lightning logger: real tiny runs with ``logger=csv``, ``mlflow``, ``many`` whose files are read
back; the W&B config; a missing logger package; and no advice to add loader workers."""

from __future__ import annotations

import csv
import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf
from pytorch_lightning.trainer.connectors import data_connector
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from conftest import assert_one_line_error, run_app, tiny_cli_args
from lstm_forecast.training.run import HPARAM_KEYS, build, instantiate_group

SKIPPED_LINE = "no TensorBoard logger: skipping forecast figures, the per-series error chart"
WORKERS_ADVICE = "does not have many workers"


def train_with(run_dir: Path, logger: str) -> dict[str, object]:
    """A tiny run through the CLI with ``logger=<logger>``; its metrics.json and console output."""
    result = run_app("train", *tiny_cli_args(run_dir, f"logger={logger}"))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"metrics": metrics, "output": result.stdout + result.stderr}


def final_metrics(metrics: dict[str, object]) -> dict[str, float]:
    """The validation, test and baseline numbers of a metrics.json (what the run logs at its end, and
    ``val/loss``, ``val/loss_best`` of the fit)."""
    return {
        k: v
        for k, v in metrics.items()
        if isinstance(v, float | int) and k.startswith(("val/", "test/", "baseline/"))
    }


def expected_hparams(run_dir: Path) -> dict[str, object]:
    """The hyperparameters of the run's saved config that every logger must hold."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    return {key: OmegaConf.select(cfg, key) for key in HPARAM_KEYS if OmegaConf.select(cfg, key) is not None}


def last_csv_values(path: Path) -> tuple[dict[str, float], dict[str, int]]:
    """Each column's last value in Lightning's metrics.csv, and the step it was logged at."""
    values, steps = {}, {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            for key, value in row.items():
                if value and key not in ("step", "epoch"):
                    values[key], steps[key] = float(value), int(row["step"])
    return values, steps


def assert_csv_logger_holds_the_run(run_dir: Path, metrics: dict[str, object]) -> None:
    values, steps = last_csv_values(run_dir / "csv" / "metrics.csv")
    logged = final_metrics(metrics)
    assert {"test/mse_z", "val/mse_z", "baseline/persistence/mse_z"} <= set(logged)
    for key, value in logged.items():
        assert values[key] == value, key  # the same float, written as text and read back
    assert steps["test/mse_z"] >= max(steps["train/loss"], steps["val/loss"])  # the final step
    hparams = yaml.safe_load((run_dir / "csv" / "hparams.yaml").read_text())
    for key, value in expected_hparams(run_dir).items():
        assert hparams[key] == value, key
    assert hparams["data.source.num_series"] == 3  # keys set on the command line join them


@pytest.fixture(scope="module")
def csv_mlflow_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """One tiny run with ``logger=[csv,mlflow]`` (no TensorBoard), on a machine where Lightning would
    advise loader workers (more than two cores per device); its folder, metrics, output and warnings."""
    run_dir = tmp_path_factory.mktemp("csv_mlflow_run")
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings(record=True) as caught:
        patch.setattr(data_connector, "suggested_max_num_workers", lambda local_world_size: 8)
        patch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # the logger sets it for its run
        warnings.simplefilter("always")
        run = train_with(run_dir, "[csv,mlflow]")
    return run_dir, {**run, "warnings": [str(w.message) for w in caught]}


@pytest.mark.slow
def test_csv_logger_gets_the_final_metrics_and_hyperparameters(csv_mlflow_run) -> None:
    run_dir, run = csv_mlflow_run
    assert_csv_logger_holds_the_run(run_dir, run["metrics"])


@pytest.mark.slow
def test_mlflow_file_store_holds_params_and_final_metrics(csv_mlflow_run, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    run_dir, run = csv_mlflow_run
    assert not any("MLFlow only allows" in message for message in run["warnings"])  # `@` renamed instead
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # what a reader of the store sets
    client = MlflowClient(tracking_uri=f"file:{run_dir / 'mlruns'}")
    experiment = client.get_experiment_by_name("train")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED"
    assert found.data.tags["run_folder"] == str(run_dir)
    for key, value in expected_hparams(run_dir).items():
        assert found.data.params[key] == str(value), key
    logged = final_metrics(run["metrics"])
    assert {"test/mse_z", "test/mse_z@1", "val/mse_z"} <= set(logged)
    for key, value in logged.items():
        assert found.data.metrics[key.replace("@", "_at_")] == value, key
    final_step = client.get_metric_history(found.info.run_id, "test/mse_z")[-1].step
    assert final_step >= max(m.step for m in client.get_metric_history(found.info.run_id, "train/loss"))


@pytest.mark.slow
def test_without_tensorboard_its_outputs_are_skipped_in_one_line(csv_mlflow_run) -> None:
    run_dir, run = csv_mlflow_run
    assert run["output"].count(SKIPPED_LINE) == 1
    assert not list(run_dir.rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_a_training_does_not_advise_loader_workers(csv_mlflow_run, compose_train_cfg, monkeypatch) -> None:
    _, run = csv_mlflow_run
    assert [message for message in run["warnings"] if WORKERS_ADVICE in message] == []
    # The control: under the same patch Lightning advises workers for an ordinary loader.
    monkeypatch.setattr(data_connector, "suggested_max_num_workers", lambda local_world_size: 8)
    _, _, trainer = build(compose_train_cfg())
    with warnings.catch_warnings(record=True) as control:
        warnings.simplefilter("always")
        data_connector._worker_check(trainer, DataLoader(range(4)), "train_dataloader")
    assert any(WORKERS_ADVICE in str(w.message) for w in control)


@pytest.mark.slow
def test_many_writes_tensorboard_and_csv(tmp_path: Path) -> None:
    run = train_with(tmp_path, "many")
    assert_csv_logger_holds_the_run(tmp_path, run["metrics"])
    assert SKIPPED_LINE not in run["output"]
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    for tag in ("test/mse_z", "val/mse_z", "baseline/persistence/mse_z"):  # float32 in the event file
        assert events.Scalars(tag)[-1].value == pytest.approx(run["metrics"][tag], rel=1e-6), tag
    assert "test/error_by_series" in events.Tags()["images"]


def test_wandb_config_is_offline_in_the_run_folder(compose_train_cfg, tmp_path: Path) -> None:
    node = compose_train_cfg("logger=wandb").logger.wandb
    assert node.offline is True
    assert node.log_model is False
    assert node.save_dir == str(tmp_path)
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("wandb is not installed (pip install 'lstm-forecast[wandb]'); composition checked")
    (logger,) = instantiate_group(compose_train_cfg("logger=wandb"), "logger")
    assert logger.save_dir == str(tmp_path)
    assert logger._wandb_init["mode"] == "offline"


def test_composed_logger_lists_and_none(compose_train_cfg) -> None:
    assert set(compose_train_cfg("logger=many").logger) == {"tensorboard", "csv"}
    assert set(compose_train_cfg("logger=[csv,mlflow]").logger) == {"csv", "mlflow"}
    assert not compose_train_cfg("logger=none").get("logger")


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_a_logger_without_its_package_is_a_one_line_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_app("train", *tiny_cli_args(run_dir, "logger=wandb"))
    assert_one_line_error(result, "logger.wandb", "wandb", "pip install 'lstm-forecast[wandb]'")
    assert result.returncode == 2
    assert not run_dir.exists()
