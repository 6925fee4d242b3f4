"""The accuracy protocol: cells, selection on validation only, seed runs, resumable records.

The protocol table (``conf/accuracy_protocol.yaml``) is plain data: datasets, presets with their
grids, horizons and seeds. Each cell (dataset, preset, horizon[, window]) runs in two steps:

1. *selection*: every candidate of the preset's grid is trained once, with the selection seed and
   ``test_after_fit=false``, so the test split is neither scored nor read; the candidate with the
   lowest validation objective is selected (the first of equals, in grid order);
2. *seed runs*: the selected candidate is trained with each seed and scored on test; the record
   holds every seed's scores and their mean and standard deviation.

Every finished run is written to the cell's JSON record at once, keyed by its full override list,
so an interrupted cell resumes where it stopped and a finished one trains nothing on a rerun. The
training itself and the forecast past the end are passed in (:class:`Runners`), so this module
holds the protocol and its bookkeeping only.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lstm_forecast.errors import UserError, one_line_reason
from lstm_forecast.files import write_json

SCORE_KINDS = ("windows", "past_end")
# What a seed run reports, by the dataset's kind of score (the first two are the headline).
WINDOW_METRICS = (
    "test/mse_z",
    "test/mae_z",
    *(
        f"baseline/{name}/{metric}"
        for name in ("persistence", "seasonal_naive", "ridge")
        for metric in ("mse_z", "mae_z")
    ),
)
PAST_END_METRICS = ("test/smape", "test/mase", "baseline/naive/smape", "baseline/naive/mase")
CANDIDATE_METRICS = ("val/mse_z", "val/mae_z", "epochs")


@dataclass(frozen=True)
class Cell:
    """One row of the accuracy table: a preset on a dataset at a horizon (and window).

    ``overrides`` are templates: ``{horizon}`` and the data files' placeholders (``{etth1}``) are
    filled in when the runs start, so the records do not depend on where the data lies.
    """

    id: str
    dataset: str
    preset: str
    horizon: int
    window: int
    overrides: tuple[str, ...]
    grid: dict[str, list[Any]]
    objective: str
    score: str
    test_file: str | None = None
    seconds_per_epoch: float = 0.0
    default_window: int = 0
    enabled: bool = True
    # The preset this one ablates (its recurrent part made linear), compared in the report.
    ablation_of: str | None = None

    @property
    def file_name(self) -> str:
        return self.id.replace(":", ".") + ".json"

    def candidates(self) -> list[list[str]]:
        """Each combination of the grid as overrides, the grid's first key varying slowest."""
        keys = list(self.grid)
        return [
            [f"{key}={_override_value(value)}" for key, value in zip(keys, values, strict=True)]
            for values in itertools.product(*(self.grid[key] for key in keys))
        ]


def _override_value(value: Any) -> str:
    """A grid value as Hydra override text (``true``, not ``True``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Protocol:
    """Every cell of the protocol table, with the seeds."""

    cells: list[Cell]
    selection_seed: int
    seeds: tuple[int, ...]

    def cell(self, cell_id: str) -> Cell:
        for cell in self.cells:
            if cell.id == cell_id:
                return cell
        raise UserError(
            f"no cell {cell_id!r} in the protocol; --list shows every cell id (dataset:preset:hH)"
        )


def load_protocol(table: str | Path | dict[str, Any]) -> Protocol:
    """The protocol of a table (a YAML file or its content): one cell per dataset, preset, horizon and
    window (the dataset's default window, then the preset's extra ``windows`` for that dataset)."""
    if not isinstance(table, dict):
        table = yaml.safe_load(Path(table).read_text())
    cells = []
    for dataset, data in table["datasets"].items():
        if data["score"] not in SCORE_KINDS:
            raise UserError(
                f"dataset {dataset}: score must be one of {list(SCORE_KINDS)}, got {data['score']!r}"
            )
        for preset, spec in table["presets"].items():
            windows = [data["window"], *spec.get("windows", {}).get(dataset, [])]
            for horizon, window in itertools.product(data["horizons"], windows):
                variant = "" if window == data["window"] else f":w{window}"
                window_override = [] if not variant else [f"data.window_size={window}"]
                cells.append(
                    Cell(
                        id=f"{dataset}:{preset}:h{horizon}{variant}",
                        dataset=dataset,
                        preset=preset,
                        horizon=int(horizon),
                        window=int(window),
                        overrides=(*data["overrides"], *spec["overrides"], *window_override),
                        grid=dict(spec.get("grid") or {}),
                        objective=data.get("objective", "val/mse_z"),
                        score=data["score"],
                        test_file=data.get("test_file"),
                        # A preset's epoch costs `relative_cost` of the method's (seg_bilstm's far less).
                        seconds_per_epoch=float(data.get("seconds_per_epoch", 0.0))
                        * float(spec.get("relative_cost", 1.0)),
                        default_window=int(data["window"]),
                        enabled=bool(spec.get("enabled", True)),
                        ablation_of=spec.get("ablation_of"),
                    )
                )
    return Protocol(cells, int(table["selection_seed"]), tuple(int(s) for s in table["seeds"]))


TrainRun = Callable[[list[str], Path], dict[str, Any]]
ScorePastEnd = Callable[[Path, Cell], dict[str, float]]


@dataclass
class Runners:
    """How the protocol trains and scores: ``train(overrides, run_dir) -> metrics`` (an lstm-train run
    into ``run_dir``), and for ``past_end`` datasets ``score_past_end(run_dir, cell) -> metrics``.
    ``fill(template) -> str`` resolves the data files' placeholders."""

    train: TrainRun
    score_past_end: ScorePastEnd | None = None
    files: dict[str, str] = field(default_factory=dict)

    def fill(self, template: str, cell: Cell) -> str:
        return fill_placeholders(template, cell, self.files)


