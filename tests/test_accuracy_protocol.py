"""The accuracy protocol end to end on tiny problems: selection on validation only (the test split is
never read while selecting), seed statistics, resuming without training, the M4-style forecast past
the end, and the published protocol table itself."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SHARED_DATA, TINY_MODEL
from lstm_forecast.cli import accuracy
from lstm_forecast.data.windows import Windows
from lstm_forecast.evaluation.holdout import holdout_scores, naive_forecast
from lstm_forecast.training.protocol import Runners, load_protocol, run_cell
from lstm_forecast.training.protocol_report import ablation_rows, progress_line, write_pages

ROWS, TEST_START = 240, 200  # per series: train 160, val 40, test 40 rows
TINY_RUN = [o for o in TINY_MODEL if not o.startswith(("model.net.num_units", "trainer.max_epochs"))]


def tiny_table(dataset: dict, grid: dict, seeds: list[int]) -> dict:
    """A protocol table of one dataset and one preset (``bilstm``) with ``grid``."""
    return {
        "selection_seed": 0,
        "seeds": seeds,
        "datasets": {"tiny": {"objective": "val/mse_z", **dataset}},
        "presets": {
            "bilstm": {"overrides": ["model=bilstm", *TINY_RUN, "trainer.max_epochs=1"], "grid": grid}
        },
    }


@pytest.fixture
def wide_file(tmp_path: Path) -> Path:
    """Three hourly series with a daily cycle, one column each: the layout of ETTh1."""
    rng = np.random.default_rng(0)
    step = np.arange(ROWS)
    table = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=ROWS, freq="h")})
    for number in range(3):
        table[f"s{number}"] = (
            10 * (number + 1) + np.sin(2 * np.pi * step / 24 + number) + rng.normal(0, 0.1, ROWS)
        )
    path = tmp_path / "wide.csv"
    table.to_csv(path, index=False)
    return path


class TrainingSpy:
    """Counts the trainings and records every target row gathered from any windows, per run kind."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs: list[list[str]] = []
        self.rows: dict[str, list[np.ndarray]] = {"selection": [], "seed": []}
        self._kind = "selection"
        gather = Windows.gather

        def spying_gather(windows: Windows, index: torch.Tensor) -> dict:
            batch = gather(windows, index)
            self.rows[self._kind].append(batch["target_row"].cpu().numpy())
            return batch

        monkeypatch.setattr(Windows, "gather", spying_gather)

    def train(self, overrides: list[str], run_dir: Path) -> dict:
        self.runs.append(overrides)
        self._kind = "selection" if run_dir.name.startswith("candidate") else "seed"
        return accuracy.train_run(overrides, run_dir)

    def test_rows_read(self, kind: str) -> int:
        rows = np.concatenate([np.zeros(0, dtype=np.int64), *self.rows[kind]])
        return int((rows % ROWS >= TEST_START).sum())  # wide data: series after series, ROWS each


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow  # four tiny trainings: ~10 s on an idle 2-core machine
def test_protocol_selects_on_validation_reports_seed_statistics_and_resumes(tmp_path, wide_file, monkeypatch):
    dataset = {
        "overrides": ["data=wide_file", "data.source.path={tiny}", "data.split={train:160,val:40,test:40}"],
        "horizons": [1],
        "window": 12,
        "score": "windows",
    }
    protocol = load_protocol(tiny_table(dataset, {"model.net.num_units": [4, 8]}, seeds=[1, 2]))
    (cell,) = protocol.cells
    assert cell.id == "tiny:bilstm:h1"
    spy = TrainingSpy(monkeypatch)
    runners = Runners(train=spy.train, files={"tiny": str(wide_file)})
    records, runs = tmp_path / "records", tmp_path / "runs"

    record = run_cell(cell, protocol, runners, records, runs)

    assert len(spy.runs) == 4
    # Selection never reads test: no test target gathered, no test metric written; the seed runs do both.
    assert spy.test_rows_read("selection") == 0
    assert spy.test_rows_read("seed") > 0
    for number in (0, 1):
        metrics = read_json(runs / "tiny.bilstm.h1" / f"candidate_{number}" / "metrics.json")
        assert not [key for key in metrics if key.startswith(("test/", "baseline/"))]
    # The record: every candidate with its validation score, the validation-best one selected.
    assert read_json(records / "tiny.bilstm.h1.json") == record
    assert record["status"] == "complete"
    assert [c["candidate"] for c in record["candidates"]] == [
        ["model.net.num_units=4"],
        ["model.net.num_units=8"],
    ]
    val = [c["metrics"]["val/mse_z"] for c in record["candidates"]]
    assert val[0] != val[1]
    assert record["selected"] == {
        "candidate": record["candidates"][int(np.argmin(val))]["candidate"],
        "val/mse_z": min(val),
    }
    # Mean and sample std of the seed runs' own metrics.json.
    seed_test = [
        read_json(runs / "tiny.bilstm.h1" / f"seed_{s}" / "metrics.json")["test/mse_z"] for s in (1, 2)
    ]
    assert [e["seed"] for e in record["seed_runs"]] == [1, 2]
    assert seed_test[0] != seed_test[1]
    assert record["result"]["test/mse_z"] == {
        "mean": pytest.approx(np.mean(seed_test)),
        "std": pytest.approx(np.std(seed_test, ddof=1)),
        "values": pytest.approx(seed_test),
    }
    assert set(record["result"]) >= {"test/mae_z", "baseline/persistence/mse_z", "baseline/ridge/mae_z"}

    # Resuming: a finished cell trains nothing and keeps its record.
    assert run_cell(cell, protocol, runners, records, runs) == record
    assert len(spy.runs) == 4

    # The page cites the row by its id, with mean ± std and the selected configuration.
    write_pages(protocol, records, tmp_path / "docs")
    page = (tmp_path / "docs" / "accuracy.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| `tiny:bilstm:h1`"))
    assert f"{np.mean(seed_test):.4f} ± {np.std(seed_test, ddof=1):.4f}" in row
    assert " ".join(record["selected"]["candidate"]) in row
    log = (tmp_path / "docs" / "accuracy_selection.md").read_text()
    assert log.count("**selected**") == 1


