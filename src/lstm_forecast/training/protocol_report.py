"""The accuracy protocol's pages: ``docs/accuracy.md`` (one row per cell, with an id docs cite) and
``docs/accuracy_selection.md`` (every candidate's validation score), written from the cells' records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from lstm_forecast.files import write_atomic
from lstm_forecast.training.protocol import Cell, Protocol, read_record
from lstm_forecast.training.sweeps import markdown_table

COMMAND = "make accuracy"
CELL_COMMAND = "make accuracy-cell CELL={id}"
# Columns of each kind of score: (heading, result key).
WINDOW_COLUMNS = (
    ("test MSE (z)", "test/mse_z"),
    ("test MAE (z)", "test/mae_z"),
    ("persistence MSE / MAE", "baseline/persistence"),
    ("seasonal naive MSE / MAE", "baseline/seasonal_naive"),
    ("ridge MSE / MAE", "baseline/ridge"),
)
PAST_END_COLUMNS = (
    ("test sMAPE", "test/smape"),
    ("test MASE", "test/mase"),
    ("naive sMAPE / MASE", "baseline/naive"),
)


def _mean_std(result: dict[str, Any], key: str, digits: int = 3) -> str:
    if key not in result:
        return ""
    return f"{result[key]['mean']:.{digits}f} ± {result[key]['std']:.{digits}f}"


def _pair(result: dict[str, Any], prefix: str, first: str, second: str) -> str:
    """A baseline's two scores (the same for every seed: its mean)."""
    if f"{prefix}/{first}" not in result:
        return ""
    return f"{result[f'{prefix}/{first}']['mean']:.3f} / {result[f'{prefix}/{second}']['mean']:.3f}"


def _score_cells(cell: Cell, result: dict[str, Any]) -> list[str]:
    if cell.score == "windows":
        return [
            _mean_std(result, "test/mse_z", digits=4),
            _mean_std(result, "test/mae_z", digits=4),
            *(_pair(result, key, "mse_z", "mae_z") for _, key in WINDOW_COLUMNS[2:]),
        ]
    return [
        _mean_std(result, "test/smape"),
        _mean_std(result, "test/mase"),
        _pair(result, "baseline/naive", "smape", "mase"),
    ]


def cell_row(cell: Cell, record: dict[str, Any] | None) -> dict[str, str]:
    """The table row of a cell: pending, disabled or its results."""
    columns = WINDOW_COLUMNS if cell.score == "windows" else PAST_END_COLUMNS
    row = {"id": f"`{cell.id}`", "preset": cell.preset, "horizon": cell.horizon, "window": cell.window}
    complete = record is not None and record["status"] == "complete"
    if not complete:
        status = "disabled" if not cell.enabled else (record or {}).get("status", "pending")
        row.update({"selected (validation)": status, cell.objective: ""})
        row.update({heading: "" for heading, _ in columns})
        row.update({"seeds": "", "wall time": "", "command": f"`{CELL_COMMAND.format(id=cell.id)}`"})
        return row
    selected = " ".join(record["selected"]["candidate"]) or "(no grid)"
    row["selected (validation)"] = f"`{selected}`"
    row[cell.objective] = f"{record['selected'][cell.objective]:.4f}"
    row.update(zip((h for h, _ in columns), _score_cells(cell, record["result"]), strict=True))
    row["seeds"] = ",".join(str(s) for s in record["seeds"])
    seconds = record["wall_s"]
    row["wall time"] = f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"
    row["command"] = f"`{CELL_COMMAND.format(id=cell.id)}`"
    return row


def ablation_rows(protocol: Protocol, records: Path, dataset: str) -> list[dict[str, str]]:
    """What the recurrent part adds: each complete ablation cell of ``dataset`` beside its preset's
    cell at the same horizon and window, by the headline score (lower is better). A result counts as
    the LSTM's when the preset beats its ablation by more than two seed standard deviations, the
    larger of the two cells' (so neither cell's spread hides in the other's)."""
    cells = {cell.id: cell for cell in protocol.cells if cell.dataset == dataset}
    rows = []
    for ablation in cells.values():
        if ablation.ablation_of is None:
            continue
        suffix = ablation.id.split(":", 2)[2]  # hH[:wW]
        preset = cells.get(f"{dataset}:{ablation.ablation_of}:{suffix}")
        if preset is None:
            continue
        pair = [read_record(records, cell) for cell in (preset, ablation)]
        if not all(record and record["status"] == "complete" for record in pair):
            continue
        key = "test/mse_z" if preset.score == "windows" else "test/smape"
        (lstm, linear) = (record["result"][key] for record in pair)
        margin = linear["mean"] - lstm["mean"]
        threshold = 2 * max(lstm["std"], linear["std"])
        rows.append(
            {
                "preset": f"`{preset.id}`",
                "ablation": f"`{ablation.id}`",
                "score": key,
                "preset's": f"{lstm['mean']:.4f} ± {lstm['std']:.4f}",
                "ablation's": f"{linear['mean']:.4f} ± {linear['std']:.4f}",
                "ablation - preset": f"{margin:+.4f}",
                "2 x larger std": f"{threshold:.4f}",
                "the LSTM's": "yes" if margin > threshold else "no",
            }
        )
    return rows


