"""One rule for short series in every app: a series with fewer rows than ``data.window_size`` in the
data the app reads is named in one warning line and has no row in any table the app writes or
returns; a series of exactly ``window_size`` rows is served like any other
(lstm_forecast.data.short_series)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.core.global_hydra import GlobalHydra

from conftest import TINY_MODEL, compose_config
from lstm_forecast import Forecaster
from lstm_forecast.data.datamodule import ForecastDataModule
from lstm_forecast.data.short_series import short_series_message, untrained_series_message
from lstm_forecast.inference.backtest import backtest
from lstm_forecast.inference.evaluate import evaluate
from lstm_forecast.inference.predict import predict
from lstm_forecast.training.run import train

WINDOW = 12  # TINY_MODEL's data.window_size
# "tiny" (5 rows) has training rows under this split, so the window rule alone leaves it out; "edge"
# has exactly one window of rows: 8 training, 2 validation, 2 test.
LENGTHS = {"a": 60, "b": 50, "tiny": 5, "edge": WINDOW}
# The apps after training read a later file in which "b", trained on 50 rows, has its last 5 only: a
# series the model knows, too short in this data.
LATER_ROWS = {"b": 5}
SHORT = {"train": ["tiny"], "later": ["b", "tiny"]}  # in the checkpoint's (sorted) series order
RULE = "fewer rows than data.window_size"


@dataclass(frozen=True)
class Panel:
    later: pd.DataFrame
    later_path: Path
    run_dir: Path
    train_warnings: list[str]


class WarningRecords(logging.Handler):
    """Every warning logged anywhere while attached to the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    handler = WarningRecords()
    logging.getLogger().addHandler(handler)
    try:
        yield handler.messages
    finally:
        logging.getLogger().removeHandler(handler)


def long_table(lengths: dict[str, int]) -> pd.DataFrame:
    """Hourly series of ``lengths`` rows each: a noisy sine."""
    rng = np.random.default_rng(0)
    return pd.concat(
        pd.DataFrame(
            {
                "series": name,
                "timestamp": pd.date_range("2024-01-01", periods=rows, freq="h"),
                "value": 20 + 10 * np.sin(np.arange(rows) / 5) + rng.normal(size=rows),
            }
        )
        for name, rows in lengths.items()
    )


@pytest.mark.parametrize(
    ("split", "unscaled"),
    [({"val": 2, "test": 2}, []), ({"val": 24, "test": 24}, ["late"])],
    ids=["short-with-training-rows", "short-without-training-rows"],
)
def test_a_short_series_gets_no_window_in_any_split_and_one_warning(
    tmp_path: Path, warnings_logged: list[str], split: dict, unscaled: list[str]
) -> None:
    """The series "tiny" (5 rows) is short whether or not the split leaves it training rows; "late" (40
    rows) is not short but has none under the default long split: the other warning names it, not "tiny"."""
    path = tmp_path / "long.csv"
    long_table({"a": 80, "late": 40, "tiny": 5}).to_csv(path, index=False)
    datamodule = ForecastDataModule({"kind": "long_file", "path": str(path)}, window_size=WINDOW, split=split)
    datamodule.setup("fit")

    names = datamodule.series_names
    # Not trained on, so not scaled either: a later file in which "tiny" is long gets no forecast
    # from its untrained embedding.
    assert datamodule.series_train_rows[names.index("tiny")] == 0
    for windows in datamodule.windows.values():
        windowed = {names[s] for s in windows.series_index()}
        assert windowed == {"a", "late"} - set(unscaled)
    assert [m for m in warnings_logged if RULE in m] == [short_series_message(["tiny"], WINDOW)]
    no_training_rows = [m for m in warnings_logged if "no training rows" in m]
    assert [m.endswith(str(unscaled)) for m in no_training_rows] == [True] * len(unscaled)
    assert not [m for m in warnings_logged if "'tiny'" in m and RULE not in m], "named by a second warning"


