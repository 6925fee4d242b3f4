"""A run end to end on M5-like panels of growing size: train, evaluate and predict, each phase's wall
time and peak memory.

For each size (a share of M5: 30,490 daily item-store series of up to 1,941 days, ragged starts, every
series ending on the last day; ``bench_panel.ragged_daily_table``) the panel is written to Parquet and
the apps run on it as a user runs them, each in a fresh process, with the default callbacks and logger:

1. ``lstm-train`` of ``seg_bilstm`` (window 56, horizon 28) for one epoch of ``--windows-per-epoch``
   sampled training windows, validated on a fixed sample of ``--val-windows``; then the best
   checkpoint is scored on every validation and test window (exact), as every run does;
2. ``lstm-evaluate run=<that run> forecasts_file=forecasts.parquet``: every test window, beside the
   baselines, its per-window forecasts written as Parquet (as CSV text they would be ~6 GB at full size);
3. ``lstm-predict run=<that run> horizon=28``: the 28 days after every series' end.

The split is the long-panel one, counted back from each series' end: the last ``--test-steps`` days
(84: 57 windows of 28 days per series, 1.7 M test windows at full size) are test, the ``--val-steps``
(28) before them validation; every series is scored on its last days, as in M5.

Each phase's wall time is the whole process, start-up included; its peak memory is the process's
high-water mark (``VmHWM``), read in the process itself when the app returns. The epoch's own wall
time is the run's ``time/epoch_s`` (TensorBoard). The load average is printed before and after: a
figure taken on a busy machine is not a result.

    .venv/bin/python scripts/bench_scale.py --sizes 0.01 0.02          # a minute: a check of the script
    .venv/bin/python scripts/bench_scale.py                            # 1/8, 1/4, 1/2 and full M5 size
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_panel import M5, load_average, ragged_daily_table, status_bytes

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "scripts" / "results"
GIB = 2**30
TARGETS = {"peak_rss_gib": 3.0, "epoch_ratio_full_to_eighth": 1.25, "predict_full_s": 60.0}


def run_phase(app: str, args: list[str], log: Path) -> dict:
    """``python -m lstm_forecast.<app> args`` in a fresh process; its wall time and peak RSS."""
    peak_file = log.with_suffix(".peak")
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.run(
            [sys.executable, __file__, "--phase", app, "--peak-file", str(peak_file), "--", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    wall = time.perf_counter() - start
    if process.returncode:
        tail = log.read_text()[-3000:]
        sys.exit(f"lstm-{app} failed (exit {process.returncode}); the end of its log {log}:\n{tail}")
    return {"wall_s": wall, "peak_rss_bytes": int(peak_file.read_text())}


def phase_child(app: str, peak_file: str, args: list[str]) -> None:
    """In the phase's own process: run the app as its console script does, then record ``VmHWM``."""
    sys.argv = [f"lstm-{app}", *args]
    code = 0
    try:
        runpy.run_module(f"lstm_forecast.{app}", run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    Path(peak_file).write_text(str(status_bytes("VmHWM")))
    sys.exit(code)


def epoch_seconds(run: Path) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(run / "tensorboard")).Reload()
    return float(scalars.Scalars("time/epoch_s")[-1].value)


