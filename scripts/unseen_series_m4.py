"""How well series unseen in training are forecast: M4 Weekly, every k-th series held out of training.

Two small ``seg_bilstm`` models, the same settings and seed: ``seen`` trains on all 359 series,
``unseen`` on all but the held-out ones (every ``--holdout-every``-th series by name). Each forecasts the
13 weeks after every held-out series' training history, scored against the held-out file
(``m4_weekly_test.parquet``: sMAPE and MASE, the M4 way, :mod:`lstm_forecast.evaluation.holdout`);
``unseen`` forecasts them with the mean series embedding, each scaled on its own history
(:mod:`lstm_forecast.inference.unseen_series`). Both also forecast the other series, which both saw:
the gap there is what two trainings differ by anyway (the noise floor of the comparison). The naive
forecast (the last value) is the reference. Writes ``scripts/results/unseen_series_m4.json``.

    .venv/bin/python scripts/unseen_series_m4.py            # a few minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data"
RESULTS = REPO_ROOT / "scripts" / "results"
HORIZON = 13


def overrides(args: argparse.Namespace) -> list[str]:
    """The M4 Weekly settings of the accuracy table's ``seg_bilstm`` cell, made small."""
    return [
        "data.source.freq=W-MON",
        "data.calendar_features=[]",
        "data.split={val:13,test:13}",
        "data.window_size=48",
        "data.scaler=standard",
        "model=seg_bilstm",
        f"model.horizon={HORIZON}",
        "model.net.seg_len=24",
        f"model.net.num_units={args.units}",
        f"trainer.max_epochs={args.epochs}",
        f"data.windows_per_epoch={args.windows_per_epoch}",
        "data.val_windows=4096",
        f"seed={args.seed}",
        "num_threads=2",
        "test_after_fit=false",
        "callbacks=training_only",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout-every", type=int, default=5, help="hold out every k-th series (by name)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--windows-per-epoch", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "unseen_series_m4.json")
    args = parser.parse_args()

    from lstm_forecast import Forecaster
    from lstm_forecast.evaluation.holdout import holdout_scores, naive_forecast

    train = pd.read_parquet(DATA / "m4_weekly_train.parquet")
    test = pd.read_parquet(DATA / "m4_weekly_test.parquet")
    names = sorted(train.series.unique())
    held = set(names[:: args.holdout_every])
    is_held = train.series.isin(held)
    groups = {"held_out": held, "others": set(names) - held}

    started = time.perf_counter()
    scores: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for model, data in (("seen", train), ("unseen", train[~is_held])):
            forecaster = Forecaster(overrides(args), run_dir=Path(folder) / model).fit(data)
            forecast = forecaster.predict(train, horizon=HORIZON)
            for group, members in groups.items():
                rows = forecast[forecast.series.isin(members)]
                history, actuals = train[train.series.isin(members)], test[test.series.isin(members)]
                scores.update(holdout_scores(rows, history, actuals, f"{group}/{model}"))
    for group, members in groups.items():
        history, actuals = train[train.series.isin(members)], test[test.series.isin(members)]
        scores.update(holdout_scores(naive_forecast(history, actuals), history, actuals, f"{group}/naive"))
    result = {
        "command": "scripts/unseen_series_m4.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "held_out_series": len(held),
        "other_series": len(names) - len(held),
        "overrides": overrides(args),
        "scores": {key: round(value, 4) for key, value in sorted(scores.items())},
        "wall_s": round(time.perf_counter() - started, 1),
        "load_average": [round(load, 2) for load in os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
