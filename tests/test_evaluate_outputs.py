"""``lstm-evaluate`` writes its per-window forecasts as the one forecast table, for wide data too."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_forecast.data.sources import synthetic_frame
from lstm_forecast.inference.evaluate import evaluate
from lstm_forecast.training.run import train


@pytest.mark.slow
def test_evaluate_writes_long_forecasts_of_wide_data(compose_train_cfg, tmp_path):
    metrics, _ = train(compose_train_cfg("trainer.max_epochs=1", "model.horizon=2"))
    cfg = compose_train_cfg(
        f"ckpt_path={metrics['best_checkpoint']}",
        "forecasts_file=forecasts.parquet",
        tiny=False,
        config_name="evaluate",
    )
    evaluated = evaluate(cfg)
    assert evaluated["test/mse_z"] == pytest.approx(metrics["test/mse_z"], rel=1e-5)
    forecasts = pd.read_parquet(tmp_path / "forecasts.parquet")
    # The forecast table and the conformal intervals of the default evaluation.interval_levels.
    assert list(forecasts.columns) == [
        "series",
        "timestamp",
        "step",
        "prediction",
        "actual",
        "lo-80",
        "hi-80",
        "lo-95",
        "hi-95",
    ]
    assert len(forecasts) == evaluated["test/num_targets"]
    # Same data as the TINY_OVERRIDES run: 3 series of 240 rows, seed 42, the last 36 rows are test.
    num_test_rows = round(0.15 * 240)
    assert len(forecasts) == (num_test_rows - 2 + 1) * 3 * 2
    assert forecasts.step.tolist()[:4] == [1, 2, 1, 2]
    # Windows are series-major: every window of series_1 first, targets from the first test row on.
    per_series = (num_test_rows - 2 + 1) * 2
    assert forecasts.series.tolist() == [f"series_{k}" for k in (1, 2, 3) for _ in range(per_series)]
    first_test = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=240 - num_test_rows)
    assert forecasts.timestamp.tolist()[:3] == [first_test + pd.Timedelta(hours=h) for h in (0, 1, 1)]
    frame = synthetic_frame(num_series=3, num_rows=240, seed=42)
    names = np.asarray(frame.series_names, dtype=object)[frame.row_series]
    actual = pd.Series(frame.values, index=pd.MultiIndex.from_arrays([frame.timestamps, names]))
    keys = list(zip(forecasts.timestamp, forecasts.series, strict=True))
    np.testing.assert_allclose(forecasts.actual.to_numpy(), actual.loc[keys].to_numpy(), rtol=1e-5)
    # The predictions are the ones scored: their error in original units is the reported one.
    mae = (forecasts.prediction - forecasts.actual).abs().mean()
    assert mae == pytest.approx(evaluated["test/mae_orig"], rel=1e-4)
