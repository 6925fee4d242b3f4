"""The bad-input catalogue: every entry point refuses bad files, columns, types, sizes, config values
and checkpoints with ONE ``error:`` line naming the problem, exit status 2, no traceback, and
nothing written (the temporary folder holding the inputs is byte-for-byte as before).

Each case is ``(app, arguments(inputs), fragments of the error line)``; the runner below is generic,
so another entry point's cases are more rows with its module name.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_OVERRIDES, assert_one_line_error, run_app
from lstm_forecast.cli.app import CONFIG_DIR
from lstm_forecast.errors import UserError
from lstm_forecast.models.checkpoint import read_checkpoint

NUM_ROWS = 240
MODEL_OPTIONS = sorted(path.stem for path in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
# Tiny model and trainer settings, without the synthetic source's own keys.
TINY_MODEL = [arg for arg in TINY_OVERRIDES if not arg.startswith("data.source.")]


def good_table() -> pd.DataFrame:
    """A valid wide table: two series and one extra column, hourly."""
    step = np.arange(NUM_ROWS, dtype=np.float64)
    return pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=NUM_ROWS, freq="h").astype(str),
            "a": 10 + np.sin(step / 4),
            "b": 20 + np.cos(step / 6),
            "temp": step % 7,
        }
    )


def long_table() -> pd.DataFrame:
    """:func:`good_table` as a long table: ``series, timestamp, value, promo`` (``temp`` renamed), series
    ``a`` (file lines 2-241) then ``b``."""
    table = good_table().melt(["date", "temp"], ["a", "b"], var_name="series", value_name="value")
    return table.rename(columns={"date": "timestamp", "temp": "promo"})[
        ["series", "timestamp", "value", "promo"]
    ]


def daily_dayfirst(table: pd.DataFrame) -> pd.DataFrame:
    """Daily dates written day-first: 01/01/2024 ... 12/01/2024, then 13/01/2024 (line 14) cannot be
    month-first."""
    days = pd.date_range("2024-01-01", periods=NUM_ROWS, freq="D").strftime("%d/%m/%Y")
    return table.assign(timestamp=np.tile(days, 2))


def days_later_dayfirst(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`good_table` 4 days later (5 to 14 January), dates written day-first: 13/01/2024 00:00, the
    first that cannot be month-first, on line 2 + 8 days x 24 rows."""
    later = pd.to_datetime(table["date"]) + pd.Timedelta(days=4)
    return table.assign(date=later.dt.strftime("%d/%m/%Y %H:%M"))


MONTHS = 100
MONTH_STARTS = pd.date_range("2000-01-01", periods=MONTHS, freq="MS").strftime("%d/%m/%Y")
# Read month-first, each series runs daily from 1 January 2000 to 4 January 2008 (01/04/2008).
MONTH_FIRST = pd.to_datetime(MONTH_STARTS, format="%m/%d/%Y")
MONTH_FIRST_ROWS = 2 * ((MONTH_FIRST.max() - MONTH_FIRST.min()).days + 1)


def monthly_dayfirst(table: pd.DataFrame) -> pd.DataFrame:
    """Two series of 100 month starts written day-first (01/02/2024): every one also reads month-first
    (2 January), as days 1-12 of January each year, with the rest of each year missing."""
    months = MONTH_STARTS
    step = np.arange(MONTHS, dtype=np.float64)
    return pd.DataFrame(
        {
            "series": np.repeat(["a", "b"], MONTHS),
            "timestamp": np.tile(months, 2),
            "value": np.concatenate([10 + np.sin(step / 3), 20 + np.cos(step / 2)]),
            "promo": np.tile(step % 3, 2),
        }
    )


def future_temps(inputs: Inputs, steps: int = 2) -> Path:
    """The ``temp`` values of the ``steps`` hours after :func:`good_table`'s last row."""
    dates = pd.date_range("2024-01-01", periods=NUM_ROWS + steps, freq="h")[NUM_ROWS:]
    path = inputs.root / "future.csv"
    pd.DataFrame({"date": dates.astype(str), "temp": np.arange(steps, dtype=float)}).to_csv(path, index=False)
    return path


