"""Score the baselines (persistence, seasonal naive, ridge) of every ETTh1 preset on its test split.

No network is trained: these are the reference rows of docs/benchmarks.md, computed by the same code
that scores the baselines in every training run.

    .venv/bin/python scripts/etth1_baselines.py --data ../shared/data/ETTh1.csv
    .venv/bin/python scripts/etth1_baselines.py --data ../shared/data/ETTh1.csv --horizons 1 96
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from lstm_forecast.cli.app import CONFIG_DIR
from lstm_forecast.evaluation.report import BASELINES, evaluate_baselines
from lstm_forecast.files import write_json

HORIZONS = (1, 24, 96, 192, 336, 720)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ETTh1.csv", help="path of ETTh1.csv")
    parser.add_argument("--horizons", type=int, nargs="+", default=list(HORIZONS))
    parser.add_argument("--output", default="outputs/benchmarks/etth1_baselines.json")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for horizon in args.horizons:
            cfg = compose(
                config_name="train",
                overrides=[f"experiment=etth1_h{horizon}", f"data.source.path={Path(args.data).resolve()}"],
            )
            started = time.perf_counter()
            scores = evaluate_baselines(instantiate(cfg.data), "test", cfg.evaluation)
            results[f"etth1_h{horizon}"] = {
                key: value for key, value in scores.metrics.items() if "@" not in key
            } | {"seconds": time.perf_counter() - started}
    write_json(args.output, results)
    print("| preset | " + " | ".join(f"{name} MSE / MAE" for name in BASELINES) + " |")
    print("|---|" + "---|" * len(BASELINES))
    for preset, metrics in results.items():
        cells = [
            f"{metrics[f'baseline/{n}/mse_z']:.3f} / {metrics[f'baseline/{n}/mae_z']:.3f}" for n in BASELINES
        ]
        print(f"| {preset} | " + " | ".join(cells) + " |")
    print(json.dumps({p: {"ridge_alpha": m["baseline/ridge/alpha"]} for p, m in results.items()}))


if __name__ == "__main__":
    main()
