"""Plumbing shared by the Hydra entry points: config location, one-line errors, clean failure."""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.singleton import Singleton
from hydra.errors import HydraException
from hydra.types import RunMode
from hydra.version import VersionBase
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from lstm_forecast.cli.composition import (
    apply_hydra_override,
    handed_to_the_run,
    run_mode_known,
    shared_config_repository,
)
from lstm_forecast.cli.key_hints import unexpected_argument_error, unknown_keys_error, unknown_option_error
from lstm_forecast.errors import UserError, causes, find_user_error, innermost_cause, one_line_reason
from lstm_forecast.files import write_atomic
from lstm_forecast.training.distributed import is_rank_zero
from lstm_forecast.training.run_folder import (
    DEFAULT_MIN_FREE_MB,
    check_output_dir,
    claim_new_folder,
    override_key,
    resume_overrides,
    write_run_info,
)
from lstm_forecast.training.sweeps import DEFAULT_OBJECTIVE, JobRecord


def config_dir_of(package_dir: Path) -> Path:
    """The configs shipped with the package in ``package_dir``: its ``conf`` folder in an installed
    wheel, else the repository's top-level ``conf/`` beside ``src/`` (a clone, the editable install,
    ``PYTHONPATH=<clone>/src``).

    Found from the package's own path rather than imported as ``lstm_forecast.conf``: an editable
    install maps that name to the conf/ of the clone it was made from, which would silently replace
    the configs of another clone run with ``PYTHONPATH=<other clone>/src``.
    """
    installed = package_dir / "conf"
    return installed if installed.is_dir() else package_dir.parents[1] / "conf"


CONFIG_DIR = str(config_dir_of(Path(__file__).resolve().parents[1]))
EXIT_USER_ERROR = 2
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}


def _config_error(error: BaseException) -> UserError | None:
    """A user-facing message for config errors (unknown key, missing value) anywhere in ``error``'s chain."""
    hint = unexpected_argument_error(error) or unknown_option_error(error)
    if hint is not None:
        return hint
    for cause in causes(error):
        if isinstance(cause, MissingMandatoryValue):
            key = getattr(cause, "full_key", None) or "a mandatory value"
            return UserError(f"missing value for {key}; set it on the command line ({key}=...)")
        if isinstance(cause, HydraException | OmegaConfBaseException):
            lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
            return UserError(" ".join(lines[:3]) + "; see --help for the config groups and keys")
    return None


def _disk_error(error: BaseException) -> UserError | None:
    """A full disk or an unwritable folder met mid-run, anywhere in ``error``'s chain."""
    for cause in causes(error):
        if isinstance(cause, OSError) and cause.errno in DISK_ERRNOS:
            where = f" {cause.filename}" if cause.filename else ""
            if cause.errno in (errno.ENOSPC, errno.EDQUOT):
                return UserError(
                    f"cannot write output{where}: {cause.strerror}; free disk space, then resume=<run folder>"
                )
            return UserError(
                f"cannot access{where}: {cause.strerror}; fix its permissions or choose another path"
            )
    return None


