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
    assert sorted(forecast["series"].unique()) == sorted(panel["series"].astype(str).unique())
    assert (forecast.groupby("series").size() == 24).all()
    assert (tmp_path / "outputs" / "runs" / "train").is_dir()
