"""Data-path benchmark: our lazy windows against the method's materialised window array.

For each size (rows, series, extra features, window) it measures, in a fresh process per method,
the wall time and peak memory (peak resident set above what the process held before) of

* set-up: source rows -> scaled training data ready to batch; ours is ``ForecastDataModule.setup``
  (scaling + zero-padded arrays + window index sets), the method's is the same scaling followed by
  the blog's loop filling a ``[samples, window, 1 + extras + 1]`` float32 array;
* one epoch of training batches (batch 256, shuffled); ours from ``train_dataloader()`` (batched
  gather), the method's from a per-sample ``DataLoader(TensorDataset(X, Y), shuffle=True)``.

Both use the same training rows (the method's 95 % split, warm-up windows included) and the same
synthetic data with 4 calendar features as the extras. Where the materialised array would not fit
the memory budget (``--budget-gb``), the method runs on the first rows that fit and its time and
memory are extrapolated linearly in the number of windows (the loop and the array are both linear);
long baseline epochs are timed over ``--max-batches`` batches and extrapolated the same way. Every
extrapolated figure is flagged in the table and the JSON.

Run ``python scripts/bench_data.py`` (about 5 minutes on 2 free cores); results go to
``scripts/results/bench_data.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
# (rows, series, extra features, window) from the issue: ETTh1-sized, medium, large.
SIZES = [(17420, 7, 4, 96), (20000, 50, 4, 96), (50000, 100, 4, 168)]
CALENDAR = ["hour", "day_of_week", "month", "workday"]
BATCH_SIZE = 256
# The method's split_ratio: 95 % of the rows are training rows.
TRAIN_FRACTION = 0.95


def reset_peak_memory() -> int:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs``); return the current RSS in bytes."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return memory_kb("VmRSS") * 1024


def memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def peak_above(baseline: int) -> int:
    """Peak RSS since the last reset, minus ``baseline``, in bytes."""
    return memory_kb("VmHWM") * 1024 - baseline


def make_datamodule(rows: int, series: int, window: int):
    from lstm_forecast.data.datamodule import ForecastDataModule

    val = (1 - TRAIN_FRACTION) / 2
    return ForecastDataModule(
        source={"kind": "synthetic", "num_series": series, "num_rows": rows, "seed": 0},
        window_size=window,
        split={"train": TRAIN_FRACTION, "val": val, "test": val},
        calendar_features=CALENDAR,
        batch_size=BATCH_SIZE,
    )


def run_ours(rows: int, series: int, window: int, max_batches: int) -> dict:
    """Set-up and one full epoch through ForecastDataModule (the code training uses)."""
    warm = make_datamodule(300, 2, 8)  # first-call costs (imports, allocator, calendar) off the clock
    warm.setup("fit")
    for _ in warm.train_dataloader():
        pass
    datamodule = make_datamodule(rows, series, window)
    datamodule.load_frame()  # the source rows are the input of both methods
    baseline = reset_peak_memory()
    start = time.perf_counter()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    setup_s = time.perf_counter() - start
    setup_peak = peak_above(baseline)
    start = time.perf_counter()
    batches = windows = 0
    for batch in loader:
        batches += 1
        windows += batch["x"].shape[0]
    epoch_s = time.perf_counter() - start
    return {
        "setup_s": setup_s,
        "setup_peak_bytes": setup_peak,
        "epoch_s": epoch_s,
        "peak_bytes": peak_above(baseline),
        "windows": windows,
        "batches": batches,
        "extrapolated": False,
    }


def blog_training_arrays(source: np.ndarray, num_series: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The method's training arrays: a window of zeros slid over the rows, one sample per series and
    target row ``1 .. rows - 1``; features ``[series id, extras..., value]``, target the next value."""
    num_rows, num_extras = source.shape[0], source.shape[1] - num_series
    x = np.zeros(((num_rows - 1) * num_series, window, num_extras + 2), dtype=np.float32)
    y = np.zeros(((num_rows - 1) * num_series, 1), dtype=np.float32)
    for target_row in range(1, num_rows):
        start = max(0, target_row - window)
        filled = target_row - start
        for series in range(num_series):
            sample = (target_row - 1) * num_series + series
            x[sample, :, 0] = series + 1
            x[sample, window - filled :, 1 : 1 + num_extras] = source[start:target_row, num_series:]
            x[sample, window - filled :, -1] = source[start:target_row, series]
            y[sample, 0] = source[target_row, series]
    return x, y


