"""Quantile models and conformal prediction intervals: the loss, the ordering, the calibration, and the
apps (train, predict) on the default config with both data layouts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_MODEL, assert_one_line_error, run_app, tiny_cli_args
from lstm_forecast.data.long_source import synthetic_long_table
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.intervals import ConformalIntervals, conformal_margin, interval_columns
from lstm_forecast.evaluation.window_forecasts import WindowForecasts
from lstm_forecast.models.module import ForecastModule
from lstm_forecast.models.net import EmbeddingBiLSTM
from lstm_forecast.models.quantiles import monotone_quantiles, pinball_loss, point_forecast

LEVELS = (0.1, 0.5, 0.9)


# ------------------------------------------------------------------------------------------ the model
def test_pinball_loss_matches_the_hand_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    quantiles = torch.randn(4, 3, 3, generator=generator)
    target = torch.randn(4, 3, generator=generator)
    terms = []
    for b in range(4):
        for h in range(3):
            for k, tau in enumerate(LEVELS):
                error = float(target[b, h] - quantiles[b, h, k])
                terms.append(tau * error if error >= 0 else (tau - 1) * error)
    assert float(pinball_loss(quantiles, target, LEVELS)) == pytest.approx(sum(terms) / len(terms), rel=1e-6)


def test_quantiles_never_cross_for_random_raw_outputs() -> None:
    torch.manual_seed(0)
    module = ForecastModule(
        3, 2, horizon=4, net={"num_units": 4, "dense_size": 4}, loss="quantile", quantiles=[0.1, 0.5, 0.9]
    )
    x, series_id = torch.randn(256, 6, 2) * 3, torch.randint(1, 4, (256,))
    raw = module.net(x, series_id)  # [B, H, Q]
    assert (raw.diff(dim=-1) < 0).any(), "random raw outputs should cross, or the test proves nothing"
    quantiles = module(x, series_id)
    assert quantiles.shape == (256, 4, 3)
    assert (quantiles.diff(dim=-1) >= 0).all()
    # Sorting only reorders: ordered raw outputs come back unchanged.
    ordered = torch.sort(torch.randn(5, 2, 3), dim=-1).values
    torch.testing.assert_close(monotone_quantiles(ordered), ordered)


def test_the_point_forecast_is_the_median_or_else_the_mean() -> None:
    quantiles = torch.tensor([[[1.0, 2.0, 6.0]]])
    assert float(point_forecast(quantiles, (0.1, 0.5, 0.9))) == 2.0
    assert float(point_forecast(quantiles, (0.1, 0.3, 0.9))) == 3.0


def test_outputs_per_step_broadcast_the_window_reference_over_the_outputs() -> None:
    torch.manual_seed(0)
    net = EmbeddingBiLSTM(
        2, 1, num_units=4, dense_size=4, horizon=2, window_norm="last", outputs_per_step=3
    ).eval()
    x, series_id = torch.randn(8, 5, 1), torch.randint(1, 3, (8,))
    output = net(x, series_id)
    assert output.shape == (8, 2, 3)
    torch.testing.assert_close(net(x + 10.0, series_id), output + 10.0)  # every output moves with the level
    single = EmbeddingBiLSTM(2, 1, num_units=4, dense_size=4, horizon=2).eval()
    assert single(x, series_id).shape == (8, 2)


# ------------------------------------------------------------------------------------------ conformal
def forecasts_of(prediction: np.ndarray, target: np.ndarray, series=None, quantiles=None) -> WindowForecasts:
    count = len(prediction)
    return WindowForecasts(
        prediction=prediction,
        target=target,
        last_value=np.zeros(count),
        series_index=np.zeros(count, dtype=np.int64) if series is None else series,
        target_row=np.arange(count),
        quantiles=quantiles,
        quantile_levels=LEVELS if quantiles is not None else (),
    )


def test_the_margin_is_the_ceil_n_plus_1_level_smallest_score() -> None:
    scores = np.arange(1.0, 20.0)[::-1, None]  # 19 scores 19 .. 1, one step
    assert conformal_margin(scores, 0.95)[0] == 19.0  # rank ceil(20 * 0.95) = 19
    assert conformal_margin(scores[:9], 0.8)[0] == 19.0 - 9 + 8  # 9 scores 11..19, rank ceil(8.0) = 8
    assert conformal_margin(scores, 0.8)[0] == 16.0  # rank ceil(16.0) = 16
    assert np.isnan(conformal_margin(scores[:18], 0.95)[0])  # rank 19 of 18: unbounded
    too_few = forecasts_of(np.zeros((18, 1)), np.ones((18, 1)))
    with pytest.raises(UserError, match="18 validation windows are too few to calibrate 95% intervals"):
        ConformalIntervals.calibrate(too_few, [0.8, 0.95])
    # Training and evaluation keep the levels they can calibrate.
    kept = ConformalIntervals.calibrate(too_few, [0.8, 0.95], skip_uncalibrated=True)
    assert kept.levels == (0.8,) and list(kept.apply(too_few).intervals) == [0.8]


def coverage(forecasts: WindowForecasts, level: float, rows=slice(None)) -> np.ndarray:
    """Empirical coverage per horizon step ``[H]``."""
    lo, hi = forecasts.intervals[level]
    target = forecasts.target[rows]
    return np.mean((lo[rows] <= target) & (target <= hi[rows]), axis=0)


# Held-out coverage of n-window calibration: Beta((n + 1) c, ...) around c, sd sqrt(c (1 - c) / n), plus
# the binomial noise of the test windows; 4.5 sd of both at n = 20,000 calibration, 40,000 test windows.
CAL, TEST = 20_000, 40_000


def tolerance(level: float) -> float:
    return 4.5 * math.sqrt(level * (1 - level) * (1 / CAL + 1 / TEST))


def test_split_conformal_covers_known_noise_at_the_nominal_rate_per_step() -> None:
    rng = np.random.default_rng(0)
    scale = np.array([1.0, 3.0])  # the second step is three times as noisy: margins are per step
    calibration = forecasts_of(np.zeros((CAL, 2)), rng.normal(size=(CAL, 2)) * scale)
    held_out = forecasts_of(np.zeros((TEST, 2)), rng.normal(size=(TEST, 2)) * scale)
    intervals = ConformalIntervals.calibrate(calibration, [0.8, 0.95])
    covered = intervals.apply(held_out)
    for level in (0.8, 0.95):
        np.testing.assert_allclose(coverage(covered, level), level, atol=tolerance(level))
    # The margins are the noise's own quantiles: |N(0, s^2)| has 80 % below 1.2816 s.
    np.testing.assert_allclose(intervals.margins[0], 1.2816 * scale, rtol=0.03)


def test_cqr_calibrates_a_too_narrow_quantile_band_and_keeps_its_shape() -> None:
    rng = np.random.default_rng(1)

    def windows(count: int) -> WindowForecasts:
        spread = rng.uniform(0.5, 3.0, size=(count, 1))  # heteroscedastic: each window its own noise
        target = rng.normal(size=(count, 1)) * spread
        band = 1.2816 * spread * 0.5  # the model's 10 % / 90 % quantiles, half as wide as they should be
        quantiles = np.stack([-band, np.zeros_like(band), band], axis=-1)  # [N, 1, 3]
        return forecasts_of(np.zeros((count, 1)), target, quantiles=quantiles)

    intervals = ConformalIntervals.calibrate(windows(CAL), [0.8, 0.95])
    held_out = windows(TEST)
    covered = intervals.apply(held_out)
    for level in (0.8, 0.95):
        np.testing.assert_allclose(coverage(covered, level), level, atol=tolerance(level))
    # The model's band widened by one margin per side: wide where the model is unsure.
    lo, hi = covered.intervals[0.8]
    band = held_out.quantiles[..., 2] - held_out.quantiles[..., 0]  # [N, 1]
    assert intervals.margins[0, 0] > 0
    np.testing.assert_allclose(hi - lo, band + 2 * intervals.margins[0, 0])


def test_per_series_intervals_cover_each_series() -> None:
    rng = np.random.default_rng(2)
    scale = np.array([0.5, 2.0])  # series 0 quiet, series 1 noisy

    def windows(count: int) -> WindowForecasts:
        series = np.arange(count) % 2
        return forecasts_of(
            np.zeros((count, 1)), rng.normal(size=(count, 1)) * scale[series][:, None], series
        )

    calibration, held_out = windows(2 * CAL), windows(2 * TEST)
    pooled = ConformalIntervals.calibrate(calibration, [0.8]).apply(held_out)
    own = ConformalIntervals.calibrate(calibration, [0.8], per_series=True, num_series=2).apply(held_out)
    for series in (0, 1):
        rows = held_out.series_index == series
        np.testing.assert_allclose(coverage(own, 0.8, rows), 0.8, atol=tolerance(0.8))
    assert coverage(pooled, 0.8, held_out.series_index == 0)[0] > 0.95  # pooled: too wide for the quiet one


def test_an_interval_never_excludes_the_point_forecast() -> None:
    # A band far too wide: CQR's negative margin would shrink it past the median (1.0) of these windows.
    rng = np.random.default_rng(3)
    target = rng.normal(scale=0.1, size=(100, 1))
    quantiles = np.broadcast_to(np.array([-10.0, 1.0, 10.0]), (100, 1, 3)).copy()
    covered = ConformalIntervals.calibrate(
        forecasts_of(np.ones((100, 1)), target, quantiles=quantiles), [0.8]
    )
    lo, hi = covered.apply(forecasts_of(np.ones((100, 1)), target, quantiles=quantiles)).intervals[0.8]
    assert covered.margins[0, 0] < -9
    assert (lo <= 1.0).all() and (hi >= 1.0).all()


# ------------------------------------------------------------------------------------------ the apps
def check_interval_table(table: pd.DataFrame, levels: tuple[str, ...] = ("80", "95")) -> None:
    """lo <= prediction <= hi wherever bounds exist, narrower levels inside wider ones."""
    for level in levels:
        lo, hi = table[f"lo-{level}"], table[f"hi-{level}"]
        known = lo.notna()
        assert known.any()
        assert (lo[known] <= table["prediction"][known]).all() and (
            table["prediction"][known] <= hi[known]
        ).all()
    assert (table["lo-95"] <= table["lo-80"]).all() and (table["hi-80"] <= table["hi-95"]).all()


def check_run(run_dir: Path, quantile: bool) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for level in ("80", "95"):
        assert 0 <= metrics[f"test/coverage@{level}"] <= 1
        assert metrics[f"test/width@{level}"] > 0
    assert metrics["test/width@95"] > metrics["test/width@80"]
    assert ("test/pinball" in metrics) == quantile
    return metrics


@pytest.mark.slow
def test_a_quantile_model_trains_and_predicts_with_intervals_on_the_default_config(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = ("model.loss=quantile", "model.quantiles=[0.1,0.5,0.9]", "trainer.max_epochs=1")
    result = run_app("train", *tiny_cli_args(run_dir, *overrides))
    assert result.returncode == 0, result.stderr
    check_run(run_dir, quantile=True)
    predicted = tmp_path / "predict"
    result = run_app(
        "predict",
        f"run={run_dir}",
        "intervals=[0.8,0.95]",
        "horizon=2",
        "window_predictions=true",
        f"hydra.run.dir={predicted}",
    )
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(predicted / "predictions.csv")
    check_interval_table(table)
    assert {"q0.1", "q0.5", "q0.9"} <= set(table.columns)
    np.testing.assert_allclose(table["prediction"], table["q0.5"])  # the point forecast is the median
    forecast = pd.read_csv(predicted / "forecast.csv")
    check_interval_table(forecast[forecast["step"] == 1])
    assert forecast.loc[forecast["step"] == 2, "lo-80"].isna().all()  # past the 1-step model's horizon


@pytest.mark.slow
def test_a_quantile_model_on_a_long_ragged_file(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    synthetic_long_table(num_series=4, max_length=260, min_length=120, seed=5).to_csv(path, index=False)
    data = [
        "data=long_csv",
        f"data.source.path={path}",
        "data.source.static_columns=[category]",
        "model.horizon=3",
    ]
    run_dir = tmp_path / "run"
    quantile = ("model.loss=quantile", "trainer.max_epochs=1")
    result = run_app("train", *TINY_MODEL, *data, *quantile, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    check_run(run_dir, quantile=True)
    predicted = tmp_path / "predict"
    args = (
        f"run={run_dir}",
        "intervals=[0.8,0.95]",
        "intervals_per_series=true",
        f"hydra.run.dir={predicted}",
    )
    result = run_app("predict", *args)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(predicted / "predictions.csv")
    check_interval_table(table)
    assert table["lo-80"].notna().all()  # every step of a 3-step model is calibrated


@pytest.mark.slow
def test_a_checkpoint_written_before_quantiles_gets_intervals(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert run_app("train", *tiny_cli_args(run_dir, "trainer.max_epochs=1")).returncode == 0
    check_run(run_dir, quantile=False)
    best = json.loads((run_dir / "metrics.json").read_text())["best_checkpoint"]
    checkpoint = torch.load(best, weights_only=True)
    for key in ("loss", "quantiles"):  # the hyperparameters of a checkpoint from before this feature
        del checkpoint["hyper_parameters"][key]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    predicted = tmp_path / "predict"
    result = run_app("predict", f"ckpt_path={old}", "intervals=[0.8,0.95]", f"hydra.run.dir={predicted}")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(predicted / "predictions.csv")
    check_interval_table(table)
    # Split conformal: symmetric around the point forecast.
    lo, hi = (table[column] for column in interval_columns(0.8))
    np.testing.assert_allclose(hi - table["prediction"], table["prediction"] - lo, rtol=1e-6)


@pytest.mark.parametrize(
    ("quantiles", "fragment"),
    [
        ([0.1, 0.9, 0.5], "sorted without repeats"),
        ([0.1, 0.5, 0.5], "sorted without repeats"),
        ([0.0, 0.5], "strictly between 0 and 1"),
        ([0.5, 1.2], "strictly between 0 and 1"),
        ([], "must be a list of levels"),
    ],
)
def test_bad_quantiles_are_refused(quantiles: list[float], fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        ForecastModule(3, 2, loss="quantile", quantiles=quantiles)


def test_bad_quantiles_are_a_one_line_error_of_the_app(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_app("train", *tiny_cli_args(run_dir, "model.loss=quantile", "model.quantiles=[0.9,0.1]"))
    assert_one_line_error(result, "model.quantiles", "sorted without repeats")
    assert not (run_dir / "metrics.json").exists()


def test_bad_interval_levels_are_one_line_errors(tmp_path: Path) -> None:
    result = run_app("predict", "ckpt_path=missing.ckpt", "intervals=[0.8,95]", f"hydra.run.dir={tmp_path}")
    assert_one_line_error(result, "intervals", "strictly between 0 and 1")