class Inputs:
    """Builds the inputs of one case inside its temporary folder."""

    def __init__(self, root: Path, request: pytest.FixtureRequest) -> None:
        self.root = root
        self.run_dir = root / "run"
        self._request = request

    def csv(
        self, change: Callable[[pd.DataFrame], pd.DataFrame] | None = None, name: str = "data.csv"
    ) -> Path:
        table = good_table()
        table = change(table) if change else table
        path = self.root / name
        table.to_csv(path, index=False)
        return path

    def file(self, name: str, content: bytes) -> Path:
        path = self.root / name
        path.write_bytes(content)
        return path

    def wide(self, path: Path, *extra: str) -> list[str]:
        """Train on the wide file ``path`` with tiny settings."""
        return [
            "data=wide_file",
            f"data.source.path={path}",
            *TINY_MODEL,
            f"hydra.run.dir={self.run_dir}",
            *extra,
        ]

    def long(self, *extra: str, change: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> list[str]:
        """Train on :func:`long_table` (series ``a`` and ``b``, 240 rows each; ``change`` applied) as a
        long file with the long default's split, tiny settings."""
        table = long_table()
        path = self.root / "long.csv"
        (change(table) if change else table).to_csv(path, index=False)
        return [
            "data=long_csv",
            f"data.source.path={path}",
            *TINY_MODEL,
            f"hydra.run.dir={self.run_dir}",
            *extra,
        ]

    def synthetic(self, *extra: str, run_dir: Path | None = None) -> list[str]:
        """Train on the built-in synthetic data with tiny settings."""
        return [*TINY_OVERRIDES, f"hydra.run.dir={run_dir or self.run_dir}", *extra]

    def predict(self, *extra: str) -> list[str]:
        """Forecast 2 steps past :func:`good_table` with the trained checkpoint."""
        data = self.csv()
        return [
            f"ckpt_path={self.checkpoint}",
            f"data.source.path={data}",
            "horizon=2",
            f"hydra.run.dir={self.run_dir}",
            *extra,
        ]

    def evaluate(self, *extra: str) -> list[str]:
        return [f"ckpt_path={self.checkpoint}", f"hydra.run.dir={self.run_dir}", *extra]

    @property
    def checkpoint(self) -> Path:
        """The best checkpoint of a real tiny run on :func:`good_table` (trained once per module)."""
        return self._request.getfixturevalue("trained_checkpoint")

    def previous_run(self) -> Path:
        """A folder holding a finished run's outputs."""
        (self.run_dir / "checkpoints").mkdir(parents=True)
        (self.run_dir / "metrics.json").write_text('{"test/mse_z": 0.5}\n')
        return self.run_dir


def set_cell(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(table: pd.DataFrame) -> pd.DataFrame:
        table[column] = table[column].astype(object)
        table.loc[row, column] = value
        return table

    return change


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip archive holding ``files`` (torch.save writes zips; these hold junk)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# Files that are no checkpoint: each makes torch.load raise a different exception type.
JUNK_CHECKPOINTS = {
    "text": b"hello\n",  # KeyError from the legacy unpickler
    "empty": b"",  # EOFError
    "json": b'{"state_dict": {}, "hyper_parameters": {}}\n',
    "random-bytes": bytes(range(256)),
    "bad-utf8-pickle": b"\x80\x02X\xff\xfe\x00\x00\xff\xff",  # UnicodeDecodeError
    "zip-junk-pickle": zip_bytes({"archive/data.pkl": b"junk junk", "archive/version": b"3\n"}),
    "zip-flat": zip_bytes({"junk.txt": b"junk"}),
    "zip-empty": zip_bytes({}),
}


def foreign_checkpoint(inputs: Inputs) -> Path:
    path = inputs.root / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, path)
    return path


# (app, arguments built from the case's inputs, fragments the error line must contain)
TRAIN_CASES = [
    # files
    pytest.param(
        "train", lambda i: i.wide(i.root / "nope.csv"), ["data file not found", "nope.csv"], id="file-missing"
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.file("data.txt", b"date,a\n")),
        ["unsupported file type", ".txt"],
        id="file-suffix",
    ),
    pytest.param(
        "train", lambda i: i.wide(i.file("empty.csv", b"")), ["could not read", "empty.csv"], id="file-empty"
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.file("bin.parquet", b"\x00garbage")),
        ["could not read", "bin.parquet"],
        id="file-corrupt-parquet",
    ),
    # columns
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(), "data.source.timestamp_column=time"),
        ["['time'] not found", "data.source.timestamp_column"],
        id="column-timestamp-missing",
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(), "data.source.series_columns=[a,nope]"),
        ["['nope'] not found", "data.source.series_columns"],
        id="column-series-missing",
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(), "data.source.extra_columns=[a]", "data.source.series_columns=[a,b]"),
        ["['a'] are both series and extra"],
        id="column-series-and-extra",
    ),
    # types and values in the file
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(set_cell("a", 5, "abc"))),
        ["column 'a'", "not numeric", "line 7", "'abc'"],
        id="value-text",
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(set_cell("b", 7, np.nan))),
        ["missing value", "line 9", "column 'b'", "fill_method"],
        id="value-nan",
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(set_cell("temp", 9, np.inf))),
        ["infinite value", "line 11", "column 'temp'"],
        id="value-inf",
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(set_cell("date", 3, "yesterday"))),
        ["unparseable timestamp", "line 5", "'yesterday'"],
        id="value-timestamp",
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(lambda t: t.iloc[::-1])),
        ["not strictly increasing"],
        id="value-unsorted",
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(set_cell("a", 0, np.nan)), "data.source.fill_method=ffill"),
        ["line 2", "column 'a'", "fill_method=ffill leaves it", "use data.source.fill_method=interpolate"],
        id="value-nan-unfillable",
    ),
    pytest.param(
        "train",
        lambda i: i.long(
            "data.source.fill_method=interpolate",
            "data.source.extra_columns=[promo]",
            change=lambda t: t.assign(promo=t["promo"].where(t["series"] != "b")),
        ),
        ["'b'", "fill_method=interpolate cannot fill", "use data.source.fill_method=zero"],
        id="value-interpolate-unfillable",
    ),
    # hints that name the fix (issue 29): each followed in test_following_the_hint_works
    pytest.param(
        "train",
        lambda i: i.long(change=daily_dayfirst),
        [
            "unparseable timestamp",
            "at line 14 ('13/01/2024')",
            "reads as a day-first date",
            "set data.source.dayfirst=true",
        ],
        id="date-day-first-unparseable",
    ),
    pytest.param(
        "train",
        lambda i: i.long(change=monthly_dayfirst),
        [
            "missing 24h steps",
            f"would make {MONTH_FIRST_ROWS:,} rows from the {2 * MONTHS} read",
            "dates may be misread",
            "set data.source.dayfirst=true",
        ],
        id="date-day-first-read-as-gaps",
    ),
    pytest.param(
        "train",
        lambda i: i.long("data.source.date_format='%Y-%m-%d'", change=daily_dayfirst),
        ["at line 2 ('01/01/2024') does not match data.source.date_format='%Y-%m-%d'"],
        id="date-format-mismatch",
    ),
    pytest.param(
        "train",
        lambda i: i.long("data.source.series_column=store", "data.source.value_column=sales"),
        [
            "['store'] (data.source.series_column), ['sales'] (data.source.value_column) not found",
            "fix data.source.series_column and data.source.value_column",
        ],
        id="column-several-missing-at-once",
    ),
    pytest.param(
        "train",
        lambda i: i.long("data.source.extra_columns=[promo]", change=lambda t: t.assign(promo=np.nan)),
        ["column(s) ['promo']", "have no values", "leave them out: 'data.source.extra_columns=[]'"],
        id="column-empty-long",
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(lambda t: t.assign(b=np.nan)), "data.source.series_columns=[a,b]"),
        ["column(s) ['b']", "have no values", "leave them out: 'data.source.series_columns=[a]'"],
        id="column-empty-wide",
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(lambda t: t.assign(b=np.nan))),
        ["column(s) ['b']", "have no values", "leave them out: 'data.source.series_columns=[a,temp]'"],
        id="column-empty-wide-detected",
    ),
    # sizes
    pytest.param(
        "train",
        lambda i: i.synthetic("data.window_size=500"),
        ["too few rows", "data.window_size is 500"],
        id="size-window-too-long",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("data.split.train=0.9", "data.split.val=0.2"),
        ["data.split fractions sum to 1.250"],
        id="size-split-over-one",
    ),
    pytest.param(
        "train",
        lambda i: i.long("data.split.val=0"),
        ["data.split.val=0", "count rows back from each series' end", "positive integers"],
        id="size-split-val-zero",
    ),
    pytest.param(
        "train",
        lambda i: i.long("data.split.test=-24"),
        ["data.split.test=-24", "positive integers"],
        id="size-split-test-negative",
    ),
    pytest.param(
        "train",
        lambda i: i.long("data.split={val:200,test:40}"),
        ["last 200+40 rows", "longest series has 240 rows", "smaller data.split.val/test counts"],
        id="size-split-from-end-longer-than-every-series",
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(), "data.split={val:28,test:28}"),
        ["mixes a train fraction (0.7) with row counts", "data.split={train:null,val:28,test:28}"],
        id="size-split-fraction-mixed-with-counts-from-end",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("data.window_size=0"),
        ["data.window_size must be a positive integer"],
        id="size-window-zero",
    ),
    # config values
    pytest.param(
        "train",
        lambda i: i.synthetic("data.batch_size=abc"),
        ["data.batch_size must be a positive integer", "'abc'"],
        id="config-batch-size-text",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("model.net.dropout=1.5"),
        ["model.net.dropout must be a number in [0, 1)", "1.5"],
        id="config-dropout",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("model.net.num_units=0"),
        ["model.net.num_units must be a positive integer", "got 0"],
        id="config-num-units-zero",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("model.lr=-0.1"),
        ["model.lr must be a positive number", "-0.1"],
        id="config-negative-lr",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("model.lr_decay=1.5"),
        ["model.lr_decay must be a number in (0, 1]", "1.5"],
        id="config-lr-decay-above-one",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("model.lr_constant_epochs=-1"),
        ["model.lr_constant_epochs must be an integer >= 0", "-1"],
        id="config-lr-constant-epochs-negative",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("trainer.max_epochs=0"),
        ["trainer.max_epochs must be a positive integer"],
        id="config-max-epochs",
    ),
    pytest.param("train", lambda i: i.synthetic("no_such_key=1"), ["no_such_key"], id="config-unknown-key"),
    pytest.param(
        "train",
        lambda i: i.synthetic("data.windw_size=24", "model.net.num_unit=4"),
        [
            "unknown config keys data.windw_size (did you mean data.window_size?), "
            "model.net.num_unit (did you mean model.net.num_units?)"
        ],
        id="config-unknown-key-close",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("+data.windw_size=24"),
        [
            "ForecastDataModule (config data) takes no 'windw_size'",
            "did you mean data.window_size?",
            "drop +data.windw_size",
        ],
        id="config-added-key-not-an-argument",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("model=transformer"),
        ["unknown model option 'transformer'; choose one of", str(MODEL_OPTIONS)],
        id="config-unknown-group-option",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("model=bilstm_hybird"),
        ["unknown model option 'bilstm_hybird' (did you mean bilstm_hybrid?)"],
        id="config-group-option-close",
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(), "data.source.fill_method=mean"),
        ["unknown data.source.fill_method 'mean'", "interpolate"],
        id="config-fill-method",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("model.net.highway_window=1000"),
        ["model.net.highway_window=1000 is longer than the window", "at most the window size"],
        id="config-highway-longer-than-window",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("model.highway_init=least_squares"),
        ["model.highway_init=least_squares needs a highway", "model.net.highway_window"],
        id="config-highway-init-without-highway",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("model.net.highway_window=4", "model.freeze_highway=true"),
        ["model.freeze_highway=true keeps a fitted highway", "model.highway_init=least_squares"],
        id="config-freeze-unfitted-highway",
    ),
    # checkpoints and run folders
    pytest.param(
        "train",
        lambda i: i.synthetic(f"ckpt_path={i.root / 'none.ckpt'}"),
        ["checkpoint not found", "none.ckpt"],
        id="ckpt-missing",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic(f"ckpt_path={i.file('junk.ckpt', b'not a zip')}"),
        ["junk.ckpt is not a readable lstm-forecast checkpoint"],
        id="ckpt-garbage",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("ckpt_path=last"),
        ["ckpt_path=last but there is no", "resume=<run folder>"],
        id="ckpt-last-without-run-folder",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic(f"resume={i.root / 'gone'}"),
        ["cannot resume", "gone", "not an lstm-train run folder"],
        id="resume-no-run-folder",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic(run_dir=i.previous_run()),
        ["already holds a run", "refusing to overwrite", "resume="],
        id="run-folder-exists",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic(run_dir=i.file("blocker", b"") / "run"),
        ["cannot create run folder", "blocker is a file"],
        id="run-folder-unwritable",
    ),
    pytest.param(
        "train",
        lambda i: i.synthetic("paths.min_free_mb=1e15"),
        ["MB free on the disk", "paths.min_free_mb"],
        id="disk-full",
    ),
    pytest.param(
        "train",
        lambda i: i.wide(i.csv(), "model.net.num_units=16", f"ckpt_path={i.checkpoint}"),
        ["does not fit the configured model", "resume with the run's own config"],
        id="ckpt-other-model",
        marks=pytest.mark.slow,
    ),
]