def test_protocol_forecasts_past_the_end_of_a_ragged_long_file(tmp_path, monkeypatch):
    """The M4 layout: ragged series ending together, selection on a validation tail of the training
    file, the seed run forecasting past its end through lstm-predict's code, scored on a held-out file."""
    rng = np.random.default_rng(1)
    end, horizon = pd.Timestamp("2024-01-10 23:00"), 3
    history, held_out = [], []
    for number, length in enumerate((60, 90, 120)):
        stamps = pd.date_range(end=end + horizon * pd.Timedelta("1h"), periods=length + horizon, freq="h")
        values = (
            5.0 * (number + 1)
            + np.sin(np.arange(length + horizon) / 4)
            + rng.normal(0, 0.05, length + horizon)
        )
        frame = pd.DataFrame({"series": f"s{number}", "timestamp": stamps, "value": values})
        history.append(frame.iloc[:length])
        held_out.append(frame.iloc[length:])
    train_file, test_file = tmp_path / "train.csv", tmp_path / "test.csv"
    pd.concat(history).to_csv(train_file, index=False)
    pd.concat(held_out).to_csv(test_file, index=False)
    dataset = {
        "overrides": [
            "data=long_csv",
            "data.source.path={train}",
            "data.split.val_start=2024-01-10 18:00",
            "data.split.test_start=2024-01-10 21:00",
            "model.horizon={horizon}",
        ],
        "horizons": [horizon],
        "window": 12,
        "score": "past_end",
        "test_file": "{test}",
    }
    protocol = load_protocol(tiny_table(dataset, {}, seeds=[1]))
    (cell,) = protocol.cells
    files = {"train": str(train_file), "test": str(test_file)}
    spy = TrainingSpy(monkeypatch)
    runners = Runners(train=spy.train, score_past_end=accuracy.past_end_scorer(files), files=files)

    record = run_cell(cell, protocol, runners, tmp_path / "records", tmp_path / "runs")

    assert len(spy.runs) == 2 and all("test_after_fit=false" in run for run in spy.runs)
    forecast = pd.read_csv(
        tmp_path / "runs" / "tiny.bilstm.h3" / "seed_1" / "forecast.csv", parse_dates=["timestamp"]
    )
    assert len(forecast) == 3 * horizon
    actuals, observed = pd.concat(held_out), pd.concat(history)
    expected = holdout_scores(forecast, observed, actuals, "test")
    naive = holdout_scores(naive_forecast(observed, actuals), observed, actuals, "baseline/naive")
    for key, value in {**expected, **naive}.items():
        assert record["result"][key]["mean"] == pytest.approx(value)
    assert expected["test/smape"] != naive["baseline/naive/smape"]


