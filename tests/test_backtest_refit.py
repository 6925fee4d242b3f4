"""``lstm-backtest horizon=`` and ``refit_every=``: which horizons a backtest scores, and the models of a
backtest that refits (each trained on the rows before its origins, all scored as one set)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_MODEL, assert_one_line_error, compose_config, run_app
from lstm_forecast.errors import UserError
from lstm_forecast.inference.backtest import backtest, backtest_horizon
from lstm_forecast.training.run import train

HORIZON, TEST_ROWS, STRIDE = 4, 24, 3  # the long default's test split: each series' last 24 rows
LENGTHS = {"s0": 110, "s1": 125, "s2": 140}


def test_a_backtest_scores_the_models_own_horizon_and_refuses_others_with_the_fix() -> None:
    assert backtest_horizon(None, 24) == 24
    assert backtest_horizon(24, 24) == 24  # what both hints below name (horizon=24)
    with pytest.raises(
        UserError, match=r"^horizon=48 is longer .* train one with model\.horizon=48 .* horizon=24$"
    ):
        backtest_horizon(48, 24)
    with pytest.raises(UserError, match=r"^horizon=12 is shorter .*; use horizon=24: .*backtest/mse_z@1"):
        backtest_horizon(12, 24)
    for bad in (0, -24, 2.5, "24", True):
        with pytest.raises(UserError, match="horizon must be a positive integer"):
            backtest_horizon(bad, 24)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 4-step model trained on a long CSV of three hourly series of their own lengths."""
    folder = tmp_path_factory.mktemp("refit")
    rng = np.random.default_rng(0)
    parts = []
    for k, (series, length) in enumerate(LENGTHS.items()):
        stamps = pd.date_range(
            pd.Timestamp("2024-01-01") + pd.Timedelta(hours=4 * k), periods=length, freq="h"
        )
        values = 5.0 * (k + 1) + np.sin(np.arange(length) / 3) + 0.1 * rng.standard_normal(length)
        parts.append(pd.DataFrame({"series": series, "timestamp": stamps, "value": values}))
    pd.concat(parts).to_csv(folder / "panel.csv", index=False)
    overrides = [
        "data=long_csv",
        f"data.source.path={folder / 'panel.csv'}",
        *TINY_MODEL,
        f"model.horizon={HORIZON}",
    ]
    train(compose_config("train", folder / "run", overrides))
    return folder


@pytest.mark.slow
def test_refit_models_see_only_the_rows_before_their_origins_and_score_as_one(
    long_run: Path, tmp_path
) -> None:
    handed: list[pd.DataFrame] = []

    def same_model(checkpoint: Path, rows: pd.DataFrame, folder: Path) -> Path:
        """Records what a refit would train on; the trained model forecasts every group."""
        handed.append(rows)
        return checkpoint

    common = [f"run={long_run / 'run'}", f"stride={STRIDE}"]
    once = backtest(compose_config("backtest", tmp_path / "once", common))
    grouped = backtest(
        compose_config("backtest", tmp_path / "grouped", [*common, "refit_every=2"]), refit=same_model
    )
    origins = -(-(TEST_ROWS - HORIZON + 1) // STRIDE)  # per series: 7, taken 2 at a time
    assert grouped["backtest/num_models"] == len(handed) == -(-origins // 2) == 4
    assert once["backtest/num_models"] == 1 and once["backtest/refit_every"] == 0
    assert grouped["backtest/num_targets"] == origins * len(LENGTHS) * HORIZON
    assert np.isfinite(grouped["backtest/mse_z"])
    # Group g's model is trained on each series' rows before its origin number 2g: the test split's
    # first step plus 2g strides.
    panel = pd.read_csv(long_run / "panel.csv")  # series by series, in time order
    for group, rows in enumerate(handed):
        counts = {s: n - TEST_ROWS + 2 * group * STRIDE for s, n in LENGTHS.items()}
        expected = pd.concat(panel[panel["series"] == s].head(count) for s, count in counts.items())
        pd.testing.assert_frame_equal(rows, expected)
    # The same model in every group: the groups' scores add up to the scores of one pass (to float32
    # rounding: the chunks' sums come in another order). Intervals excepted: each group's model is
    # calibrated on the validation split of the rows it was handed.
    settings = ("backtest/num_models", "backtest/refit_every")
    for key, value in once.items():
        interval = "coverage" in key or "width" in key
        if key.startswith(("backtest/", "baseline/")) and key not in settings and not interval:
            expected = value if isinstance(value, str) else pytest.approx(value, rel=1e-6, abs=1e-9)
            assert grouped[key] == expected, key
    order = ["series", "origin", "step"]
    once_table, grouped_table = (
        pd.read_csv(tmp_path / name / "forecasts.csv").sort_values(order, ignore_index=True)
        for name in ("once", "grouped")
    )
    intervals = ["lo-80", "hi-80", "lo-95", "hi-95"]
    pd.testing.assert_frame_equal(once_table.drop(columns=intervals), grouped_table.drop(columns=intervals))
    assert grouped_table[intervals].notna().all().all()
    assert (grouped_table["lo-95"] < grouped_table["lo-80"]).all()


@pytest.mark.slow
def test_lstm_backtest_refits_with_the_runs_settings(long_run: Path, tmp_path) -> None:
    run = f"run={long_run / 'run'}"
    refitted = tmp_path / "refitted"
    result = run_app(
        "backtest", run, "stride=12", "refit_every=1", f"horizon={HORIZON}", f"hydra.run.dir={refitted}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((refitted / "metrics.json").read_text())
    assert metrics["backtest/num_models"] == 2  # origins 0 and 12 of every series, one model each
    assert metrics["backtest/horizon"] == HORIZON
    assert np.isfinite([metrics[f"backtest/mse_z@{h}"] for h in range(1, HORIZON + 1)]).all()
    trained = json.loads((long_run / "run" / "metrics.json").read_text())
    for group in ("000", "001"):
        refit = json.loads((refitted / "refits" / group / "metrics.json").read_text())
        assert Path(refit["best_checkpoint"]).is_file() and str(refitted) in refit["best_checkpoint"]
        assert refit["epochs"] == trained["epochs"]  # the run's settings: its trainer.max_epochs
        assert not any(key.startswith("test/") for key in refit)  # the backtest scores the origins
    assert not any((long_run / "run").glob("refits"))  # nothing written into the trained run
    plain = tmp_path / "plain"
    assert run_app("backtest", run, "stride=12", f"hydra.run.dir={plain}").returncode == 0
    refitted_forecasts, plain_forecasts = (
        pd.read_csv(folder / "forecasts.csv").sort_values(["series", "origin", "step"], ignore_index=True)
        for folder in (refitted, plain)
    )
    pd.testing.assert_frame_equal(
        refitted_forecasts[["series", "origin", "timestamp", "step"]],
        plain_forecasts[["series", "origin", "timestamp", "step"]],
    )
    # The actuals, inverted with each model's own scaler: equal to float32 rounding.
    np.testing.assert_allclose(refitted_forecasts["actual"], plain_forecasts["actual"], rtol=1e-6)
    assert not np.allclose(refitted_forecasts["prediction"], plain_forecasts["prediction"])

    too_long = tmp_path / "too_long"
    result = run_app("backtest", run, f"horizon={2 * HORIZON}", f"hydra.run.dir={too_long}")
    assert_one_line_error(result, f"horizon={2 * HORIZON} is longer", f"model.horizon={2 * HORIZON}")
    assert not too_long.exists()
