"""The Python API: ``Forecaster`` fits, predicts, evaluates, saves and loads on DataFrames of both
layouts, through the same configs and functions as the console apps, with the default callbacks and
logger."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import hydra
import hydra.core.utils
import numpy as np
import pandas as pd
import pytest
import torch
from hydra import version
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from conftest import TINY_MODEL, run_app
from lstm_forecast import Forecaster
from lstm_forecast.data.long_source import synthetic_long_table
from lstm_forecast.errors import UserError

HORIZON = 5
# Ragged series whose levels differ by orders of magnitude, in Nixtla's column names.
NIXTLA = {"series": "unique_id", "timestamp": "ds", "value": "y"}
LEVELS = (1.0, 100.0, 10_000.0)


def long_frame() -> pd.DataFrame:
    table = synthetic_long_table(num_series=4, min_length=100, max_length=140)
    return table.drop(columns="category").rename(columns=NIXTLA)


def wide_frame(num_rows: int = 160) -> pd.DataFrame:
    stamps = pd.date_range("2024-01-01", periods=num_rows, freq="h")
    cycle = np.sin(2 * np.pi * np.arange(num_rows) / 24)
    noise = np.random.default_rng(0).standard_normal((num_rows, len(LEVELS)))
    columns = {f"w{i}": level * (2 + cycle + 0.05 * noise[:, i]) for i, level in enumerate(LEVELS)}
    return pd.DataFrame({"date": stamps, **columns})


@pytest.fixture(scope="module")
def fitted_long(tmp_path_factory) -> tuple[Forecaster, pd.DataFrame, Path]:
    """A tiny model fitted on the long frame in the default run folder (outputs/runs/train/<time>)."""
    cwd = tmp_path_factory.mktemp("long")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        forecaster = Forecaster(TINY_MODEL).fit(long_frame())
    return forecaster, long_frame(), cwd


@pytest.fixture(scope="module")
def fitted_wide(tmp_path_factory) -> tuple[Forecaster, pd.DataFrame]:
    run_dir = tmp_path_factory.mktemp("wide") / "run"
    # Every default callback and the logger; one series drawn, for time.
    overrides = [*TINY_MODEL, "callbacks.forecast_figures.num_series=1"]
    return Forecaster(overrides, run_dir=run_dir).fit(wide_frame()), wide_frame()


def cli_forecast(checkpoint: Path, data_file: Path, out: Path) -> pd.DataFrame:
    """``lstm-predict``'s forecast.csv for the checkpoint on the data file."""
    result = run_app(
        "predict", f"ckpt_path={checkpoint}", f"data.source.path={data_file}", f"horizon={HORIZON}",
        "plot.max_series=1", f"hydra.run.dir={out}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return pd.read_csv(out / "forecast.csv", parse_dates=["timestamp"])


def assert_same_forecast(api: pd.DataFrame, cli: pd.DataFrame, series: str, timestamp: str) -> None:
    """The API's forecast (its series and timestamp columns named as in the input) is lstm-predict's."""
    assert list(api.columns) == [series, timestamp, "prediction"]
    api = api.rename(columns={series: "series", timestamp: "timestamp"})
    assert api.series.tolist() == cli.series.tolist()
    assert api.timestamp.tolist() == cli.timestamp.tolist()
    np.testing.assert_array_equal(api.prediction.to_numpy(), cli.prediction.to_numpy())


def assert_near_own_level(
    forecast: pd.DataFrame, history: dict[str, np.ndarray], series: str = "series"
) -> None:
    """Each series' forecasts are positive and their mean within a factor of 2 of its history's mean:
    in original units (scaled ones lie in [-1, 1] around 0) and of that series, whose level differs
    from the others' by far more than that."""
    for name, values in history.items():
        predicted = forecast.loc[forecast[series] == name, "prediction"].to_numpy()
        assert len(predicted) == HORIZON, name
        assert (predicted > 0).all(), (name, predicted)
        assert 0.5 < predicted.mean() / values.mean() < 2, (name, predicted.mean(), values.mean())


@pytest.mark.slow
def test_long_nixtla_frame_fits_into_a_run_folder_and_forecasts_in_its_units(fitted_long, tmp_path):
    forecaster, frame, cwd = fitted_long
    (run_dir,) = (cwd / "outputs" / "runs" / "train").iterdir()
    assert forecaster.run_dir == run_dir
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == forecaster.metrics
    assert forecaster.checkpoint == Path(metrics["best_checkpoint"]) and forecaster.checkpoint.is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "run_info.json").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    forecast = forecaster.predict(frame, horizon=HORIZON)
    history = {str(name): rows.y.to_numpy() for name, rows in frame.groupby("unique_id", observed=True)}
    assert sorted(set(forecast.unique_id)) == sorted(history)
    assert_near_own_level(forecast, history, series="unique_id")
    # What lstm-predict writes for the same checkpoint and data, the long file in the same columns.
    frame.to_csv(tmp_path / "panel.csv", index=False)
    cli = cli_forecast(forecaster.checkpoint, tmp_path / "panel.csv", tmp_path / "p")
    assert_same_forecast(forecast, cli, "unique_id", "ds")


