"""Training-throughput benchmark at ETTh1 size: our whole training loop against the blog's way.

All in one process and one run, on the same net (2 BiLSTMs of 64 units, embedding 8, dense 32),
data (7 series, 17420 hourly rows, 4 calendar features, window 96, the 8640-row training split),
batch 256 and thread count:

* ``pure step``: forward, MSE, backward, clipping and Adam on one fixed batch, no data at all: the
  ceiling any loop can reach;
* ``blog loop``: a plain PyTorch loop over a ``TensorDataset`` of materialised windows and a
  shuffling per-sample ``DataLoader`` (the method's way);
* ``ours``: ``lstm_forecast.training.run.build`` from the real Hydra config and ``Trainer.fit`` for one
  epoch (progress bar on, no validation, no checkpoints), timed by a callback;
* ``data path``: our training ``DataLoader`` alone for the same batches, as a share of our step time.

It also reports the achieved GFLOP/s of the LSTM training step (analytic FLOP count: 3x the forward
matmuls) against a large fp32 matmul's GFLOP/s measured in the same run.

Run ``python scripts/bench_train.py`` (one full epoch each: minutes on 2 free cores; ``--batches``
runs fewer batches, ``--rounds`` repeats the loops interleaved and keeps each one's best); results
go to ``scripts/results/bench_train.json``. Timings are only comparable within one run: the ratios
are the result. On a machine shared with other busy processes, set ``OMP_WAIT_POLICY=PASSIVE``:
spinning OpenMP threads that wait for a descheduled partner made a 2-thread step 8x slower here.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch.utils.data import DataLoader, TensorDataset

from lstm_forecast.cli.app import CONFIG_DIR
from lstm_forecast.models.net import EmbeddingBiLSTM
from lstm_forecast.training.run import build

RESULTS = Path(__file__).resolve().parent / "results"
DATA_OVERRIDES = [
    "data.source.num_series=7",
    "data.source.num_rows=17420",
    "data.window_size=96",
    "data.split={train:8640,val:2880,test:2880}",
    "data.calendar_features=[hour,day_of_week,month,workday]",
    "data.batch_size=256",
]
RUN_OVERRIDES = [
    "trainer.max_epochs=1",
    "+trainer.limit_val_batches=0",
    "+trainer.num_sanity_val_steps=0",
    "trainer.enable_model_summary=false",
    "callbacks=none",
    "logger=none",
]


def compose_config(output_dir: str, overrides: list[str]) -> DictConfig:
    """``conf/train.yaml`` composed as Hydra's launcher would, outputs in ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = output_dir
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


class StepClock(pl.Callback):
    """Wall time and windows of the training batches after the first ``warmup`` ones."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end = 0.0
        self.windows = 0
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if batch_idx + 1 == self.warmup:
            self.start = now
        elif batch_idx + 1 > self.warmup:
            self.end = now
            self.windows += batch["x"].shape[0]
            self.batches += 1


def lstm_training_flops(net: EmbeddingBiLSTM, window: int) -> float:
    """Multiply-adds x 2 of one window's LSTM and dense layers, forward + backward (3x forward)."""
    lstm = net.lstm
    units, directions = lstm.hidden_size, 2 if lstm.bidirectional else 1
    forward = 0.0
    for layer in range(lstm.num_layers):
        inputs = lstm.input_size if layer == 0 else directions * units
        forward += directions * window * 2 * 4 * units * (inputs + units)
    forward += 2 * net.dense.in_features * net.dense.out_features + 2 * net.head.in_features
    return 3 * forward


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def train_step(net, optimizer, loss_fn, x, series_id, y, clip: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(net(x, series_id), y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    optimizer.step()


def fresh_net(datamodule, cfg: DictConfig) -> EmbeddingBiLSTM:
    torch.manual_seed(0)
    return EmbeddingBiLSTM(datamodule.num_series, datamodule.num_features, horizon=1, **cfg.model.net)


def run_pure_step(datamodule, cfg, steps: int, warmup: int) -> float:
    """Windows/s of the training step alone, on one fixed batch."""
    net = fresh_net(datamodule, cfg).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.model.lr)
    batch = datamodule.windows["train"].gather(torch.arange(cfg.data.batch_size))
    args = (net, optimizer, torch.nn.MSELoss(), batch["x"], batch["series_id"], batch["y"])
    for _ in range(warmup):
        train_step(*args, cfg.trainer.gradient_clip_val)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(*args, cfg.trainer.gradient_clip_val)
    return steps * cfg.data.batch_size / (time.perf_counter() - start)


def run_blog_loop(datamodule, cfg, batches: int, warmup: int) -> dict:
    """The method's way: materialised windows, per-sample shuffling DataLoader, plain loop."""
    windows = datamodule.windows["train"]
    everything = windows.gather(torch.arange(len(windows)))
    dataset = TensorDataset(everything["x"], everything["series_id"], everything["y"])
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=True)
    net = fresh_net(datamodule, cfg).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.model.lr)
    loss_fn = torch.nn.MSELoss()
    done = measured = 0
    start = time.perf_counter()
    for x, series_id, y in loader:
        train_step(net, optimizer, loss_fn, x, series_id, y, cfg.trainer.gradient_clip_val)
        done += 1
        if done == warmup:
            start = time.perf_counter()
        elif done > warmup:
            measured += x.shape[0]
        if done == warmup + batches:
            break
    elapsed = time.perf_counter() - start
    return {"windows_per_s": measured / elapsed, "batches": done - warmup}


