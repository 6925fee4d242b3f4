"""One vocabulary and no silent choices (issue 29 items 4 and 5): the CLI reads Nixtla's
``unique_id, ds, y`` as the API does; one line says what was read, one line after training says
whether the model beats each baseline on validation."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

import lstm_forecast.evaluation.report as report
from conftest import TINY_MODEL, compose_config
from lstm_forecast import Forecaster
from lstm_forecast.data.column_names import recognised_long_columns
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.long_source import synthetic_long_table
from lstm_forecast.data.summary import read_summary
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.comparison import validation_baseline_key, validation_comparison
from lstm_forecast.evaluation.report import BASELINES, evaluate_baselines
from lstm_forecast.inference.future_values import future_values
from lstm_forecast.training.run import train

RUN_LOGGER = "lstm_forecast.training.run"


def nixtla_table() -> pd.DataFrame:
    table = synthetic_long_table(num_series=3, min_length=90, max_length=120).drop(columns="category")
    return table.rename(columns={"series": "unique_id", "timestamp": "ds", "value": "y"})


def test_a_long_file_with_nixtla_names_trains_with_no_column_overrides(tmp_path, caplog, monkeypatch):
    path = tmp_path / "nixtla.csv"
    nixtla_table().to_csv(path, index=False)
    ridge_fits = []
    fit = report.RidgeBaseline.fit
    monkeypatch.setattr(report.RidgeBaseline, "fit", lambda *a, **k: ridge_fits.append(1) or fit(*a, **k))
    cfg = compose_config(
        "train",
        tmp_path / "run",
        ["data=long_csv", f"data.source.path={path}", *TINY_MODEL, "trainer.max_epochs=1"],
    )

    with caplog.at_level(logging.INFO, logger=RUN_LOGGER):
        metrics, objects = train(cfg)

    lines = [r.getMessage() for r in caplog.records if r.name == RUN_LOGGER]
    read = next(line for line in lines if line.startswith("read "))
    assert "3 series, " in read and "series 'unique_id', timestamps 'ds', values 'y'" in read
    # The validation line: each baseline's validation MSE is its score on the validation windows,
    # computed in the same pass as the model's (the ridge fitted once for validation and test).
    assert len(ridge_fits) == 1
    alone = evaluate_baselines(objects["datamodule"], "val", cfg.evaluation).metrics
    for name in BASELINES:
        expected = alone[f"baseline/{name}/mse_z"]
        assert metrics[validation_baseline_key(name)] == pytest.approx(expected, rel=1e-9)
    # The API forecasts from that checkpoint on the same frame, in its column names; the checkpoint
    # loader of every app says what it read, as training did.
    with caplog.at_level(logging.INFO, logger="lstm_forecast.inference.checkpoints"):
        forecast = Forecaster.load(metrics["best_checkpoint"]).predict(pd.read_csv(path), horizon=2)
    assert list(forecast.columns) == ["unique_id", "ds", "prediction"] and len(forecast) == 3 * 2
    loaded = [r.getMessage() for r in caplog.records if r.name == "lstm_forecast.inference.checkpoints"]
    assert loaded == [read.replace(f"read {path}:", "read the DataFrame:")]
    line = next(line for line in lines if line.startswith("validation MSE"))
    assert line == validation_comparison(metrics)[0]
    for name in BASELINES:
        baseline = metrics[validation_baseline_key(name)]
        percent = round(100 * abs(metrics["val/mse_z"] - baseline) / baseline)
        verb = "beats" if metrics["val/mse_z"] < baseline else "loses to"
        assert f"{verb} {name.replace('_', ' ')} by {percent} %" in line


def test_a_named_column_is_never_replaced_and_a_default_only_by_a_known_name():
    nixtla = ["unique_id", "ds", "y", "series"]
    defaults = {"series": "series", "timestamp": "timestamp", "value": "value"}
    found = recognised_long_columns(nixtla, **defaults)
    assert found == {"series": "series", "timestamp": "ds", "value": "y"}  # a default present stays
    named = {"series": "store", "timestamp": "day", "value": "sales"}
    assert recognised_long_columns(nixtla, **named) == named
    assert recognised_long_columns(["a", "b"], **defaults) == defaults  # refused later, naming the columns
    assert recognised_long_columns(None, **defaults) == defaults


def test_the_comparison_line_says_by_how_much_the_model_beats_or_loses():
    metrics = {
        "val/mse_z": 0.41,
        validation_baseline_key("persistence"): 0.41 / 0.62,
        validation_baseline_key("seasonal_naive"): 0.41 / 0.8,
        validation_baseline_key("ridge"): 0.41 / 1.03,
    }
    assert validation_comparison(metrics) == (
        "validation MSE (z) 0.4100: beats persistence by 38 %, beats seasonal naive by 20 %, "
        "loses to ridge by 3 %",
        True,
    )
    metrics[validation_baseline_key("ridge")] = 0.4102
    assert validation_comparison(metrics)[0].endswith("level with ridge")
    assert validation_comparison(metrics)[1] is False
    assert validation_comparison({"val/mse_z": 0.41}) is None  # no baselines scored


def test_the_read_summary_counts_inserted_steps_not_gaps_and_names_every_role(tmp_path):
    table = synthetic_long_table(num_series=2, min_length=60, max_length=60)
    table["promo"] = np.arange(len(table)) % 2
    gap = table.index[(table["series"] == "s0") & table.index.isin(range(20, 23))]  # one gap, 3 steps
    table = table.drop(index=gap)
    table.loc[table.index[40], "value"] = np.nan
    table.to_csv(tmp_path / "panel.csv", index=False)
    source = {
        "kind": "long_file",
        "path": str(tmp_path / "panel.csv"),
        "extra_columns": ["promo"],
        "static_columns": ["category"],
        "fill_method": "ffill",
    }
    datamodule = ForecastDataModule(
        source=source, window_size=6, calendar_features=["hour"], future_columns=["promo"]
    )

    line = read_summary(datamodule)

    assert line == (
        f"read {tmp_path / 'panel.csv'}: 2 series of 60 rows each, frequency h; series 'series', "
        "timestamps 'timestamp', values 'value'; extras ['promo'], future-known ['promo'], static "
        "['category'], calendar ['hour']; fill_method=ffill inserted 3 missing steps, filled 1 missing values"
    )


def test_the_read_summary_of_a_wide_file_names_its_value_columns(tmp_path):
    stamps = pd.date_range("2024-01-01", periods=50, freq="D")
    wide = pd.DataFrame({"day": stamps, **{f"c{i}": np.arange(50.0) + i for i in range(7)}})
    wide.to_csv(tmp_path / "wide.csv", index=False)
    datamodule = ForecastDataModule(
        source={"kind": "wide_file", "path": str(tmp_path / "wide.csv"), "timestamp_column": "day"},
        window_size=6,
    )

    line = read_summary(datamodule)

    assert re.search(r"wide\.csv: 7 series of 50 rows each, frequency D; timestamps 'day', ", line)
    assert "values ['c0', 'c1', 'c2', 'c3', 'c4', ...] (7); extras []" in line
    assert "fill_method" not in line  # nothing filled


def test_the_api_keeps_the_input_column_names_and_its_errors_name_api_arguments(tmp_path):
    table = synthetic_long_table(num_series=3, min_length=90, max_length=120).drop(columns="category")
    table = table.rename(columns={"series": "store", "timestamp": "day", "value": "sales"})
    table["promo"] = np.arange(len(table)) % 3 == 0
    forecaster = Forecaster(
        [*TINY_MODEL, "trainer.max_epochs=1"],
        columns={"series": "store", "timestamp": "day", "value": "sales"},
        extra_columns=["promo"],
        run_dir=tmp_path / "run",
    ).fit(table)

    forecast = forecaster.predict(table)  # the model's own horizon: promo is only read as context
    assert list(forecast.columns) == ["store", "day", "prediction"]
    assert forecast["store"].tolist() == sorted(table["store"].unique())
    # Forecasting past the model's horizon feeds forecasts back, so promo's future values are needed.
    with pytest.raises(UserError) as caught:
        forecaster.predict(table, horizon=3)
    assert "pass future=<DataFrame> with" in str(caught.value) and "future.path" not in str(caught.value)
    with pytest.raises(UserError) as caught:
        forecaster.predict(table.drop(columns="sales"))
    assert "['sales'] not found in the DataFrame" in str(caught.value)
    assert str(caught.value).endswith("fix columns={'value': ...}")


def test_a_future_table_in_nixtla_names_is_read_per_series(tmp_path):
    table = nixtla_table()
    table["promo"] = np.arange(len(table)) % 2
    table.to_csv(tmp_path / "nixtla.csv", index=False)
    datamodule = ForecastDataModule(
        source={"kind": "long_file", "path": str(tmp_path / "nixtla.csv"), "extra_columns": ["promo"]},
        window_size=6,
    )
    last = table.groupby("unique_id", observed=True)["ds"].max()
    future = pd.DataFrame(
        {"unique_id": last.index.astype(str), "ds": pd.to_datetime(last.to_numpy()) + pd.Timedelta(hours=1)}
    ).assign(promo=1.0, y=5.0)

    values = future_values(future, datamodule, "future.csv")

    assert values.per_series and values.actual_column == "y"
    assert values.values.loc[(future["unique_id"][0], future["ds"][0]), "promo"] == 1.0


def test_a_wide_file_with_a_ds_column_reads_with_the_cli_defaults(tmp_path):
    stamps = pd.date_range("2024-01-01", periods=40, freq="h")
    pd.DataFrame({"ds": stamps, "a": np.arange(40.0), "b": np.arange(40.0) * 2}).to_csv(
        tmp_path / "wide.csv", index=False
    )
    cfg = compose_config(
        "train", tmp_path / "run", ["data=wide_file", f"data.source.path={tmp_path / 'wide.csv'}"]
    )

    line = read_summary(instantiate(cfg.data))

    assert "2 series of 40 rows each, frequency h; timestamps 'ds', values ['a', 'b']" in line
