"""Plumbing shared by the Hydra entry points: config location, one-line errors, clean failure."""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from lstm_forecast.errors import UserError, find_user_error
from lstm_forecast.files import write_atomic

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
EXIT_USER_ERROR = 2


def _config_error(error: BaseException) -> UserError | None:
    """A user-facing message for config errors (unknown key, missing value) anywhere in ``error``'s chain."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, MissingMandatoryValue):
            key = getattr(error, "full_key", None) or "a mandatory value"
            return UserError(f"missing value for {key}; set it on the command line ({key}=...)")
        if isinstance(error, HydraException | OmegaConfBaseException):
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            return UserError(" ".join(lines[:3]) + "; see --help for the config groups and keys")
        error = error.__cause__ or error.__context__
    return None


def user_error_of(error: BaseException) -> UserError | None:
    return find_user_error(error) or _config_error(error)


def _check_overrides(config_name: str, overrides: list[str]) -> None:
    """Compose the config once before Hydra does, so a bad override is one line, not a report."""
    if any(arg.startswith("-") for arg in overrides):  # --multirun, --help, --cfg ...: Hydra's own
        return
    with hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        try:
            hydra.compose(config_name=config_name, overrides=overrides)
        except Exception as error:
            user_error = user_error_of(error)
            if user_error is None:
                raise
            raise user_error from None


def _fail(error: UserError, output_dir: Path | None, multirun: bool) -> None:
    """Report ``error`` in one line and leave nothing that looks like a finished run."""
    print(f"error: {error}", file=sys.stderr)
    if output_dir is not None and output_dir.exists():
        if multirun or (output_dir / "checkpoints").exists():
            write_atomic(output_dir / "FAILED", lambda tmp: tmp.write_text(f"{error}\n"))
        else:
            shutil.rmtree(output_dir, ignore_errors=True)


def hydra_app(config_name: str) -> Callable[[Callable[[DictConfig], float | None]], Callable[[], None]]:
    """Turn ``task(cfg)`` into a console entry point running it as a Hydra app named ``config_name``.

    A :class:`UserError` (also one wrapped by a library) or a config error becomes one
    ``error: ...`` line on stderr and exit status 2; a single run's folder is removed unless it
    already holds checkpoints, in which case (and in multiruns) a ``FAILED`` file says why.
    """

    def decorate(task: Callable[[DictConfig], float | None]) -> Callable[[], None]:
        @functools.wraps(task)
        def guarded(cfg: DictConfig) -> float | None:
            try:
                return task(cfg)
            except Exception as error:
                user_error = user_error_of(error)
                if user_error is None:
                    raise
                hydra_cfg = HydraConfig.get()
                multirun = hydra_cfg.mode == RunMode.MULTIRUN
                _fail(user_error, Path(hydra_cfg.runtime.output_dir), multirun)
                if multirun:
                    raise user_error from None
                sys.exit(EXIT_USER_ERROR)

        hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(guarded)

        def main() -> None:
            try:
                _check_overrides(config_name, sys.argv[1:])
            except UserError as error:
                print(f"error: {error}", file=sys.stderr)
                sys.exit(EXIT_USER_ERROR)
            hydra_main()

        return main

    return decorate