EVALUATE_CASES = [
    pytest.param(
        "evaluate",
        lambda i: [f"hydra.run.dir={i.run_dir}"],
        ["name the model with one of run=<training run folder>", "ckpt_path=<file>.ckpt"],
        id="eval-no-ckpt",
    ),
    pytest.param(
        "evaluate",
        lambda i: [f"ckpt_path={i.root / 'none.ckpt'}", f"hydra.run.dir={i.run_dir}"],
        ["checkpoint not found"],
        id="eval-ckpt-missing",
    ),
    pytest.param(
        "evaluate",
        lambda i: [f"ckpt_path={i.file('junk.ckpt', b'PK junk')}", f"hydra.run.dir={i.run_dir}"],
        ["not a readable lstm-forecast checkpoint"],
        id="eval-ckpt-garbage",
    ),
    pytest.param(
        "evaluate",
        lambda i: [
            f"ckpt_path={i.file('text.ckpt', JUNK_CHECKPOINTS['text'])}",
            f"hydra.run.dir={i.run_dir}",
        ],
        ["text.ckpt is not a readable lstm-forecast checkpoint", "corrupt file"],
        id="eval-ckpt-text",
    ),
    pytest.param(
        "evaluate",
        lambda i: [
            f"ckpt_path={i.file('zip.ckpt', JUNK_CHECKPOINTS['zip-junk-pickle'])}",
            f"hydra.run.dir={i.run_dir}",
        ],
        ["zip.ckpt is not a readable lstm-forecast checkpoint"],
        id="eval-ckpt-zip-junk",
    ),
    pytest.param(
        "evaluate",
        lambda i: [f"ckpt_path={foreign_checkpoint(i)}", f"hydra.run.dir={i.run_dir}"],
        ["not an lstm-forecast checkpoint"],
        id="eval-ckpt-foreign",
    ),
    pytest.param(
        "evaluate",
        lambda i: [f"ckpt_path={i.root / 'x.ckpt'}", f"hydra.run.dir={i.previous_run()}"],
        ["already holds a run"],
        id="eval-run-folder-exists",
    ),
    pytest.param(
        "evaluate",
        lambda i: [f"ckpt_path={i.root / 'x.ckpt'}", "split=holdout", f"hydra.run.dir={i.run_dir}"],
        ["split must be one of ['train', 'val', 'test']", "got 'holdout'"],
        id="eval-split",
    ),
    pytest.param(
        "evaluate",
        lambda i: i.evaluate(
            f"data.source.path={i.csv(lambda t: t.rename(columns={'b': 'c'}), 'other.csv')}"
        ),
        ["series columns", "differ from the training data", "missing ['b']", "unexpected ['c']"],
        id="eval-other-columns",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "evaluate",
        lambda i: i.evaluate(f"data.source.path={i.csv(set_cell('a', 11, np.nan), 'gappy.csv')}"),
        ["missing value", "line 13"],
        id="eval-nan",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "evaluate",
        lambda i: i.evaluate("data.eval_batch_size=0"),
        ["data.eval_batch_size must be a positive integer"],
        id="eval-batch-zero",
        marks=pytest.mark.slow,
    ),
]

