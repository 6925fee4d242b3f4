"""Rolling and adaptive conformal intervals (evaluation/rolling.py): no look-ahead, the adaptive level's
direction, chunking that changes nothing, per-series coverage, and the settings' one-line errors."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.intervals import ConformalIntervals, SeriesCoverage
from lstm_forecast.evaluation.report import EvaluationOptions
from lstm_forecast.evaluation.rolling import RollingIntervals
from lstm_forecast.evaluation.window_forecasts import WindowForecasts

H = 3


def windows(series: np.ndarray, origins: np.ndarray, target: np.ndarray, prediction=None) -> WindowForecasts:
    """Forecasts of windows with first target rows ``origins [N]`` and targets ``[N, H]``."""
    prediction = np.zeros_like(target) if prediction is None else prediction
    return WindowForecasts(
        prediction=prediction.astype(np.float32),
        target=target.astype(np.float32),
        last_value=np.zeros(len(origins), dtype=np.float32),
        series_index=series.astype(np.int64),
        target_row=origins.astype(np.int64),
    )


def panel(num_series: int, first: int, count: int, values) -> WindowForecasts:
    """Every origin ``first .. first + count - 1`` of each series (series-major, as a split's windows);
    ``values(series, origins) -> [N, H]`` targets (the forecasts are 0, so the targets are the scores)."""
    series = np.repeat(np.arange(num_series), count)
    origins = np.tile(np.arange(first, first + count), num_series) + 1000 * series
    return windows(series, origins, values(series, origins))


def chunks(forecasts: WindowForecasts, sizes: list[int]) -> list[WindowForecasts]:
    bounds = np.cumsum([0, *sizes])
    last = len(forecasts.target_row)
    return [forecasts.subset(np.arange(a, min(b, last))) for a, b in itertools.pairwise(bounds)]


def rolling(seed: WindowForecasts, levels=(0.8, 0.95), window=19, step=0.0) -> RollingIntervals:
    split = ConformalIntervals.calibrate(seed, levels)
    return RollingIntervals(split, seed, window, step)


def last_target_rows(series, origins):
    """Each window's score is the row of its last target: a margin names the newest score it used."""
    return np.repeat((origins + H - 1)[:, None], H, axis=1).astype(float)


def test_no_calibration_score_comes_from_a_target_at_or_after_the_windows_origin() -> None:
    # Every score names the last target row of its window; with 19 scores a 95 % margin is the largest
    # of them, so each margin is the newest target row the window was calibrated on.
    seed = panel(2, 10, 30, last_target_rows)
    scored = panel(2, 40, 50, last_target_rows)
    intervals = rolling(seed, levels=(0.95,))
    hi = np.concatenate([intervals.apply(part).intervals[0.95][1] for part in chunks(scored, [17, 40, 43])])
    origins = scored.target_row[:, None]
    assert (hi < origins).all(), "a margin used a residual whose target is at or after the origin"
    # Not vacuous: each window used the newest residual observed before it (targets up to origin - 1).
    np.testing.assert_array_equal(hi, np.broadcast_to(origins - 1, hi.shape))


def misses_then_hits(series, origins):
    """Scores of 1 in the seed period (before row 40 of each series), 5 for 30 origins after it, then 0
    (a little jitter keeps the scores distinct)."""
    local = origins - 1000 * series
    values = np.where(local < 40, 1.0, np.where(local < 70, 5.0, 0.0))
    return np.repeat(values[:, None], H, axis=1) + 0.01 * (origins % 7)[:, None]


def test_the_adaptive_level_moves_toward_fewer_misses_after_a_run_of_misses() -> None:
    seed, scored = panel(2, 0, 40, misses_then_hits), panel(2, 40, 60, misses_then_hits)
    # A long window: the rolling margin alone is slow to catch up with the jump to 5.
    fixed = rolling(seed, window=200).apply(scored).intervals[0.8][1]
    adaptive = rolling(seed, window=200, step=0.05).apply(scored).intervals[0.8][1]
    local = scored.target_row - 1000 * scored.series_index
    after_misses = (local >= 40 + 2 * H) & (local < 70)
    assert (adaptive[after_misses] >= fixed[after_misses]).all()
    assert (adaptive[after_misses] > fixed[after_misses]).any(), "misses must widen the intervals"
    # Before any miss is observed (the first H origins), the level is still the nominal one.
    np.testing.assert_array_equal(adaptive[local < 40 + H], fixed[local < 40 + H])


@pytest.mark.parametrize("step", [0.0, 0.02])
def test_chunks_give_the_same_intervals_as_one_chunk(step: float) -> None:
    rng = np.random.default_rng(0)

    def noisy(series, origins):
        return rng.normal(size=(len(origins), H)) * (1 + (origins % 1000 > 60))[:, None]

    seed, scored = panel(3, 0, 40, noisy), panel(3, 40, 70, noisy)
    whole = rolling(seed, step=step).apply(scored)
    stream = rolling(seed, step=step)
    pieces = [stream.apply(part) for part in chunks(scored, [1, 33, 2, 100, 74])]
    for level in whole.intervals:
        for side in (0, 1):
            joined = np.concatenate([piece.intervals[level][side] for piece in pieces])
            np.testing.assert_array_equal(joined, whole.intervals[level][side])


def test_rolling_margins_follow_the_recent_residuals_where_split_ones_do_not() -> None:
    seed, scored = panel(2, 0, 40, misses_then_hits), panel(2, 40, 30, misses_then_hits)
    split = ConformalIntervals.calibrate(seed, (0.8,), per_series=True, num_series=2).apply(scored)
    recent = rolling(seed, levels=(0.8,)).apply(scored)
    late = (scored.target_row - 1000 * scored.series_index) >= 40 + 19 + H  # seed scores all rolled out
    inside = lambda f: (f.target <= f.intervals[0.8][1])[late].mean()  # noqa: E731
    assert inside(recent) >= 0.8 and inside(split) == 0.0


def test_windows_out_of_time_order_are_refused() -> None:
    seed = panel(1, 0, 30, last_target_rows)
    later = panel(1, 40, 5, last_target_rows)
    intervals = rolling(seed)
    intervals.apply(later)
    with pytest.raises(ValueError, match="time order"):
        intervals.apply(later)


def test_worst_tenth_of_series_coverage() -> None:
    # 20 series: series s covers s of its 20 targets (width 2 each), so the worst 10 % are series 0, 1.
    series = np.repeat(np.arange(20), 20)
    position = np.tile(np.arange(20), 20)
    forecasts = windows(series, np.arange(400), np.where(position < series, 0.0, 5.0)[:, None])
    forecasts = dataclasses.replace(
        forecasts, intervals={0.8: (forecasts.prediction - 1, forecasts.prediction + 1)}
    )
    coverage = SeriesCoverage(20)
    coverage.add(forecasts.subset(np.arange(150)), lambda values, series: values)
    coverage.add(forecasts.subset(np.arange(150, 400)), lambda values, series: values)
    assert coverage.metrics("test") == {"test/coverage@80_worst10": pytest.approx((0 / 20 + 1 / 20) / 2)}
    np.testing.assert_allclose(coverage.table()["coverage@80"], np.arange(20) / 20)
    np.testing.assert_allclose(coverage.table()["width@80"], 2.0)


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ({"calibration": "recent"}, "evaluation.calibration must be one of ['split', 'rolling']"),
        ({"calibration_windows": 0}, "evaluation.calibration_windows must be a positive integer"),
        ({"adaptive_step": -0.1}, "evaluation.adaptive_step must be a number in [0, 1)"),
        ({"intervals_per_series": False, "calibration": "split"}, "evaluation.adaptive_step=0"),
    ],
)
def test_bad_calibration_settings_are_one_line_errors(setting: dict, fragment: str) -> None:
    with pytest.raises(UserError, match=None) as error:
        EvaluationOptions.from_config(setting)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_the_hint_for_pooled_margins_works() -> None:
    options = EvaluationOptions.from_config(
        {"intervals_per_series": False, "calibration": "split", "adaptive_step": 0}
    )
    assert options.calibration == "split" and not options.intervals_per_series


