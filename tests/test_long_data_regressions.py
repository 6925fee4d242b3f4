"""The two failures a new user met with a long CSV, through the console apps as the README runs them.

Before wide and long data shared one data model, ``lstm-train data=long_csv`` crashed at the first
validation epoch in the default forecast-figures callback (``'PanelWindows' object has no attribute
'series_index'``), and ``lstm-backtest`` on its checkpoint stopped with a bare ``AssertionError``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_app

pytestmark = pytest.mark.slow

SMALL = [
    "data.window_size=12",
    "model.net.num_units=8",
    "model.net.embedding_dim=3",
    "model.net.dense_size=8",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    # The one epoch draws the validation figures the crash was in (by default, after every fifth).
    "callbacks.forecast_figures.every_n_epochs=1",
]


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``lstm-train data=long_csv`` on five hourly series of their own lengths, default logger, callbacks."""
    folder = tmp_path_factory.mktemp("long_regression")
    rng = np.random.default_rng(0)
    parts = [
        pd.DataFrame(
            {
                "series": f"s{i}",
                "timestamp": pd.date_range(
                    pd.Timestamp("2024-01-01") + pd.Timedelta(hours=7 * i), periods=n, freq="h"
                ),
                "value": 10.0 * (i + 1) + np.sin(np.arange(n) / 4) + 0.1 * rng.standard_normal(n),
            }
        )
        for i, n in enumerate([150, 120, 200, 90, 170])
    ]
    pd.concat(parts).to_csv(folder / "panel.csv", index=False)
    run_dir = folder / "run"
    result = run_app(
        "train",
        "data=long_csv",
        f"data.source.path={folder / 'panel.csv'}",
        *SMALL,
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_train_on_long_data_with_the_default_logger_writes_its_figures(long_run: Path) -> None:
    metrics = json.loads((long_run / "metrics.json").read_text())
    assert np.isfinite(metrics["test/mse_z"])
    assert Path(metrics["best_checkpoint"]).is_file()
    images = EventAccumulator(str(long_run / "tensorboard")).Reload().Tags()["images"]
    assert {"forecast/val/s0", "forecast/test/s0", "test/error_by_series"} <= set(images), images


def test_backtest_of_a_long_data_checkpoint(long_run: Path, tmp_path: Path) -> None:
    best = json.loads((long_run / "metrics.json").read_text())["best_checkpoint"]
    result = run_app("backtest", f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'backtest'}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "backtest" / "metrics.json").read_text())
    assert np.isfinite(metrics["backtest/mse_z"])
    assert metrics["backtest/num_targets"] > 0