# More ``predict`` rows: same form, app "predict".
PREDICT_CASES = [
    pytest.param(
        "predict",
        lambda i: [f"hydra.run.dir={i.run_dir}"],
        ["name the model with one of run=<training run folder>", "ckpt_path=<file>.ckpt"],
        id="predict-no-ckpt",
    ),
    pytest.param(
        "predict",
        lambda i: [f"ckpt_path={i.root / 'none.ckpt'}", f"hydra.run.dir={i.run_dir}"],
        ["checkpoint not found"],
        id="predict-ckpt-missing",
    ),
    pytest.param(
        "predict",
        lambda i: [f"ckpt_path={i.root / 'x.ckpt'}", f"hydra.run.dir={i.previous_run()}"],
        ["already holds a run"],
        id="predict-run-folder-exists",
    ),
    pytest.param(
        "predict",
        lambda i: [
            f"ckpt_path={i.checkpoint}",
            f"data.source.path={i.csv(days_later_dayfirst, 'dayfirst.csv')}",
            f"hydra.run.dir={i.run_dir}",
        ],
        ["at line 194 ('13/01/2024 00:00')", "set data.source.dayfirst=true"],
        id="predict-day-first",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "predict",
        lambda i: [*i.predict(), f"future.path={i.root / 'nope.csv'}"],
        ["data file not found", "nope.csv", "set future.path=FILE"],
        id="predict-future-file-missing",
        marks=pytest.mark.slow,
    ),
]


