"""``scripts/accuracy.py``: the accuracy protocol, end to end, resumable, one cell at a time if asked.

Examples
--------
    python scripts/accuracy.py --list
    python scripts/accuracy.py --dry-run
    python scripts/accuracy.py --cell etth1:bilstm:h96
    python scripts/accuracy.py --report             # rewrite docs/accuracy*.md from the records
    python scripts/accuracy.py                      # every enabled cell, then docs/accuracy.md
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from lstm_forecast.cli.app import CONFIG_DIR, user_error_of
from lstm_forecast.data.sources import read_table, source_of_file
from lstm_forecast.errors import UserError
from lstm_forecast.evaluation.holdout import holdout_scores, naive_forecast
from lstm_forecast.files import write_table
from lstm_forecast.inference.checkpoints import load_model
from lstm_forecast.inference.predict import future_forecast
from lstm_forecast.training.protocol import (
    Cell,
    Protocol,
    Runners,
    estimated_seconds,
    fill_placeholders,
    load_protocol,
    read_record,
    run_cell,
    runs_left,
)
from lstm_forecast.training.protocol_report import write_pages
from lstm_forecast.training.run import train
from lstm_forecast.training.run_folder import write_run_info

PROTOCOL_FILE = Path(CONFIG_DIR) / "accuracy_protocol.yaml"
DATA_FILES = {
    "etth1": "../shared/data/ETTh1.csv",
    "m4_train": "../shared/data/m4_weekly_train.parquet",
    "m4_test": "../shared/data/m4_weekly_test.parquet",
}


def compose_run(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """``conf/<config_name>.yaml`` with ``overrides``, as Hydra would launch it into ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)  # ${hydra:...} and the run's overrides resolve as in the app
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def train_run(overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """One lstm-train run into ``run_dir``, in this process (the app's code without its wrapper)."""
    cfg = compose_run("train", overrides, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_info(run_dir, cfg)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    metrics, _ = train(cfg)
    return metrics


def past_end_scorer(files: dict[str, str]) -> Any:
    """``score(run_dir, cell)``: the run's best checkpoint forecasts ``cell.horizon`` steps past the end
    of the file it was trained on, as ``lstm-predict run=<run> horizon=H`` does; sMAPE and MASE
    against the cell's test file, and the naive forecast's beside them."""

    def score(run_dir: Path, cell: Cell) -> dict[str, float]:
        cfg = compose_run("predict", [f"run={run_dir}", f"horizon={cell.horizon}"], run_dir)
        loaded = load_model(cfg, source_for=source_of_file)
        forecast = future_forecast(cfg, loaded, cell.horizon)
        write_table(run_dir / "forecast.csv", forecast)
        history = read_table(str(loaded.datamodule.source["path"]))
        actuals = read_table(fill_placeholders(str(cell.test_file), cell, files))
        return {
            **holdout_scores(forecast, history, actuals, "test"),
            **holdout_scores(naive_forecast(history, actuals), history, actuals, "baseline/naive"),
        }

    return score


def chosen_cells(protocol: Protocol, cell_ids: list[str]) -> list[Cell]:
    """The cells named (each must be enabled), or every enabled cell."""
    if not cell_ids:
        return [cell for cell in protocol.cells if cell.enabled]
    cells = [protocol.cell(cell_id) for cell_id in cell_ids]
    for cell in cells:
        if not cell.enabled:
            raise UserError(
                f"cell {cell.id}: preset {cell.preset} is disabled in the protocol table; set "
                f"presets.{cell.preset}.enabled: true in {PROTOCOL_FILE.name} once its model is available"
            )
    return cells


def print_plan(protocol: Protocol, cells: list[Cell], records: Path, extra: list[str], dry_run: bool) -> None:
    """``--list``: every cell and its state; ``--dry-run``: what a run would train, and its cost."""
    total_runs, total_seconds = 0, 0.0
    max_epochs = next((int(o.split("=")[1]) for o in extra if o.startswith("trainer.max_epochs=")), 10)
    for cell in cells:
        record = read_record(records, cell)
        state = "disabled" if not cell.enabled else (record or {}).get("status", "pending")
        if not dry_run:
            print(f"{cell.id:32s} {state}")
            continue
        runs = runs_left(cell, protocol, record, extra)
        seconds = estimated_seconds(cell, runs, max_epochs)
        total_runs, total_seconds = total_runs + runs, total_seconds + seconds
        candidates = len(cell.candidates()) or 1
        print(
            f"{cell.id:32s} {state:9s} {candidates} candidates (seed {protocol.selection_seed}, validation "
            f"only) + {len(protocol.seeds)} seeds: {runs} runs left, about {seconds / 3600:.1f} CPU h"
        )
    if dry_run:
        print(
            f"total: {total_runs} training runs, about {total_seconds / 3600:.1f} CPU hours on one thread "
            f"(at most {max_epochs} epochs a run; early stopping often ends sooner)"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", action="append", default=[], help="a cell id (repeatable); default: all")
    parser.add_argument("--list", action="store_true", help="list every cell and its state")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its cost; train nothing")
    parser.add_argument("--report", action="store_true", help="only rewrite the pages from the records")
    parser.add_argument(
        "--override", action="append", default=[], help="extra lstm-train override, every run"
    )
    for name, default in DATA_FILES.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", default=default, help=f"data file (default {default})"
        )
    parser.add_argument("--protocol", default=str(PROTOCOL_FILE), help="the protocol table (YAML)")
    parser.add_argument("--records", default="docs/accuracy", help="folder of the cells' JSON records")
    parser.add_argument("--docs", default="docs", help="folder of accuracy.md and accuracy_selection.md")
    parser.add_argument("--runs", default="outputs/accuracy", help="folder of the training runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        protocol = load_protocol(args.protocol)
        records, files = Path(args.records), {name: getattr(args, name) for name in DATA_FILES}
        if args.list:
            print_plan(protocol, protocol.cells, records, args.override, dry_run=False)
            return 0
        if args.report:
            write_pages(protocol, records, Path(args.docs))
            print(f"tables: {Path(args.docs) / 'accuracy.md'}, {Path(args.docs) / 'accuracy_selection.md'}")
            return 0
        cells = chosen_cells(protocol, args.cell)
        print_plan(protocol, cells, records, args.override, dry_run=True)
        if args.dry_run:
            return 0
        runners = Runners(train=train_run, score_past_end=past_end_scorer(files), files=files)
        for cell in cells:
            record = run_cell(cell, protocol, runners, records, Path(args.runs), args.override)
            write_pages(protocol, records, Path(args.docs))
            print(f"{cell.id}: {record['result']}", flush=True)
    except Exception as error:
        user_error = user_error_of(error)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        return 2
    print(f"tables: {Path(args.docs) / 'accuracy.md'}, {Path(args.docs) / 'accuracy_selection.md'}")
    return 0
