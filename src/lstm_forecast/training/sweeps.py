"""Sweep bookkeeping: a record per job, a summary table per sweep folder, and the Hydra callback.

Every job of a multirun writes ``job.json`` into its folder (overrides, status, one-line reason,
wall time, objective); :func:`write_summary` reads those and each job's ``metrics.json`` into
``summary.csv`` and ``summary.md``, one row per job, best objective first, without test scores
unless asked for (``show_test``): a sweep selects on validation, and test columns beside the
objective invite choosing by them. The Hydra callback
:class:`SweepSummaryCallback` calls it when a multirun ends; ``lstm-summarize`` calls it on
an existing sweep folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lstm_forecast.errors import UserError
from lstm_forecast.files import write_atomic, write_json

if TYPE_CHECKING:
    import pandas as pd

JOB_FILE = "job.json"
FAILED_FILE = "FAILED"
METRICS_FILE = "metrics.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
DEFAULT_OBJECTIVE = "val/mse_z"
# Metrics shown in the summary besides the objective (and, with show_test, every ``test/...`` metric).
SUMMARY_METRICS = ("epochs", "val/loss_best")


class JobRecord:
    """``job.json`` of one run or sweep job, written when the job starts and again when it ends.

    A job killed before it ends (out of memory, cancelled) keeps ``status: running``; the summary
    reports it as ``incomplete``.
    """

    def __init__(self, output_dir: str | Path, job_num: int | None, overrides: list[str], objective: str):
        self.path = Path(output_dir) / JOB_FILE
        self.started = time.perf_counter()
        self.fields: dict[str, Any] = {
            "job_num": job_num,
            "overrides": list(overrides),
            "objective": objective,
            "status": "running",
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json(self.path, self.fields)

    def finish(self, status: str, reason: str | None = None, objective_value: float | None = None) -> None:
        """Record the end of the job: ``completed`` or ``failed`` (with its one-line ``reason``)."""
        self.fields.update(
            status=status,
            reason=reason,
            objective_value=objective_value,
            wall_time_s=round(time.perf_counter() - self.started, 3),
        )
        if self.path.parent.exists():  # a failed single run may have removed its folder
            write_json(self.path, self.fields)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _job_folders(sweep_dir: Path) -> list[Path]:
    """Folders of the sweep's jobs: those holding a job record or a Hydra config."""
    folders = [
        path
        for path in sweep_dir.iterdir()
        if path.is_dir() and ((path / JOB_FILE).is_file() or (path / ".hydra" / "overrides.yaml").is_file())
    ]
    return sorted(
        folders, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)
    )


