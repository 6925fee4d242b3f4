"""Training-throughput benchmark at ETTh1 size: our whole training loop against the blog's way.

All in one process and one run, for each model preset (``--model bilstm``: the method's net, 2
BiLSTMs of 64 units, embedding 8, dense 32; ``--model seg_bilstm``: conf/model/seg_bilstm.yaml;
``--model all``, the default: both), on the same data (7 series, 17420 hourly rows, 4 calendar
features, window 96, the 8640-row training split), batch 256 and thread count:

* ``pure step``: forward, the preset's loss, backward, clipping and the preset's own Adam (fused, as a
  full-precision run configures it) on one fixed batch, no data at all: the ceiling any loop can
  reach; also with ``torch.optim.Adam`` at its defaults (unfused), for what fusing saves;
* ``blog loop``: a plain PyTorch loop over a ``TensorDataset`` of materialised windows and a
  shuffling per-sample ``DataLoader`` (the method's way);
* ``ours``: ``lstm_forecast.training.run.build`` from the real Hydra config and ``Trainer.fit`` for one
  epoch (progress bar on, no validation, no checkpoints), timed by a callback;
* ``data path``: our training ``DataLoader`` alone for the same batches, as a share of our step time.

It also reports the achieved GFLOP/s of the training step (analytic FLOP count: 3x the forward
matmuls) against a large fp32 matmul's GFLOP/s measured in the same run, and the load average before
and after (other processes slow every loop; compare ratios within one run only).

Run ``python scripts/bench_train.py`` (one full epoch each: minutes on 2 free cores; ``--batches``
runs fewer batches, ``--rounds`` repeats the loops interleaved and keeps each one's best); results
go to ``scripts/results/bench_train.json``. Timings are only comparable within one run: the ratios
are the result. On a machine shared with other busy processes, set ``OMP_WAIT_POLICY=PASSIVE``:
spinning OpenMP threads that wait for a descheduled partner made a 2-thread step 8x slower here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lstm_forecast.cli.app import CONFIG_DIR
from lstm_forecast.models.module import ForecastModule
from lstm_forecast.models.net import EmbeddingBiLSTM
from lstm_forecast.models.segment_net import SegmentBiLSTM
from lstm_forecast.training.run import build

PRESETS = ("bilstm", "seg_bilstm")

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


def lstm_flops(lstm: nn.LSTM, steps: int) -> float:
    """Multiply-adds x 2 of a (bidirectional, stacked) LSTM's forward pass over ``steps`` steps."""
    units, directions = lstm.hidden_size, 2 if lstm.bidirectional else 1
    forward = 0.0
    for layer in range(lstm.num_layers):
        inputs = lstm.input_size if layer == 0 else directions * units
        forward += directions * steps * 2 * 4 * units * (inputs + units)
    return forward


def linear_flops(layer: nn.Linear, times: int = 1) -> float:
    return 2 * layer.in_features * layer.out_features * times


def training_flops(net: nn.Module, window: int) -> float | None:
    """Multiply-adds x 2 of one window's matmuls, forward + backward (3x forward); None for the
    ``recurrent=linear`` ablation (not counted)."""
    if isinstance(net, EmbeddingBiLSTM) and net.lstm is not None:
        forward = lstm_flops(net.lstm, window) + linear_flops(net.dense) + linear_flops(net.head)
        return 3 * forward
    if isinstance(net, SegmentBiLSTM) and net.recurrent == "lstm":
        cell = net.decoder  # one step of an LSTM cell per output segment
        forward = (
            linear_flops(net.segment_embedding, net.num_segments)
            + lstm_flops(net.encoder, net.num_segments)
            + net.num_positions * 2 * 4 * cell.hidden_size * (cell.input_size + cell.hidden_size)
            + linear_flops(net.head, net.num_positions)
        )
        return 3 * forward
    return None


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


def fresh_module(datamodule, cfg: DictConfig) -> ForecastModule:
    """The configured preset's module, sized from the data as ``build`` sizes it."""
    torch.manual_seed(0)
    return instantiate(
        cfg.model,
        num_series=datamodule.num_series,
        num_features=datamodule.num_features,
        static_cardinalities=datamodule.static_cardinalities,
        window_size=datamodule.window_size,
    )


def fresh_net(datamodule, cfg: DictConfig) -> tuple[nn.Module, nn.Module]:
    """The configured preset's network and its loss (the preset's: MSE for the method, MAE for
    seg_bilstm)."""
    module = fresh_module(datamodule, cfg)
    return module.net, module.loss_fn


def our_step_parts(datamodule, cfg: DictConfig) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """The preset's network, loss and its own optimiser, as a full-precision run configures it
    (``ForecastModule.configure_optimizers``: Adam, fused)."""
    module = fresh_module(datamodule, cfg)
    optimizer = module.configure_optimizers()
    if isinstance(optimizer, dict):  # with a learning-rate schedule
        optimizer = optimizer["optimizer"]
    return module.net, module.loss_fn, optimizer


