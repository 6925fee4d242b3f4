"""lstm-predict on long-format panels: long outputs per series, on each series' own timeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import assert_one_line_error, run_app
from lstm_forecast.data.calendar import calendar_features
from lstm_forecast.inference.checkpoints import datamodule_from_checkpoint
from lstm_forecast.inference.predict import predict
from lstm_forecast.models.checkpoint import module_from_checkpoint, read_checkpoint

pytestmark = pytest.mark.slow  # trains a tiny model first

WINDOW = 6
# Ragged: own starts, lengths and scales; "b" is shorter than a window in the new file.
TRAIN_SERIES = {
    "a": ("2024-01-01 00:00", 40, 1.0),
    "b": ("2024-01-01 07:00", 30, 1_000.0),
    "c": ("2024-01-01 03:00", 36, 50.0),
}
NEW_SERIES = {
    "a": ("2024-01-03 00:00", 14, 1.0),
    "b": ("2024-01-02 20:00", 4, 1_000.0),
    "c": ("2024-01-02 13:00", 9, 50.0),
}
KIND = {"a": "shop", "b": "kiosk", "c": "shop"}


def panel(series: dict[str, tuple[str, int, float]]) -> pd.DataFrame:
    parts = []
    for name, (start, length, scale) in series.items():
        stamps = pd.date_range(start, periods=length, freq="h")
        hours = stamps.hour.to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "shop": name,
                    "when": stamps,
                    "sales": scale * (2 + np.sin(2 * np.pi * hours / 24)),
                    "kind": KIND[name],
                }
            )
        )
    return pd.concat(parts).sample(frac=1.0, random_state=1).reset_index(drop=True)


TRAIN_ARGS = [
    "data=long_csv",
    "data.source.series_column=shop",
    "data.source.timestamp_column=when",
    "data.source.value_column=sales",
    "data.source.static_columns=[kind]",
    "data.calendar_features=[hour]",
    f"data.window_size={WINDOW}",
    "data.split.train=0.6",
    "data.split.val=0.2",
    "data.split.test=0.2",
    "data.batch_size=16",
    "model.net.num_units=6",
    "model.net.embedding_dim=2",
    "model.net.dense_size=6",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "num_threads=1",
]


@pytest.fixture(scope="module")
def panel_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("panel")
    panel(TRAIN_SERIES).to_csv(folder / "train.csv", index=False)
    run_dir = folder / "run"
    result = run_app(
        "train", *TRAIN_ARGS, f"data.source.path={folder / 'train.csv'}", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(json.loads((run_dir / "metrics.json").read_text())["best_checkpoint"])


def sales(name: str, stamps: pd.DatetimeIndex) -> np.ndarray:
    """The values of series ``name`` at ``stamps`` (as :func:`panel` writes them)."""
    return TRAIN_SERIES[name][2] * (2 + np.sin(2 * np.pi * stamps.hour.to_numpy() / 24))


def forward(checkpoint: dict, series: str, stamps: pd.DatetimeIndex, values: np.ndarray) -> float:
    """The net's forecast in original units from the window ``stamps [W], values [W]`` of ``series``."""
    net = module_from_checkpoint(checkpoint).net
    dm = datamodule_from_checkpoint(checkpoint)  # the training data: only its scalers and codes are used
    index = dm.series_names.index(series)
    scaled = dm.scaler.transform(values, column_index=np.full(len(values), index))  # [W]
    hour = dm.extra_scaler.transform(calendar_features(stamps, ["hour"]).to_numpy())  # [W, 1]
    x = torch.tensor(np.column_stack([hour, scaled])[None], dtype=torch.float32)  # [1, W, 2]
    static = dm.static_codes()[index][None]  # [1, K]
    with torch.no_grad():
        out = net(x, torch.tensor([index + 1]), static).numpy()  # [1, 1]
    return float(dm.inverse_values(out, np.array([[index]]))[0, 0])


