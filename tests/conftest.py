"""Shared fixtures: real Hydra composition, tiny data, and running the real console apps."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from lstm_forecast.cli.app import CONFIG_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ETTH1 = SHARED_DATA / "ETTh1.csv"

# Small enough that a real fit takes seconds on 2 cores.
TINY_OVERRIDES = [
    "data.source.num_series=3",
    "data.source.num_rows=240",
    "data.window_size=12",
    "data.batch_size=64",
    "model.net.num_units=8",
    "model.net.embedding_dim=3",
    "model.net.dense_size=8",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.fixture
def compose_train_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/train.yaml`` with Hydra's compose API, outputs in ``tmp_path``.

    The Hydra config is registered as if Hydra had launched the run, so ``${hydra:...}``
    interpolations resolve and ``train(cfg)`` can be called directly.
    """

    def compose_cfg(*overrides: str, tiny: bool = True, config_name: str = "train") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(
                config_name=config_name,
                overrides=[*(TINY_OVERRIDES if tiny else []), *overrides],
                return_hydra_config=True,
            )
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    yield compose_cfg
    GlobalHydra.instance().clear()


def run_app(
    module: str, *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``python -m lstm_forecast.<module> args...`` as a user would; capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", f"lstm_forecast.{module}", *args],
        cwd=cwd or REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tiny_cli_args(run_dir: Path, *extra: str) -> list[str]:
    """Command-line overrides for a tiny real training run into ``run_dir``."""
    return [*TINY_OVERRIDES, f"hydra.run.dir={run_dir}", *extra]


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user error: non-zero exit, a single ``error:`` line naming the problem, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