def user_error_of(error: BaseException) -> UserError | None:
    return find_user_error(error) or _config_error(error) or _disk_error(error)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Re-raise an error that is (or wraps) a user, config or disk error as that one-line UserError."""
    try:
        yield
    except Exception as error:
        user_error = user_error_of(error)
        if user_error is None:
            raise
        raise user_error from None


@contextlib.contextmanager
def hydra_state_kept() -> Iterator[None]:
    """Leave Hydra's process-wide state as it was found, whatever is composed or registered inside:
    the caller's own Hydra app or ``initialize_config_dir`` context (GlobalHydra and its version
    base: composing needs GlobalHydra cleared) and its HydraConfig (which a run's config replaces)."""
    global_hydra, version_base = GlobalHydra.instance(), VersionBase.instance()
    hydra_config = HydraConfig.instance()
    outer_hydra, outer_base, outer_cfg = global_hydra.hydra, version_base.getbase(), hydra_config.cfg
    global_hydra.clear()
    try:
        yield
    finally:
        # The very objects found (the caller may hold them), not the copies Hydra's compose leaves.
        Singleton._instances.update(
            {GlobalHydra: global_hydra, VersionBase: version_base, HydraConfig: hydra_config}
        )
        global_hydra.hydra, version_base.version_base, hydra_config.cfg = outer_hydra, outer_base, outer_cfg


def compose_config(
    config_name: str, overrides: list[str], return_hydra_config: bool = False, job_name: str = "app"
) -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides`` by Hydra's compose API: the one place
    that knows where the configs live. A config error is a one-line UserError. Works inside another
    Hydra app (or compose context) too, and leaves its state as it was (:func:`hydra_state_kept`).
    ``job_name`` is ``hydra.job.name`` (the compose API's default, or the name an app's run has)."""
    with (
        hydra_state_kept(),
        one_line_errors(),
        hydra.initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name=job_name),
    ):

        def compose(chosen: list[str]) -> DictConfig:
            return hydra.compose(
                config_name=config_name, overrides=chosen, return_hydra_config=return_hydra_config
            )

        try:
            return compose(overrides)
        except HydraException as error:
            groups = {folder.name for folder in Path(CONFIG_DIR).iterdir() if folder.is_dir()}
            unknown = unknown_keys_error(error, overrides, compose, groups)
            if unknown is None:
                raise
            raise unknown from None


def compose_run_config(
    config_name: str, overrides: list[str], output_dir: str | Path | None = None, new_folder: bool = False
) -> DictConfig:
    """A single run's config as Hydra's launcher hands it to an app, for calling the app's function
    (``train(cfg)``) from Python.

    The Hydra config is registered, so ``${hydra:...}`` interpolations resolve and the overrides
    are recorded as the command line's; the run writes into ``output_dir`` (default
    ``hydra.run.dir``: ``outputs/runs/<task>/<time>``; with ``new_folder``, that folder created now,
    or ``<time>_1``, ``<time>_2``... when a run of the same second has it). The returned config has
    no ``hydra`` node. The registration stays for the process: call it inside
    :func:`hydra_state_kept` to undo it.
    """
    with one_line_errors():
        cfg = compose_config(config_name, overrides, return_hydra_config=True)
        run_dir = Path(output_dir if output_dir is not None else cfg.hydra.run.dir).absolute()
        if new_folder and output_dir is None:
            run_dir = claim_new_folder(run_dir)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


MULTIRUN_FLAGS = ("-m", "--multirun")


def _first_job_overrides(overrides: list[str]) -> list[str]:
    """A multirun's overrides with each sweep (``a=1,2``, ``choice(...)``, ``range(...)``) at its
    first value: the first job's overrides. Optuna's ``interval(...)`` sweeps are left out."""
    first = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if not override.is_sweep_override():
            first.append(override.input_line)
            continue
        try:
            value = next(iter(override.sweep_string_iterator()))
        except (HydraException, StopIteration):  # not enumerable
            continue
        first.append(f"{override.get_key_element()}={value}")
    return first


def hydras_own_command(args: list[str]) -> bool:
    """Whether ``args`` ask Hydra itself (``--help``, ``--cfg``...) rather than for a run or a sweep."""
    return any(arg.startswith("-") and arg not in MULTIRUN_FLAGS for arg in args)


def _check_overrides(
    config_name: str, overrides: list[str], job_name: str = "app"
) -> tuple[list[str], RunMode | bool | None, DictConfig | None]:
    """Compose the config once before Hydra does, so a bad override is one line, not a report.

    A multirun is checked with its first job's overrides (a misspelt key fails every job alike).
    A single run also expands ``resume=<run folder>``, refuses to overwrite a folder holding
    another run, checks the run folder can be written, and pins ``hydra.run.dir`` to the folder
    checked. Returns the overrides to launch Hydra with, the run mode the composed config sets
    (``hydra.mode``, None when unset) or False when nothing was composed (``--help``, ``--cfg``...),
    and a single run's config as Hydra's run composes it (``job_name``: the run's ``hydra.job.name``)
    for :func:`handed_to_the_run`, else None.
    """
    flags = [arg for arg in overrides if arg.startswith("-")]
    if hydras_own_command(overrides):
        return overrides, False, None
    if flags:
        with one_line_errors():
            first_job = _first_job_overrides([arg for arg in overrides if arg not in flags])
        cfg = compose_config(config_name, first_job, return_hydra_config=True)
        return overrides, cfg.hydra.mode, None
    overrides = resume_overrides(overrides)
    with one_line_errors():
        cfg = compose_config(config_name, overrides, return_hydra_config=True, job_name=job_name)
        run_dir = Path(cfg.hydra.run.dir)
        min_free_mb = OmegaConf.select(cfg, "paths.min_free_mb", default=DEFAULT_MIN_FREE_MB)
    if is_rank_zero():  # DDP's other ranks re-execute the command line into rank 0's folder
        check_output_dir(run_dir, resuming=bool(cfg.get("resume")), min_free_mb=float(min_free_mb))
    if not any(override_key(arg) == "hydra.run.dir" for arg in overrides):
        pinned = f"hydra.run.dir={run_dir}"  # the folder checked, not a second later's
        with one_line_errors():
            apply_hydra_override(cfg, pinned)
        overrides = [*overrides, pinned]
    return overrides, cfg.hydra.mode, cfg


def run_job_name(task: Callable[..., object]) -> str:
    """``hydra.job.name`` of a run of ``task`` under ``hydra.main``, found as Hydra finds it."""
    from hydra._internal.utils import detect_calling_file_or_module_from_task_function, detect_task_name

    return detect_task_name(*detect_calling_file_or_module_from_task_function(task))


def discard_failed_run(error: UserError, output_dir: Path, keep: bool = False) -> None:
    """Leave nothing that looks like a finished run: remove ``output_dir``, or mark it with a
    ``FAILED`` file saying why when it holds checkpoints or ``keep`` (a sweep job, a resumed run)."""
    if not output_dir.exists():
        return
    if keep or (output_dir / "checkpoints").exists():
        write_atomic(output_dir / "FAILED", lambda tmp: tmp.write_text(f"{error}\n"))
    else:
        shutil.rmtree(output_dir, ignore_errors=True)


def _fail(error: UserError, output_dir: Path | None, multirun: bool, resumed: bool = False) -> None:
    """Report ``error`` in one line and leave nothing that looks like a finished run."""
    print(f"error: {error}", file=sys.stderr)
    if output_dir is not None:
        discard_failed_run(error, output_dir, keep=multirun or resumed)


def _start_record(cfg: DictConfig, hydra_cfg: DictConfig) -> JobRecord | None:
    """The job record of this run (rank 0 only: the other DDP ranks share its folder)."""
    if not is_rank_zero():
        return None
    return JobRecord(
        hydra_cfg.runtime.output_dir,
        hydra_cfg.job.get("num"),
        list(hydra_cfg.overrides.task),
        str(cfg.get("objective") or DEFAULT_OBJECTIVE),
    )


def _fail_job(error: Exception, output_dir: Path, record: JobRecord | None, overrides: list[str]) -> None:
    """A sweep job failed: say why in one line, mark its folder, and let the sweep go on."""
    # A library's own exception wrapped by instantiate (Lightning: no GPU) speaks for itself.
    user_error = find_user_error(error) or (
        _config_error(error)
        if isinstance(innermost_cause(error), HydraException | OmegaConfBaseException)
        else None
    )
    reason = str(user_error) if user_error is not None else one_line_reason(error)
    print(f"error: job {' '.join(overrides)} failed: {reason}", file=sys.stderr, flush=True)
    if record is None:
        return
    # The one-line reason first; an unexpected error's traceback below it, for whoever debugs it.
    details = "" if user_error is not None else "\n" + "".join(traceback.format_exception(error))
    write_atomic(output_dir / "FAILED", lambda tmp: tmp.write_text(f"{reason}\n{details}"))
    record.finish("failed", reason)


def hydra_app(config_name: str) -> Callable[[Callable[[DictConfig], float | None]], Callable[[], None]]:
    """Turn ``task(cfg)`` into a console entry point running it as a Hydra app named ``config_name``.

    A :class:`UserError` (also one wrapped by a library) or a config error becomes one
    ``error: ...`` line on stderr and exit status 2; a single run's folder is removed unless it
    already holds checkpoints, in which case a ``FAILED`` file says why.

    In a multirun, any exception fails only its job: one ``error:`` line, ``FAILED`` and ``job.json``
    in the job's folder say why, and the task returns None, which the basic sweeper keeps and the
    Optuna sweeper records as a failed trial, so the other jobs run. Every job writes ``job.json``
    (see :mod:`lstm_forecast.training.sweeps`) for the sweep summary.
    """

    def decorate(task: Callable[[DictConfig], float | None]) -> Callable[[], None]:
        @functools.wraps(task)
        def guarded(cfg: DictConfig) -> float | None:
            hydra_cfg = HydraConfig.get()
            multirun = hydra_cfg.mode == RunMode.MULTIRUN
            output_dir = Path(hydra_cfg.runtime.output_dir)
            record = _start_record(cfg, hydra_cfg)
            try:
                if is_rank_zero():
                    write_run_info(output_dir, cfg)
                result = task(cfg)
            except Exception as error:
                if multirun:
                    _fail_job(error, output_dir, record, list(hydra_cfg.overrides.task))
                    return None
                user_error = user_error_of(error)
                if user_error is None:
                    if record is not None:
                        record.finish("failed", one_line_reason(error))
                    raise
                if record is not None:
                    record.finish("failed", str(user_error))
                if is_rank_zero():
                    _fail(user_error, output_dir, multirun, bool(cfg.get("resume")))
                else:
                    print(f"error: {user_error}", file=sys.stderr)
                sys.exit(EXIT_USER_ERROR)
            # A NaN objective (a diverged fit) is no result: Optuna records None as a failed trial.
            if isinstance(result, float) and math.isnan(result):
                result = None
            if record is not None:
                record.finish("completed", objective_value=result)
            return result

        hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(guarded)

        def main() -> None:
            with shared_config_repository(one_composition=hydras_own_command(sys.argv[1:])):
                try:
                    checked = _check_overrides(config_name, sys.argv[1:], run_job_name(guarded))
                    sys.argv[1:], mode, cfg = checked
                except UserError as error:
                    print(f"error: {error}", file=sys.stderr)
                    sys.exit(EXIT_USER_ERROR)
                with run_mode_known(mode), handed_to_the_run(config_name, sys.argv[1:], cfg):
                    hydra_main()

        return main

    return decorate