def test_the_warning_names_the_first_five_short_series_and_counts_the_rest() -> None:
    message = short_series_message([f"s{i}" for i in range(7)], WINDOW)
    assert message.startswith(f"7 series have {RULE}={WINDOW} ")
    assert ": 's0', 's1', 's2', 's3', 's4' and 2 more; give each series at least 12 rows" in message


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Panel:
    """A long CSV of hourly series of :data:`LENGTHS` rows, and a tiny run trained on it."""
    folder = tmp_path_factory.mktemp("short")
    table = long_table(LENGTHS)
    path, later_path = folder / "long.csv", folder / "later.csv"
    table.to_csv(path, index=False)
    later = pd.concat(
        group.tail(LATER_ROWS.get(name, len(group))) for name, group in table.groupby("series", sort=False)
    )
    later.to_csv(later_path, index=False)
    handler = WarningRecords()
    logging.getLogger().addHandler(handler)
    try:
        overrides = [*TINY_MODEL, "data=long_csv", f"data.source.path={path}", "data.split={val:2,test:2}"]
        train(compose_config("train", folder / "run", overrides))
    finally:
        logging.getLogger().removeHandler(handler)
        GlobalHydra.instance().clear()
    return Panel(later, later_path, folder / "run", handler.messages)


def run_app(app: str, panel: Panel, output_dir: Path) -> dict[str, pd.DataFrame]:
    """Run ``app`` on the panel's data with its trained run; the tables it wrote (or returned)."""
    if app == "api":
        checkpoint = next((panel.run_dir / "checkpoints").glob("epoch_*.ckpt"))
        return {"predict": Forecaster.load(checkpoint).predict(panel.later, horizon=3)}
    if app == "train":
        output_dir = panel.run_dir
    else:
        function, overrides = {
            "evaluate": (evaluate, []),
            "predict": (predict, ["horizon=3", "window_predictions=true"]),
            "backtest": (backtest, ["stride=1"]),
        }[app]
        try:
            data = f"data.source.path={panel.later_path}"
            function(compose_config(app, output_dir, [f"run={panel.run_dir}", data, *overrides]))
        finally:
            GlobalHydra.instance().clear()
    return {path.name: pd.read_csv(path) for path in output_dir.glob("*.csv")}


@pytest.mark.slow
@pytest.mark.parametrize("app", ["train", "evaluate", "predict", "backtest", "api"])
def test_every_app_names_the_short_series_once_and_writes_no_row_for_them(
    app: str, panel: Panel, tmp_path: Path, warnings_logged: list[str]
) -> None:
    tables = run_app(app, panel, tmp_path)
    messages = panel.train_warnings if app == "train" else warnings_logged
    short = SHORT["train" if app == "train" else "later"]

    assert [m for m in messages if RULE in m] == [short_series_message(short, WINDOW)]
    for name in short:
        assert not [m for m in messages if repr(name) in m and RULE not in m], "named by a second warning"
    expected_tables = {
        "train": {"metrics_per_series.csv", "metrics_per_step.csv"},
        "evaluate": {"forecasts.csv", "metrics_per_series.csv", "metrics_per_step.csv"},
        "backtest": {"forecasts.csv", "metrics_per_series.csv", "metrics_per_step.csv"},
        "predict": {"forecast.csv", "predictions.csv"},
        "api": {"predict"},
    }[app]
    assert expected_tables <= set(tables)
    for name, table in tables.items():
        if "series" in table:
            assert set(table["series"].astype(str)) == set(LENGTHS) - set(short), name


@pytest.mark.slow
def test_a_series_left_out_of_training_is_named_when_a_later_file_makes_it_long(
    panel: Panel, warnings_logged: list[str]
) -> None:
    """The model never trained on "tiny" (it had no windows): in a file where it has 60 rows it is
    still not forecast, and the one line naming it says why."""
    later = pd.concat([panel.later[panel.later["series"] != "tiny"], long_table({"tiny": 60})])
    checkpoint = next((panel.run_dir / "checkpoints").glob("epoch_*.ckpt"))

    forecast = Forecaster.load(checkpoint).predict(later, horizon=3)

    assert set(forecast["series"]) == set(LENGTHS) - {"b", "tiny"}  # "b": 5 rows in the later file
    assert [m for m in warnings_logged if "'tiny'" in m] == [untrained_series_message(["tiny"])]
    assert [m for m in warnings_logged if RULE in m] == [short_series_message(["b"], WINDOW)]