PLACEHOLDER = re.compile(r"\{([a-z0-9_]+)\}")


def fill_placeholders(template: str, cell: Cell, files: dict[str, str]) -> str:
    """``template`` with ``{horizon}`` and each ``{file}`` placeholder filled in (Hydra's own braces,
    ``{train:160,val:40}`` or ``${...}``, are left alone)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "horizon":
            return str(cell.horizon)
        if name not in files:
            raise UserError(
                f"cell {cell.id} needs the data file {{{name}}}; give it with --{name.replace('_', '-')} PATH"
            )
        return files[name]

    return PLACEHOLDER.sub(value, template)


def empty_record(cell: Cell, protocol: Protocol, extra: list[str]) -> dict[str, Any]:
    return {
        "id": cell.id,
        "dataset": cell.dataset,
        "preset": cell.preset,
        "horizon": cell.horizon,
        "window": cell.window,
        "objective": cell.objective,
        "score": cell.score,
        "overrides": list(cell.overrides),
        "extra_overrides": list(extra),
        "grid": cell.grid,
        "selection_seed": protocol.selection_seed,
        "seeds": list(protocol.seeds),
        "candidates": [],
        "seed_runs": [],
        "status": "started",
    }


def read_record(folder: Path, cell: Cell) -> dict[str, Any] | None:
    """The cell's record, or None."""
    path = folder / cell.file_name
    return json.loads(path.read_text()) if path.is_file() else None


def _finished(entries: list[dict[str, Any]], overrides: list[str]) -> dict[str, Any] | None:
    return next((entry for entry in entries if entry["overrides"] == overrides), None)


def _objective(entry: dict[str, Any], objective: str) -> float:
    value = entry.get("metrics", {}).get(objective)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.inf


def select(candidates: list[dict[str, Any]], objective: str) -> dict[str, Any]:
    """The candidate with the lowest validation ``objective``; the first of equals. Only validation
    metrics are stored for candidates, so there is nothing else to choose by."""
    best = min(candidates, key=lambda entry: _objective(entry, objective))
    if not math.isfinite(_objective(best, objective)):
        raise UserError(f"every candidate failed or diverged ({objective} not finite); see the selection log")
    return best


def summary(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value) over the seed runs."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "values": [float(v) for v in array]}


def _timed_run(
    runners: Runners, overrides: list[str], run_dir: Path
) -> tuple[dict[str, Any], float, str | None]:
    """Train into a fresh ``run_dir`` (a killed attempt's leftovers removed): metrics, seconds, failure."""
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    try:
        metrics, reason = runners.train(overrides, run_dir), None
    except Exception as error:  # one failed candidate must not stop the protocol
        metrics, reason = {}, one_line_reason(error)
    return metrics, round(time.perf_counter() - started, 1), reason