# ------------------------------------------------------------------------------ lstm-predict, past the end
@pytest.mark.slow
def test_the_forecast_past_the_end_is_calibrated_on_each_series_latest_windows(tmp_path, monkeypatch) -> None:
    import torch

    from conftest import TINY_OVERRIDES, run_app
    from lstm_forecast.evaluation.intervals import conformal_margin
    from lstm_forecast.evaluation.streaming import concat_forecasts
    from lstm_forecast.evaluation.window_forecasts import predict_windows
    from lstm_forecast.inference import predict as predict_module

    calls: list[tuple[WindowForecasts, WindowForecasts]] = []
    apply = RollingIntervals.apply

    def recording(self, forecasts):
        calls.append((forecasts, apply(self, forecasts)))
        return calls[-1][1]

    loaded = []
    latest = predict_module.latest_intervals
    monkeypatch.setattr(RollingIntervals, "apply", recording)
    monkeypatch.setattr(
        predict_module, "latest_intervals", lambda *args: (loaded.append(args[0]), latest(*args))[1]
    )
    run, window = tmp_path / "run", 5
    overrides = ["model.horizon=3", f"evaluation.calibration_windows={window}"]
    assert run_app("train", *TINY_OVERRIDES, *overrides, f"hydra.run.dir={run}").returncode == 0
    args = [f"run={run}", "intervals=[0.8]", "horizon=3", f"hydra.run.dir={tmp_path / 'predict'}"]
    result = run_app("predict", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    future, with_intervals = calls[-1]
    assert future.target is None  # the last intervals applied are the forecast's, past the data
    model, datamodule = loaded[0].module, loaded[0].datamodule
    seen = concat_forecasts(
        [
            predict_windows(model, datamodule.windows[split], 64, torch.device("cpu"))
            for split in ("val", "test")
        ]
    )
    for row, series in enumerate(future.series_index):
        own = np.flatnonzero(seen.series_index == series)
        newest = own[np.argsort(seen.target_row[own])[-window:]]
        expected = conformal_margin(
            np.abs(seen.target[newest] - seen.prediction[newest]).astype(np.float64), 0.8
        )
        margin = with_intervals.intervals[0.8][1][row] - future.prediction[row]
        np.testing.assert_allclose(margin, expected, rtol=1e-5)


@pytest.mark.parametrize("quantile_model", [False, True], ids=["split conformal", "CQR"])
def test_without_a_window_or_a_step_the_intervals_are_split_conformals(quantile_model: bool) -> None:
    # Every seed score and the nominal level: per-series split conformal, for CQR bands as well.
    rng = np.random.default_rng(1)

    def noisy(series, origins):
        return rng.normal(size=(len(origins), H))

    # Scored windows start after the seed's last targets (as test windows after validation ones).
    seed, scored = panel(2, 0, 40, noisy), panel(2, 40 + H - 1, 30, noisy)
    if quantile_model:
        levels = (0.1, 0.5, 0.9)

        def with_quantiles(forecasts):
            spread = np.abs(rng.normal(size=forecasts.target.shape))[..., None] * np.array([-1.0, 0.0, 1.0])
            return dataclasses.replace(forecasts, quantiles=spread, quantile_levels=levels)

        seed, scored = with_quantiles(seed), with_quantiles(scored)
    split = ConformalIntervals.calibrate(seed, (0.8, 0.95), per_series=True, num_series=2)
    assert bool(split.bands) == quantile_model
    expected = split.apply(scored).intervals
    got = RollingIntervals(split, seed, None, 0.0).apply(scored).intervals
    for level in expected:
        np.testing.assert_allclose(got[level][0], expected[level][0], rtol=1e-6)
        np.testing.assert_allclose(got[level][1], expected[level][1], rtol=1e-6)


def test_rolling_coverage_is_the_share_inside_over_the_last_span_windows() -> None:
    from lstm_forecast.evaluation.intervals import rolling_coverage

    inside = np.array([True, False, True, True, False, False])
    expected = [1 / 1, 1 / 2, 2 / 3, 2 / 3, 2 / 3, 1 / 3]  # the last 3 (fewer at the start)
    np.testing.assert_allclose(rolling_coverage(inside, span=3), expected)


def test_lstm_train_refuses_pooled_rolling_margins_before_fitting(tmp_path) -> None:
    from conftest import TINY_OVERRIDES, assert_one_line_error, run_app

    run = tmp_path / "run"
    result = run_app(
        "train", *TINY_OVERRIDES, "evaluation.intervals_per_series=false", f"hydra.run.dir={run}"
    )
    assert_one_line_error(result, "evaluation.calibration=split", "evaluation.adaptive_step=0")
    assert not (run / "checkpoints").exists()  # refused before any fitting
    # (The hint's settings train: tests/test_evaluation_settings.py's non-default run uses them.)