def run_ours(cfg: DictConfig, batches: int, warmup: int) -> dict:
    """One epoch through ``build(cfg)`` and ``Trainer.fit``."""
    with open_dict(cfg):
        cfg.trainer.limit_train_batches = warmup + batches
    pl.seed_everything(0, workers=True)
    datamodule, model, trainer = build(cfg)
    clock = StepClock(warmup)
    trainer.callbacks.append(clock)
    trainer.fit(model, datamodule=datamodule)
    return {"windows_per_s": clock.windows / (clock.end - clock.start), "batches": clock.batches}


def run_data_path(datamodule, batches: int) -> float:
    """Seconds per batch of our training DataLoader alone."""
    loader = datamodule.train_dataloader()
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    count = 0
    for _ in range(min(batches, len(loader) - 1)):
        next(iterator)
        count += 1
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--batches", type=int, default=0, help="batches per loop, warm-up included (0: one epoch)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats; the best counts")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches before each measurement")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_train.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as output_dir:
        cfg = compose_config(output_dir, [*DATA_OVERRIDES, *RUN_OVERRIDES, f"num_threads={args.threads}"])
        datamodule, _, _ = build(cfg)
        datamodule.setup("fit")
        epoch_batches = -(-len(datamodule.windows["train"]) // cfg.data.batch_size)
        batches = min(args.batches or epoch_batches, epoch_batches) - args.warmup
        print(
            f"{batches} timed batches of {cfg.data.batch_size} per loop, {args.threads} threads", flush=True
        )

        # Rounds interleave the loops so that load from other processes hits them alike; the best
        # round of each is its figure (interference only ever slows a loop down).
        matmuls, pures, blogs, ourses = [], [], [], []
        for round_number in range(1, args.rounds + 1):
            matmuls.append(matmul_gflops())
            pures.append(run_pure_step(datamodule, cfg, steps=min(batches, 30), warmup=args.warmup))
            blogs.append(run_blog_loop(datamodule, cfg, batches, args.warmup)["windows_per_s"])
            ourses.append(run_ours(cfg, batches, args.warmup)["windows_per_s"])
            print(
                f"round {round_number}: pure step {pures[-1]:.1f}, blog loop {blogs[-1]:.1f}, "
                f"ours {ourses[-1]:.1f} windows/s; matmul {matmuls[-1]:.1f} GFLOP/s",
                flush=True,
            )
        matmul, pure, blog, ours = max(matmuls), max(pures), max(blogs), max(ourses)
        data_s = run_data_path(datamodule, batches)
    GlobalHydra.instance().clear()

    step_s = cfg.data.batch_size / ours
    flops = lstm_training_flops(fresh_net(datamodule, cfg), cfg.data.window_size)
    result = {
        "threads": args.threads,
        "batch_size": cfg.data.batch_size,
        "window": cfg.data.window_size,
        "timed_batches": batches,
        "rounds": args.rounds,
        "per_round": {"pure_step": pures, "blog_loop": blogs, "ours": ourses, "matmul_gflops": matmuls},
        "full_epoch": batches + args.warmup == epoch_batches,
        "pure_step_windows_per_s": pure,
        "blog_loop_windows_per_s": blog,
        "ours_windows_per_s": ours,
        "ratio_ours_over_blog": ours / blog,
        "ratio_ours_over_pure_step": ours / pure,
        "data_path_s_per_batch": data_s,
        "data_path_share_of_step": data_s / step_s,
        "train_flop_per_window": flops,
        "lstm_step_gflops": flops * ours / 1e9,
        "pure_step_gflops": flops * pure / 1e9,
        "matmul_gflops": matmul,
    }
    print(
        f"\nours / blog loop   {result['ratio_ours_over_blog']:.2f}x   (target >= 1.0)\n"
        f"ours / pure step   {result['ratio_ours_over_pure_step']:.2f}     (target >= 0.95)\n"
        f"data path          {1e3 * data_s:.2f} ms per batch = "
        f"{100 * result['data_path_share_of_step']:.2f} % "
        f"of a {1e3 * step_s:.0f} ms step (target < 5 %)\n"
        f"LSTM step          {result['lstm_step_gflops']:.1f} GFLOP/s ({flops / 1e6:.1f} MFLOP per window); "
        f"pure step {result['pure_step_gflops']:.1f}; fp32 matmul {matmul:.1f} GFLOP/s "
        f"({100 * result['pure_step_gflops'] / matmul:.0f} % of it)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results in {args.output}")


if __name__ == "__main__":
    main()
