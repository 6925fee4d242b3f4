"""Rolling-origin backtest: origins, windows, and the real CLI on a real checkpoint."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from tests.conftest import assert_one_line_error, run_app

from lstm_forecast.backtest import origin_windows, period_rows
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.errors import UserError
from lstm_forecast.training.run import train


def synthetic_datamodule(horizon: int = 3) -> ForecastDataModule:
    datamodule = ForecastDataModule(
        source={"kind": "synthetic", "num_series": 2, "num_rows": 200, "seed": 0},
        window_size=8,
        horizon=horizon,
        split={"train": 100, "val": 50, "test": 50},
        calendar_features=[],
    )
    datamodule.setup("test")
    return datamodule


def test_period_rows_cover_the_split_and_narrow_to_timestamps():
    datamodule = synthetic_datamodule()
    assert period_rows(datamodule, "test") == (150, 199)
    assert period_rows(datamodule, "val") == (100, 149)
    assert period_rows(datamodule, "all") == (1, 199)
    start, end = datamodule.timestamps[160], datamodule.timestamps[170]
    assert period_rows(datamodule, "test", str(start), str(end)) == (160, 170)
    with pytest.raises(UserError, match="period must be one of"):
        period_rows(datamodule, "holdout")
    with pytest.raises(UserError, match="not a timestamp"):
        period_rows(datamodule, "test", start="yesterday-ish")


def test_origins_are_strided_and_every_target_stays_inside_the_period():
    datamodule = synthetic_datamodule(horizon=3)
    windows, index = origin_windows(datamodule, 150, 199, stride=4)
    batch = windows.gather(index)
    rows = batch["target_row"].view(-1, 2)  # [origins, series]
    # Origins 150, 154, ... up to 197 (the last whose 3 targets end by row 199).
    assert rows[:, 0].tolist() == list(range(150, 198, 4))
    assert (rows[:, 0] == rows[:, 1]).all()
    assert batch["series_id"].view(-1, 2).tolist()[0] == [1, 2]
    # The model sees true history: the window's values are the rows just before the origin.
    values = datamodule.windows["test"].arrays.values
    first = batch["x"][0, :, -1]
    torch.testing.assert_close(first, values[150 : 150 + 8, 0])
    torch.testing.assert_close(batch["y"][0], values[150 + 8 : 150 + 8 + 3, 0])


def test_stride_one_over_the_test_split_gives_the_test_windows():
    datamodule = synthetic_datamodule(horizon=3)
    windows, index = origin_windows(datamodule, *period_rows(datamodule, "test"), stride=1)
    test = datamodule.windows["test"]
    torch.testing.assert_close(windows.gather(index)["y"], test.gather(torch.arange(len(test)))["y"])


def test_origin_windows_refuse_bad_strides_and_short_periods():
    datamodule = synthetic_datamodule(horizon=3)
    with pytest.raises(UserError, match="stride"):
        origin_windows(datamodule, 150, 199, stride=0)
    with pytest.raises(UserError, match="fewer than the horizon"):
        origin_windows(datamodule, 150, 151, stride=1)


@pytest.mark.slow
def test_backtest_cli_matches_the_test_metrics_and_writes_forecasts(compose_train_cfg, tmp_path):
    metrics, _ = train(compose_train_cfg("model.horizon=3", "logger=none"))
    checkpoint = metrics["best_checkpoint"]
    out = tmp_path / "backtest"
    result = run_app("backtest", f"ckpt_path={checkpoint}", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr
    backtest = json.loads((out / "metrics.json").read_text())
    # Stride 1 over the test split: exactly the test windows, so exactly the training run's test scores.
    for key in ("mse_z", "mae_z", "mase", "mse_z@3"):
        assert backtest[f"backtest/{key}"] == pytest.approx(metrics[f"test/{key}"], rel=1e-5)
    for key in ("baseline/persistence/mse_z", "baseline/seasonal_naive/mse_z", "baseline/ridge/mse_z@2"):
        assert backtest[key] == pytest.approx(metrics[key])
    assert backtest["backtest/num_targets"] == metrics["test/num_targets"]
    forecasts = pd.read_csv(out / "forecasts.csv")
    assert len(forecasts) == backtest["backtest/num_targets"]
    assert list(forecasts.columns) == [
        "origin",
        "series",
        "step",
        "timestamp",
        "actual",
        "model",
        "persistence",
        "seasonal_naive",
        "ridge",
    ]
    assert (out / "metrics_per_step.csv").is_file()

    strided = tmp_path / "strided"
    result = run_app(
        "backtest", f"ckpt_path={checkpoint}", f"hydra.run.dir={strided}", "stride=5", "period=val"
    )
    assert result.returncode == 0, result.stderr
    strided_metrics = json.loads((strided / "metrics.json").read_text())
    num_val_rows = round(0.15 * 240)
    assert strided_metrics["backtest/num_origins"] == -(-(num_val_rows - 3 + 1) // 5)

    bad = run_app("backtest", f"ckpt_path={checkpoint}", f"hydra.run.dir={tmp_path / 'bad'}", "stride=0")
    assert_one_line_error(bad, "stride")
    assert not (tmp_path / "bad").exists()
