"""Coverage and width of each interval calibration, scored from trained checkpoints with lstm-evaluate.

The methods differ only in scoring (``evaluation.calibration``, ``calibration_windows``,
``adaptive_step``), so each dataset's model is trained once and every method scores the same forecasts
of its test split. docs/intervals.md shows the table and the commands that trained the runs:

    .venv/bin/python scripts/interval_calibration.py --etth1-run outputs/intervals/etth1_h24 \\
        --drifted outputs/intervals/ETTh1_drifted.csv --m4-run outputs/intervals/m4_h13

``--drifted`` is the copy scripts/drift_etth1.py writes (ETTh1's test rows with noise added): the ETTh1
run's model scores it. Results: scripts/results/interval_calibration.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lstm_forecast.files import write_json

METHODS = {
    "split": ["evaluation.calibration=split", "evaluation.adaptive_step=0"],
    "split+adaptive": ["evaluation.calibration=split", "evaluation.adaptive_step=0.005"],
    "rolling 50": ["evaluation.calibration=rolling", "evaluation.calibration_windows=50"],
    "rolling 100": ["evaluation.calibration=rolling", "evaluation.calibration_windows=100"],
    "rolling 250": ["evaluation.calibration=rolling", "evaluation.calibration_windows=250"],
    "rolling 100+adaptive": [
        "evaluation.calibration=rolling",
        "evaluation.calibration_windows=100",
        "evaluation.adaptive_step=0.005",
    ],
}
KEYS = ("coverage@80", "coverage@95", "width@80", "width@95", "coverage@80_worst10", "coverage@95_worst10")


def score(run: str, method: list[str], data: str | None, folder: Path) -> dict[str, float]:
    """The test split's interval metrics of ``run`` under ``method`` (one lstm-evaluate)."""
    command = [
        sys.executable, "-m", "lstm_forecast.evaluate", f"run={run}", "evaluation.baselines=[]",
        "evaluation.tables=false", "forecasts_file=null", "num_threads=1", "drift.warn_share=null",
        f"hydra.run.dir={folder}", *method,
    ]  # fmt: skip
    if data is not None:
        command.append(f"data.source.path={Path(data).resolve()}")
    subprocess.run(command, check=True, capture_output=True)
    metrics = json.loads((folder / "metrics.json").read_text())
    return {key: metrics[f"test/{key}"] for key in KEYS} | {"mse_z": metrics["test/mse_z"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etth1-run", required=True, help="run folder of the ETTh1 h24 model")
    parser.add_argument("--drifted", required=True, help="the drifted ETTh1 copy (scripts/drift_etth1.py)")
    parser.add_argument("--m4-run", help="run folder of the M4 Weekly h13 model")
    parser.add_argument("--output", default="scripts/results/interval_calibration.json")
    args = parser.parse_args()
    datasets = {"etth1": (args.etth1_run, None), "etth1_drifted": (args.etth1_run, args.drifted)}
    if args.m4_run:
        datasets["m4_weekly"] = (args.m4_run, None)
    results: dict[str, dict[str, dict[str, float]]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for dataset, (run, data) in datasets.items():
            for name, method in METHODS.items():
                folder = Path(scratch) / f"{dataset}_{len(results.get(dataset, {}))}"
                results.setdefault(dataset, {})[name] = score(run, method, data, folder)
                row = results[dataset][name]
                print(dataset, name, {k: round(v, 4) for k, v in row.items()}, flush=True)
    write_json(
        args.output, {"methods": METHODS, "results": results, "seconds": time.perf_counter() - started}
    )
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
