"""Every app on every data layout, in the default configuration (default callbacks and logger).

{wide file, long ragged file, synthetic} x {train, evaluate, predict, backtest}: one tiny training run
per layout, then each checkpoint app on it, in-process through the apps' own functions with configs
composed by Hydra from conf/. Each test reads back what the app wrote and checks its content against
the source data: row counts, columns, finite values, and timestamps on each series' own timeline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import lstm_forecast.evaluation.report as report
from conftest import TINY_MODEL, compose_config
from lstm_forecast.data.long_source import synthetic_long_table
from lstm_forecast.data.sources import synthetic_frame
from lstm_forecast.evaluation.tables import FORECAST_COLUMNS
from lstm_forecast.inference.backtest import backtest
from lstm_forecast.inference.evaluate import evaluate
from lstm_forecast.inference.predict import predict
from lstm_forecast.training.run import train

pytestmark = pytest.mark.slow

WINDOW = 12  # TINY_MODEL's data.window_size
FORECAST_STEPS = 5
SMALL_NET = [*TINY_MODEL, "callbacks.forecast_figures.every_n_epochs=1"]


@dataclass(frozen=True)
class Layout:
    """A data layout: its training overrides and the source as a long table (series, timestamp, value)."""

    name: str
    overrides: list[str]
    truth: pd.DataFrame  # series, timestamp, value: every observed value
    horizon: int
    future: Path | None = None  # values after the data: the extra columns, and actuals of one series


def compose_app(config_name: str, output_dir: Path, *overrides: str) -> DictConfig:
    output_dir.mkdir(parents=True, exist_ok=True)
    return compose_config(config_name, output_dir, list(overrides))


def wide_layout(folder: Path) -> Layout:
    """A wide CSV: a date column, three series columns and an extra feature column."""
    frame = synthetic_frame(num_series=3, num_rows=240, seed=3)
    table = pd.DataFrame(
        frame.values.reshape(3, -1).T, columns=frame.series_names, index=frame.timestamps[:240]
    )
    table.index.name = "date"
    table["temperature"] = np.cos(np.arange(240) / 9.0)
    path = folder / "wide.csv"
    table.reset_index().to_csv(path, index=False)
    truth = table[frame.series_names].reset_index().melt("date", var_name="series", value_name="value")
    after = pd.date_range(table.index[-1], periods=FORECAST_STEPS + 1, freq="h")[1:]
    future = folder / "future.csv"
    pd.DataFrame({"date": after, "temperature": 0.5, "series_2": np.arange(FORECAST_STEPS) + 100.0}).to_csv(
        future, index=False
    )
    return Layout(
        "wide",
        ["data=wide_file", f"data.source.path={path}", "data.source.extra_columns=[temperature]"],
        truth.rename(columns={"date": "timestamp"}),
        horizon=1,
        future=future,
    )


def long_layout(folder: Path) -> Layout:
    """A long CSV of ragged hourly series with their own starts and ends, and a static category."""
    table = synthetic_long_table(num_series=4, max_length=260, min_length=120, seed=5)
    path = folder / "long.csv"
    table.to_csv(path, index=False)
    return Layout(
        "long",
        [
            "data=long_csv",
            f"data.source.path={path}",
            "data.source.static_columns=[category]",
            "model.horizon=3",
        ],
        table[["series", "timestamp", "value"]].astype({"series": str}),
        horizon=3,
    )


def synthetic_layout(folder: Path) -> Layout:
    """The built-in synthetic source (the default data)."""
    frame = synthetic_frame(num_series=3, num_rows=240, seed=42)
    truth = pd.DataFrame(
        {
            "series": np.repeat(frame.series_names, 240),
            "timestamp": frame.timestamps,
            "value": frame.values,
        }
    )
    return Layout("synthetic", ["data.source.num_series=3", "data.source.num_rows=240"], truth, horizon=1)


@dataclass(frozen=True)
class TrainedRun:
    layout: Layout
    run_dir: Path
    metrics: dict


@pytest.fixture(scope="module", params=["wide", "long", "synthetic"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One tiny training run per layout with the default callbacks and logger (TensorBoard)."""
    folder = tmp_path_factory.mktemp(request.param)
    layout = {"wide": wide_layout, "long": long_layout, "synthetic": synthetic_layout}[request.param](folder)
    run_dir = folder / "run"
    cfg = compose_app("train", run_dir, *SMALL_NET, *layout.overrides)
    try:
        metrics, _ = train(cfg)
    finally:
        GlobalHydra.instance().clear()
    return TrainedRun(layout, run_dir, metrics)