def bench_size(share: float, args: argparse.Namespace, folder: Path) -> dict:
    num_series = max(1, round(M5["series"] * share))
    start = time.perf_counter()
    table = ragged_daily_table(num_series, M5["steps"], M5["min_steps"], M5["mean_start"], M5["freq"])
    path = folder / f"panel_{num_series}.parquet"
    table.to_parquet(path, index=False)
    num_rows = len(table)
    del table
    generate_s = time.perf_counter() - start
    run = folder / f"run_{num_series}"
    data = [
        "data=long_csv",
        f"data.source.path={path}",
        "data.source.static_columns=[category]",
        "data.source.freq=D",
        "data.calendar_features=[day_of_week,workday,month]",
        f"data.split={{val: {args.val_steps}, test: {args.test_steps}}}",
        f"data.window_size={args.window}",
        f"data.windows_per_epoch={args.windows_per_epoch}",
        f"data.val_windows={args.val_windows}",
    ]
    threads = [f"num_threads={args.threads}"]
    result: dict = {"share_of_m5": share, "num_series": num_series, "num_rows": num_rows}
    result["generate_s"] = generate_s
    print(f"{num_series:,} series, {num_rows:,} rows: training ...", flush=True)
    result["train"] = run_phase(
        "train",
        [
            *data,
            "model=seg_bilstm",
            f"model.horizon={args.horizon}",
            f"model.net.seg_len={args.seg_len}",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run}",
            *threads,
        ],
        folder / f"train_{num_series}.log",
    )
    metrics = json.loads((run / "metrics.json").read_text())
    result["train"]["epoch_s"] = epoch_seconds(run)
    result["train"]["val_windows_scored"] = metrics["val/num_targets"] // args.horizon
    result["train"]["test_windows_scored"] = metrics["test/num_targets"] // args.horizon
    result["train"]["test/mse_z"] = metrics["test/mse_z"]
    print(f"  train {result['train']['wall_s']:.1f} s; evaluating ...", flush=True)
    result["evaluate"] = run_phase(
        "evaluate",
        [f"run={run}", f"forecasts_file={args.forecasts_file}", f"hydra.run.dir={run}/evaluate", *threads],
        folder / f"eval_{num_series}.log",
    )
    evaluated = json.loads((run / "evaluate" / "metrics.json").read_text())
    test_windows = evaluated["test/num_targets"] // args.horizon
    result["evaluate"]["test_windows"] = test_windows
    result["evaluate"]["windows_per_s"] = test_windows / result["evaluate"]["wall_s"]
    print(f"  evaluate {result['evaluate']['wall_s']:.1f} s; predicting ...", flush=True)
    result["predict"] = run_phase(
        "predict",
        [f"run={run}", f"horizon={args.horizon}", f"hydra.run.dir={run}/predict", *threads],
        folder / f"predict_{num_series}.log",
    )
    result["predict"]["series_per_s"] = num_series / result["predict"]["wall_s"]
    print(f"  predict {result['predict']['wall_s']:.1f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--window", type=int, default=56)
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--seg-len", type=int, default=28, help="seg_bilstm segment (divides the window)")
    parser.add_argument("--val-steps", type=int, default=28, help="validation: days before the test days")
    parser.add_argument("--test-steps", type=int, default=84, help="test: each series' last days")
    parser.add_argument("--windows-per-epoch", type=int, default=51_200, help="200 batches of 256")
    parser.add_argument("--val-windows", type=int, default=8_192)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--forecasts-file",
        default="forecasts.parquet",
        help="lstm-evaluate's per-window forecasts (CSV text of 1.7 M windows x 28 steps is ~6 GB)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_scale.json")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--peak-file", help=argparse.SUPPRESS)
    parser.add_argument("app_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase_child(args.phase, args.peak_file, [a for a in args.app_args if a != "--"])
        return

    from lstm_forecast.files import write_json

    load_before = load_average()
    print(f"load before: {load_before}", flush=True)
    sizes = []
    with tempfile.TemporaryDirectory() as folder:
        for share in args.sizes:
            sizes.append(bench_size(share, args, Path(folder)))
    report = {
        "command": "scripts/bench_scale.py " + " ".join(sys.argv[1:]),
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("phase", "peak_file", "app_args", "out")
        },
        "cpu_count": os.cpu_count(),
        "load_before": load_before,
        "load_after": load_average(),
        "sizes": sizes,
        "targets": TARGETS,
    }
    print_table(report)
    if args.out:
        write_json(args.out, report)
        print(f"wrote {args.out}")


def print_table(report: dict) -> None:
    sizes = report["sizes"]
    print(f"\n{'series':>8} {'rows':>11} | {'phase':8} {'wall s':>7} {'peak GiB':>8} | detail")
    for size in sizes:
        for phase in ("train", "evaluate", "predict"):
            figures = size[phase]
            detail = {
                "train": f"epoch {figures.get('epoch_s', float('nan')):.1f} s",
                "evaluate": (
                    f"{figures.get('test_windows', 0):,} test windows, "
                    f"{figures.get('windows_per_s', 0):,.0f}/s"
                ),
                "predict": f"{size['num_series']:,} series x {report['settings']['horizon']} steps",
            }[phase]
            print(
                f"{size['num_series']:>8,} {size['num_rows']:>11,} | {phase:8} {figures['wall_s']:>7.1f} "
                f"{figures['peak_rss_bytes'] / GIB:>8.2f} | {detail}"
            )
    peak = max(size[phase]["peak_rss_bytes"] for size in sizes for phase in ("train", "evaluate", "predict"))
    epochs = np.array([size["train"]["epoch_s"] for size in sizes])
    print(f"\nlargest peak RSS of any phase: {peak / GIB:.2f} GiB (target <= {TARGETS['peak_rss_gib']})")
    print(f"epoch wall time, largest / smallest size: {epochs[-1] / epochs[0]:.2f}x")
    print(f"predict at the largest size: {sizes[-1]['predict']['wall_s']:.1f} s")
    print(f"load before: {report['load_before']}\nload after:  {report['load_after']}")


if __name__ == "__main__":
    main()
