"""Set-up time and memory of a long-format panel: ``ForecastDataModule`` (``long_file``) on a ragged panel.

Writes a synthetic ragged panel to Parquet, then, in a fresh process (so the generator's memory does
not count), reads it with ``load_frame()`` (timed on its own) and runs ``setup()`` on the loaded frame:
the split, the per-series and extra-feature scalers, the padded scaled arrays and the window index.
Reports the set-up seconds and its peak memory *after the file was read*, against the bytes of the
rows' values as float32 (``rows x 4``), then gathers training batches.

Peak memory: right after the read, freed heap is handed back to the OS (``malloc_trim``), the RSS is
taken as the baseline and the kernel's high-water mark is reset (``echo 5 > /proc/self/clear_refs``
resets ``VmHWM`` to the current RSS); the peak of set-up is ``VmHWM`` after ``setup()`` minus that
baseline. Where ``clear_refs`` is not writable, a thread samples the RSS every millisecond instead
(which can miss short spikes). The machine's load average is printed with the result: a benchmark on
a loaded machine is not a result.

    .venv/bin/python scripts/bench_panel.py --series 500 --steps 200     # seconds
    .venv/bin/python scripts/bench_panel.py                              # 10,000 hourly series x 1,000
    .venv/bin/python scripts/bench_panel.py --m5                         # M5 scale, several GiB
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "scripts" / "results"

# M5 (Walmart unit sales): 30,490 item-store series of 1,941 days, every series ending on the last day.
M5 = {"series": 30_490, "steps": 1_941, "freq": "D", "mean_start": 60, "min_steps": 100}
# Daily data: hour is always 0; the long_csv default (hour, day_of_week, workday) becomes these.
CALENDAR = {"D": ["day_of_week", "workday", "month"], "h": ["hour", "day_of_week", "workday"]}


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


class PeakMeter:
    """Peak RSS from now on: the kernel's ``VmHWM`` after a reset, else a sampling thread."""

    def __init__(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            self.method = "VmHWM after clear_refs=5"
        except OSError:
            self.method = "RSS sampled every 1 ms"
        self.peak = rss_bytes()
        self._stop = threading.Event()
        if self.method.startswith("RSS"):
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, rss_bytes())

    def stop(self) -> int:
        if self.method.startswith("VmHWM"):
            return status_bytes("VmHWM")
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_bytes())


def trim_heap() -> None:
    """Hand freed heap back to the OS, so set-up cannot reuse the reader's freed pages unseen."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure(path: str, freq: str, window_size: int, batch_size: int, batches: int) -> dict:
    """In this process: read ``path``, set the datamodule up, gather batches; sizes in bytes."""
    import torch

    from lstm_forecast.data.datamodule import ForecastDataModule

    torch.set_num_threads(1)
    calendar = CALENDAR[freq]
    datamodule = ForecastDataModule(
        source={"kind": "long_file", "path": path, "static_columns": ["category"], "freq": freq},
        window_size=window_size,
        calendar_features=calendar,
    )
    start = time.perf_counter()
    frame = datamodule.load_frame()
    read_s = time.perf_counter() - start
    trim_heap()
    after_read = rss_bytes()
    meter = PeakMeter()
    start = time.perf_counter()
    datamodule.setup()
    setup_s = time.perf_counter() - start
    peak = meter.stop()
    after_setup = rss_bytes()

    arrays = datamodule.arrays
    array_bytes = sum(
        t.nbytes
        for t in (arrays.values, arrays.extras, arrays.block_start, getattr(arrays, "calendar", None))
        if t is not None
    )
    index_bytes = sum(w.targets.nbytes for w in datamodule.windows.values())
    windows = datamodule.windows["train"]
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(batches):
        batch = windows.gather(torch.randint(len(windows), (batch_size,), generator=generator))
    gather_s = (time.perf_counter() - start) / batches
    num_rows = frame.num_rows
    values_f32 = 4 * num_rows
    return {
        "num_series": datamodule.num_series,
        "num_rows": num_rows,
        "freq": freq,
        "num_windows": sum(len(w) for w in datamodule.windows.values()),
        "window_size": window_size,
        "calendar_features": calendar,
        "num_features": datamodule.num_features,
        "batch_shape": list(batch["x"].shape),
        "index_dtype": str(windows.targets.dtype),
        "read_s": read_s,
        "setup_s": setup_s,
        "gather_ms_per_batch": 1e3 * gather_s,
        "rss_after_read_bytes": after_read,
        "setup_peak_increase_bytes": peak - after_read,
        "setup_rss_increase_bytes": after_setup - after_read,
        "process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_method": meter.method + " (after malloc_trim)",
        "values_float32_bytes": values_f32,
        "peak_over_values_float32": (peak - after_read) / values_f32,
        "window_arrays_bytes": int(array_bytes),
        "window_index_bytes": int(index_bytes),
        "resident_over_values_float32": (array_bytes + index_bytes) / values_f32,
    }


def ragged_daily_table(
    num_series: int, steps: int, min_steps: int, mean_start: float, freq: str, seed: int = 0
):
    """M5-like long table: series start on random days (exponential, mean ``mean_start`` days, at most
    ``steps - min_steps``) and all end on the last day; intermittent Poisson counts with a weekly cycle."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    first = np.minimum(rng.exponential(mean_start, num_series).astype(np.int64), steps - min_steps)
    lengths = steps - first
    series = np.repeat(np.arange(num_series, dtype=np.int32), lengths)
    step = np.arange(len(series), dtype=np.int64)
    step -= np.repeat(np.cumsum(lengths) - lengths, lengths)
    step += first[series]
    level = 10 ** rng.uniform(-1, 2, num_series)
    weekly = 1 + 0.3 * np.sin(2 * np.pi * (step % 7) / 7)
    values = rng.poisson(level[series] * weekly).astype(np.float64)
    del weekly
    start = np.datetime64("2011-01-29", "ns")
    stamps = start + step * np.timedelta64(1, freq).astype("timedelta64[ns]")  # freq: D or h
    del step
    names = pd.Categorical.from_codes(series, [f"item_{i:05d}" for i in range(num_series)])
    category = pd.Categorical.from_codes(
        (np.arange(num_series) % 3)[series], ["FOODS", "HOBBIES", "HOUSEHOLD"]
    )
    return pd.DataFrame({"series": names, "timestamp": stamps, "value": values, "category": category})


