"""Cost of the TensorBoard inspection callbacks: epoch time with and without them, same settings.

Trains the default configuration (synthetic data, default model and trainer, TensorBoard logger)
twice per repeat, alternating: ``callbacks=training_only`` (checkpoints and early stopping: the
baseline) and ``callbacks=default`` (plus learning rate, gradient norm, epoch time, forecast figures,
per-series error chart, embedding projector). Early stopping is off so both run every epoch. A clock
callback of this script, added to both, times every epoch from its start to its end (validation and
figures included); the number of epochs defaults to 10, a multiple of the figures' ``every_n_epochs``
(5), so the figure epochs weigh in as often as in a real run. The run-end logging (test figures,
chart, projector: once per run, after training) is timed separately as the difference in the
remaining wall time of ``train``.

    .venv/bin/python scripts/bench_tensorboard.py               # 10 epochs, 2 repeats
    .venv/bin/python scripts/bench_tensorboard.py --epochs 5 --repeats 1 trainer=cpu   # extra overrides

Prints the overhead ratio; writes ``scripts/results/bench_tensorboard.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from lstm_forecast.cli.app import CONFIG_DIR
from lstm_forecast.files import write_json
from lstm_forecast.training.run import torch_threads, train

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"baseline": "callbacks=training_only", "inspection": "callbacks=default"}


class EpochClock(pl.Callback):
    """Wall and CPU seconds of each training epoch, start to end (validation and its callbacks included).

    CPU time (this process, all threads) is the steadier figure on a machine shared with other jobs.
    """

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self._start = (0.0, 0.0)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start[0])
        self.cpu_seconds.append(time.process_time() - self._start[1])


def run_variant(variant: str, epochs: int, overrides: list[str], output_dir: Path) -> dict:
    """Train one variant into ``output_dir``; its epoch times and the time outside the epochs."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                VARIANTS[variant],
                f"trainer.max_epochs={epochs}",
                "callbacks.early_stopping=null",
                "trainer.enable_progress_bar=false",
                "trainer.enable_model_summary=false",
                "+callbacks.bench_clock._target_=__main__.EpochClock",
                *overrides,
            ],
            return_hydra_config=True,
        )
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    torch_threads(cfg)
    start = time.perf_counter()
    _, objects = train(cfg)
    total = time.perf_counter() - start
    clock = next(c for c in objects["trainer"].callbacks if isinstance(c, EpochClock))
    assert len(clock.seconds) == epochs, clock.seconds
    return {
        "epoch_s": clock.seconds,
        "epoch_cpu_s": clock.cpu_seconds,
        "mean_epoch_s": statistics.fmean(clock.seconds),
        "mean_epoch_cpu_s": statistics.fmean(clock.cpu_seconds),
        "outside_epochs_s": total - sum(clock.seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both variants")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench_tensorboard_") as tmp:
        for repeat in range(args.repeats):
            for variant in VARIANTS:  # alternate, so drifting machine load hits both alike
                result = run_variant(variant, args.epochs, args.overrides, Path(tmp) / f"{variant}_{repeat}")
                runs[variant].append(result)
                print(
                    f"repeat {repeat} {variant:>10}: mean epoch {result['mean_epoch_s']:.3f} s wall, "
                    f"{result['mean_epoch_cpu_s']:.3f} s CPU",
                    flush=True,
                )

    def median_of(key: str) -> dict[str, float]:
        return {name: statistics.median(r[key] for r in results) for name, results in runs.items()}

    wall, cpu, outside = (
        median_of("mean_epoch_s"),
        median_of("mean_epoch_cpu_s"),
        median_of("outside_epochs_s"),
    )
    ratio, cpu_ratio = wall["inspection"] / wall["baseline"], cpu["inspection"] / cpu["baseline"]
    report = {
        "epochs": args.epochs,
        "repeats": args.repeats,
        "overrides": args.overrides,
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "mean_epoch_s": wall,
        "mean_epoch_cpu_s": cpu,
        "epoch_time_ratio": ratio,
        "epoch_cpu_time_ratio": cpu_ratio,
        "epoch_overhead_percent": 100 * (ratio - 1),
        "epoch_cpu_overhead_percent": 100 * (cpu_ratio - 1),
        "run_end_extra_s": outside["inspection"] - outside["baseline"],
        "runs": runs,
    }
    path = write_json(RESULTS / "bench_tensorboard.json", report)
    print(
        f"mean epoch: baseline {wall['baseline']:.3f} s, with inspection {wall['inspection']:.3f} s "
        f"-> ratio {ratio:.3f} ({100 * (ratio - 1):+.1f} %); CPU time ratio {cpu_ratio:.3f} "
        f"({100 * (cpu_ratio - 1):+.1f} %); run end +{report['run_end_extra_s']:.2f} s once"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