def _job_row(folder: Path) -> dict[str, Any]:
    record = _read_json(folder / JOB_FILE)
    metrics = _read_json(folder / METRICS_FILE)
    overrides = record.get("overrides")
    if overrides is None and (folder / ".hydra" / "overrides.yaml").is_file():
        overrides = OmegaConf.to_container(OmegaConf.load(folder / ".hydra" / "overrides.yaml"))
    status = record.get("status")
    reason = record.get("reason")
    if status in (None, "running"):
        if (folder / FAILED_FILE).is_file():
            status = "failed"
            reason = next(iter((folder / FAILED_FILE).read_text().splitlines()), "")
        elif metrics and status is None:
            status = "completed"
        else:
            status = "incomplete"
            reason = reason or "no result: the job was stopped or is still running"
    row = {
        "job": folder.name,
        "status": status,
        "overrides": list(overrides or []),
        "objective": record.get("objective") or DEFAULT_OBJECTIVE,
        "wall_time_s": record.get("wall_time_s"),
        "reason": reason or "",
    }
    row.update({k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    return row


def summarize_sweep(sweep_dir: str | Path, show_test: bool = False) -> pd.DataFrame:
    """One row per job of ``sweep_dir``, best objective first, failed and incomplete jobs last.

    Columns: ``job`` (its folder), ``status``, ``overrides`` (those not shared by every job; the
    shared ones are in ``attrs["common_overrides"]``), ``epochs``, ``val/loss_best``, the
    objective when it is another metric, ``wall_time_s``, ``reason``; with ``show_test``, every
    ``test/...`` metric after the objective. The ranking is by the objective either way.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(
            f"no sweep folder at {sweep_dir}; give the folder of a multirun (outputs/multiruns/...)"
        )
    rows = [_job_row(folder) for folder in _job_folders(sweep_dir)]
    if not rows:
        raise UserError(
            f"{sweep_dir} holds no job folders (each has job.json or .hydra/overrides.yaml); "
            "give the folder of a multirun"
        )
    # Overrides shared by every job (the tiny-data settings of a test, say) go to the heading.
    common = set.intersection(*(set(row["overrides"]) for row in rows)) if len(rows) > 1 else set()
    common_overrides = [o for o in rows[0]["overrides"] if o in common]
    for row in rows:
        row["overrides"] = " ".join(o for o in row["overrides"] if o not in common)
    import pandas as pd  # here, not at import: the apps' start-up (--help) stays light

    table = pd.DataFrame(rows)
    objective = table["objective"].mode().iloc[0]
    test_columns = (
        sorted(c for c in table.columns if c.startswith("test/") and c != "test/num_targets")
        if show_test
        else []
    )
    metric_columns = [c for c in (*SUMMARY_METRICS, objective, *test_columns) if c in table.columns]
    columns = ["job", "status", "overrides", *dict.fromkeys(metric_columns), "wall_time_s", "reason"]
    table = table.reindex(columns=columns)
    if objective in table.columns:
        completed = table["status"].eq("completed")
        key = table[objective].where(completed & table[objective].map(_is_finite), math.inf)
        table = table.assign(_key=key).sort_values("_key", kind="stable").drop(columns="_key")
    table = table.reset_index(drop=True)
    table.attrs.update(objective=objective, common_overrides=common_overrides)
    return table


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _markdown_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: pd.DataFrame) -> str:
    """``table`` as a GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_markdown_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: str | Path, show_test: bool = False) -> pd.DataFrame:
    """Write ``summary.csv`` and ``summary.md`` into ``sweep_dir``; return the table.

    ``show_test`` adds the test metrics (:func:`summarize_sweep`): for a finished sweep, once the
    objective has chosen.
    """
    sweep_dir = Path(sweep_dir)
    table = summarize_sweep(sweep_dir, show_test)
    counts = table["status"].value_counts()
    heading = (
        f"# Sweep summary\n\n{len(table)} jobs: "
        + ", ".join(f"{n} {status}" for status, n in counts.items())
        + f". Sorted by {table.attrs['objective']} (lower is better).\n\n"
    )
    if table.attrs["common_overrides"]:
        heading += "Overrides of every job: `" + " ".join(table.attrs["common_overrides"]) + "`\n\n"
    write_atomic(sweep_dir / SUMMARY_CSV, lambda tmp: table.to_csv(tmp, index=False))
    write_atomic(sweep_dir / SUMMARY_MD, lambda tmp: tmp.write_text(heading + markdown_table(table)))
    return table


def sqlite_storage_path(storage: Any) -> Path | None:
    """The database file of an ``sqlite:///path`` storage URL (relative to the working directory)."""
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        return Path(storage.removeprefix("sqlite:///"))
    return None


class SweepSummaryCallback(Callback):
    """Hydra callback: prepares an Optuna study's SQLite folder, summarises the sweep as it goes and
    when it ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        storage = OmegaConf.select(config, "hydra.sweeper.storage", default=None)
        database = sqlite_storage_path(storage)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        """Refresh the summary after each job, so a long sweep can be followed (and one that
        aborts, e.g. an Optuna study whose every trial failed, still leaves its summary)."""
        mode = OmegaConf.select(config, "hydra.mode")
        if getattr(mode, "name", mode) != RunMode.MULTIRUN.name:
            return
        # The job's parent, when it is the sweep folder (it holds multirun.yaml): `${now:...}`
        # in hydra.sweep.dir would re-resolve in a launcher's worker process.
        sweep_dir = Path(config.hydra.runtime.output_dir).parent
        if (sweep_dir / "multirun.yaml").is_file():
            with contextlib.suppress(UserError, OSError):
                write_summary(sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            table = write_summary(sweep_dir)
        except UserError as error:
            print(f"no sweep summary: {error}")
            return
        failed = int(table["status"].ne("completed").sum())
        print(
            f"Sweep summary of {len(table)} jobs ({failed} not completed): {sweep_dir / SUMMARY_MD}",
            flush=True,
        )
