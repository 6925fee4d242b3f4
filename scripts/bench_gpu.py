"""GPU benchmark: windows/s of our training loop against the plain loop, by batch size and precision.

On one GPU, for batch sizes 256, 1024, 4096 and precisions fp32 (``32-true``) and ``bf16-mixed``:

* ``ours``: ``build(cfg)`` from the real Hydra config with ``trainer=gpu`` and ``Trainer.fit``; the
  scaled arrays live on the GPU and batches are gathered there (``data.device_resident=auto``);
* ``plain``: the method's way, a plain PyTorch loop over a CPU ``TensorDataset`` of materialised
  windows and a shuffling per-sample ``DataLoader``, each batch copied to the GPU (autocast for bf16);
* ``data share``: the time to gather our batches on the GPU, as a share of our step time.

Data: 20000 rows of 50 synthetic series, 4 calendar features, window 96 (the net of the method).
Each cell times ``--steps`` steps after ``--warmup`` (a few minutes in all). Where no GPU exists it
prints a message and exits 0. Results go to ``scripts/results/bench_gpu.json``.

``--device cpu`` runs the same code on the CPU with tiny settings (fp32 only: oneDNN has no bf16
LSTM), to check the script itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.global_hydra import GlobalHydra
from torch.utils.data import DataLoader, TensorDataset

from lstm_forecast.training.run import build

# The training benchmark's helpers: the same config composition, clock and net.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import StepClock, compose_config, fresh_net

RESULTS = Path(__file__).resolve().parent / "results"
DATA_OVERRIDES = [
    "data.source.num_series=50",
    "data.source.num_rows=20000",
    "data.window_size=96",
    "data.split={train:0.9,val:0.05,test:0.05}",
    "data.calendar_features=[hour,day_of_week,month,workday]",
    "data.device_resident=auto",
]
BATCH_SIZES = (256, 1024, 4096)
PRECISIONS = ("32-true", "bf16-mixed")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per cell")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per cell")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_gpu.json")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no GPU available: bench_gpu.py measures nothing on this machine (run it where a GPU is)")
        return

    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    batch_sizes = BATCH_SIZES if on_gpu else (64,)
    data_overrides = (
        DATA_OVERRIDES if on_gpu else [*DATA_OVERRIDES[:1], "data.source.num_rows=400", *DATA_OVERRIDES[2:]]
    )
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
    rows = []
    with tempfile.TemporaryDirectory() as output_dir:
        trainer_group = "trainer=gpu" if on_gpu else "trainer=cpu"
        run_overrides = [
            trainer_group,
            "trainer.max_epochs=1",
            "+trainer.limit_val_batches=0",
            "+trainer.num_sanity_val_steps=0",
            "trainer.enable_model_summary=false",
            "trainer.enable_progress_bar=false",
            "callbacks=none",
            "logger=none",
        ]
        for batch_size in batch_sizes:
            for precision in PRECISIONS if on_gpu else ("32-true",):  # oneDNN has no bf16 LSTM
                overrides = [
                    *data_overrides,
                    *run_overrides,
                    f"data.batch_size={batch_size}",
                    f"trainer.precision={precision}",
                    f"+trainer.limit_train_batches={args.warmup + args.steps}",
                ]
                cfg = compose_config(output_dir, overrides)
                pl.seed_everything(0, workers=True)
                datamodule, model, trainer = build(cfg)
                clock = SynchronisedClock(args.warmup, device)
                trainer.callbacks.append(clock)
                trainer.fit(model, datamodule=datamodule)
                ours = clock.windows / (clock.end - clock.start)

                windows = datamodule.windows["train"]
                sampler_batches = list(datamodule.train_dataloader().sampler)[: args.warmup + args.steps]
                for index in sampler_batches[: args.warmup]:
                    windows.gather(index)
                synchronize(device)
                start = time.perf_counter()
                for index in sampler_batches[args.warmup :]:
                    windows.gather(index)
                synchronize(device)
                gather_s = (time.perf_counter() - start) / len(sampler_batches[args.warmup :])

                plain = plain_loop(datamodule, cfg, device, precision, args)
                step_s = batch_size / ours
                row = {
                    "batch_size": batch_size,
                    "precision": precision,
                    "ours_windows_per_s": ours,
                    "plain_windows_per_s": plain,
                    "ratio_ours_over_plain": ours / plain,
                    "gather_s_per_batch": gather_s,
                    "data_share_of_step": gather_s / step_s,
                }
                rows.append(row)
                print(
                    f"batch {batch_size:5d} {precision:>10}: ours {ours:10.0f} w/s, plain {plain:10.0f} w/s, "
                    f"ratio {ours / plain:5.2f}x, data path {100 * gather_s / step_s:5.2f} % of a step",
                    flush=True,
                )
        GlobalHydra.instance().clear()

    name = torch.cuda.get_device_name(device) if on_gpu else "cpu (script check only)"
    print(f"\n{name}: windows/s (window 96, 2 x BiLSTM 64, embedding 8)")
    print("| batch | precision | ours (w/s) | plain loop (w/s) | ours / plain | data path share of step |")
    print("|---:|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['batch_size']} | {row['precision']} | {row['ours_windows_per_s']:,.0f} | "
            f"{row['plain_windows_per_s']:,.0f} | {row['ratio_ours_over_plain']:.2f}x | "
            f"{100 * row['data_share_of_step']:.2f} % |"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"device": name, "steps": args.steps, "results": rows}, indent=2) + "\n"
    )
    print(f"results in {args.output}")


class SynchronisedClock(StepClock):
    """The training benchmark's clock, waiting for the GPU before it reads the time."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        super().__init__(warmup)
        self.device = device

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(self.device)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def plain_loop(datamodule, cfg, device: torch.device, precision: str, args: argparse.Namespace) -> float:
    """Windows/s of the method's loop: CPU TensorDataset, per-sample DataLoader, copy per batch."""
    windows = datamodule.windows["train"]
    # Materialise at most the windows the timed steps use (the rest would only cost set-up time).
    count = min(len(windows), (args.warmup + args.steps) * cfg.data.batch_size * 2)
    everything = windows.gather(torch.randperm(len(windows))[:count])
    dataset = TensorDataset(*(everything[key].cpu() for key in ("x", "series_id", "y")))
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=True)
    net = fresh_net(datamodule, cfg).to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.model.lr)
    loss_fn = torch.nn.MSELoss()
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if precision == "bf16-mixed"
        else contextlib.nullcontext()
    )
    measured = 0
    start = time.perf_counter()
    for done, (x, series_id, y) in enumerate(loader, start=1):
        x, series_id, y = x.to(device), series_id.to(device), y.to(device)
        with autocast:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(x, series_id).float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.trainer.gradient_clip_val)
        optimizer.step()
        if done == args.warmup:
            synchronize(device)
            start = time.perf_counter()
        elif done > args.warmup:
            measured += x.shape[0]
        if done == args.warmup + args.steps:
            break
    synchronize(device)
    return measured / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