@pytest.mark.slow
def test_wide_frame_forecasts_match_lstm_predict(fitted_wide, tmp_path):
    forecaster, frame = fitted_wide
    assert (forecaster.run_dir / "metrics.json").is_file()
    forecast = forecaster.predict(frame, horizon=HORIZON)
    assert_near_own_level(forecast, {name: frame[name].to_numpy() for name in ("w0", "w1", "w2")})
    last = frame.date.iloc[-1]
    assert forecast.date.tolist() == [last + pd.Timedelta(hours=h) for h in range(1, 6)] * 3
    frame.to_csv(tmp_path / "wide.csv", index=False)
    cli = cli_forecast(forecaster.checkpoint, tmp_path / "wide.csv", tmp_path / "p")
    assert_same_forecast(forecast, cli, "series", "date")  # a wide table has no series column


@pytest.mark.slow
def test_saved_and_loaded_forecaster_predicts_identically(fitted_long, tmp_path):
    forecaster, frame, _ = fitted_long
    saved = forecaster.save(tmp_path / "model.ckpt")
    loaded = Forecaster.load(saved)
    expected = forecaster.predict(frame, horizon=HORIZON)
    pd.testing.assert_frame_equal(loaded.predict(frame, horizon=HORIZON), expected, check_exact=True)
    # The model's own horizon by default (model.horizon=1).
    pd.testing.assert_frame_equal(
        loaded.predict(frame), expected.groupby("unique_id").head(1).reset_index(drop=True), check_exact=True
    )