def truth_lookup(layout: Layout) -> pd.Series:
    truth = layout.truth.assign(
        timestamp=pd.to_datetime(layout.truth["timestamp"]), series=layout.truth["series"].astype(str)
    )
    return truth.set_index(["series", "timestamp"])["value"]


def check_on_own_timelines(table: pd.DataFrame, layout: Layout) -> None:
    """Every row with an actual lies on its series' own timeline and carries that series' value."""
    truth = truth_lookup(layout)
    known = table.dropna(subset=["actual"])
    assert len(known) > 0
    keys = pd.MultiIndex.from_arrays([known["series"].astype(str), pd.to_datetime(known["timestamp"])])
    assert keys.isin(truth.index).all(), "a forecast step off its series' timeline"
    # Actuals of scored windows come back from float32 scaled targets: exact to ~1e-6 relative.
    np.testing.assert_allclose(known["actual"].to_numpy(), truth.loc[keys].to_numpy(), rtol=2e-5)


def read_forecasts(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, parse_dates=["timestamp"])
    assert tuple(table.columns[:5]) == FORECAST_COLUMNS or set(FORECAST_COLUMNS) <= set(table.columns)
    assert np.isfinite(table["prediction"]).all()
    return table


# ----------------------------------------------------------------------------------------- train
def test_train_writes_metrics_figures_chart_and_projector(trained: TrainedRun) -> None:
    metrics = trained.metrics
    assert np.isfinite(metrics["test/mse_z"]) and np.isfinite(metrics["val/mse_z"])
    assert Path(metrics["best_checkpoint"]).is_file()
    assert json.loads((trained.run_dir / "metrics.json").read_text())["test/mse_z"] == metrics["test/mse_z"]
    series = sorted(trained.layout.truth["series"].astype(str).unique())
    per_series = pd.read_csv(trained.run_dir / "metrics_per_series.csv")
    assert sorted(per_series.loc[per_series["model"] == "model", "series"].astype(str)) == series
    log_dir = trained.run_dir / "tensorboard"
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    acc.Reload()
    images = set(acc.Tags()["images"])
    assert "test/error_by_series" in images
    assert {tag for tag in images if tag.startswith("forecast/val/")}, images
    assert {tag for tag in images if tag.startswith("forecast/test/")}, images
    assert (log_dir / "projector_config.pbtxt").is_file()


# ----------------------------------------------------------------------------------------- evaluate
def test_evaluate_scores_the_test_split_as_training_did(trained: TrainedRun, tmp_path: Path) -> None:
    cfg = compose_app("evaluate", tmp_path, f"run={trained.run_dir}")
    metrics = evaluate(cfg)
    assert metrics["checkpoint"] == str(Path(trained.metrics["best_checkpoint"]).resolve())
    assert metrics["test/mse_z"] == pytest.approx(trained.metrics["test/mse_z"], rel=1e-6)
    table = read_forecasts(tmp_path / "forecasts.csv")
    assert len(table) == metrics["test/num_targets"]
    assert set(table["step"]) == set(range(1, trained.layout.horizon + 1))
    assert table["actual"].notna().all()
    check_on_own_timelines(table, trained.layout)


