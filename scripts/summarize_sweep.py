"""Write summary.csv and summary.md for a sweep folder (what a multirun writes when it ends).

Usage
-----
    python scripts/summarize_sweep.py outputs/multiruns/train/2026-01-01_12-00-00
    python scripts/summarize_sweep.py outputs/multiruns/train/2026-01-01_12-00-00 --show-test

Useful for a sweep that was interrupted, is still running (unfinished jobs show as ``incomplete``),
or ran on a cluster. Jobs are ranked by the objective (a validation metric); test metrics are left
out unless ``--show-test`` asks for them, for a finished sweep. Prints the Markdown table; exits 2
with one ``error:`` line on a bad folder.
"""

from __future__ import annotations

import argparse
import sys

from lstm_forecast.errors import UserError
from lstm_forecast.training.sweeps import SUMMARY_CSV, SUMMARY_MD, markdown_table, write_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="folder of a multirun (holds one folder per job)")
    parser.add_argument(
        "--show-test",
        action="store_true",
        help="add the test metrics (for a finished sweep: choose on the objective, then look at test)",
    )
    args = parser.parse_args(argv)
    try:
        table = write_summary(args.sweep_dir, show_test=args.show_test)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(table), end="")
    print(f"wrote {SUMMARY_CSV} and {SUMMARY_MD} in {args.sweep_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