def run_blog(rows: int, series: int, window: int, max_batches: int, budget_bytes: float) -> dict:
    """Scaling + the materialising loop + a per-sample DataLoader epoch, scaled up where needed."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from lstm_forecast.data.scaling import MinMaxScaler

    datamodule = make_datamodule(rows, series, window)
    datamodule.load_frame()
    num_train = round(rows * TRAIN_FRACTION)
    full_windows = (num_train - 1) * series
    bytes_per_window = window * (len(CALENDAR) + 2) * 4 + 4
    fitting_rows = int(budget_bytes / bytes_per_window / series) + 1
    used_rows = min(num_train, fitting_rows)
    used_windows = (used_rows - 1) * series
    scale = full_windows / used_windows

    warm_x, warm_y = blog_training_arrays(np.zeros((20, 3)), 2, 4)
    for _ in DataLoader(TensorDataset(torch.from_numpy(warm_x), torch.from_numpy(warm_y)), batch_size=8):
        pass
    baseline = reset_peak_memory()
    start = time.perf_counter()
    frame = datamodule.load_frame()  # series by series; the method's table is one row per step
    table = np.concatenate([frame.values.reshape(series, rows).T, datamodule.feature_table()[:rows]], axis=1)
    scaler = MinMaxScaler.fit(table[:num_train])
    source = scaler.transform(table[:used_rows])
    x, y = blog_training_arrays(source, series, window)
    dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True)
    setup_s = time.perf_counter() - start
    setup_peak = peak_above(baseline)
    start = time.perf_counter()
    batches = 0
    for _ in loader:
        batches += 1
        if batches == max_batches:
            break
    seconds_per_batch = (time.perf_counter() - start) / batches
    epoch_batches = -(-full_windows // BATCH_SIZE)
    return {
        "setup_s": setup_s * scale,
        "setup_peak_bytes": setup_peak * scale,
        "epoch_s": seconds_per_batch * epoch_batches,
        "peak_bytes": peak_above(baseline) * scale,
        "windows": full_windows,
        "batches": epoch_batches,
        "array_bytes": full_windows * bytes_per_window,
        "extrapolated": scale > 1 or batches < len(loader),
        "measured_windows": used_windows,
        "measured_batches": batches,
    }


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.child == "ours":
        result = run_ours(args.rows, args.series, args.window, args.max_batches)
    else:
        result = run_blog(args.rows, args.series, args.window, args.max_batches, args.budget_gb * 2**30)
    print(json.dumps(result))


def measure(method: str, size: tuple[int, int, int, int], args: argparse.Namespace) -> dict:
    rows, series, _, window = size
    command = [
        sys.executable,
        __file__,
        f"--child={method}",
        f"--rows={rows}",
        f"--series={series}",
        f"--window={window}",
        f"--threads={args.threads}",
        f"--max-batches={args.max_batches}",
        f"--budget-gb={args.budget_gb}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"error: the {method} run at {size} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def megabytes(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:,.1f} MB" if num_bytes < 2**30 else f"{num_bytes / 2**30:,.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,1,2", help="indices into SIZES to run (default all)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--budget-gb", type=float, default=3.0, help="largest baseline array to build")
    parser.add_argument("--max-batches", type=int, default=400, help="baseline batches timed per epoch")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_data.json")
    parser.add_argument("--child", choices=["ours", "blog"], help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--series", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--window", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    results = []
    header = (
        f"{'rows x series x extras, window':>32} | {'method':>6} | {'set-up':>9} | {'epoch':>9} | "
        f"{'peak memory':>12} | note"
    )
    print(header, "\n" + "-" * len(header), flush=True)
    for position in (int(i) for i in args.sizes.split(",")):
        size = SIZES[position]
        ours = measure("ours", size, args)
        blog = measure("blog", size, args)
        label = f"{size[0]} x {size[1]} x {size[2]}, {size[3]}"
        for method, result in (("ours", ours), ("blog", blog)):
            note = ""
            if result["extrapolated"]:
                note = (
                    f"extrapolated from {result['measured_windows']:,} windows, "
                    f"{result['measured_batches']} batches"
                )
            print(
                f"{label:>32} | {method:>6} | {result['setup_s']:8.2f}s | {result['epoch_s']:8.2f}s | "
                f"{megabytes(result['peak_bytes']):>12} | {note}",
                flush=True,
            )
        ratios = {
            "setup_time": blog["setup_s"] / ours["setup_s"],
            "epoch_time": blog["epoch_s"] / ours["epoch_s"],
            "peak_memory": blog["peak_bytes"] / max(ours["peak_bytes"], 1),
        }
        print(
            f"{'':>32} | ratio  | {ratios['setup_time']:8.0f}x | {ratios['epoch_time']:8.1f}x | "
            f"{ratios['peak_memory']:11.0f}x | blog / ours",
            flush=True,
        )
        results.append(
            {
                "rows": size[0],
                "series": size[1],
                "extras": size[2],
                "window": size[3],
                "ours": ours,
                "blog": blog,
                "ratio_blog_over_ours": ratios,
            }
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "batch_size": BATCH_SIZE,
        "threads": args.threads,
        "train_fraction": TRAIN_FRACTION,
        "budget_gb": args.budget_gb,
        "results": results,
    }
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results in {args.output}")


if __name__ == "__main__":
    main()
