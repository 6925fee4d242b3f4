"""lstm-export: the ONNX and TorchScript files forecast in original units as the checkpoint does.

A tiny model is trained (default callbacks and logger) on a wide file with a user feature and on a long
ragged file with a static column, a padding mask and a 2-step horizon. Each exported file is fed windows
built from the raw data file as ``model.json`` describes them (independently of the package's window
code) and must reproduce ``lstm-predict``'s forecasts.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_MODEL, assert_one_line_error, run_app
from lstm_forecast.models.module import CHECKPOINT_FORMAT_KEY

pytestmark = pytest.mark.slow  # trains two tiny models

DOCS = Path(__file__).resolve().parents[1] / "docs" / "export.md"
# The calendar encoding model.json describes, written out here as a caller would.
CALENDAR = {
    "hour": lambda stamps: stamps.hour,
    "day_of_week": lambda stamps: stamps.dayofweek,
    "workday": lambda stamps: stamps.dayofweek < 5,
}


def wide_table() -> pd.DataFrame:
    """Two hourly series in different units and a user feature, 240 rows."""
    step = np.arange(240, dtype=float)
    return pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=240, freq="h"),
            "a": 50 + 10 * np.sin(2 * np.pi * step / 24) + np.sin(step / 7),
            "b": 5 + np.cos(2 * np.pi * step / 12),
            "temperature": 12 + 6 * np.sin(2 * np.pi * step / 48),
        }
    )


def long_table() -> pd.DataFrame:
    """Three series with their own start, length and level, a user feature and a static column."""
    parts = []
    for name, start, length, level, region in (
        ("x", "2024-01-01 00:00", 200, 20.0, "north"),
        ("y", "2024-01-02 05:00", 150, 300.0, "south"),
        ("z", "2024-01-01 09:00", 180, 3.0, "north"),
    ):
        stamps = pd.date_range(start, periods=length, freq="h")
        hours = stamps.hour.to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "series": name,
                    "timestamp": stamps,
                    "value": level * (2 + np.sin(2 * np.pi * hours / 24) + 0.01 * np.arange(length)),
                    "temp": np.cos(2 * np.pi * hours / 24),
                    "region": region,
                }
            )
        )
    return pd.concat(parts).sample(frac=1.0, random_state=0).reset_index(drop=True)


@dataclass(frozen=True)
class Trained:
    """A trained checkpoint, its data file and the rows of each series, as a caller would hold them."""

    checkpoint: Path
    data: Path
    rows: dict[str, pd.DataFrame]  # per series: timestamp index, columns value and the user features
    static: dict[str, dict[str, str]]  # per series: static column -> label
    predictions: pd.DataFrame  # lstm-predict's forecasts of every full window


def train_and_predict(folder: Path, table: pd.DataFrame, *args: str) -> Path:
    data = folder / "data.csv"
    table.to_csv(data, index=False)
    result = run_app(
        "train", *TINY_MODEL, *args, f"data.source.path={data}", f"hydra.run.dir={folder / 'run'}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = Path(json.loads((folder / "run" / "metrics.json").read_text())["best_checkpoint"])
    predict_dir = folder / "predict"
    result = run_app(
        "predict", f"ckpt_path={checkpoint}", f"data.source.path={data}", f"hydra.run.dir={predict_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return checkpoint


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory) -> Trained:
    folder = tmp_path_factory.mktemp("wide")
    table = wide_table()
    checkpoint = train_and_predict(folder, table, "data=wide_file", "data.source.extra_columns=[temperature]")
    indexed = table.set_index("date")
    rows = {name: indexed[[name, "temperature"]].rename(columns={name: "value"}) for name in ("a", "b")}
    predictions = pd.read_csv(folder / "predict" / "predictions.csv", parse_dates=["timestamp"])
    return Trained(checkpoint, folder / "data.csv", rows, {}, predictions)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory) -> Trained:
    folder = tmp_path_factory.mktemp("long")
    table = long_table()
    checkpoint = train_and_predict(
        folder,
        table,
        "data=long_csv",
        "data.source.extra_columns=[temp]",
        "data.source.static_columns=[region]",
        "data.padding_mask=true",
        "model.horizon=2",
    )
    rows = {
        name: group.set_index("timestamp").sort_index()[["value", "temp"]]
        for name, group in table.groupby("series")
    }
    static = {name: {"region": group["region"].iloc[0]} for name, group in table.groupby("series")}
    predictions = pd.read_csv(folder / "predict" / "predictions.csv", parse_dates=["timestamp"])
    return Trained(checkpoint, folder / "data.csv", rows, static, predictions)


@pytest.fixture(scope="module")
def quantile_run(tmp_path_factory) -> tuple[Trained, tuple[float, ...]]:
    """A quantile model on the wide file whose head emits its quantiles in REVERSED order: its rows of
    each step flipped in the checkpoint. Sorting makes the flip invisible to lstm-predict (the model's
    forecasts are the sorted outputs), so an exported file that skips the sorting returns its quantiles
    descending, which no tiny training run could be relied on to show."""
    folder = tmp_path_factory.mktemp("quantile")
    table = wide_table()
    levels = (0.1, 0.5, 0.9)
    trained = train_and_predict(
        folder,
        table,
        "data=wide_file",
        "data.source.extra_columns=[temperature]",
        "model.loss=quantile",
        "model.quantiles=[0.1,0.5,0.9]",
        "model.horizon=2",
    )
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"]
    for key in ("net.head.weight", "net.head.bias"):  # rows h * Q + q -> h * Q + (Q - 1 - q)
        rows = state[key].view(2, len(levels), *state[key].shape[1:])
        state[key] = rows.flip(1).reshape(state[key].shape).clone()
    flipped = folder / "flipped.ckpt"
    torch.save(checkpoint, flipped)
    predict_dir = folder / "predict_flipped"
    result = run_app(
        "predict",
        f"ckpt_path={flipped}",
        f"data.source.path={folder / 'data.csv'}",
        f"hydra.run.dir={predict_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    indexed = table.set_index("date")
    rows = {name: indexed[[name, "temperature"]].rename(columns={name: "value"}) for name in ("a", "b")}
    predictions = pd.read_csv(predict_dir / "predictions.csv", parse_dates=["timestamp"])
    return Trained(flipped, folder / "data.csv", rows, {}, predictions), levels


@pytest.fixture(params=["wide", "long"])
def trained(request) -> Trained:
    return request.getfixturevalue(f"{request.param}_run")


def window_inputs(spec: dict, trained: Trained, windows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The exported model's inputs for ``windows`` (series, timestamp of the first forecast step), cut
    from the raw rows as ``model.json`` says: the ``window_size`` rows before that step."""
    size = spec["window_size"]
    values, series_ids, extras, static = [], [], [], []
    for series, first_step in zip(windows["series"], windows["timestamp"], strict=True):
        rows = trained.rows[series]
        end = rows.index.searchsorted(first_step)  # one past the data for the step after its end
        window = rows.iloc[end - size : end]
        stamps = pd.DatetimeIndex(window.index)
        values.append(window["value"].to_numpy())
        series_ids.append(spec["series_ids"][series])
        features = [
            CALENDAR[name](stamps) if name in spec["calendar_features"] else window[name]
            for name in spec["extra_features"]
        ]
        extras.append(np.stack([np.asarray(feature, dtype=np.float64) for feature in features], axis=-1))
        codes = spec["static_codes"]
        static.append([codes[column][trained.static[series][column]] for column in codes])
    every = {
        "values": np.asarray(values, dtype=np.float64),
        "series_id": np.asarray(series_ids, dtype=np.int64),
        "extras": np.asarray(extras, dtype=np.float64),
        "static": np.asarray(static, dtype=np.int64),
    }
    return {item["name"]: every[item["name"]] for item in spec["inputs"]}


