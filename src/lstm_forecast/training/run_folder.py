"""The run folder: resuming into it, refusing to overwrite it, checking it can be written, and
recording what produced it (``run_info.json``).

Resuming (see README, "Reliability"): ``resume=<run folder>`` re-applies that run's saved
command-line overrides (``.hydra/overrides.yaml``; overrides given now win), writes into the same
folder (``hydra.run.dir``) and TensorBoard log, and continues from ``checkpoints/last.ckpt``
(``ckpt_path=last``). ``ckpt_path=last hydra.run.dir=<run folder>`` means the same.
"""

from __future__ import annotations

import itertools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import lstm_forecast
from lstm_forecast.errors import UserError
from lstm_forecast.files import write_json

RUN_INFO_FILE = "run_info.json"
FAILED_FILE = "FAILED"
# Keys a resume sets itself; the saved values of these are not re-applied.
RESUME_KEYS = ("resume", "ckpt_path", "hydra.run.dir")
DEFAULT_MIN_FREE_MB = 100
PACKAGE_DIR = Path(lstm_forecast.__file__).resolve().parent


# ----------------------------------------------------------------------------- what produced a run
def git_commit(directory: Path = PACKAGE_DIR) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``directory``; None outside one."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data with every interpolation resolved (unresolvable ones kept as text)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation needing Hydra's runtime outside a Hydra run
        return OmegaConf.to_container(cfg, resolve=False)


def run_info(cfg: DictConfig) -> dict[str, Any]:
    """Plain data describing the code and config of a run; stored in checkpoints and run folders."""
    git = git_commit()
    return {
        "package_version": lstm_forecast.__version__,
        "git_commit": git["commit"] if git else None,
        "git_dirty": git["dirty"] if git else None,
        "config": resolved_config(cfg),
    }


def write_run_info(output_dir: Path, cfg: DictConfig) -> Path:
    """Write ``run_info.json``: code version, git commit, resolved config, environment, command.

    A resumed run keeps the original record and appends one entry per resume to ``resumes``.
    """
    import pytorch_lightning
    import torch

    path = output_dir / RUN_INFO_FILE
    now = datetime.now(UTC).isoformat(timespec="seconds")
    current = {
        **run_info(cfg),
        "started_at": now,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "host": platform.node(),
    }
    if cfg.get("resume") and path.is_file():
        import json

        record = json.loads(path.read_text())
        record.setdefault("resumes", []).append(current)
        (output_dir / FAILED_FILE).unlink(missing_ok=True)
    else:
        record = current
    return write_json(path, record)


# ----------------------------------------------------------------------------- resuming
def override_key(override: str) -> str:
    """``+a.b=1`` -> ``a.b``; ``~a`` -> ``a``."""
    return override.split("=", 1)[0].lstrip("+~")


def _argument(overrides: list[str], key: str) -> str | None:
    values = [o.split("=", 1)[1] for o in overrides if "=" in o and override_key(o) == key]
    return values[-1] if values else None


def resume_overrides(overrides: list[str]) -> list[str]:
    """Expand ``resume=<run folder>`` (or ``ckpt_path=last hydra.run.dir=<existing folder>``).

    Returns the overrides to launch with: the run's saved overrides, then the ones given now
    (which win), then ``resume``, ``hydra.run.dir`` and ``ckpt_path`` (``last`` unless given).
    Unchanged when not resuming.
    """
    folder = _argument(overrides, "resume")
    if folder in (None, "null"):
        run_dir = _argument(overrides, "hydra.run.dir")
        if _argument(overrides, "ckpt_path") != "last" or run_dir is None or not Path(run_dir).exists():
            return overrides
        folder = run_dir
    run_dir = Path(folder)
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if not saved_file.is_file():
        raise UserError(
            f"cannot resume {run_dir}: it is not an lstm-train run folder (no .hydra/overrides.yaml); "
            "pass resume=outputs/runs/train/<time>"
        )
    saved = [str(o) for o in OmegaConf.load(saved_file) or []]
    given = {override_key(o) for o in overrides}
    kept = [o for o in saved if override_key(o) not in given and override_key(o) not in RESUME_KEYS]
    now = [o for o in overrides if override_key(o) not in RESUME_KEYS]
    ckpt_path = _argument(overrides, "ckpt_path") or "last"
    return [*kept, *now, f"resume={run_dir}", f"hydra.run.dir={run_dir}", f"ckpt_path={ckpt_path}"]


def last_checkpoint(cfg: DictConfig) -> Path:
    """Where the checkpoint callback writes ``last.ckpt``."""
    dirpath = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath", default=None)
    return Path(dirpath or Path(cfg.paths.output_dir) / "checkpoints") / "last.ckpt"


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """The checkpoint ``trainer.fit`` continues from: ``ckpt_path=last`` is the run folder's
    ``last.ckpt`` (none yet when a resumed run was killed before its first checkpoint)."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path in (None, ""):
        return None
    if ckpt_path != "last":
        return str(ckpt_path)
    path = last_checkpoint(cfg)
    if path.is_file():
        return str(path)
    if cfg.get("resume"):
        return None  # killed before its first checkpoint: start again, in the same folder
    raise UserError(f"ckpt_path=last but there is no {path}; pass resume=<run folder> to continue a run")


# ----------------------------------------------------------------------------- output folder checks
def _first_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def claim_new_folder(path: Path) -> Path:
    """Create ``path``, or else the first of ``path_1``, ``path_2``... that does not exist yet, and
    return it: two runs started in the same second (threads, processes) never share a folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for number in itertools.count():
        candidate = path if number == 0 else path.with_name(f"{path.name}_{number}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


def check_output_dir(run_dir: Path, resuming: bool, min_free_mb: float = DEFAULT_MIN_FREE_MB) -> None:
    """Fail before anything is written when ``run_dir`` holds another run (and we are not
    resuming it), cannot be created or written, or its disk has less than ``min_free_mb`` free."""
    if resuming:
        if not run_dir.is_dir():
            raise UserError(f"cannot resume {run_dir}: no such run folder")
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        raise UserError(
            f"run folder {run_dir} already holds a run; refusing to overwrite it. Pass resume={run_dir} "
            "to continue it, or choose another hydra.run.dir"
        )
    existing = _first_existing(run_dir)
    if not existing.is_dir():
        raise UserError(
            f"cannot create run folder {run_dir}: {existing} is a file; choose another hydra.run.dir"
        )
    try:
        with tempfile.TemporaryFile(dir=existing) as probe:
            probe.write(b"probe")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise UserError(
            f"cannot write to {existing} ({error.strerror or error}); choose a writable hydra.run.dir"
        ) from None
    free_mb = shutil.disk_usage(existing).free / 2**20
    if free_mb < min_free_mb:
        raise UserError(
            f"only {free_mb:.0f} MB free on the disk holding {existing} (paths.min_free_mb={min_free_mb:g}); "
            "free some space or choose another hydra.run.dir"
        )