def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m5", action="store_true", help="M5 scale: 30,490 daily series, up to 1,941 days")
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=1_000, help="rows of the longest series")
    parser.add_argument("--min-steps", type=int, default=None, help="rows of the shortest (default: --steps)")
    parser.add_argument("--freq", choices=sorted(CALENDAR), default="h")
    parser.add_argument("--mean-start", type=float, default=None, help="daily ragged starts: mean first day")
    parser.add_argument("--window-size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.freq, args.window_size, args.batch_size, args.batches)))
        return
    if args.m5:
        args.series, args.steps, args.freq = M5["series"], M5["steps"], M5["freq"]
        args.min_steps, args.mean_start = M5["min_steps"], M5["mean_start"]
    out = args.out or (
        RESULTS / "bench_panel_m5.json" if args.m5 else REPO_ROOT / "outputs" / "bench" / "bench_panel.json"
    )

    from lstm_forecast.data.long_source import synthetic_long_table
    from lstm_forecast.files import write_json

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "panel.parquet"
        start = time.perf_counter()
        if args.mean_start is not None:
            table = ragged_daily_table(
                args.series, args.steps, args.min_steps or args.steps, args.mean_start, args.freq
            )
        else:
            table = synthetic_long_table(
                args.series, args.steps, args.min_steps or args.steps, freq=args.freq, seed=0
            )
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
                f"--freq={args.freq}",
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
    result["load_average"] = load_average()
    write_json(out, result)
    mib = 2**20
    print(
        f"{result['num_series']:,} series ({result['freq']}), {result['num_rows']:,} rows, "
        f"{result['num_windows']:,} windows (W={result['window_size']}, F={result['num_features']}: "
        f"calendar {', '.join(result['calendar_features'])})\n"
        f"read {result['read_s']:.1f} s; set-up {result['setup_s']:.1f} s; "
        f"gather {result['gather_ms_per_batch']:.2f} ms per batch of {args.batch_size}\n"
        f"set-up peak after the read: {result['setup_peak_increase_bytes'] / mib:,.0f} MiB = "
        f"{result['peak_over_values_float32']:.2f}x the float32 values "
        f"({result['values_float32_bytes'] / mib:,.0f} MiB); resident after set-up "
        f"{result['setup_rss_increase_bytes'] / mib:,.0f} MiB (arrays + index "
        f"{result['resident_over_values_float32']:.2f}x; index {result['index_dtype']})\n"
        f"peak measured by {result['peak_method']}\n"
        f"load: {result['load_average']}\n"
        f"wrote {out}"
    )


if __name__ == "__main__":
    main()