def needs_export_extra(fmt: str) -> None:
    """Skip an ONNX test where the export extra (onnx, onnxruntime) is not installed: torch writes
    ONNX files with the onnx package, and onnxruntime runs them."""
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")


def run_exported(folder: Path, spec: dict, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Forecasts of the exported file, run by onnxruntime or ``torch.jit.load``, without this package."""
    path = folder / spec["model_file"]
    if spec["format"] == "onnx":
        import onnx
        import onnxruntime as ort

        onnx.checker.check_model(str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, inputs)[0]
    model = torch.jit.load(str(path))
    with torch.no_grad():
        return model(*(torch.from_numpy(inputs[item["name"]]) for item in spec["inputs"])).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_model_forecasts_as_the_checkpoint_in_original_units(trained, fmt, tmp_path):
    needs_export_extra(fmt)
    args = [f"ckpt_path={trained.checkpoint}", f"format={fmt}", f"hydra.run.dir={tmp_path}"]
    result = run_app("export", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    spec = json.loads((tmp_path / "model.json").read_text())
    assert spec["format"] == fmt and (tmp_path / spec["model_file"]).is_file()
    assert sorted(spec["series_ids"]) == sorted(trained.rows)  # ids from 1, the embedding's rows
    assert sorted(spec["series_ids"].values()) == list(range(1, len(trained.rows) + 1))
    assert spec["window_size"] == 12
    horizon = spec["horizon"]
    assert spec["outputs"][0]["shape"] == ["batch", horizon] and spec["quantile_levels"] == []

    predictions = trained.predictions  # one row per window and step, steps 1..H in turn
    windows = predictions[predictions["step"] == 1].reset_index(drop=True)
    expected = predictions["prediction"].to_numpy().reshape(len(windows), horizon)
    inputs = window_inputs(spec, trained, windows)
    assert all(value.shape[0] == len(windows) for value in inputs.values())

    forecast = run_exported(tmp_path, spec, inputs)

    assert forecast.dtype == np.float64 and forecast.shape == (len(windows), horizon)
    np.testing.assert_allclose(forecast, expected, rtol=1e-5, atol=0)
    one = run_exported(tmp_path, spec, {name: value[-1:] for name, value in inputs.items()})  # batch of 1
    np.testing.assert_allclose(one, expected[-1:], rtol=1e-5, atol=0)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_exported_quantile_model_sorts_its_quantiles_as_lstm_predict(quantile_run, fmt, tmp_path):
    needs_export_extra(fmt)
    trained, levels = quantile_run
    result = run_app(
        "export", f"ckpt_path={trained.checkpoint}", f"format={fmt}", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    spec = json.loads((tmp_path / "model.json").read_text())
    assert spec["quantile_levels"] == list(levels)
    assert spec["outputs"][0]["shape"] == ["batch", 2, len(levels)]
    predictions = trained.predictions
    windows = predictions[predictions["step"] == 1].reset_index(drop=True)
    columns = [f"q{level}" for level in levels]
    expected = predictions[columns].to_numpy().reshape(len(windows), 2, len(levels))
    assert (np.diff(expected, axis=-1) > 0).any()  # the quantiles are apart: a reversal shows

    forecast = run_exported(tmp_path, spec, window_inputs(spec, trained, windows))

    assert forecast.shape == (len(windows), 2, len(levels))
    assert (np.diff(forecast, axis=-1) >= 0).all()  # never crossing
    np.testing.assert_allclose(forecast, expected, rtol=1e-5, atol=0)


def test_the_onnxruntime_example_of_the_docs_runs_as_written(wide_run, tmp_path, monkeypatch):
    needs_export_extra("onnx")
    export_dir = tmp_path / "export"
    result = run_app("export", f"ckpt_path={wide_run.checkpoint}", f"hydra.run.dir={export_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    example = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL).group(1)
    for name in ("model.onnx", "model.json"):
        shutil.copy(export_dir / name, tmp_path / name)
    shutil.copy(wide_run.data, tmp_path / "my.csv")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}

    exec(compile(example, str(DOCS), "exec"), namespace)

    # The example forecasts series "a" from the file's last window: lstm-predict's last window of "a".
    last = wide_run.predictions[wide_run.predictions["series"] == "a"].iloc[-1]
    assert pd.isna(last["actual"])  # the step after the file
    np.testing.assert_allclose(namespace["forecast"], [[last["prediction"]]], rtol=1e-5, atol=0)


def test_export_refuses_an_unknown_format_and_an_old_checkpoint(wide_run, tmp_path):
    unknown = run_app(
        "export", f"ckpt_path={wide_run.checkpoint}", "format=tflite", f"hydra.run.dir={tmp_path / 'a'}"
    )
    assert_one_line_error(unknown, "unknown export format 'tflite'", "format=onnx")
    assert not (tmp_path / "a").exists()  # nothing half-written

    checkpoint = torch.load(wide_run.checkpoint, map_location="cpu", weights_only=True)
    checkpoint[CHECKPOINT_FORMAT_KEY] = 0  # as written by an older version
    torch.save(checkpoint, tmp_path / "old.ckpt")
    old = run_app("export", f"ckpt_path={tmp_path / 'old.ckpt'}", f"hydra.run.dir={tmp_path / 'b'}")
    assert_one_line_error(old, "checkpoint format 0", "retrain")
    assert not (tmp_path / "b").exists()