def test_evaluate_and_backtest_write_the_same_outputs_a_few_windows_at_a_time(
    trained: TrainedRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scored and written a chunk of windows at a time: chunks of 5 give what one chunk gives (forecast
    # in batches of 5 both times: the same float32 forecasts, bit for bit).
    outputs = {}
    for chunk in (None, 5):
        if chunk is not None:
            monkeypatch.setattr(report, "SCORE_CHUNK_WINDOWS", chunk)
        for name, app in (("evaluate", evaluate), ("backtest", backtest)):
            folder = tmp_path / f"{name}-{chunk}"
            metrics = app(compose_app(name, folder, f"run={trained.run_dir}", "data.eval_batch_size=5"))
            outputs[name, chunk] = metrics, read_forecasts(folder / "forecasts.csv")
    for name in ("evaluate", "backtest"):
        (whole, whole_table), (chunked, chunked_table) = outputs[name, None], outputs[name, 5]
        assert len(whole_table) > 4 * 5 * trained.layout.horizon  # several chunks
        pd.testing.assert_frame_equal(chunked_table, whole_table, rtol=1e-10)
        assert chunked.keys() == whole.keys()
        for key, value in whole.items():
            if isinstance(value, float):
                assert chunked[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
            else:
                assert chunked[key] == value, key


# ----------------------------------------------------------------------------------------- predict
def test_predict_covers_every_full_window_and_forecasts_past_each_series_end(
    trained: TrainedRun, tmp_path: Path
) -> None:
    steps_ahead = FORECAST_STEPS
    future = [f"future.path={trained.layout.future}"] if trained.layout.future else []
    cfg = compose_app(
        "predict",
        tmp_path,
        f"run={trained.run_dir}",
        f"horizon={steps_ahead}",
        "window_predictions=true",
        *future,
    )
    written = predict(cfg)
    layout = trained.layout
    truth = layout.truth.assign(
        timestamp=pd.to_datetime(layout.truth["timestamp"]), series=layout.truth["series"].astype(str)
    )
    lengths = truth.groupby("series").size()
    last = truth.groupby("series")["timestamp"].max()
    hour = pd.Timedelta(hours=1)

    predictions = read_forecasts(written["predictions"])
    first_step = predictions[predictions["step"] == 1]
    # Windows W..L of each series: L - W + 1 per series, the last one forecasting the step after it.
    assert first_step.groupby("series").size().to_dict() == (lengths - WINDOW + 1).to_dict()
    assert (first_step.groupby("series")["timestamp"].max() == last + hour).all()
    assert len(predictions) == len(first_step) * layout.horizon
    check_on_own_timelines(predictions, layout)
    past_end = predictions["timestamp"] > predictions["series"].map(last)
    assert predictions.loc[past_end, "actual"].isna().all()
    assert predictions.loc[~past_end, "actual"].notna().all()

    forecast = read_forecasts(written["forecast"])
    assert forecast.groupby("series").size().to_dict() == dict.fromkeys(lengths.index, steps_ahead)
    for name, rows in forecast.groupby("series"):
        expected = pd.date_range(last[name] + hour, periods=steps_ahead, freq="h")
        assert list(rows["timestamp"]) == list(expected), name
        assert list(rows["step"]) == list(range(1, steps_ahead + 1))
    # The future file's series column is that series' actuals; the others have none.
    with_actuals = (
        forecast["series"] == "series_2" if trained.layout.future else np.zeros(len(forecast), bool)
    )
    np.testing.assert_array_equal(forecast.loc[with_actuals, "actual"], np.arange(with_actuals.sum()) + 100.0)
    assert forecast.loc[~with_actuals, "actual"].isna().all()
    assert written["plot"].stat().st_size > 10_000


# ----------------------------------------------------------------------------------------- backtest
def test_backtest_with_stride_one_scores_the_test_windows(trained: TrainedRun, tmp_path: Path) -> None:
    cfg = compose_app("backtest", tmp_path, f"run={trained.run_dir}")
    metrics = backtest(cfg)
    # Every origin of the test split: the same targets as the test windows, so the same score.
    assert metrics["backtest/mse_z"] == pytest.approx(trained.metrics["test/mse_z"], rel=1e-6)
    assert metrics["backtest/num_targets"] == trained.metrics["test/num_targets"]
    table = read_forecasts(tmp_path / "forecasts.csv")
    assert {"origin", "persistence", "seasonal_naive", "ridge"} <= set(table.columns)
    assert len(table) == metrics["backtest/num_targets"]
    first = table[table["step"] == 1]
    assert (pd.to_datetime(first["origin"]) == first["timestamp"]).all()
    check_on_own_timelines(table, trained.layout)


def test_backtest_stride_keeps_every_strided_origin_of_each_series(
    trained: TrainedRun, tmp_path: Path
) -> None:
    stride = 5
    cfg = compose_app("backtest", tmp_path, f"run={trained.run_dir}", f"stride={stride}", "split=val")
    backtest(cfg)
    table = read_forecasts(tmp_path / "forecasts.csv")
    for name, rows in table[table["step"] == 1].groupby("series"):
        gaps = pd.to_datetime(rows["origin"]).diff().dropna().unique()
        assert list(gaps) == [pd.Timedelta(hours=stride)], name
    check_on_own_timelines(table, trained.layout)