def replaced(args: list[str], *pairs: tuple[str, str]) -> list[str]:
    """``args`` with each argument ``old`` of ``pairs`` replaced by ``new`` (each must be there)."""
    for old, new in pairs:
        assert old in args, (old, args)
        args = [new if arg == old else arg for arg in args]
    return args


# One epoch, with the default logger and callbacks: the fixed command runs as the user would run it,
# on the very file the hint was about.
QUICK_TRAIN = ["trainer.max_epochs=1"]
# The cases whose message names the fix: the case's arguments with that fix applied, which must run.
FOLLOWED_HINTS: dict[str, Callable[[Inputs, list[str]], list[str]]] = {
    "value-nan-unfillable": lambda i, a: replaced(
        a, ("data.source.fill_method=ffill", "data.source.fill_method=interpolate")
    ),
    "value-interpolate-unfillable": lambda i, a: replaced(
        a, ("data.source.fill_method=interpolate", "data.source.fill_method=zero")
    ),
    "date-day-first-unparseable": lambda i, a: [*a, "data.source.dayfirst=true"],
    "date-day-first-read-as-gaps": lambda i, a: [*a, "data.source.dayfirst=true"],
    "column-several-missing-at-once": lambda i, a: replaced(
        a,
        ("data.source.series_column=store", "data.source.series_column=series"),
        ("data.source.value_column=sales", "data.source.value_column=value"),
    ),
    "column-empty-long": lambda i, a: replaced(
        a, ("data.source.extra_columns=[promo]", "data.source.extra_columns=[]")
    ),
    "column-empty-wide-detected": lambda i, a: [*a, "data.source.series_columns=[a,temp]"],
    "column-empty-wide": lambda i, a: replaced(
        a, ("data.source.series_columns=[a,b]", "data.source.series_columns=[a]")
    ),
    "config-unknown-key-close": lambda i, a: replaced(
        a, ("data.windw_size=24", "data.window_size=24"), ("model.net.num_unit=4", "model.net.num_units=4")
    ),
    "config-added-key-not-an-argument": lambda i, a: replaced(
        a, ("+data.windw_size=24", "data.window_size=24")
    ),
    "config-group-option-close": lambda i, a: replaced(a, ("model=bilstm_hybird", "model=bilstm_hybrid")),
    "predict-day-first": lambda i, a: [*a, "data.source.dayfirst=true"],
    "predict-future-file-missing": lambda i, a: replaced(
        a, (f"future.path={i.root / 'nope.csv'}", f"future.path={future_temps(i)}")
    ),
}
CASES_BY_ID = {case.id: case for case in [*TRAIN_CASES, *EVALUATE_CASES, *PREDICT_CASES]}


