"""Memory of a long-format panel: builds the datamodule on 10,000 series x 1,000 steps and gathers batches.

Writes a synthetic ragged panel to Parquet, then, in a fresh process (so the generator's memory does
not count), loads it with ``PanelDataModule``, runs ``setup`` and gathers training batches. Reports the
resident arrays and the process's peak memory against two baselines measured in the same run: the
long table's own bytes (series code, timestamp, value per row) and what materialised windows would
take (``windows x W x F`` float32).

    .venv/bin/python scripts/bench_panel.py                      # 10,000 x 1,000
    .venv/bin/python scripts/bench_panel.py --series 500 --steps 200   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(path: str, window_size: int, batch_size: int, batches: int) -> dict:
    """In this process: build the datamodule from ``path`` and gather batches; sizes in bytes."""
    import torch

    from lstm_forecast.data.panel import PanelDataModule

    torch.set_num_threads(1)
    baseline_rss = rss_bytes()
    start = time.perf_counter()
    datamodule = PanelDataModule(
        source={"kind": "long_file", "path": path, "static_columns": ["category"]},
        window_size=window_size,
        calendar_features=["hour", "day_of_week", "workday"],
    )
    datamodule.setup()
    setup_s = time.perf_counter() - start
    windows = datamodule.windows["train"]
    arrays = windows.arrays
    index_bytes = sum(w.targets.nbytes for w in datamodule.windows.values())
    array_bytes = arrays.values.nbytes + arrays.extras.nbytes + arrays.block_start.nbytes
    frame = datamodule.load_frame()
    frame_bytes = (
        frame.values.nbytes
        + frame.timestamps.nbytes
        + frame.offsets.nbytes
        + frame.extras.memory_usage().sum()
    )
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(batches):
        batch = windows.gather(torch.randint(len(windows), (batch_size,), generator=generator))
    gather_s = (time.perf_counter() - start) / batches
    num_rows = frame.num_rows
    num_windows = sum(len(w) for w in datamodule.windows.values())
    return {
        "num_series": datamodule.num_series,
        "num_rows": num_rows,
        "num_windows": num_windows,
        "window_size": window_size,
        "num_features": datamodule.num_features,
        "batch_shape": list(batch["x"].shape),
        "setup_s": setup_s,
        "gather_ms_per_batch": 1e3 * gather_s,
        "window_arrays_bytes": int(array_bytes),
        "window_index_bytes": int(index_bytes),
        "frame_bytes": int(frame_bytes),
        "rss_increase_bytes": rss_bytes() - baseline_rss,
        "peak_rss_increase_bytes": peak_rss_bytes() - baseline_rss,
        # Baselines: the long table itself (int32 series, int64 timestamp, float64 value per row) and
        # eagerly materialised float32 windows of the same sets.
        "long_table_bytes": num_rows * (4 + 8 + 8),
        "materialised_windows_bytes": num_windows * window_size * datamodule.num_features * 4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=1_000, help="rows of the longest series")
    parser.add_argument("--min-steps", type=int, default=None, help="rows of the shortest (default: --steps)")
    parser.add_argument("--window-size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "outputs" / "bench" / "bench_panel.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.window_size, args.batch_size, args.batches)))
        return

    from lstm_forecast.data.long_source import synthetic_long_table
    from lstm_forecast.files import write_json

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "panel.parquet"
        start = time.perf_counter()
        table = synthetic_long_table(args.series, args.steps, args.min_steps or args.steps, seed=0)
        table["category"] = table["category"].astype("category")
        table.to_parquet(path, index=False)
        del table
        generate_s = time.perf_counter() - start
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(path),
                f"--window-size={args.window_size}",
                f"--batch-size={args.batch_size}",
                f"--batches={args.batches}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if child.returncode:
        sys.exit(child.stderr)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result["generate_s"] = generate_s
    resident = result["window_arrays_bytes"] + result["window_index_bytes"]
    result["resident_bytes_per_row"] = resident / result["num_rows"]
    result["resident_over_long_table"] = resident / result["long_table_bytes"]
    result["peak_rss_over_long_table"] = result["peak_rss_increase_bytes"] / result["long_table_bytes"]
    result["materialised_over_resident"] = result["materialised_windows_bytes"] / resident
    write_json(args.out, result)
    mib = 2**20
    print(
        f"{result['num_series']} series, {result['num_rows']:,} rows, {result['num_windows']:,} windows "
        f"(W={result['window_size']}, F={result['num_features']})\n"
        f"setup {result['setup_s']:.1f} s; gather {result['gather_ms_per_batch']:.2f} ms per batch of "
        f"{args.batch_size}\n"
        f"resident windows: {resident / mib:.0f} MiB ({result['resident_bytes_per_row']:.1f} B/row, "
        f"{result['resident_over_long_table']:.2f}x the long table's "
        f"{result['long_table_bytes'] / mib:.0f} MiB)\n"
        f"peak memory increase: {result['peak_rss_increase_bytes'] / mib:.0f} MiB "
        f"({result['peak_rss_over_long_table']:.1f}x the long table)\n"
        f"materialised windows would take {result['materialised_windows_bytes'] / mib:,.0f} MiB "
        f"({result['materialised_over_resident']:.0f}x the lazy windows)\n"
        f"wrote {args.out}"
    )


if __name__ == "__main__":
    main()
