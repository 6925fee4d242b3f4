"""What neuralforecast users reach for: ``Forecaster.predict(level=...)``, ``Forecaster.future_frame``,
``Forecaster.export`` and ``run=latest`` in the checkpoint apps, each checked against the console app
doing the same job."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_MODEL, assert_one_line_error, run_app
from lstm_forecast import Forecaster
from lstm_forecast.data.long_source import synthetic_long_table
from lstm_forecast.errors import UserError
from lstm_forecast.inference.checkpoints import latest_run

NIXTLA = {"series": "unique_id", "timestamp": "ds", "value": "y"}
MODEL_HORIZON = 2
# A model emitting 2 steps with a user extra column (promo): a 4-step forecast feeds steps 1-2 back
# as context, so it needs promo there; a 2-step one needs no future values.
OVERRIDES = [*TINY_MODEL, f"model.horizon={MODEL_HORIZON}", "data.split={val:12,test:12}"]


def promo_frame() -> pd.DataFrame:
    table = synthetic_long_table(num_series=4, min_length=100, max_length=140).drop(columns="category")
    table["promo"] = np.random.default_rng(0).integers(0, 2, len(table)).astype(float)
    return table.rename(columns=NIXTLA)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Forecaster, pd.DataFrame, Path]:
    """A tiny model fitted in the default run folder (outputs/runs/train/<time>) of a fresh folder,
    and the data as a CSV file there (``panel.csv``)."""
    cwd = tmp_path_factory.mktemp("conveniences")
    frame = promo_frame()
    frame.to_csv(cwd / "panel.csv", index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        forecaster = Forecaster(OVERRIDES, extra_columns=["promo"]).fit(frame)
    return forecaster, frame, cwd


@pytest.mark.slow
def test_level_gives_the_intervals_of_lstm_predict(fitted, tmp_path):
    forecaster, frame, cwd = fitted
    forecast = forecaster.predict(frame, horizon=MODEL_HORIZON, level=[95, 80])
    bounds = ["lo-80", "hi-80", "lo-95", "hi-95"]
    assert list(forecast.columns) == ["unique_id", "ds", "prediction", *bounds]  # the input's names
    result = run_app(
        "predict", f"ckpt_path={forecaster.checkpoint}", f"data.source.path={cwd / 'panel.csv'}",
        f"horizon={MODEL_HORIZON}", "intervals=[0.8,0.95]", "plot.max_series=1", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cli = pd.read_csv(tmp_path / "forecast.csv")
    np.testing.assert_array_equal(forecast[["prediction", *bounds]].to_numpy(), cli[["prediction", *bounds]])
    assert (forecast["lo-95"] <= forecast["lo-80"]).all() and (forecast["hi-80"] <= forecast["hi-95"]).all()
    assert (forecast["lo-80"] < forecast.prediction).all() and (forecast.prediction < forecast["hi-80"]).all()


@pytest.mark.slow
def test_level_as_fractions_is_refused_with_the_percentages_to_pass(fitted):
    forecaster, frame, _ = fitted
    with pytest.raises(UserError, match=r"levels are percentages: level=\[80.0, 95.0\]$"):
        forecaster.predict(frame, horizon=MODEL_HORIZON, level=[0.8, 0.95])
    with pytest.raises(UserError, match=r"^level repeats a level \(\[80, 80\]\); give each level once$"):
        forecaster.predict(frame, horizon=MODEL_HORIZON, level=[80, 80])
    hinted = forecaster.predict(frame, horizon=MODEL_HORIZON, level=[80.0, 95.0])  # the hint, as written
    assert {"lo-80", "hi-95"} <= set(hinted.columns)


@pytest.mark.slow
def test_future_frame_holds_the_rows_and_columns_the_forecast_reads(fitted):
    forecaster, frame, _ = fitted
    steps = 2 * MODEL_HORIZON
    blank = forecaster.future_frame(frame, horizon=steps)
    assert list(blank.columns) == ["unique_id", "ds", "promo"]  # the data's own names
    expected = [
        (str(name), rows.ds.max() + pd.Timedelta(hours=k))
        for name, rows in frame.assign(ds=pd.to_datetime(frame.ds)).groupby("unique_id")
        for k in range(1, steps + 1)
    ]
    assert list(zip(blank.unique_id, blank.ds, strict=True)) == expected
    assert blank.promo.isna().all()
    with pytest.raises(UserError, match="has no values of \\['promo'\\]"):
        forecaster.predict(frame, horizon=steps, future=blank)
    filled = blank.assign(promo=1.0)
    forecast = forecaster.predict(frame, horizon=steps, future=filled)
    assert len(forecast) == len(blank) and forecast.prediction.notna().all()
    # Promotions change the forecast from the third step, the first one read after promo's own steps.
    other = forecaster.predict(frame, horizon=steps, future=filled.assign(promo=0.0))
    step = np.tile(np.arange(1, steps + 1), 4)
    assert (forecast.prediction == other.prediction)[step <= MODEL_HORIZON].all()
    assert (forecast.prediction != other.prediction)[step > MODEL_HORIZON].all()


@pytest.mark.slow
def test_a_forecast_within_the_model_horizon_needs_no_future_columns(fitted):
    forecaster, frame, _ = fitted
    blank = forecaster.future_frame(frame)  # the model's own horizon
    assert list(blank.columns) == ["unique_id", "ds"] and len(blank) == 4 * MODEL_HORIZON
    with_frame = forecaster.predict(frame, future=blank)
    pd.testing.assert_frame_equal(with_frame, forecaster.predict(frame))


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt", ["torchscript", pytest.param("onnx", marks=pytest.mark.skipif(
        importlib.util.find_spec("onnx") is None, reason="the export extra is not installed"))],
)  # fmt: skip
def test_export_writes_what_lstm_export_writes(fitted, fmt, tmp_path):
    forecaster, _, _ = fitted
    model_file = forecaster.export(tmp_path / "api", fmt)
    assert model_file == tmp_path / "api" / {"torchscript": "model.pt", "onnx": "model.onnx"}[fmt]
    result = run_app(
        "export", f"ckpt_path={forecaster.checkpoint}", f"format={fmt}", f"hydra.run.dir={tmp_path / 'cli'}"
    )
    assert result.returncode == 0, result.stderr
    spec = json.loads((tmp_path / "api" / "model.json").read_text())
    assert spec == json.loads((tmp_path / "cli" / "model.json").read_text())
    if fmt == "torchscript":
        api, cli = torch.jit.load(model_file), torch.jit.load(tmp_path / "cli" / "model.pt")
        window = spec["window_size"]
        values = torch.linspace(100, 900, 3 * window, dtype=torch.float64).reshape(3, window)
        ids = torch.tensor(list(spec["series_ids"].values())[:3])
        extras = torch.rand(3, window, len(spec["extra_features"]), dtype=torch.float64)
        torch.testing.assert_close(api(values, ids, extras), cli(values, ids, extras), rtol=0, atol=0)


@pytest.mark.slow
def test_export_refuses_an_unknown_format_and_leaves_no_folder(fitted, tmp_path):
    forecaster, _, _ = fitted
    with pytest.raises(UserError, match="unknown export format 'pt'; use format=onnx or format=torchscript"):
        forecaster.export(tmp_path / "out", "pt")
    assert not (tmp_path / "out").exists()
    assert forecaster.export(tmp_path / "out", "torchscript").is_file()  # the hint, followed


@pytest.mark.slow
@pytest.mark.parametrize("app", ["evaluate", "predict", "backtest", "export"])
def test_run_latest_reads_the_newest_training_run(fitted, app, tmp_path):
    forecaster, _, cwd = fitted
    data = [] if app == "export" else [f"data.source.path={cwd / 'panel.csv'}"]
    extra = {"predict": ["horizon=2", "plot.max_series=1"], "export": ["format=torchscript"]}.get(app, [])
    result = run_app(app, "run=latest", *data, *extra, f"hydra.run.dir={tmp_path}", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert f"run=latest: {forecaster.run_dir}" in result.stdout + result.stderr
    if app == "evaluate":
        written = json.loads((tmp_path / "metrics.json").read_text())
        assert written["test/mse_z"] == forecaster.metrics["test/mse_z"]


def finished_run(folder: Path, age_s: float) -> Path:
    """A run folder whose metrics.json was written ``age_s`` seconds ago."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    written = time.time() - age_s
    os.utime(folder / "metrics.json", (written, written))
    return folder


