"""What a training step costs beyond its forward, backward and optimiser step, part by part.

On a network so small that its step takes a few milliseconds (``seg_bilstm`` with 8 units and one
96-step segment; ETTh1-sized data as in ``bench_train.py``), one thread, batch 256, each loop's
milliseconds a step, best of ``--rounds`` interleaved rounds:

* ``pure step``: forward, loss, backward, clipping and the preset's own (fused) Adam on one fixed batch;
* ``plain loop``: the same step over our training ``DataLoader`` (adds the data path);
* ``ours, no bar``: ``build(cfg)`` and ``Trainer.fit`` with ``trainer.enable_progress_bar=false``
  (adds Lightning's loop and our callbacks);
* ``ours``: the default, with our :class:`~lstm_forecast.training.callbacks.ThrottledProgressBar`;
* ``ours, default callbacks and logger``: also the default ``callbacks`` group and the TensorBoard
  logger (what ``lstm-train`` runs; the rows above drop both, as ``bench_train.py`` does);
* ``ours, TQDM bar`` and ``ours, rich bar``: Lightning's own bars, redrawn every batch (what Lightning
  picks without ours: the rich one when ``rich`` is installed).

The differences are absolute costs a step, which a real step pays whatever its size. Run
``python scripts/bench_loop_overhead.py`` on a quiet machine (about two minutes); results go to
``scripts/results/bench_loop_overhead.json`` with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar

from bench_train import (
    DATA_OVERRIDES,
    RESULTS,
    RUN_OVERRIDES,
    StepClock,
    compose_config,
    load_average,
    our_step_parts,
    train_step,
)
from lstm_forecast.training.run import build

TINY_NET = ["model=seg_bilstm", "model.net.num_units=8", "model.net.seg_len=96"]
WARMUP = 5


def plain_steps(datamodule, cfg, batches: int, fixed_batch: bool) -> float:
    """Milliseconds a step of the plain loop, on one fixed batch or over our DataLoader."""
    net, loss_fn, optimizer = our_step_parts(datamodule, cfg)
    net.train()
    fixed = datamodule.windows["train"].gather(torch.arange(cfg.data.batch_size))
    loader = iter(datamodule.train_dataloader())
    for step in range(WARMUP + batches):
        if step == WARMUP:
            start = time.perf_counter()
        batch = fixed if fixed_batch else next(loader)
        train_step(
            net, optimizer, loss_fn, batch["x"], batch["series_id"], batch["y"], cfg.trainer.gradient_clip_val
        )
    return 1e3 * (time.perf_counter() - start) / batches


def lightning_steps(cfg, batches: int, bar: ProgressBar | None = None) -> float:
    """Milliseconds a step of ``Trainer.fit`` from ``build(cfg)``, with ``bar`` in place of its own."""
    with open_dict(cfg):
        cfg.trainer.limit_train_batches = WARMUP + batches
    pl.seed_everything(0)
    datamodule, model, trainer = build(cfg)
    if bar is not None:
        trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, ProgressBar)] + [bar]
    clock = StepClock(WARMUP)
    trainer.callbacks.append(clock)
    trainer.fit(model, datamodule=datamodule)
    return 1e3 * (clock.end - clock.start) / clock.batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="timed batches a loop")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repeats; the best counts")
    parser.add_argument("--output", type=Path, default=RESULTS / "bench_loop_overhead.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = load_average()
    print(f"load average {load_before:.2f} before the run", flush=True)
    per_round: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as output_dir:
        base = [*DATA_OVERRIDES, *RUN_OVERRIDES, "num_threads=1", *TINY_NET]
        cfg = compose_config(output_dir, base)
        datamodule, _, _ = build(cfg)
        datamodule.setup("fit")
        no_bar = [*base, "trainer.enable_progress_bar=false"]
        # Validation stays off (as in every row), so early stopping has no val/loss to read at the
        # epoch's end: it is not strict here, and checkpoints monitor nothing that is missing.
        defaults = [
            *(o for o in base if o not in ("callbacks=none", "logger=none")),
            "+callbacks.early_stopping.strict=false",
        ]
        loops = {
            "pure step": lambda: plain_steps(datamodule, cfg, args.batches, fixed_batch=True),
            "plain loop": lambda: plain_steps(datamodule, cfg, args.batches, fixed_batch=False),
            "ours, no bar": lambda: lightning_steps(compose_config(output_dir, no_bar), args.batches),
            "ours": lambda: lightning_steps(compose_config(output_dir, base), args.batches),
            "ours, default callbacks and logger": lambda: lightning_steps(
                compose_config(output_dir, defaults), args.batches
            ),
            "ours, TQDM bar": lambda: lightning_steps(
                compose_config(output_dir, base), args.batches, TQDMProgressBar()
            ),
            "ours, rich bar": lambda: lightning_steps(
                compose_config(output_dir, base), args.batches, RichProgressBar()
            ),
        }
        for _ in range(args.rounds):
            for name, loop in loops.items():
                per_round.setdefault(name, []).append(loop())
    GlobalHydra.instance().clear()
    load_after = load_average()
    best = {name: min(times) for name, times in per_round.items()}
    print(f"\nload average {load_before:.2f} before, {load_after:.2f} after; best of {args.rounds} rounds")
    for name, ms in best.items():
        print(f"{name:<35} {ms:6.2f} ms  (+{ms - best['pure step']:.2f} ms on the pure step)")
    result = {
        "threads": 1,
        "net": TINY_NET,
        "timed_batches": args.batches,
        "rounds": args.rounds,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "best_ms_per_step": best,
        "per_round_ms_per_step": per_round,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results in {args.output}")


if __name__ == "__main__":
    main()
