"""Rolling-origin backtest: origins, windows, and the real CLI on a real checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tests.conftest import assert_one_line_error, run_app

from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.sources import synthetic_frame
from lstm_forecast.errors import UserError
from lstm_forecast.inference.backtest import origin_windows, period_bounds
from lstm_forecast.training.run import train

NUM_SERIES, NUM_ROWS, WINDOW = 2, 200, 8


def synthetic_datamodule(horizon: int = 3) -> ForecastDataModule:
    datamodule = ForecastDataModule(
        source={"kind": "synthetic", "num_series": NUM_SERIES, "num_rows": NUM_ROWS, "seed": 0},
        window_size=WINDOW,
        horizon=horizon,
        split={"train": 100, "val": 50, "test": 50},
        calendar_features=[],
    )
    datamodule.setup("test")
    return datamodule


def bounds(lo: int, hi: int) -> tuple[list[int], list[int]]:
    """The same ``[lo, hi)`` for every series."""
    return [lo] * NUM_SERIES, [hi] * NUM_SERIES


def test_period_bounds_cover_the_split_and_narrow_to_timestamps():
    datamodule = synthetic_datamodule()

    def period(*args, **kwargs):
        lo, hi = period_bounds(datamodule, *args, **kwargs)
        return lo.tolist(), hi.tolist()

    # Steps [lo, hi) of each series, hi exclusive.
    assert period("test") == bounds(150, 200)
    assert period("val") == bounds(100, 150)
    assert period("train") == bounds(1, 100)  # step 0 has no history at all
    assert period("all") == bounds(1, 200)
    # start / end are inclusive timestamps; every series shares the synthetic timeline.
    timestamps = datamodule.timestamps
    start, end = timestamps[160], timestamps[170]
    assert period("test", str(start), str(end)) == bounds(160, 171)
    assert period("all", end=str(timestamps[120])) == bounds(1, 121)
    with pytest.raises(UserError, match="split must be one of"):
        period_bounds(datamodule, "holdout")
    with pytest.raises(UserError, match="not a timestamp"):
        period_bounds(datamodule, "test", start="yesterday-ish")


def test_origins_are_strided_and_every_target_stays_inside_the_period():
    datamodule = synthetic_datamodule(horizon=3)
    windows = origin_windows(datamodule, *map(np.array, bounds(150, 200)), stride=4)
    batch = windows.gather(torch.arange(len(windows)))
    # Series-major: every origin of series 1, then of series 2; origins 150, 154, ... up to 194 (the
    # last whose 3 targets end before row 200; 197 would be the last with stride 1).
    origins = list(range(150, 198, 4))
    assert len(windows) == len(origins) * NUM_SERIES
    assert batch["series_id"].tolist() == [1] * len(origins) + [2] * len(origins)
    frame_rows = [s * NUM_ROWS + t for s in range(NUM_SERIES) for t in origins]
    assert batch["target_row"].tolist() == frame_rows
    assert (batch["target_row"] % NUM_ROWS + 3 <= 200).all()
    # The model sees true history: the window's values are the scaled rows just before the origin.
    frame = datamodule.load_frame()
    scaled = torch.tensor(datamodule.scaled_values(frame.values, frame.row_series), dtype=torch.float32)
    for k, row in ((0, 150), (len(origins), NUM_ROWS + 150), (len(windows) - 1, NUM_ROWS + 194)):
        torch.testing.assert_close(batch["x"][k, :, -1], scaled[row - WINDOW : row])
        torch.testing.assert_close(batch["y"][k], scaled[row : row + 3])
    # Each series' own origins: a period that differs per series.
    windows = origin_windows(datamodule, np.array([150, 190]), np.array([200, 200]), stride=4)
    rows = windows.gather(torch.arange(len(windows)))["target_row"].tolist()
    assert rows == [*origins, NUM_ROWS + 190, NUM_ROWS + 194]


def test_stride_one_over_the_test_split_gives_the_test_windows():
    datamodule = synthetic_datamodule(horizon=3)
    windows = origin_windows(datamodule, *period_bounds(datamodule, "test"), stride=1)
    test = datamodule.windows["test"]
    assert len(windows) == len(test) == (50 - 3 + 1) * NUM_SERIES
    ours, theirs = windows.gather(torch.arange(len(windows))), test.gather(torch.arange(len(test)))
    for key in ("x", "y", "series_id", "target_row"):
        torch.testing.assert_close(ours[key], theirs[key])


def test_origin_windows_refuse_bad_strides_and_short_periods():
    datamodule = synthetic_datamodule(horizon=3)
    with pytest.raises(UserError, match="stride"):
        origin_windows(datamodule, *map(np.array, bounds(150, 200)), stride=0)
    with pytest.raises(UserError, match="fewer than the horizon"):
        origin_windows(datamodule, *map(np.array, bounds(150, 152)), stride=1)


@pytest.mark.slow
def test_backtest_cli_matches_the_test_metrics_and_writes_forecasts(compose_train_cfg, tmp_path):
    metrics, _ = train(compose_train_cfg("model.horizon=3"))
    checkpoint = metrics["best_checkpoint"]
    out = tmp_path / "backtest"
    # run=<training run folder>: its best checkpoint, from its metrics.json.
    result = run_app("backtest", f"run={tmp_path}", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr
    backtest = json.loads((out / "metrics.json").read_text())
    assert backtest["checkpoint"] == str(Path(checkpoint).resolve())
    # Stride 1 over the test split: exactly the test windows, so exactly the training run's test scores.
    for key in ("mse_z", "mae_z", "mase", "mse_z@3"):
        assert backtest[f"backtest/{key}"] == pytest.approx(metrics[f"test/{key}"], rel=1e-5)
    for key in ("baseline/persistence/mse_z", "baseline/seasonal_naive/mse_z", "baseline/ridge/mse_z@2"):
        assert backtest[key] == pytest.approx(metrics[key])
    assert backtest["backtest/num_targets"] == metrics["test/num_targets"]
    num_rows, num_test_rows = 240, round(0.15 * 240)  # TINY_OVERRIDES, the default 0.7/0.15/0.15 split
    assert backtest["backtest/num_origins"] == num_test_rows - 3 + 1

    forecasts = pd.read_csv(out / "forecasts.csv", parse_dates=["origin", "timestamp"])
    assert len(forecasts) == backtest["backtest/num_targets"] == (num_test_rows - 3 + 1) * 3 * 3
    assert list(forecasts.columns) == [
        "origin",
        "series",
        "timestamp",
        "step",
        "prediction",
        "actual",
        "lo-80",
        "hi-80",
        "lo-95",
        "hi-95",
        "persistence",
        "seasonal_naive",
        "ridge",
    ]
    assert forecasts["step"].tolist()[:6] == [1, 2, 3, 1, 2, 3]
    # Each step's timestamp is its origin plus step - 1 hours; the origins cover the test rows.
    np.testing.assert_array_equal(
        forecasts["timestamp"], forecasts["origin"] + pd.to_timedelta(forecasts["step"] - 1, unit="h")
    )
    start = pd.Timestamp("2024-01-01")
    first_test = start + pd.Timedelta(hours=num_rows - num_test_rows)
    assert forecasts["origin"].min() == first_test
    assert forecasts["origin"].max() == start + pd.Timedelta(hours=num_rows - 3)
    assert forecasts.groupby("series").size().to_dict() == {
        f"series_{k}": (num_test_rows - 3 + 1) * 3 for k in (1, 2, 3)
    }
    # Actuals in original units: the synthetic data the run trained on (seed 42).
    frame = synthetic_frame(num_series=3, num_rows=num_rows, seed=42)
    truth = pd.Series(frame.values, index=pd.MultiIndex.from_arrays([frame.row_series, frame.timestamps]))
    series = forecasts["series"].str.removeprefix("series_").astype(int) - 1
    keys = list(zip(series, forecasts["timestamp"], strict=True))
    np.testing.assert_allclose(forecasts["actual"], truth.loc[keys].to_numpy(), rtol=1e-5)
    # Persistence repeats the value just before the origin.
    before = list(zip(series, forecasts["origin"] - pd.Timedelta(hours=1), strict=True))
    np.testing.assert_allclose(forecasts["persistence"], truth.loc[before].to_numpy(), rtol=1e-5)
    # The forecast column is the one the metrics scored.
    mae = (forecasts["prediction"] - forecasts["actual"]).abs().mean()
    assert mae == pytest.approx(backtest["backtest/mae_orig"], rel=1e-4)
    assert (out / "metrics_per_step.csv").is_file()
    # Coverage over time: each origin's share of targets inside, from the forecasts written.
    per_origin = pd.read_csv(out / "coverage_per_origin.csv", parse_dates=["origin"])
    inside = (forecasts["lo-80"] <= forecasts["actual"]) & (forecasts["actual"] <= forecasts["hi-80"])
    expected = inside.groupby(forecasts["origin"]).mean()
    np.testing.assert_allclose(per_origin.set_index("origin")["coverage@80"], expected, rtol=1e-9)
    width = (forecasts["hi-95"] - forecasts["lo-95"]).groupby(forecasts["origin"]).mean()
    np.testing.assert_allclose(per_origin.set_index("origin")["width@95"], width, rtol=1e-4)
    assert backtest["backtest/coverage@80"] == pytest.approx(per_origin["coverage@80"].mean())
    # And per series, in metrics_per_series.csv.
    per_series = pd.read_csv(out / "metrics_per_series.csv").query("model == 'model'").set_index("series")
    by_series = inside.groupby(forecasts["series"]).mean()
    np.testing.assert_allclose(per_series.loc[by_series.index, "coverage@80"], by_series, rtol=1e-9)

    strided = tmp_path / "strided"
    result = run_app(
        "backtest",
        f"ckpt_path={checkpoint}",
        f"hydra.run.dir={strided}",
        "stride=5",
        "split=val",
        "forecasts_file=null",
    )
    assert result.returncode == 0, result.stderr
    strided_metrics = json.loads((strided / "metrics.json").read_text())
    num_val_rows = round(0.15 * 240)
    assert strided_metrics["backtest/num_origins"] == -(-(num_val_rows - 3 + 1) // 5)
    assert strided_metrics["backtest/stride"] == 5
    assert strided_metrics["backtest/num_targets"] == strided_metrics["backtest/num_origins"] * 3 * 3
    assert not (strided / "forecasts.csv").exists()

    bad = run_app("backtest", f"ckpt_path={checkpoint}", f"hydra.run.dir={tmp_path / 'bad'}", "stride=0")
    assert_one_line_error(bad, "stride")
    assert not (tmp_path / "bad").exists()