@pytest.mark.parametrize("case_id", FOLLOWED_HINTS)
def test_following_the_hint_works(tmp_path, request, case_id):
    """Doing what the message says makes the same command run: a training run writes its metrics,
    a forecast its table."""
    app, arguments, _ = CASES_BY_ID[case_id].values
    inputs = Inputs(tmp_path, request)
    args = FOLLOWED_HINTS[case_id](inputs, arguments(inputs))
    result = run_app(app, *args, *(QUICK_TRAIN if app == "train" else []))
    assert result.returncode == 0, result.stderr[-3000:]
    forecast = "forecast.csv" if any(arg.startswith("horizon=") for arg in args) else "predictions.csv"
    written = "metrics.json" if app == "train" else forecast
    assert (inputs.run_dir / written).is_file()


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    data = root / "data.csv"
    good_table().to_csv(data, index=False)
    run_dir = root / "run"
    result = run_app(
        "train",
        "data=wide_file",
        f"data.source.path={data}",
        *TINY_MODEL,
        "trainer.max_epochs=1",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "checkpoints" / "last.ckpt"


def snapshot(folder: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
    )


@pytest.mark.parametrize(("app", "arguments", "fragments"), [*TRAIN_CASES, *EVALUATE_CASES, *PREDICT_CASES])
def test_bad_input_is_refused_in_one_line_leaving_nothing(tmp_path, request, app, arguments, fragments):
    inputs = Inputs(tmp_path, request)
    args = arguments(inputs)
    before = snapshot(tmp_path)
    result = run_app(app, *args)
    assert_one_line_error(result, *fragments)
    assert result.returncode == 2
    assert snapshot(tmp_path) == before, "the failed run left files behind"


def test_catalogue_is_large_and_distinct():
    ids = [case.id for case in [*TRAIN_CASES, *EVALUATE_CASES, *PREDICT_CASES]]
    assert len(ids) == len(set(ids)) and len(ids) >= 20


@pytest.mark.parametrize("kind", JUNK_CHECKPOINTS)
def test_any_junk_checkpoint_is_one_user_error(tmp_path, kind):
    """Whatever torch.load raises on a junk file (KeyError, EOFError, UnicodeDecodeError, ...) is the
    same one-line UserError."""
    path = tmp_path / f"{kind}.ckpt"
    path.write_bytes(JUNK_CHECKPOINTS[kind])
    with pytest.raises(UserError) as raised:
        read_checkpoint(path)
    message = str(raised.value)
    assert message.startswith(f"{path} is not a readable lstm-forecast checkpoint (")
    assert message.endswith("pass a .ckpt file written by lstm-train") and "\n" not in message