def run_cell(
    cell: Cell,
    protocol: Protocol,
    runners: Runners,
    records: Path,
    runs: Path,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """Select on validation, run the seeds, aggregate; write the record after every run. Runs already
    in the record (same overrides) are not trained again."""
    extra = list(extra or [])
    record = read_record(records, cell) or empty_record(cell, protocol, extra)
    previous = {"candidates": record.get("candidates", []), "seed_runs": record.get("seed_runs", [])}
    record = {**empty_record(cell, protocol, extra), "candidates": [], "seed_runs": []}
    base = [*cell.overrides, *extra]
    path = records / cell.file_name

    for number, candidate in enumerate(cell.candidates() or [[]]):
        overrides = [*base, *candidate, f"seed={protocol.selection_seed}", "test_after_fit=false"]
        entry = _finished(previous["candidates"], overrides)
        if entry is None:
            run_dir = runs / cell.id.replace(":", ".") / f"candidate_{number}"
            metrics, seconds, reason = _timed_run(
                runners, [runners.fill(o, cell) for o in overrides], run_dir
            )
            entry = {
                "candidate": candidate,
                "overrides": overrides,
                "metrics": {k: metrics[k] for k in (cell.objective, *CANDIDATE_METRICS) if k in metrics},
                "wall_s": seconds,
                "failed": reason,
            }
        record["candidates"].append(entry)
        write_json(path, record)

    selected = select(record["candidates"], cell.objective)
    record["selected"] = {
        "candidate": selected["candidate"],
        cell.objective: _objective(selected, cell.objective),
    }
    for seed in protocol.seeds:
        overrides = [*base, *selected["candidate"], f"seed={seed}"]
        if cell.score == "past_end":
            overrides.append("test_after_fit=false")  # the run's test split is not the benchmark's test
        entry = _finished(previous["seed_runs"], overrides)
        if entry is None:
            entry = _seed_run(
                cell, runners, overrides, runs / cell.id.replace(":", ".") / f"seed_{seed}", seed
            )
        record["seed_runs"].append(entry)
        write_json(path, record)

    failed = [entry for entry in record["seed_runs"] if entry["failed"]]
    if failed:
        record["status"] = "failed"
        write_json(path, record)
        raise UserError(f"cell {cell.id}: seed run {failed[0]['seed']} failed: {failed[0]['failed']}")
    keys = WINDOW_METRICS if cell.score == "windows" else PAST_END_METRICS
    runs_metrics = [entry["metrics"] for entry in record["seed_runs"]]
    record["result"] = {
        k: summary([m[k] for m in runs_metrics]) for k in keys if all(k in m for m in runs_metrics)
    }
    record["wall_s"] = round(sum(e["wall_s"] for e in (*record["candidates"], *record["seed_runs"])), 1)
    record["status"] = "complete"
    write_json(path, record)
    return record


def _seed_run(cell: Cell, runners: Runners, overrides: list[str], run_dir: Path, seed: int) -> dict[str, Any]:
    """One seed run of the selected candidate, scored on test (its own split or past the end)."""
    metrics, seconds, reason = _timed_run(runners, [runners.fill(o, cell) for o in overrides], run_dir)
    scores = {k: metrics[k] for k in (*WINDOW_METRICS, *CANDIDATE_METRICS) if k in metrics}
    if reason is None and cell.score == "past_end":
        if runners.score_past_end is None:
            raise UserError(f"cell {cell.id} forecasts past the end; give the protocol a past-end scorer")
        started = time.perf_counter()
        scores.update(runners.score_past_end(run_dir, cell))
        seconds = round(seconds + time.perf_counter() - started, 1)
    return {"seed": seed, "overrides": overrides, "metrics": scores, "wall_s": seconds, "failed": reason}


def runs_left(cell: Cell, protocol: Protocol, record: dict[str, Any] | None, extra: list[str]) -> int:
    """Trainings a run of the cell would start: candidates not yet in its record, and the seeds unless
    the record is complete for these overrides."""
    candidates = cell.candidates() or [[]]
    if record is None:
        return len(candidates) + len(protocol.seeds)
    base = [*cell.overrides, *extra]
    done = [entry["overrides"] for entry in record["candidates"]]
    left = sum(
        [*base, *c, f"seed={protocol.selection_seed}", "test_after_fit=false"] not in done for c in candidates
    )
    complete = record["status"] == "complete" and record["extra_overrides"] == extra
    return left + (0 if complete and not left else len(protocol.seeds))


def estimated_seconds(cell: Cell, runs: int, max_epochs: int) -> float:
    """Rough CPU time of ``runs`` trainings of the cell: ``seconds_per_epoch`` x epochs, scaled by the
    window (the BiLSTM's time grows linearly with it)."""
    return runs * cell.seconds_per_epoch * max_epochs * cell.window / max(cell.default_window, 1)
