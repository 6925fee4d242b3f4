"""``lstm-evaluate`` writes its per-window forecasts as a long table, for wide data too."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstm_forecast.data.sources import synthetic_frame
from lstm_forecast.evaluate import evaluate
from lstm_forecast.training.run import train


@pytest.mark.slow
def test_evaluate_writes_long_forecasts_of_wide_data(compose_train_cfg, tmp_path):
    metrics, _ = train(compose_train_cfg("trainer.max_epochs=1", "model.horizon=2", "logger=none"))
    cfg = compose_train_cfg(
        f"ckpt_path={metrics['best_checkpoint']}",
        "forecasts_file=forecasts.parquet",
        tiny=False,
        config_name="evaluate",
    )
    evaluated = evaluate(cfg)
    assert evaluated["test/mse_z"] == pytest.approx(metrics["test/mse_z"], rel=1e-5)
    forecasts = pd.read_parquet(tmp_path / "forecasts.parquet")
    assert list(forecasts.columns) == ["series", "timestamp", "step", "prediction", "target"]
    assert len(forecasts) == evaluated["test/num_targets"]
    assert forecasts.step.tolist()[:2] == [1, 2]
    # Same data as the TINY_OVERRIDES run: 3 series of 240 rows, seed 42.
    source = synthetic_frame(num_series=3, num_rows=240, seed=42).series
    actual = source.stack().rename_axis(["timestamp", "series"])
    keys = list(zip(forecasts.timestamp, forecasts.series, strict=True))
    np.testing.assert_allclose(forecasts.target.to_numpy(), actual.loc[keys].to_numpy(), rtol=1e-5)
