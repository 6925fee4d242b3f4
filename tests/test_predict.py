"""lstm-predict: forecasts in original units from a checkpoint alone, and one-line errors on bad input.

One tiny model learns two pure sines (module fixture, trained with the real CLI); the tests predict on
files that continue them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import lstm_forecast.inference.predict as predict_module
from conftest import assert_one_line_error, run_app
from lstm_forecast import memory
from lstm_forecast.data.blog_layout import seed_prediction_arrays
from lstm_forecast.data.calendar import calendar_features
from lstm_forecast.data.scaling import MinMaxScaler
from lstm_forecast.data.sources import synthetic_frame
from lstm_forecast.errors import UserError
from lstm_forecast.inference.checkpoints import datamodule_state
from lstm_forecast.inference.plots import forecast_plot
from lstm_forecast.inference.predict import predict
from lstm_forecast.models.checkpoint import module_from_checkpoint, read_checkpoint
from lstm_forecast.models.module import CHECKPOINT_FORMAT_KEY
from lstm_forecast.training.run import train
from test_tensorboard import drawn_outside

pytestmark = pytest.mark.slow  # every test needs a trained model (seconds each)

WINDOW = 24
START = pd.Timestamp("2024-01-01")
SINE_TRAIN_ARGS = [
    "data=wide_file",
    f"data.window_size={WINDOW}",
    "data.calendar_features=[hour]",
    "data.batch_size=64",
    "model.net.num_units=12",
    "model.net.embedding_dim=2",
    "model.net.dense_size=12",
    "model.net.dropout=0.0",
    "model.lr=0.01",
    "trainer.max_epochs=20",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "num_threads=1",
]


def sine_table(first_row: int, num_rows: int, freq: str = "h") -> pd.DataFrame:
    """Two sines in very different units: ``a`` (level 100, amplitude 10, period 24), ``b`` (20, 4, 12)."""
    step = np.arange(first_row, first_row + num_rows, dtype=float)
    return pd.DataFrame(
        {
            "date": pd.date_range(START, periods=first_row + num_rows, freq=freq)[first_row:],
            "a": 100 + 10 * np.sin(2 * np.pi * step / 24),
            "b": 20 + 4 * np.sin(2 * np.pi * step / 12 + 1),
        }
    )


@pytest.fixture(scope="module")
def sine_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sine")
    sine_table(0, 360).to_csv(folder / "train.csv", index=False)
    run_dir = folder / "run"
    result = run_app(
        "train", *SINE_TRAIN_ARGS, f"data.source.path={folder / 'train.csv'}", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(json.loads((run_dir / "metrics.json").read_text())["best_checkpoint"])


@pytest.fixture
def compose_predict_cfg(compose_train_cfg):
    def compose(*overrides: str):
        return compose_train_cfg(*overrides, tiny=False, config_name="predict")

    return compose


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path, index=False)
    return path


def test_predictions_and_forecast_are_close_to_the_truth(sine_checkpoint, compose_predict_cfg, tmp_path):
    new = write_csv(sine_table(360, 120), tmp_path / "new.csv")
    truth = sine_table(480, 24)
    future = write_csv(truth, tmp_path / "future.csv")
    overrides = (
        f"ckpt_path={sine_checkpoint}",
        f"data.source.path={new}",
        "horizon=24",
        f"future.path={future}",
    )

    written = predict(compose_predict_cfg(*overrides))

    # A horizon asks for the forecast past the end only: no window table (window_predictions=auto).
    assert set(written) == {"forecast", "plot"} and not (tmp_path / "predictions.csv").exists()
    alone = pd.read_csv(tmp_path / "forecast.csv", parse_dates=["timestamp"])
    # window_predictions=true adds it, streamed; the forecast stays the same.
    written = predict(compose_predict_cfg(*overrides, "window_predictions=true"))
    predictions = pd.read_csv(tmp_path / "predictions.csv", parse_dates=["timestamp"])
    assert written["predictions"] == tmp_path / "predictions.csv"
    assert list(predictions.columns) == ["series", "timestamp", "step", "prediction", "actual"]
    # Every full window: targets rows W..T of each series, the last one the step after the file.
    assert len(predictions) == (120 - WINDOW + 1) * 2
    assert (predictions["step"] == 1).all()
    assert predictions["series"].tolist() == ["a"] * (120 - WINDOW + 1) + ["b"] * (120 - WINDOW + 1)
    in_file = predictions.dropna(subset=["actual"])
    assert len(in_file) == (120 - WINDOW) * 2
    expected = sine_table(360 + WINDOW, 120 - WINDOW).melt("date", var_name="series", value_name="truth")
    merged = in_file.merge(expected, left_on=["timestamp", "series"], right_on=["date", "series"])
    assert len(merged) == len(in_file)
    np.testing.assert_allclose(merged["actual"], merged["truth"], rtol=1e-12)  # actuals in original units
    error = (merged["prediction"] - merged["truth"]).abs().groupby(merged["series"]).mean()
    assert error["a"] < 0.5 and error["b"] < 0.25, error  # 5-6 % of each amplitude, in its own units

    forecast = pd.read_csv(tmp_path / "forecast.csv", parse_dates=["timestamp"])
    pd.testing.assert_frame_equal(forecast, alone)
    assert list(forecast.columns) == ["series", "timestamp", "step", "prediction", "actual"]
    assert len(forecast) == 48
    for name in ("a", "b"):
        rows = forecast[forecast["series"] == name]
        assert rows["timestamp"].tolist() == truth["date"].tolist()  # the 24 hours after the file
        assert rows["step"].tolist() == list(range(1, 25))
        np.testing.assert_allclose(rows["actual"], truth[name])
    recursive_error = (forecast["prediction"] - forecast["actual"]).abs().groupby(forecast["series"]).mean()
    assert recursive_error["a"] < 1.0 and recursive_error["b"] < 0.5, recursive_error
    # The last window of predictions.csv is the forecast's first step.
    last = predictions[predictions["actual"].isna()].set_index("series")["prediction"]
    first = forecast[forecast["step"] == 1].set_index("series")["prediction"]
    np.testing.assert_allclose(last.sort_index(), first.sort_index(), rtol=1e-6)

    png = (tmp_path / "predictions.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_the_forecast_plot_fits_its_texts_inside_it_and_between_its_panels(
    sine_checkpoint, compose_predict_cfg, tmp_path, monkeypatch
):
    figures = []

    def drawn(path, *args, **kwargs):
        figures.append(forecast_plot(*args, **kwargs))
        return Path(path)

    monkeypatch.setattr(predict_module, "plot_forecasts", drawn)
    new = write_csv(sine_table(360, 120), tmp_path / "new.csv")
    overrides = [f"ckpt_path={sine_checkpoint}", f"data.source.path={new}", "horizon=24"]
    predict(compose_predict_cfg(*overrides, "intervals=[0.8,0.95]"))
    (figure,) = figures
    assert len(figure.axes) == 4  # a panel per series, each with its coverage on a right-hand axis
    assert drawn_outside(figure) is None
    renderer = figure.canvas.get_renderer()
    panels = [axes for axes in figure.axes if axes.get_title(loc="left")]  # not the right-hand axes
    upper, lower = (axes.get_tightbbox(renderer) for axes in panels)  # with their texts
    assert upper.y0 > lower.y1  # the upper panel's tick labels clear the lower one's title
    assert all(axes.get_position().width > 0.8 for axes in figure.axes)


def test_cli_predictions_match_the_forward_pass(sine_checkpoint, tmp_path):
    # Shifted upwards: a scaler refitted on this file would give other numbers.
    table = sine_table(400, 60)
    table["a"] += 7.0
    new = write_csv(table, tmp_path / "shifted.csv")
    out = tmp_path / "run"

    result = run_app(
        "predict", f"ckpt_path={sine_checkpoint}", f"data.source.path={new}", f"hydra.run.dir={out}"
    )

    assert result.returncode == 0, result.stderr[-3000:]
    written = pd.read_csv(out / "predictions.csv")
    # The reference: the method's prediction layout over the file scaled with the checkpoint's scalers
    # (one per series for the values, one for the extra features).
    checkpoint = read_checkpoint(sine_checkpoint)
    state = datamodule_state(checkpoint)
    scaler = MinMaxScaler.from_state_dict(state["scaler"])
    extra_scaler = MinMaxScaler.from_state_dict(state["extra_scaler"])
    timestamps = pd.DatetimeIndex(pd.to_datetime(table["date"]))
    source = np.column_stack(
        [
            scaler.transform(table[["a", "b"]].to_numpy()),
            extra_scaler.transform(calendar_features(timestamps, ["hour"]).to_numpy()),
        ]
    )
    blog = seed_prediction_arrays(source, WINDOW, num_series=2)  # [N, W, id + hour + value], time-major
    module = module_from_checkpoint(checkpoint)
    with torch.no_grad():
        scaled = module(torch.from_numpy(blog[:, :, 1:]), torch.from_numpy(blog[:, 0, 0]).long())[
            :, 0
        ].numpy()
    series = blog[:, 0, 0].astype(int) - 1
    expected = scaler.inverse_transform(scaled, column_index=series)
    # predictions.csv is series-major: every window of "a", then of "b".
    order = np.argsort(series, kind="stable")

    assert len(written) == len(expected) == (60 - WINDOW + 1) * 2
    assert written["series"].tolist() == [["a", "b"][s] for s in series[order]]
    np.testing.assert_allclose(written["prediction"], expected[order], rtol=1e-5)
    # Each window's target: rows W.. of the file, then the hour after it; actuals from the file.
    stamps = pd.date_range(START, periods=460 + 1, freq="h")[400 + WINDOW :]
    assert pd.to_datetime(written["timestamp"]).tolist() == [*stamps, *stamps]
    per_series = written.groupby("series", sort=False)["actual"]
    for name, actual in per_series:
        np.testing.assert_allclose(actual.iloc[:-1], table[name].iloc[WINDOW:], rtol=1e-12)
        assert np.isnan(actual.iloc[-1])
    assert (out / "predictions.png").is_file() and not list(out.glob(".*.tmp"))


def test_direct_multi_step_model_predicts_and_forecasts_blocks(
    compose_train_cfg, compose_predict_cfg, tmp_path
):
    metrics, _ = train(compose_train_cfg("model.horizon=3", "trainer.max_epochs=1"))
    num_rows, window, num_series = 240, 12, 3  # TINY_OVERRIDES of the synthetic data

    predict(
        compose_predict_cfg(f"ckpt_path={metrics['best_checkpoint']}", "horizon=5", "window_predictions=true")
    )

    predictions = pd.read_csv(tmp_path / "predictions.csv", parse_dates=["timestamp"])
    assert list(predictions.columns) == ["series", "timestamp", "step", "prediction", "actual"]
    assert len(predictions) == (num_rows - window + 1) * num_series * 3
    assert sorted(predictions["step"].unique()) == [1, 2, 3]
    last_observed = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=num_rows - 1)
    assert predictions["timestamp"].max() == last_observed + pd.Timedelta(hours=3)
    forecast = pd.read_csv(tmp_path / "forecast.csv", parse_dates=["timestamp"])
    assert list(forecast.columns) == ["series", "timestamp", "step", "prediction", "actual"]
    assert len(forecast) == 5 * num_series
    assert forecast["actual"].isna().all()  # past the data, no future file
    assert sorted(forecast["timestamp"].unique()) == [
        last_observed + pd.Timedelta(hours=k) for k in range(1, 6)
    ]
    # The first block is the last window's direct forecast.
    origin = predictions["timestamp"] - pd.to_timedelta(predictions["step"] - 1, unit="h")
    last_window = predictions[origin > last_observed].sort_values(["series", "step"])
    first_block = forecast[forecast["step"] <= 3].sort_values(["series", "step"])
    np.testing.assert_allclose(last_window["prediction"], first_block["prediction"], rtol=1e-5)

    # The same data as a file: a model trained on the synthetic source reads `date, series_1..N`.
    frame = synthetic_frame(num_series=num_series, num_rows=num_rows, seed=42)
    wide = frame.wide_values(list(range(num_series))).rename_axis("date").reset_index()
    assert list(wide.columns) == ["date", "series_1", "series_2", "series_3"]
    path = write_csv(wide, tmp_path / "synthetic.csv")
    predict(compose_predict_cfg(f"ckpt_path={metrics['best_checkpoint']}", f"data.source.path={path}"))
    from_file = pd.read_csv(tmp_path / "predictions.csv", parse_dates=["timestamp"])
    pd.testing.assert_frame_equal(from_file, predictions)


def test_checkpoint_loads_weights_only_with_format_and_frequency(sine_checkpoint):
    checkpoint = torch.load(sine_checkpoint, map_location="cpu", weights_only=True)
    assert isinstance(checkpoint[CHECKPOINT_FORMAT_KEY], int)
    assert checkpoint["ForecastDataModule"]["freq"] == "h"
    assert checkpoint["ForecastDataModule"]["series_names"] == ["a", "b"]


def bad_data(kind: str, tmp_path: Path) -> list[str]:
    table = sine_table(400, 60)
    if kind == "other columns":
        table = table.rename(columns={"b": "c"})
    elif kind == "extra column":
        table["c"] = 1.0
    elif kind == "wrong frequency":
        table = sine_table(400, 60, freq="30min")
    elif kind == "irregular":
        table = table.drop(index=30)
    elif kind == "nan":
        table.loc[17, "a"] = np.nan
    elif kind == "too few rows":
        table = table.head(WINDOW - 1)
    return [f"data.source.path={write_csv(table, tmp_path / 'bad.csv')}"]


def bad_checkpoint(kind: str, checkpoint: Path, tmp_path: Path) -> str:
    path = tmp_path / "bad.ckpt"
    if kind == "other version":
        contents = torch.load(checkpoint, map_location="cpu", weights_only=True)
        contents[CHECKPOINT_FORMAT_KEY] = 0
        torch.save(contents, path)
    elif kind == "truncated":
        path.write_bytes(checkpoint.read_bytes()[:5000])
    elif kind == "garbage":
        path.write_bytes(b"not a checkpoint\n" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not a checkpoint":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "missing":
        return str(tmp_path / "absent.ckpt")
    return str(path)


DATA_ERRORS = {
    "other columns": ("series columns", "missing ['b']", "unexpected ['c']"),
    "extra column": ("series columns", "missing []", "unexpected ['c']"),
    "wrong frequency": ("every '30min'", "trained on 'h'", "resample"),
    "irregular": ("irregular: line 32", "fill the gaps"),
    "nan": ("missing value", "line 19", "'a'"),
    "too few rows": ("23 rows, fewer than one window of 24",),
}
CHECKPOINT_ERRORS = {
    "other version": ("another lstm-forecast version", "retrain"),
    "truncated": ("not a readable lstm-forecast checkpoint", "truncated or corrupt"),
    "garbage": ("not a readable lstm-forecast checkpoint", "corrupt"),
    "empty": ("not a readable lstm-forecast checkpoint", "truncated or corrupt"),
    "not a checkpoint": ("not an lstm-forecast checkpoint",),
    "missing": ("checkpoint not found",),
}


@pytest.mark.parametrize("kind", sorted(DATA_ERRORS))
def test_bad_data_is_one_clear_error_and_no_csv(kind, sine_checkpoint, compose_predict_cfg, tmp_path):
    cfg = compose_predict_cfg(f"ckpt_path={sine_checkpoint}", *bad_data(kind, tmp_path), "horizon=4")
    with pytest.raises(UserError) as error:
        predict(cfg)
    message = str(error.value)
    assert "\n" not in message
    for fragment in DATA_ERRORS[kind]:
        assert fragment in message, message
    assert not (tmp_path / "predictions.csv").exists() and not (tmp_path / "forecast.csv").exists()


@pytest.mark.parametrize("kind", sorted(CHECKPOINT_ERRORS))
def test_bad_checkpoint_is_one_clear_error(kind, sine_checkpoint, compose_predict_cfg, tmp_path):
    new = write_csv(sine_table(400, 60), tmp_path / "new.csv")
    cfg = compose_predict_cfg(
        f"ckpt_path={bad_checkpoint(kind, sine_checkpoint, tmp_path)}", f"data.source.path={new}"
    )
    with pytest.raises(UserError) as error:
        predict(cfg)
    assert "\n" not in str(error.value)
    for fragment in CHECKPOINT_ERRORS[kind]:
        assert fragment in str(error.value), str(error.value)
    assert not (tmp_path / "predictions.csv").exists()


@pytest.mark.parametrize("kind", ["nan", "irregular", "other version"])
def test_cli_bad_input_exits_with_one_line_and_leaves_nothing(kind, sine_checkpoint, tmp_path):
    out = tmp_path / "run"
    if kind in DATA_ERRORS:
        args, fragments = [f"ckpt_path={sine_checkpoint}", *bad_data(kind, tmp_path)], DATA_ERRORS[kind]
    else:
        new = write_csv(sine_table(400, 60), tmp_path / "new.csv")
        args = [f"ckpt_path={bad_checkpoint(kind, sine_checkpoint, tmp_path)}", f"data.source.path={new}"]
        fragments = CHECKPOINT_ERRORS[kind]

    result = run_app("predict", *args, f"hydra.run.dir={out}")

    assert result.returncode == 2
    assert_one_line_error(result, *fragments)
    assert not out.exists()  # no partial CSV, no half-written run folder


def test_the_window_table_streams_in_chunks_to_the_same_file(
    sine_checkpoint, compose_predict_cfg, tmp_path, monkeypatch
):
    new = write_csv(sine_table(360, 80), tmp_path / "new.csv")
    overrides = (f"ckpt_path={sine_checkpoint}", f"data.source.path={new}", "intervals=[0.8]")
    predict(compose_predict_cfg(*overrides))  # one chunk
    whole = (tmp_path / "predictions.csv").read_bytes()
    # Chunks of 3 batches of 4 windows, cutting the series anywhere; intervals applied per chunk.
    monkeypatch.setattr(predict_module, "TABLE_ROWS", 12)

    predict(compose_predict_cfg(*overrides, "data.eval_batch_size=4"))

    assert (tmp_path / "predictions.csv").read_bytes() == whole
    table = pd.read_csv(tmp_path / "predictions.csv")
    assert len(table) == (80 - WINDOW + 1) * 2 and {"lo-80", "hi-80"} <= set(table.columns)
    # A failure midway (the third chunk) leaves neither the file nor its temporary behind.
    (tmp_path / "predictions.csv").unlink()
    chunks = predict_module.window_tables

    def failing(*args):
        for number, chunk in enumerate(chunks(*args)):
            if number == 2:
                raise UserError("bad chunk")
            yield chunk

    monkeypatch.setattr(predict_module, "window_tables", failing)
    with pytest.raises(UserError, match="bad chunk"):
        predict(compose_predict_cfg(*overrides, "data.eval_batch_size=4"))
    assert not (tmp_path / "predictions.csv").exists() and not list(tmp_path.glob(".*.tmp"))


def test_a_job_that_would_not_fit_is_refused_before_it_starts(
    sine_checkpoint, compose_predict_cfg, tmp_path, monkeypatch
):
    new = write_csv(sine_table(360, 80), tmp_path / "new.csv")
    overrides = (f"ckpt_path={sine_checkpoint}", f"data.source.path={new}")
    need, read_available = predict_module.prediction_memory, memory.available_bytes
    # The window table needs the most: its chunk of 1,024 windows' table rows and arrays.
    monkeypatch.setattr(memory, "available_bytes", lambda: 200_000)
    with pytest.raises(UserError, match="window_predictions=false") as error:
        predict(compose_predict_cfg(*overrides))
    assert "\n" not in str(error.value) and "0.0 GiB are available" in str(error.value)
    assert not list(tmp_path.glob("predictions*")) and not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(UserError, match=r"forecast fewer steps \(horizon\)"):
        predict(compose_predict_cfg(*overrides, "horizon=10000"))
    assert not list(tmp_path.glob("forecast*"))
    # Enough memory for the estimate: the job runs.
    loaded = predict_module.load_for_prediction(compose_predict_cfg(*overrides))
    needed = sum(size for size, _ in need(loaded, None, True, 0).values())
    monkeypatch.setattr(memory, "available_bytes", lambda: needed + 1)
    assert set(predict(compose_predict_cfg(*overrides))) == {"predictions", "plot"}
    # MemAvailable of /proc/meminfo; none where it cannot be read (no check).
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000000 kB\nMemFree:  100 kB\nMemAvailable:  2000000 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", meminfo)
    assert read_available() == 2_000_000 * 1024
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "none")
    assert read_available() is None


def test_window_predictions_option_is_checked(sine_checkpoint, compose_predict_cfg, tmp_path):
    new = write_csv(sine_table(360, 80), tmp_path / "new.csv")
    base = (f"ckpt_path={sine_checkpoint}", f"data.source.path={new}")
    with pytest.raises(UserError, match="forecasts nothing; add horizon=H"):
        predict(compose_predict_cfg(*base, "window_predictions=false"))
    with pytest.raises(UserError, match="window_predictions must be auto, true or false"):
        predict(compose_predict_cfg(*base, "window_predictions=sometimes"))
    assert set(predict(compose_predict_cfg(*base, "horizon=2", "window_predictions=false"))) == {
        "forecast",
        "plot",
    }