def progress_line(cells: list[Cell], records: Path) -> str:
    """How much of the table ``cells`` has run: complete cells and the sum of their wall times."""
    enabled = [cell for cell in cells if cell.enabled]
    complete = [
        record
        for record in (read_record(records, cell) for cell in enabled)
        if record and record["status"] == "complete"
    ]
    hours = sum(record["wall_s"] for record in complete) / 3600
    line = (
        f"{len(complete)} of {len(enabled)} cells complete, "
        f"{hours:.1f} h of training in all (the sum of their wall times)"
    )
    if len(complete) == len(enabled):
        return f"{line}."
    return f"{line}; the cost of the rest: `{COMMAND} ARGS=--dry-run`."


def accuracy_page(protocol: Protocol, records: Path) -> str:
    """``docs/accuracy.md``: per dataset, one row per cell."""
    lines = [
        "# Accuracy: the protocol table",
        "",
        "Generated by `scripts/accuracy.py` from the records in `docs/accuracy/`; do not edit by hand. "
        "How each number is made: [accuracy_protocol.md](accuracy_protocol.md); every candidate's "
        "validation score: [accuracy_selection.md](accuracy_selection.md). Cite a row by its id "
        "(e.g. `etth1:bilstm:h96`). Selected on validation only, the test split unread during selection; "
        "test scores are the mean ± sample standard deviation over the seed runs of the selected "
        "configuration; the baselines are scored on the same targets. Wall time: every training of the "
        "cell (selection and seeds) on the machine that ran it.",
        "",
        f"All cells: `{COMMAND}`; one cell: `{CELL_COMMAND.format(id='<id>')}`.",
        "",
    ]
    for dataset in dict.fromkeys(cell.dataset for cell in protocol.cells):
        cells = [cell for cell in protocol.cells if cell.dataset == dataset]
        rows = [cell_row(cell, read_record(records, cell)) for cell in cells]
        extras = {
            tuple(record["extra_overrides"])
            for record in (read_record(records, cell) for cell in cells)
            if record and record["extra_overrides"]
        }
        lines += [
            f"## {dataset}",
            "",
            progress_line(cells, records),
            "",
            markdown_table(pd.DataFrame(rows)).rstrip(),
            "",
        ]
        for extra in sorted(extras):
            lines += [f"Some rows ran with the extra overrides `{' '.join(extra)}` (see their records).", ""]
        ablations = ablation_rows(protocol, records, dataset)
        if ablations:
            lines += [
                f"### {dataset}: what the LSTM adds",
                "",
                "Each preset beside its ablation (the recurrent part replaced by a linear map of the same "
                "inputs), same horizon and window. The result is the LSTM's when the preset beats its "
                "ablation by more than two seed standard deviations (the larger of the two).",
                "",
                markdown_table(pd.DataFrame(ablations)).rstrip(),
                "",
            ]
    return "\n".join(lines)


def selection_page(protocol: Protocol, records: Path) -> str:
    """``docs/accuracy_selection.md``: every candidate of every cell run so far, selected one marked."""
    lines = [
        "# Accuracy: the selection log",
        "",
        "Every candidate of every cell, trained once with the selection seed and scored on validation "
        "only (`test_after_fit=false`: the test split is not read). Generated by `scripts/accuracy.py`.",
        "",
    ]
    for cell in protocol.cells:
        record = read_record(records, cell)
        if record is None or not record["candidates"]:
            continue
        chosen = (record.get("selected") or {}).get("candidate")
        lines += [
            f"## `{cell.id}`",
            "",
            f"| candidate | {cell.objective} | val/mae_z | epochs | wall s | |",
            "|---|---|---|---|---|---|",
        ]
        for entry in record["candidates"]:
            metrics = entry["metrics"]
            mark = f"failed: {entry['failed']}" if entry["failed"] else ""
            mark = "**selected**" if entry["candidate"] == chosen else mark
            lines.append(
                "| `{}` | {} | {} | {} | {} | {} |".format(
                    " ".join(entry["candidate"]) or "(no grid)",
                    _number(metrics.get(cell.objective)),
                    _number(metrics.get("val/mae_z")),
                    metrics.get("epochs", ""),
                    entry["wall_s"],
                    mark,
                )
            )
        lines.append("")
    return "\n".join(lines)


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else ""


def write_pages(protocol: Protocol, records: Path, docs: Path) -> list[Path]:
    """Write ``accuracy.md`` and ``accuracy_selection.md`` into ``docs``, each atomically."""
    written = []
    for name, text in (
        ("accuracy.md", accuracy_page(protocol, records)),
        ("accuracy_selection.md", selection_page(protocol, records)),
    ):
        written.append(write_atomic(docs / name, lambda tmp, text=text: tmp.write_text(text)))
    return written
