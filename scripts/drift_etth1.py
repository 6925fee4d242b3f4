"""Write a drifted copy of ETTh1: its test rows (the published protocol's rows 11,520 to 14,399, as
conf/data/etth1.yaml splits them) with Gaussian noise of 1.5 times each column's standard deviation
over those rows added; every other row is unchanged. The copy for docs/intervals.md's comparison:

    .venv/bin/python scripts/drift_etth1.py --data ../shared/data/ETTh1.csv \
        --output outputs/intervals/ETTh1_drifted.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

# conf/data/etth1.yaml's split: {train: 8640, val: 2880, test: 2880}.
TEST_ROWS = slice(8640 + 2880, 8640 + 2880 + 2880)
NOISE_SCALE = 1.5
SEED = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ETTh1.csv", help="path of ETTh1.csv")
    parser.add_argument("--output", default="outputs/intervals/ETTh1_drifted.csv")
    args = parser.parse_args()
    frame = pd.read_csv(args.data)
    values = frame.columns.drop("date")
    test = frame.loc[frame.index[TEST_ROWS], values]
    noise = np.random.default_rng(SEED).normal(size=test.shape) * (NOISE_SCALE * test.std(ddof=0).to_numpy())
    frame.loc[frame.index[TEST_ROWS], values] = test.to_numpy() + noise
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.output, index=False)
    print(f"{args.output}: {len(test)} test rows of {len(frame)} with noise of {NOISE_SCALE}x their std")


if __name__ == "__main__":
    main()