def run_pure_step(datamodule, cfg, steps: int, warmup: int, default_adam: bool = False) -> float:
    """Windows/s of the training step alone, on one fixed batch, with the preset's own optimiser (or,
    with ``default_adam``, ``torch.optim.Adam`` at its defaults, as the blog's loop steps)."""
    net, loss_fn, optimizer = our_step_parts(datamodule, cfg)
    net.train()
    if default_adam:
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.model.lr)
    batch = datamodule.windows["train"].gather(torch.arange(cfg.data.batch_size))
    args = (net, optimizer, loss_fn, batch["x"], batch["series_id"], batch["y"])
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
    net, loss_fn = fresh_net(datamodule, cfg)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.model.lr)
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


def load_average() -> float:
    """The 1-minute load average (processes wanting a core); other work slows every loop."""
    return os.getloadavg()[0]


def bench_preset(cfg: DictConfig, datamodule, batches: int, args: argparse.Namespace) -> dict:
    """Pure step, blog loop and our loop of one preset in ``args.rounds`` interleaved rounds; the best
    round of each counts."""
    pures, default_adams, blogs, ourses = [], [], [], []
    steps = min(batches, 30)
    for round_number in range(1, args.rounds + 1):
        pures.append(run_pure_step(datamodule, cfg, steps, args.warmup))
        default_adams.append(run_pure_step(datamodule, cfg, steps, args.warmup, default_adam=True))
        blogs.append(run_blog_loop(datamodule, cfg, batches, args.warmup)["windows_per_s"])
        ourses.append(run_ours(cfg, batches, args.warmup)["windows_per_s"])
        print(
            f"{cfg.model.architecture} round {round_number}: pure step {pures[-1]:.1f} "
            f"(default Adam {default_adams[-1]:.1f}), blog loop {blogs[-1]:.1f}, ours {ourses[-1]:.1f} "
            f"windows/s; load {load_average():.2f}",
            flush=True,
        )
    pure, default_adam, blog, ours = max(pures), max(default_adams), max(blogs), max(ourses)
    flops = training_flops(fresh_net(datamodule, cfg)[0], cfg.data.window_size)
    return {
        "per_round": {
            "pure_step": pures,
            "pure_step_default_adam": default_adams,
            "blog_loop": blogs,
            "ours": ourses,
        },
        "pure_step_windows_per_s": pure,
        "pure_step_default_adam_windows_per_s": default_adam,
        "ratio_pure_step_over_default_adam": pure / default_adam,
        "blog_loop_windows_per_s": blog,
        "ours_windows_per_s": ours,
        "ratio_ours_over_blog": ours / blog,
        "ratio_ours_over_pure_step": ours / pure,
        "step_s": cfg.data.batch_size / ours,
        "train_flop_per_window": flops,
        "step_gflops": flops * ours / 1e9 if flops else None,
        "pure_step_gflops": flops * pure / 1e9 if flops else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*PRESETS, "all"], default="all", help="model preset(s)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--batches", type=int, default=0, help="batches per loop, warm-up included (0: one epoch)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats; the best counts")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches before each measurement")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_train.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    presets = PRESETS if args.model == "all" else (args.model,)
    load_before = load_average()
    print(f"load average {load_before:.2f} on {os.cpu_count()} cores before the run", flush=True)

    results = {}
    with tempfile.TemporaryDirectory() as output_dir:
        base = [*DATA_OVERRIDES, *RUN_OVERRIDES, f"num_threads={args.threads}"]
        cfg = compose_config(output_dir, base)
        datamodule, _, _ = build(cfg)
        datamodule.setup("fit")
        epoch_batches = math.ceil(len(datamodule.windows["train"]) / cfg.data.batch_size)
        batches = min(args.batches or epoch_batches, epoch_batches) - args.warmup
        print(
            f"{batches} timed batches of {cfg.data.batch_size} per loop, {args.threads} threads", flush=True
        )
        matmul = matmul_gflops()
        for preset in presets:
            preset_cfg = compose_config(output_dir, [*base, f"model={preset}"])
            results[preset] = bench_preset(preset_cfg, datamodule, batches, args)
        data_s = run_data_path(datamodule, batches)
    GlobalHydra.instance().clear()
    load_after = load_average()

    result = {
        "threads": args.threads,
        "batch_size": cfg.data.batch_size,
        "window": cfg.data.window_size,
        "timed_batches": batches,
        "rounds": args.rounds,
        "full_epoch": batches + args.warmup == epoch_batches,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cpu_count": os.cpu_count(),
        "matmul_gflops": matmul,
        "data_path_s_per_batch": data_s,
        "models": results,
    }
    print(
        f"\nload average {load_before:.2f} before, {load_after:.2f} after; fp32 matmul {matmul:.1f} GFLOP/s"
    )
    for preset, row in results.items():
        row["data_path_share_of_step"] = data_s / row["step_s"]
        gflops = f"{row['step_gflops']:.1f} GFLOP/s" if row["step_gflops"] else "not counted"
        print(
            f"{preset:<11} ours {row['ours_windows_per_s']:.1f} windows/s; "
            f"pure step / with default Adam {row['ratio_pure_step_over_default_adam']:.3f}; "
            f"ours / pure step {row['ratio_ours_over_pure_step']:.2f} (target >= 0.95); "
            f"ours / blog loop {row['ratio_ours_over_blog']:.2f}x (target >= 1.0); "
            f"data path {100 * row['data_path_share_of_step']:.2f} % of a "
            f"{1e3 * row['step_s']:.0f} ms step (target < 5 %); step {gflops}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results in {args.output}")


if __name__ == "__main__":
    main()
