"""Cost of one training step against the window length, for docs/models.md's table.

For each (network, window, horizon) row: the preset's pure training step (forward, its loss, backward,
clipping, its own Adam; ``bench_train.train_step``) on one fixed batch of ETTh1-sized synthetic data
(7 series, 17420 hourly rows, 4 calendar features, the 8640-row training split), batch 256, on
``--threads`` threads, best of ``--rounds``. Also the implied seconds per training epoch (steps per
epoch times the step) and the load average before and after: compare rows within one run only.

Run ``python scripts/bench_windows.py`` on an otherwise idle machine; results go to
``scripts/results/bench_windows.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from hydra.core.global_hydra import GlobalHydra

from bench_train import (
    DATA_OVERRIDES,
    RESULTS,
    RUN_OVERRIDES,
    compose_config,
    load_average,
    our_step_parts,
    train_step,
)
from lstm_forecast.training.run import build

# (preset, window, horizon, extra overrides): the method at the published window, then seg_bilstm
# at the three window lengths it supports (seg_len 24 divides them) and the longest horizon.
ROWS = (
    ("bilstm", 96, 96, []),
    ("seg_bilstm", 96, 96, []),
    ("seg_bilstm", 336, 96, []),
    ("seg_bilstm", 720, 96, []),
    ("seg_bilstm", 720, 720, []),
    ("seg_bilstm", 720, 720, ["model.net.seg_len=48"]),
)


def step_seconds(cfg, datamodule, steps: int, rounds: int) -> float:
    """The best of ``rounds`` mean step times over ``steps`` steps (after 2 untimed ones)."""
    net, loss_fn, optimizer = our_step_parts(datamodule, cfg)
    net.train()
    batch = datamodule.windows["train"].gather(torch.arange(cfg.data.batch_size))
    clip = cfg.trainer.gradient_clip_val
    args = (net, optimizer, loss_fn, batch["x"], batch["series_id"], batch["y"], clip)
    for _ in range(2):
        train_step(*args)
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            train_step(*args)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="repeats; the best counts")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_windows.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = load_average()
    print(f"load average {load_before:.2f} on {os.cpu_count()} cores before the run", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as output_dir:
        for preset, window, horizon, extra in ROWS:
            overrides = [
                *DATA_OVERRIDES,
                *RUN_OVERRIDES,
                f"num_threads={args.threads}",
                f"model={preset}",
                f"data.window_size={window}",
                f"model.horizon={horizon}",
                *extra,
            ]
            cfg = compose_config(output_dir, overrides)
            datamodule, _, _ = build(cfg)
            datamodule.setup("fit")
            seconds = step_seconds(cfg, datamodule, args.steps, args.rounds)
            steps_per_epoch = math.ceil(len(datamodule.windows["train"]) / cfg.data.batch_size)
            row = {
                "preset": preset,
                "window": window,
                "horizon": horizon,
                "overrides": extra,
                "ms_per_step": 1e3 * seconds,
                "steps_per_epoch": steps_per_epoch,
                "s_per_epoch": seconds * steps_per_epoch,
            }
            rows.append(row)
            print(
                f"{preset:<11} window {window:>4} horizon {horizon:>4} {' '.join(extra):<20} "
                f"{row['ms_per_step']:8.1f} ms a step, {row['s_per_epoch']:7.1f} s an epoch",
                flush=True,
            )
    GlobalHydra.instance().clear()
    load_after = load_average()
    print(f"load average {load_before:.2f} before, {load_after:.2f} after")
    result = {
        "threads": args.threads,
        "batch_size": cfg.data.batch_size,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results in {args.output}")


if __name__ == "__main__":
    main()