def test_predict_on_long_data_writes_long_per_series_outputs(panel_checkpoint, compose_train_cfg, tmp_path):
    new = panel(NEW_SERIES)
    path = tmp_path / "new.csv"
    new.to_csv(path, index=False)
    # Actuals of the forecast steps: a wide future file (one row per timestamp), holding "a" and "c".
    hours = pd.date_range("2024-01-02 12:00", "2024-01-03 23:00", freq="h")
    future_file = pd.DataFrame({"when": hours, "a": sales("a", hours), "c": sales("c", hours)})
    future_file.to_csv(tmp_path / "future.csv", index=False)
    cfg = compose_train_cfg(
        f"ckpt_path={panel_checkpoint}",
        f"data.source.path={path}",
        "horizon=3",
        "window_predictions=true",
        f"future.path={tmp_path / 'future.csv'}",
        "device=cpu",
        tiny=False,
        config_name="predict",
    )
    written = predict(cfg)

    checkpoint = read_checkpoint(panel_checkpoint)
    observed = new.set_index(["shop", "when"]).sales.sort_index()
    predictions = pd.read_csv(written["predictions"], parse_dates=["timestamp"])
    assert list(predictions.columns) == ["series", "timestamp", "step", "prediction", "actual"]
    assert (predictions.step == 1).all()
    # Every full window of each series, the last one forecasting the hour after its own last row;
    # "b" (4 rows) is shorter than the window: no rows.
    assert predictions.groupby("series").size().to_dict() == {"a": 14 - WINDOW + 1, "c": 9 - WINDOW + 1}
    for name in ("a", "c"):
        start, length, _ = NEW_SERIES[name]
        stamps = pd.date_range(start, periods=length + 1, freq="h")
        rows = predictions[predictions.series == name]
        assert rows.timestamp.tolist() == stamps[WINDOW:].tolist()
        np.testing.assert_allclose(rows.actual.iloc[:-1], observed[name].to_numpy()[WINDOW:], rtol=1e-12)
        assert np.isnan(rows.actual.iloc[-1])
        values = observed[name].to_numpy()
        for k in (0, len(rows) - 1):  # first window and the one past the end
            expected = forward(checkpoint, name, stamps[k : k + WINDOW], values[k : k + WINDOW])
            assert rows.prediction.iloc[k] == pytest.approx(expected, rel=1e-5)

    forecast = pd.read_csv(written["forecast"], parse_dates=["timestamp"])
    assert list(forecast.columns) == ["series", "timestamp", "step", "prediction", "actual"]
    assert forecast.step.tolist() == [1, 2, 3] * 2
    assert forecast.series.tolist() == ["a"] * 3 + ["c"] * 3  # "b" (4 rows) is shorter than the window
    for name in ("a", "c"):
        start, length, _ = NEW_SERIES[name]
        rows = forecast[forecast.series == name]
        future = pd.date_range(start, periods=length + 3, freq="h")[length:]
        assert rows.timestamp.tolist() == future.tolist()  # each series' own next 3 hours
        np.testing.assert_allclose(rows.actual, sales(name, future), rtol=1e-12)
        # Recursive: step 2's window ends with step 1's forecast.
        stamps = pd.date_range(start, periods=length + 3, freq="h")
        context = np.append(observed[name].to_numpy(), rows.prediction.iloc[0])
        assert rows.prediction.iloc[0] == pytest.approx(
            predictions[predictions.series == name].prediction.iloc[-1]
        )
        expected = forward(checkpoint, name, stamps[length + 1 - WINDOW : length + 1], context[-WINDOW:])
        assert rows.prediction.iloc[1] == pytest.approx(expected, rel=1e-5)

    png = written["plot"].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_cli_refuses_repeated_long_future_rows_and_unknown_series_in_long_data(panel_checkpoint, tmp_path):
    new = panel(NEW_SERIES)
    path = tmp_path / "new.csv"
    new.to_csv(path, index=False)
    run_dir = tmp_path / "run"
    # A long future file (the data's series and timestamp columns) has one row per series and step.
    pd.concat([new, new.iloc[:1]]).to_csv(tmp_path / "doubled.csv", index=False)
    result = run_app(
        "predict",
        f"ckpt_path={panel_checkpoint}",
        f"data.source.path={path}",
        "horizon=2",
        f"future.path={tmp_path / 'doubled.csv'}",
        f"hydra.run.dir={run_dir}",
    )
    assert_one_line_error(result, "doubled.csv", "repeated rows", "one row per series and timestamp")
    assert not run_dir.exists()

    new.loc[new.shop == "a", "shop"] = "zzz"
    new.to_csv(path, index=False)
    result = run_app(
        "predict",
        f"ckpt_path={panel_checkpoint}",
        f"data.source.path={path}",
        "unseen_series=refuse",  # the default forecasts a series unseen in training
        f"hydra.run.dir={run_dir}",
    )
    assert_one_line_error(result, "zzz", "not in the training data")
    assert not run_dir.exists()