def test_naive_reference_on_m4_weekly_matches_the_m4_paper():
    train, test = SHARED_DATA / "m4_weekly_train.parquet", SHARED_DATA / "m4_weekly_test.parquet"
    if not (train.is_file() and test.is_file()):
        pytest.skip("M4 weekly data not present")
    history, actuals = pd.read_parquet(train), pd.read_parquet(test)
    scores = holdout_scores(naive_forecast(history, actuals), history, actuals, "naive")
    assert round(scores["naive/smape"], 3) == 9.161
    assert round(scores["naive/mase"], 3) == 2.777


def test_published_protocol_table_has_the_cells_docs_cite(capsys, tmp_path):
    protocol = load_protocol(accuracy.PROTOCOL_FILE)
    ids = {cell.id for cell in protocol.cells}
    for preset in (
        "bilstm",
        "bilstm_hybrid",
        "seg_bilstm",
        "seg_bilstm_linear",
        "bilstm_linear",
        "bilstm_hybrid_linear",
    ):
        assert {f"etth1:{preset}:h{h}" for h in (1, 96, 192, 336, 720)} <= ids
        assert f"m4-weekly:{preset}:h13" in ids
    assert {"etth1:seg_bilstm:h96:w336", "etth1:seg_bilstm:h720:w720"} <= ids
    assert protocol.seeds == (1, 2, 3) and protocol.selection_seed not in protocol.seeds

    # The plan of a cell with no record yet (an empty records folder): its grid, then the seeds.
    cell = next(cell for cell in protocol.cells if cell.id == "etth1:bilstm:h96")
    candidates = math.prod(len(values) for values in cell.grid.values())
    assert accuracy.main(["--dry-run", "--records", str(tmp_path), "--cell", "etth1:bilstm:h96"]) == 0
    plan = capsys.readouterr().out
    assert f"etth1:bilstm:h96                 pending   {candidates} candidates" in plan
    assert f"total: {candidates + len(protocol.seeds)} training runs" in plan
    assert accuracy.main(["--cell", "etth1:bilstm:h97"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: no cell 'etth1:bilstm:h97'")


def test_the_report_credits_the_lstm_only_beyond_two_seed_standard_deviations(tmp_path):
    table = {
        "selection_seed": 0,
        "seeds": [1, 2, 3],
        "datasets": {
            "tiny": {
                "objective": "val/mse_z",
                "score": "windows",
                "overrides": [],
                "horizons": [1, 2],
                "window": 8,
            }
        },
        "presets": {
            "net": {"overrides": []},
            "net_linear": {"overrides": [], "ablation_of": "net"},
        },
    }
    protocol = load_protocol(table)
    # (mean, std) of test/mse_z: at h1 the preset wins by 0.03 > 2 x 0.01; at h2 by the same 0.03, but
    # its own spread is 0.02 (the ablation's 0.001 alone would have credited it).
    scores = {
        "net:h1": (0.30, 0.01),
        "net_linear:h1": (0.33, 0.001),
        "net:h2": (0.30, 0.02),
        "net_linear:h2": (0.33, 0.001),
    }
    for cell in protocol.cells:
        mean, std = scores[cell.id.split(":", 1)[1]]
        record = {"status": "complete", "result": {"test/mse_z": {"mean": mean, "std": std, "values": []}}}
        (tmp_path / cell.file_name).write_text(json.dumps(record))

    rows = ablation_rows(protocol, tmp_path, "tiny")
    assert [(row["preset"], row["the LSTM's"]) for row in rows] == [
        ("`tiny:net:h1`", "yes"),
        ("`tiny:net:h2`", "no"),
    ]
    assert rows[1]["ablation - preset"] == "+0.0300" and rows[1]["2 x larger std"] == "0.0400"


def test_the_report_states_how_much_of_the_table_has_run(tmp_path):
    dataset = {
        "objective": "val/mse_z",
        "score": "windows",
        "overrides": [],
        "horizons": [1, 2, 3],
        "window": 8,
    }
    table = {
        "selection_seed": 0,
        "seeds": [1],
        "datasets": {"tiny": dataset},
        "presets": {"net": {"overrides": []}},
    }
    h1, h2, h3 = load_protocol(table).cells
    # h1 and h2 complete (their wall times add up), h3 started but not complete: it does not count.
    for cell, status, wall_s in ((h1, "complete", 5400), (h2, "complete", 1800), (h3, "selected", 900)):
        (tmp_path / cell.file_name).write_text(json.dumps({"status": status, "wall_s": wall_s}))
    line = progress_line([h1, h2, h3], tmp_path)
    assert line.startswith("2 of 3 cells complete, 2.0 h of training in all") and "cost of the rest" in line
    # A complete table has no rest to cost.
    assert progress_line([h1, h2], tmp_path).endswith(
        "2.0 h of training in all (the sum of their wall times)."
    )
