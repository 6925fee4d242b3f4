"""Start-up benchmark: how long ``lstm-train`` takes to answer what needs the configs alone.

Each command runs as a whole process (``python -m lstm_forecast.train ARGS``), ``--repeats`` times;
the table gives the median and range of the wall times, with the load average before and after.
Commands: ``--help``, ``--cfg job`` and a rejected override (a misspelt key: one-line error with a
"did you mean", exit 2).

Run ``python scripts/bench_startup.py`` (about half a minute on 2 free cores); results go to
``scripts/results/bench_startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
COMMANDS = {
    "--help": (["--help"], 0),
    "--cfg job": (["--cfg", "job"], 0),
    "data.windw_size=3 (rejected)": (["data.windw_size=3"], 2),
}


def wall_time(args: list[str], expected_status: int) -> float:
    """Seconds for one ``python -m lstm_forecast.train args`` process, checked to exit as expected."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lstm_forecast.train", *args], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != expected_status:
        sys.exit(f"lstm-train {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_startup.json")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = {}
    for name, (command, status) in COMMANDS.items():
        wall_time(command, status)  # a first run fills the file caches
        times = [wall_time(command, status) for _ in range(args.repeats)]
        rows[name] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
    load_after = os.getloadavg()[0]
    print(f"load average {load_before:.2f} before, {load_after:.2f} after; {args.repeats} runs each")
    print("| `lstm-train` | median | range |\n| --- | ---: | ---: |")
    for name, row in rows.items():
        print(f"| `{name}` | {row['median_s']:.2f} s | {row['min_s']:.2f}-{row['max_s']:.2f} s |")
    report = {"load_before": load_before, "load_after": load_after, "repeats": args.repeats, "commands": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
