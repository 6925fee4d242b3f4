"""Every README job, run as written on a fresh long CSV and a wide CSV, does what the README says.

The commands are read from README.md's code blocks (so changing the README changes this test) and run
in order, in this process (each app's ``main`` with its argv), in an empty folder holding the files
they name. Only sizes (tiny data and networks, one epoch), the progress bar and model summary
switched off, and ``hydra.run.dir`` (each job its own folder) are appended; no feature is turned off.
``outputs/runs/train/<time>`` is the run trained last before the command in its own README section,
else the README's recipe for your data (see :func:`job_folders`). Each job's output is checked
against what the README claims of it; the jobs this test cannot run here are listed in ``NOT_RUN``
with the test that covers them, and every README command is either run or listed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_app
from test_readme_commands import PLACEHOLDERS, documented_commands

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
RUN_PLACEHOLDER = f"outputs/runs/train/{PLACEHOLDERS['<time>']}"
HORIZON = 24  # the README's forecasts: the next 24 steps

# Sizes only: a network and a fit small enough for seconds on 2 cores.
QUIET = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
TINY_SEGMENT_NET = [
    "model.net.num_units=8",
    "model.net.segment_dim=8",
    "model.net.embedding_dim=3",
    "model.net.position_dim=4",
]
TINY_METHOD_NET = ["model.net.num_units=8", "model.net.embedding_dim=3", "model.net.dense_size=8"]
TINY_SYNTHETIC = ["data.source.num_series=3", "data.source.num_rows=240", "data.window_size=12"]

# README commands not run here (their own hardware, data or launchers), each with the test covering it.
NOT_RUN = {
    "-m": "sweeps and cluster launches: tests/test_sweeps.py, tests/test_sweep_summary.py",
    "outputs/multiruns": "the sweep summary: tests/test_sweep_summary.py",
    "trainer=ddp": "4 GPUs: tests/test_ddp.py",
    "m5.parquet": "M5's size: tests/test_big_panels.py, scripts/bench_scale.py",
    "experiment=etth1": "the ETTh1 download: tests/test_accuracy_protocol.py",
}

# Long files: series of their own lengths and starts; 20 of them, as 95% intervals of a 24-step model
# need 19 validation windows and the long default's validation split holds one per series.
SERIES = [f"s{k:02d}" for k in range(20)]
LENGTHS = [130 + 3 * k for k in range(20)]
WIDE_SERIES = ["a", "b", "c"]


def long_table(names: dict[str, str], seed: int) -> pd.DataFrame:
    """Hourly series of their own lengths with a ``promo`` column that moves the value."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, (series, length) in enumerate(zip(SERIES, LENGTHS, strict=True)):
        start = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=5 * k)
        stamps = pd.date_range(start, periods=length, freq="h")
        promo = (rng.random(length) < 0.2).astype(float)
        value = 10.0 * (k + 1) + np.sin(np.arange(length) / 4) + 3 * promo + 0.1 * rng.standard_normal(length)
        parts.append(pd.DataFrame({"series": series, "timestamp": stamps, "value": value, "promo": promo}))
    return pd.concat(parts, ignore_index=True).rename(columns=names)


def future_promos(table: pd.DataFrame) -> pd.DataFrame:
    """The 24 hours after each series' end, with their ``promo`` values."""
    ends = table.groupby("series")["timestamp"].max()
    return pd.concat(
        pd.DataFrame(
            {
                "series": series,
                "timestamp": pd.date_range(end + pd.Timedelta(hours=1), periods=HORIZON, freq="h"),
                "promo": np.arange(HORIZON) % 2.0,
            }
        )
        for series, end in ends.items()
    )


def write_files(folder: Path) -> None:
    """The files the README's commands name: ``my.csv`` wide; the others long."""
    stamps = pd.date_range("2024-01-01", periods=400, freq="h")
    steps = np.arange(len(stamps))
    columns = {s: 5.0 * (k + 1) + np.sin(steps / (3 + k)) for k, s in enumerate(WIDE_SERIES)}
    wide = pd.DataFrame({"date": stamps, **columns})
    wide.to_csv(folder / "my.csv", index=False)
    long_table({}, 0).drop(columns="promo").to_csv(folder / "panel.csv", index=False)
    store_names = {"series": "store", "timestamp": "day", "value": "sales"}
    long_table(store_names, 1).to_parquet(folder / "sales.parquet", index=False)
    long_table(store_names, 2).to_csv(folder / "new.csv", index=False)  # new data of the sales layout
    sales = long_table({}, 3)
    sales.to_csv(folder / "sales.csv", index=False)
    future_promos(sales).to_csv(folder / "future_promos.csv", index=False)


def sizes(app: str, arguments: list[str]) -> list[str]:
    """Sizes appended to a README command: its network's, and the built-in data's when it reads no file."""
    if app != "train":
        return []
    network = TINY_SEGMENT_NET if "model=seg_bilstm" in arguments else TINY_METHOD_NET
    synthetic = not any(argument.startswith("data=") for argument in arguments)
    return [*network, *(TINY_SYNTHETIC if synthetic else []), *QUIET]


def readme_sections(folder: Path) -> list[list[tuple[str, list[str]]]]:
    """The README's commands, section by section (a section starts at a line in bold, ``**...``)."""
    sections = re.split(r"^(?=\*\*)", README.read_text(), flags=re.MULTILINE)
    commands = []
    for number, text in enumerate(sections):
        (folder / f"section{number}.md").write_text(text)
        commands.append(documented_commands(folder / f"section{number}.md"))
    return commands


