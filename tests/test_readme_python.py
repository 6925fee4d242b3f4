"""The README's Python example runs as written, on the demo panel its commands describe."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest

from lstm_forecast.data.long_source import synthetic_long_table

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(document: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", document.read_text(), flags=re.DOTALL)


@pytest.mark.slow
def test_the_readme_python_example_forecasts_every_series(tmp_path: Path) -> None:
    (block,) = python_blocks(README)
    synthetic_long_table().to_csv(tmp_path / "panel.csv", index=False)
    cwd = Path.cwd()
    os.chdir(tmp_path)  # the example reads panel.csv and writes outputs/ in the working folder
    try:
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    forecast = namespace["forecast"]
    panel = pd.read_csv(tmp_path / "panel.csv")
    assert list(forecast.columns[:3]) == ["series", "timestamp", "prediction"]
    assert forecast["prediction"].notna().all()
    # The long default holds back each series' last 24 + 24 steps for validation and test: the
    # series of 48 rows or fewer have nothing to train on (the README says so) and no forecast.
    lengths = panel["series"].astype(str).value_counts()
    assert 0 < (lengths <= 48).sum() < len(lengths)  # the demo panel has both kinds
    assert sorted(forecast["series"].unique()) == sorted(lengths.index[lengths > 48])
    assert (forecast.groupby("series").size() == 24).all()
    assert (tmp_path / "outputs" / "runs" / "train").is_dir()
