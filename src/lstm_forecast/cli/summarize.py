"""``lstm-summarize``: the summary table of a sweep folder, as a multirun writes it when it ends.

Examples
--------
    lstm-summarize outputs/multiruns/train/2026-01-01_12-00-00
    lstm-summarize outputs/multiruns/train/2026-01-01_12-00-00 --show-test

Test metrics stay out of the table unless ``--show-test`` asks for them (a sweep selects on the
objective; look at test once the choice is made).

For a sweep that was interrupted, is still running (unfinished jobs show as ``incomplete``) or ran
on a cluster. Writes ``summary.csv`` and ``summary.md`` into the folder and prints the Markdown
table; a folder without jobs is one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from lstm_forecast.cli.app import EXIT_USER_ERROR, user_error_of
from lstm_forecast.training.sweeps import SUMMARY_CSV, SUMMARY_MD, markdown_table, write_summary


def argument_parser() -> argparse.ArgumentParser:
    """The command line of ``lstm-summarize``."""
    parser = argparse.ArgumentParser(
        prog="lstm-summarize", description="Write summary.csv and summary.md for a sweep folder."
    )
    parser.add_argument("sweep_dir", help="folder of a multirun (holds one folder per job)")
    parser.add_argument(
        "--show-test",
        action="store_true",
        help="add the test metrics (for a finished sweep: choose on the objective, then look at test)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser()
    args = parser.parse_args(argv)
    try:
        table = write_summary(args.sweep_dir, show_test=args.show_test)
    except Exception as error:
        user_error = user_error_of(error)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    print(markdown_table(table), end="")
    print(f"wrote {SUMMARY_CSV} and {SUMMARY_MD} in {args.sweep_dir}")


if __name__ == "__main__":
    main()