def is_run(arguments: list[str]) -> bool:
    return not any(key in argument for key in NOT_RUN for argument in arguments)


@pytest.fixture(scope="module")
def job_folders(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, list[str], Path]]:
    """Run every README job in order; ``(app, arguments as written, its output folder)`` of each.

    A command's ``outputs/runs/train/<time>`` is the run trained last before it in its own section,
    else the last one of the section that trains on your data (the README's recipe for your data).
    """
    folder = tmp_path_factory.mktemp("readme_jobs")
    write_files(folder)
    recipe_run: Path | None = None
    done = []
    for section in readme_sections(folder):
        section_run = None
        for app, arguments in filter(lambda command: is_run(command[1]), section):
            output = folder / "outputs" / "runs" / app / f"job{len(done)}"
            run = section_run or recipe_run
            given = [a.replace(RUN_PLACEHOLDER, str(run)) for a in arguments]
            result = run_app(app, *given, *sizes(app, arguments), f"hydra.run.dir={output}", cwd=folder)
            assert result.returncode == 0, f"{app} {' '.join(arguments)}:\n{result.stderr[-3000:]}"
            if app == "train":
                section_run = output
            done.append((app, arguments, output))
        trains_on_a_file = any(app == "train" and "data.source.path=" in " ".join(a) for app, a in section)
        if trains_on_a_file and recipe_run is None:
            recipe_run = section_run
    return done


def jobs_with(job_folders: list, app: str, *fragments: str) -> list[Path]:
    return [
        output
        for job_app, arguments, output in job_folders
        if job_app == app and all(any(f in a for a in arguments) for f in fragments)
    ]


def test_every_readme_command_is_run_or_listed() -> None:
    commands = documented_commands(README)
    run = [(app, arguments) for app, arguments in commands if is_run(arguments)]
    assert {app for app, _ in run} == {"train", "predict", "evaluate", "backtest", "export"}
    for key in NOT_RUN:  # each still names a README command
        assert any(key in argument for _, arguments in commands for argument in arguments), key


def test_training_jobs_forecast_the_24_steps_they_are_used_for(job_folders: list) -> None:
    trained = jobs_with(job_folders, "train", "data.source.path=")
    assert len(trained) == 4  # wide, two long, future-known
    for run in trained:
        metrics = json.loads((run / "metrics.json").read_text())
        assert np.isfinite(metrics[f"test/mse_z@{HORIZON}"]), run
        assert f"test/mse_z@{HORIZON + 1}" not in metrics


def test_predict_writes_24_rows_per_series(job_folders: list) -> None:
    for output in jobs_with(job_folders, "predict", f"horizon={HORIZON}"):
        forecast = pd.read_csv(output / "forecast.csv")
        assert forecast["prediction"].notna().all(), output
        assert set(forecast["series"]) == set(SERIES), output
        steps = forecast.groupby("series")["step"].apply(list)
        assert all(s == list(range(1, HORIZON + 1)) for s in steps), output
        assert (output / "predictions.png").is_file()


def test_intervals_are_filled_at_every_step(job_folders: list) -> None:
    (output,) = jobs_with(job_folders, "predict", "intervals=")
    forecast = pd.read_csv(output / "forecast.csv")
    assert len(forecast) == HORIZON * len(SERIES)
    for level in (80, 95):
        lo, hi = forecast[f"lo-{level}"], forecast[f"hi-{level}"]
        assert lo.notna().all() and hi.notna().all(), level
        assert (lo <= forecast["prediction"]).all() and (forecast["prediction"] <= hi).all()
    assert (forecast["hi-95"] - forecast["lo-95"] >= forecast["hi-80"] - forecast["lo-80"]).all()


def test_evaluate_reproduces_the_runs_test_metrics(job_folders: list) -> None:
    (output,) = jobs_with(job_folders, "evaluate")
    evaluated = json.loads((output / "metrics.json").read_text())
    trained = json.loads((Path(evaluated["checkpoint"]).parents[1] / "metrics.json").read_text())
    test_keys = [key for key in trained if key.startswith("test/")]
    assert f"test/mse_z@{HORIZON}" in test_keys
    assert {key: evaluated[key] for key in test_keys} == {key: trained[key] for key in test_keys}


def test_backtest_scores_every_step_of_the_horizon(job_folders: list) -> None:
    (output,) = jobs_with(job_folders, "backtest")
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["backtest/horizon"] == HORIZON
    assert np.isfinite([metrics[f"backtest/mse_z@{h}"] for h in range(1, HORIZON + 1)]).all()
    forecasts = pd.read_csv(output / "forecasts.csv")
    assert forecasts["step"].max() == HORIZON
    assert forecasts.groupby(["series", "origin"]).size().eq(HORIZON).all()


def test_quantile_training_writes_coverage(job_folders: list) -> None:
    (run,) = jobs_with(job_folders, "train", "model.loss=quantile")
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test/coverage@80"] <= 1 and 0 <= metrics["test/coverage@95"] <= 1


def test_export_writes_the_model_files(job_folders: list) -> None:
    (onnx_job,) = [o for a, args, o in job_folders if a == "export" and not any("format=" in x for x in args)]
    assert (onnx_job / "model.onnx").stat().st_size > 0
    assert json.loads((onnx_job / "model.json").read_text())
    (torchscript_job,) = jobs_with(job_folders, "export", "format=torchscript")
    assert (torchscript_job / "model.pt").stat().st_size > 0


def test_csv_logger_writes_its_metrics(job_folders: list) -> None:
    (run,) = jobs_with(job_folders, "train", "logger=csv")
    assert list(run.rglob("metrics.csv"))
