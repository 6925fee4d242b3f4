"""Every training run scores the baselines beside the model: metrics.json, CSV tables, TensorBoard."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tests.conftest import ETTH1

from lstm_forecast.evaluation.report import evaluate_baselines
from lstm_forecast.training.run import train

MODELS = ["model", "persistence", "seasonal_naive", "ridge"]


@pytest.mark.slow
def test_training_run_scores_model_and_baselines_per_step_and_per_series(compose_train_cfg, tmp_path):
    metrics, _ = train(compose_train_cfg("model.horizon=3", "trainer.max_epochs=1"))
    written = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test", "baseline/persistence", "baseline/seasonal_naive", "baseline/ridge"):
        for metric in ("mse_z", "mae_z", "mae_orig", "rmse_orig", "smape", "mase", "mse_z@1", "mae_z@3"):
            assert written[f"{key}/{metric}"] >= 0, f"{key}/{metric}"
        steps = [written[f"{key}/mse_z@{h}"] for h in (1, 2, 3)]
        assert sum(steps) / 3 == pytest.approx(written[f"{key}/mse_z"])
    assert written["baseline/seasonal_naive/period"] == 24  # the synthetic data is hourly
    assert written["baseline/ridge/alpha"] >= 0
    assert written == json.loads(json.dumps(metrics))

    per_step = pd.read_csv(tmp_path / "metrics_per_step.csv")
    assert per_step.groupby("model", sort=False).size().to_dict() == dict.fromkeys(MODELS, 3)
    ridge = per_step[per_step.model == "ridge"].set_index("step")
    assert ridge.loc[2, "mse_z"] == pytest.approx(written["baseline/ridge/mse_z@2"])
    per_series = pd.read_csv(tmp_path / "metrics_per_series.csv")
    assert per_series.groupby("model", sort=False).size().to_dict() == dict.fromkeys(MODELS, 3)
    assert set(per_series.series) == {"series_1", "series_2", "series_3"}
    # Series have equally many windows, so the per-series MSEs average to the overall one.
    model = per_series[per_series.model == "model"]
    assert model.mse_z.mean() == pytest.approx(written["test/mse_z"])

    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"test/mse_z", "baseline/ridge/mse_z", "baseline/seasonal_naive/mae_z", "test/mse_z@2"} <= tags
    logged = events.Scalars("baseline/ridge/mse_z")[-1].value
    assert logged == pytest.approx(written["baseline/ridge/mse_z"], rel=1e-6)


@pytest.mark.slow
def test_tables_can_be_switched_off(compose_train_cfg, tmp_path):
    train(compose_train_cfg("trainer.max_epochs=1", "evaluation.tables=false"))
    assert (tmp_path / "metrics.json").is_file()
    assert not (tmp_path / "metrics_per_step.csv").exists()


@pytest.mark.parametrize("horizon", [1, 24, 96, 192, 336, 720])
def test_etth1_presets_follow_the_published_protocol(compose_train_cfg, horizon):
    cfg = compose_train_cfg(
        f"experiment=etth1_h{horizon}", "data.source.path=/nonexistent/ETTh1.csv", tiny=False
    )
    assert cfg.model.horizon == horizon
    assert cfg.data.horizon == horizon
    assert dict(cfg.data.split) == {"train": 8640, "val": 2880, "test": 2880}
    assert cfg.data.window_size == 96
    assert cfg.task_name == f"etth1_h{horizon}"


@pytest.mark.slow
@pytest.mark.skipif(not ETTH1.is_file(), reason="ETTh1.csv is not in ../shared/data")
def test_etth1_persistence_matches_the_published_repeat_figure(compose_train_cfg):
    cfg = compose_train_cfg("experiment=etth1_h96", f"data.source.path={ETTH1}", tiny=False)
    scores = evaluate_baselines(instantiate(cfg.data), "test", {"baselines": ["persistence"]})
    # "Repeat" (the last value) on ETTh1 at horizon 96: MSE 1.295, MAE 0.713 (Zeng et al., 2023, Table 2):
    # the same test targets and the same z-normalisation as the published protocol.
    assert scores.metrics["baseline/persistence/mse_z"] == pytest.approx(1.295, abs=0.001)
    assert scores.metrics["baseline/persistence/mae_z"] == pytest.approx(0.713, abs=0.001)
    assert scores.metrics["test/num_targets"] == (2880 - 96 + 1) * 7 * 96