def test_latest_run_is_the_last_one_finished_and_skips_unfinished_ones(tmp_path):
    runs = tmp_path / "outputs" / "runs" / "train"
    finished_run(runs / "2026-01-01_10-00-00", age_s=100)
    newest = finished_run(runs / "2026-01-01_09-00-00", age_s=10)  # started first, finished last
    (runs / "2026-01-01_11-00-00" / "checkpoints").mkdir(parents=True)  # still training
    assert latest_run(runs) == newest


@pytest.mark.parametrize("app", ["predict", "export"])
def test_run_latest_without_runs_is_one_line_and_leaves_nothing(app, tmp_path):
    result = run_app(app, "run=latest", cwd=tmp_path)
    assert_one_line_error(result, "run=latest found no finished lstm-train run in", "train one first")
    assert not (tmp_path / "outputs" / "runs" / app).exists() or not any(
        (tmp_path / "outputs" / "runs" / app).iterdir()
    )


def with_new_store(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` and a series it never had: the first series' rows at 10 times its level."""
    first = frame[frame.unique_id == frame.unique_id.iloc[0]]
    return pd.concat([frame, first.assign(unique_id="new", y=10 * first.y)], ignore_index=True)


@pytest.mark.slow
def test_a_series_unseen_in_training_is_forecast_in_its_own_units_with_the_mean_embedding(fitted):
    forecaster, frame, _ = fitted
    both = with_new_store(frame)
    forecast = forecaster.predict(both, horizon=MODEL_HORIZON)
    new = (
        forecast[forecast.unique_id == "new"]
        if "unique_id" in forecast
        else forecast[forecast.series == "new"]
    )
    assert len(new) == MODEL_HORIZON
    history = both.loc[both.unique_id == "new", "y"]
    assert history.min() <= new.prediction.min() and new.prediction.max() <= history.max() * 1.2
    # The trained series forecast as without it.
    trained = forecast.iloc[: len(forecast) - MODEL_HORIZON].reset_index(drop=True)
    pd.testing.assert_frame_equal(trained, forecaster.predict(frame, horizon=MODEL_HORIZON))


def test_an_unseen_series_gets_the_mean_of_the_trained_series_rows():
    from lstm_forecast.inference.unseen_series import with_unseen_series

    embedding = torch.arange(12, dtype=torch.float32).reshape(4, 3) ** 2  # id 0 reserved, 3 series
    state = {
        "series_names": ["a", "b", "c"],
        "series_train_rows": torch.tensor([5, 0, 7]),  # b had no training rows: never learned
        "series_mean": torch.zeros(3, dtype=torch.float64),
        "scaler": {
            "data_min": torch.zeros(3, dtype=torch.float64),
            "data_range": torch.ones(3, dtype=torch.float64),
        },
    }
    checkpoint = {
        "ForecastDataModule": state,
        "state_dict": {"net.embedding.weight": embedding, "net.head.weight": torch.ones(4, 3)},
        "hyper_parameters": {"num_series": 3},
    }
    extended = with_unseen_series(checkpoint, ["x", "y"])
    rows = extended["state_dict"]["net.embedding.weight"]
    torch.testing.assert_close(rows[4:], ((embedding[1] + embedding[3]) / 2).expand(2, 3))
    assert torch.equal(rows[:4], embedding) and extended["hyper_parameters"]["num_series"] == 5
    assert extended["state_dict"]["net.head.weight"].shape == (4, 3)  # not a per-series parameter
    assert extended["ForecastDataModule"]["series_names"] == ["a", "b", "c", "x", "y"]
    assert checkpoint["hyper_parameters"]["num_series"] == 3  # the checkpoint read is left as it was


@pytest.mark.slow
def test_lstm_predict_forecasts_unseen_series_unless_told_to_refuse_them(fitted, tmp_path):
    forecaster, frame, _ = fitted
    with_new_store(frame).to_csv(tmp_path / "new.csv", index=False)
    args = [f"ckpt_path={forecaster.checkpoint}", f"data.source.path={tmp_path / 'new.csv'}", "horizon=2"]
    result = run_app("predict", *args, "unseen_series=refuse", f"hydra.run.dir={tmp_path / 'r'}")
    assert_one_line_error(result, "series ['new']", "were not in the training data")
    assert not (tmp_path / "r").exists()
    result = run_app("predict", *args, f"hydra.run.dir={tmp_path / 'd'}", "plot.max_series=1")  # the default
    assert result.returncode == 0, result.stderr
    written = pd.read_csv(tmp_path / "d" / "forecast.csv")
    api = forecaster.predict(with_new_store(frame), horizon=MODEL_HORIZON)
    np.testing.assert_array_equal(written.prediction, api.prediction)
    assert written.series.tolist()[-MODEL_HORIZON:] == ["new"] * MODEL_HORIZON
    result = run_app("predict", *args, "unseen_series=mean", f"hydra.run.dir={tmp_path / 'r'}")
    assert_one_line_error(result, "unseen_series must be one of ['mean_embedding', 'refuse'], got 'mean'")


@pytest.mark.parametrize("action", ["future_frame", "export"])
def test_the_conveniences_of_an_unfitted_forecaster_are_one_line(action, tmp_path):
    call = {
        "future_frame": lambda f: f.future_frame(promo_frame()),
        "export": lambda f: f.export(tmp_path / "x"),
    }
    with pytest.raises(
        UserError, match=r"^nothing to .* yet; call fit\(df\) first, or Forecaster.load\(path\)$"
    ):
        call[action](Forecaster())
    assert not (tmp_path / "x").exists()


def test_the_future_frame_of_a_wide_table_has_one_row_per_step_and_no_calendar_columns():
    from lstm_forecast.data.datamodule import ForecastDataModule
    from lstm_forecast.inference.future_frame import future_frame

    stamps = pd.date_range("2024-01-01", periods=120, freq="h")
    ramp = np.arange(120.0)
    table = pd.DataFrame({"when": stamps, "a": ramp, "b": 2 * ramp, "u": np.sin(ramp), "v": np.cos(ramp)})
    source = {"kind": "wide_file", "path": None, "timestamp_column": "when", "extra_columns": ["u", "v"]}
    datamodule = ForecastDataModule(
        source, window_size=12, horizon=2, future_columns=["v"], calendar_features=["hour", "day_of_week"]
    )
    datamodule.use_table(table)
    datamodule.setup("fit")
    within = future_frame(datamodule, 2, 2)  # read: the future-known v at both forecast steps
    assert list(within.columns) == ["when", "v"] and within.v.isna().all()
    assert within.when.tolist() == [stamps[-1] + pd.Timedelta(hours=k) for k in (1, 2)]
    fed_back = future_frame(datamodule, 5, 2)  # steps 1-4 become context: u and v both read
    assert list(fed_back.columns) == ["when", "u", "v"] and len(fed_back) == 5


def test_unseen_names_of_a_categorical_series_column_are_its_used_categories() -> None:
    from lstm_forecast.inference.unseen_series import unseen_names

    checkpoint = {"ForecastDataModule": {"series_names": ["a", "b"]}}
    stores = pd.Categorical(["a", "c", "c", None, "b"], categories=["a", "b", "c", "unused"])
    table = pd.DataFrame({"store": stores})
    source = {"kind": "long_file", "series_column": "store"}
    # Read from the codes (a string per row would cost gigabytes at M5 size); unused categories are no series.
    assert unseen_names(checkpoint, source, table) == ["c"]
    assert unseen_names(checkpoint, source, table.astype({"store": object})) == ["c"]