@pytest.mark.slow
def test_evaluate_returns_what_lstm_evaluate_writes(fitted_long, tmp_path):
    forecaster, frame, _ = fitted_long
    frame.to_csv(tmp_path / "panel.csv", index=False)
    result = run_app(
        "evaluate", f"ckpt_path={forecaster.checkpoint}", f"data.source.path={tmp_path / 'panel.csv'}",
        f"hydra.run.dir={tmp_path / 'e'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert forecaster.evaluate(frame) == written
    # The training run scored the same test split of the same rows.
    assert written["test/mse_z"] == pytest.approx(forecaster.metrics["test/mse_z"], rel=1e-6)


def bad_fits(tmp_path: Path) -> dict[str, tuple[Forecaster, object, str]]:
    frame = long_frame()
    return {
        "missing column": (Forecaster(layout="long"), frame.drop(columns="y"), "columns={'series'"),
        "unknown layout": (Forecaster(layout="tall"), frame, "unknown layout 'tall'"),
        "unknown role": (Forecaster(columns={"target": "y"}), frame, "unknown column role(s) ['target']"),
        "no timestamp": (Forecaster(), wide_frame().set_index("date"), "no timestamp column 'date'"),
        "not a frame": (Forecaster(), frame.to_dict(), "expected a pandas DataFrame, got dict"),
        "bad override": (Forecaster(["model.nonsense=1"]), frame, "nonsense"),
        # Fails after the run folder is made: it must be removed again.
        "window too long": (Forecaster(["data.window_size=500"]), frame, "data.window_size is 500"),
    }


@pytest.mark.parametrize("case", list(bad_fits(Path())))
def test_bad_input_is_one_line_and_leaves_no_run_folder(case, tmp_path):
    forecaster, data, fragment = bad_fits(tmp_path)[case]
    with pytest.raises(UserError) as caught:
        forecaster.fit(data, run_dir=tmp_path / "run")
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("action", ["predict", "evaluate", "save"])
def test_using_an_unfitted_forecaster_is_one_line(action, tmp_path):
    argument = tmp_path / "model.ckpt" if action == "save" else long_frame()
    with pytest.raises(UserError, match=rf"^nothing to {action} yet; call fit\(df\) first"):
        getattr(Forecaster(), action)(argument)
    assert not (tmp_path / "model.ckpt").exists()


@pytest.mark.slow
def test_fit_and_predict_inside_a_hydra_app_leave_its_state_and_the_threads_as_they_were(tmp_path):
    # The caller's own Hydra app: a compose context with its config registered as HydraConfig.
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "outer.yaml").write_text("name: outer\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        conf = str(tmp_path / "conf")
        with hydra.initialize_config_dir(config_dir=conf, version_base="1.2", job_name="outer"):
            outer = hydra.compose("outer", return_hydra_config=True)
            HydraConfig.instance().set_config(outer)
            global_hydra, outer_hydra = GlobalHydra.instance(), GlobalHydra.instance().hydra
            forecaster = Forecaster([*TINY_MODEL, "num_threads=1"], run_dir=tmp_path / "run")
            forecaster.fit(long_frame())
            assert torch.get_num_threads() == 2
            forecast = forecaster.predict(long_frame(), horizon=HORIZON)
            assert len(forecast) == 4 * HORIZON
            assert GlobalHydra.instance() is global_hydra and global_hydra.hydra is outer_hydra
            assert HydraConfig.get().job.name == "outer" and version.getbase() == version.Version("1.2")
            assert hydra.compose("outer").name == "outer"  # the caller's context still composes
            assert torch.get_num_threads() == 2
        HydraConfig.instance().cfg = None
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.slow
def test_two_fits_in_the_same_second_get_their_own_run_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    class SameSecond(datetime.datetime):  # the clock of Hydra's ${now:...} (hydra.run.dir)
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 1)

    monkeypatch.setattr(hydra.core.utils, "datetime", SameSecond)
    first = Forecaster(TINY_MODEL).fit(long_frame())
    second = Forecaster(TINY_MODEL).fit(long_frame())
    runs = tmp_path / "outputs" / "runs" / "train"
    assert first.run_dir == runs / "2026-01-01_00-00-00"
    assert second.run_dir == runs / "2026-01-01_00-00-00_1"
    assert first.checkpoint.parent == first.run_dir / "checkpoints"
    assert second.checkpoint.parent == second.run_dir / "checkpoints"
    assert first.checkpoint.is_file() and second.checkpoint.is_file()


@pytest.mark.parametrize(
    "trainer", [["trainer=ddp_cpu"], ["trainer=ddp"], ["trainer=cpu", "trainer.devices=2"]], ids=str
)
def test_fit_refuses_several_processes_in_one_line(trainer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as caught:
        Forecaster([*TINY_MODEL, *trainer]).fit(long_frame())
    message = str(caught.value)
    assert "\n" not in message and "re-run your script" in message and "lstm-train trainer=ddp" in message
    assert "trainer.devices=1 trainer.strategy=auto" in message
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_following_the_several_processes_hint_fits_on_one_device(tmp_path):
    overrides = [*TINY_MODEL, "trainer=ddp_cpu", "trainer.devices=1", "trainer.strategy=auto"]
    forecaster = Forecaster(overrides).fit(long_frame(), run_dir=tmp_path / "run")
    assert forecaster.checkpoint.is_file()
