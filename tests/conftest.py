"""Shared fixtures: real Hydra composition, tiny data, and running the real console apps.

torch, Hydra and the package are imported where they are used: pytest-xdist's controller process loads
this file too, but runs no test, and would pay ~3.5 s of imports at the start of the suite, when the
two workers that do run tests need both cores.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import os
import random
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import CompletedProcess
from subprocess import run as run_process
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from omegaconf import DictConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ETTH1 = SHARED_DATA / "ETTh1.csv"

# A network and fit small enough that a real run takes seconds on 2 cores, on any data.
TINY_MODEL = [
    "data.window_size=12",
    "data.batch_size=64",
    "model.net.num_units=8",
    "model.net.embedding_dim=3",
    "model.net.dense_size=8",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    # One series' forecast figure at the end of a run instead of the default three (each takes ~0.15 s
    # to draw): tests/test_tensorboard.py checks the default's three.
    "callbacks.forecast_figures.num_series=1",
]
# ... on three short series of the built-in synthetic data.
TINY_OVERRIDES = ["data.source.num_series=3", "data.source.num_rows=240", *TINY_MODEL]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that start real processes (``launches``, ``ddp``: a minute of CPU among them) first,
    in their order: the two workers then share out the many short tests at the end and finish
    together, instead of one of them ending the suite alone with a DDP run."""
    items.sort(key=lambda item: not any(item.iter_markers("launches")) and not any(item.iter_markers("ddp")))


@pytest.fixture(scope="session", autouse=True)
def one_config_repository_per_worker() -> Iterator[None]:
    """Every app and composition in this test process reads Hydra's config repository once per search
    path, as the two compositions of one app run do (``cli/composition.py``): the same code, shared
    for longer. A copy per composition took 0.15 of the 0.3 s of a composition."""
    from lstm_forecast.cli.composition import shared_config_repository

    with shared_config_repository(kept=32):
        yield


def import_script(name: str):
    """``scripts/<name>.py`` imported as a module (the scripts import their neighbours by name)."""
    scripts = str(REPO_ROOT / "scripts")
    sys.path.insert(0, scripts)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(scripts)


def compose_config(config_name: str, output_dir: Path, overrides: list[str]) -> DictConfig:
    """``conf/<config_name>.yaml`` composed with Hydra's compose API for a run into ``output_dir``.

    The Hydra config is registered as if Hydra had launched the run, so ``${hydra:...}``
    interpolations resolve and the app functions (``train(cfg)``, ``evaluate(cfg)``...) can be
    called directly.
    """
    from hydra.core.global_hydra import GlobalHydra

    from lstm_forecast.cli.app import compose_run_config

    GlobalHydra.instance().clear()
    return compose_run_config(config_name, overrides, output_dir)


@pytest.fixture
def compose_train_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/train.yaml`` (:func:`compose_config`), outputs in ``tmp_path``."""

    def compose_cfg(*overrides: str, tiny: bool = True, config_name: str = "train") -> DictConfig:
        return compose_config(config_name, tmp_path, [*(TINY_OVERRIDES if tiny else []), *overrides])

    yield compose_cfg
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()


def run_app(
    module: str, *args: str, cwd: Path | None = None, timeout: float = 600, subprocess: bool = False
) -> CompletedProcess:
    """Run the console app ``lstm_forecast.<module>`` with ``args`` as a user would; capture its output.

    By default the app runs in this process (no ~12 s of imports per call): the same entry point
    ``python -m lstm_forecast.<module>`` calls, with ``sys.argv`` patched, its output captured, its
    exit status as ``returncode``, and the process state it touches restored (see :func:`in_process`).
    ``subprocess=True`` launches a real ``python -m`` process instead: for DDP (which re-executes the
    command line) and launchers that spawn processes (the wheel test launches the installed apps
    itself); :func:`forked_app` runs one in a child process to kill.
    ``timeout`` applies to real launches only.
    """
    if subprocess:
        return launch_app(module, *args, cwd=cwd, timeout=timeout)
    return in_process(module, *args, cwd=cwd)


def launch_app(module: str, *args: str, cwd: Path | None = None, timeout: float = 600) -> CompletedProcess:
    """``python -m lstm_forecast.<module> args...`` in a fresh process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return run_process(
        [sys.executable, "-m", f"lstm_forecast.{module}", *args],
        cwd=cwd or REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def exit_status(code: object, stderr: io.TextIOBase) -> int:
    """The exit status ``sys.exit(code)`` gives a Python process (a non-int code is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=stderr)
    return 1


def flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def fd_capture(fd: int) -> Iterator[Callable[[], str]]:
    """What is written straight to file descriptor ``fd`` (C code, a child process) while inside."""
    with tempfile.TemporaryFile() as sink:
        flush_std_streams()
        saved = os.dup(fd)
        os.dup2(sink.fileno(), fd)
        try:
            yield lambda: (sink.seek(0), sink.read().decode(errors="replace"))[1]
        finally:
            flush_std_streams()
            os.dup2(saved, fd)
            os.close(saved)


def is_console_handler(handler: logging.Handler) -> bool:
    """A plain ``StreamHandler`` (Lightning's, Hydra's console): subclasses (files, pytest's log
    capture, torch's trace handler, which closes its stream) are left alone."""
    return type(handler) is logging.StreamHandler and handler.stream is not None


def all_loggers() -> dict[str, logging.Logger]:
    loggers = {"": logging.getLogger()}
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            loggers[name] = logger
    return loggers


@contextlib.contextmanager
def isolated_logging(out: io.StringIO, err: io.StringIO) -> Iterator[None]:
    """Console log handlers write into ``out``/``err`` while inside; afterwards every logger has its
    handlers, level, propagation and enabled state back, and the handlers the run added (Hydra's
    console and ``<job>.log`` file handlers) are closed."""
    before = {
        name: (list(logger.handlers), logger.level, logger.propagate, logger.disabled)
        for name, logger in all_loggers().items()
    }
    console_streams = {}  # handlers created before the run (Lightning's, at import) -> their stream
    for handlers, *_ in before.values():
        for handler in handlers:
            if is_console_handler(handler) and handler not in console_streams:
                to_stdout = handler.stream in (sys.stdout, sys.__stdout__)
                console_streams[handler] = handler.setStream(out if to_stdout else err)
    try:
        yield
    finally:
        original_stderr = sys.stderr
        for name, logger in all_loggers().items():
            if name in before:
                handlers, level, propagate, disabled = before[name]
                added = [h for h in logger.handlers if h not in handlers]
                logger.handlers[:] = handlers
                if logger.level != level:  # setLevel clears every logger's cache: 500 loggers here
                    logger.setLevel(level)
                logger.propagate, logger.disabled = propagate, disabled
            else:  # first created during the run: keep a library's own console handler (Optuna's)
                added = [h for h in logger.handlers if isinstance(h, logging.FileHandler)]
                for handler in logger.handlers:
                    if is_console_handler(handler) and handler.stream in (out, err):
                        handler.setStream(original_stderr)
                logger.handlers[:] = [h for h in logger.handlers if h not in added]
            for handler in added:
                handler.close()
        for handler, stream in console_streams.items():
            handler.setStream(stream)


@contextlib.contextmanager
def restored_process_state(cwd: Path) -> Iterator[None]:
    """Working directory, ``sys.argv``, environment, torch threads and flags, RNG states and
    Hydra's global state as they were, whatever the app changed."""
    import numpy as np
    import torch
    from hydra.core.global_hydra import GlobalHydra

    saved_cwd, saved_argv, saved_env = os.getcwd(), sys.argv[:], dict(os.environ)
    saved_torch = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.get_float32_matmul_precision(),
    )
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    GlobalHydra.instance().clear()
    os.chdir(cwd)
    try:
        yield
    finally:
        GlobalHydra.instance().clear()
        os.chdir(saved_cwd)
        sys.argv[:] = saved_argv
        for name in set(os.environ) - set(saved_env):
            del os.environ[name]
        os.environ.update(saved_env)
        threads, deterministic, warn_only, benchmark, cudnn_deterministic, matmul = saved_torch
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, cudnn_deterministic
        torch.set_float32_matmul_precision(matmul)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])


def in_process(module: str, *args: str, cwd: Path | None = None) -> CompletedProcess:
    """Run ``lstm_forecast.cli.<module>.main`` here as ``python -m lstm_forecast.<module> args`` would.

    stdout and stderr are captured at the Python level (``sys.stdout``/``sys.stderr``, log handlers,
    Hydra's own error report) and at the file-descriptor level (C code), in that order.
    ``SystemExit`` becomes the return code; any other exception escaping the app is printed with
    its traceback to the captured stderr and gives return code 1, as the interpreter would.
    """
    main = importlib.import_module(f"lstm_forecast.cli.{module}").main
    argv0 = importlib.util.find_spec(f"lstm_forecast.{module}").origin  # what python -m puts there
    out, err = io.StringIO(), io.StringIO()
    returncode = 0
    with restored_process_state(cwd or REPO_ROOT):
        os.environ["HYDRA_FULL_ERROR"] = "0"
        sys.argv[:] = [argv0, *args]
        with fd_capture(1) as fd_out, fd_capture(2) as fd_err, isolated_logging(out, err):
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main()
                except SystemExit as exit_:
                    returncode = exit_status(exit_.code, err)
                except Exception:  # as uncaught: traceback on stderr, status 1
                    traceback.print_exc(file=err)
                    returncode = 1
            raw_out, raw_err = fd_out(), fd_err()
    return CompletedProcess([argv0, *args], returncode, out.getvalue() + raw_out, err.getvalue() + raw_err)


def forked_app(module: str, *args: str) -> int:
    """The pid of a child of this process that runs the app as :func:`in_process` does, its output
    discarded, and exits with the app's status: a process of its own to kill -9, without the ~8 s of
    imports a fresh interpreter pays (the child has this process' modules)."""
    flush_std_streams()
    pid = os.fork()
    if pid:
        return pid
    status = 1  # the child: it never returns into pytest
    try:
        discard = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(discard, fd)
        status = in_process(module, *args).returncode
    finally:
        os._exit(status)


def tiny_cli_args(run_dir: Path, *extra: str) -> list[str]:
    """Command-line overrides for a tiny real training run into ``run_dir``."""
    return [*TINY_OVERRIDES, f"hydra.run.dir={run_dir}", *extra]


def assert_one_line_error(result: CompletedProcess, *fragments: str) -> None:
    """A user error: non-zero exit, a single ``error:`` line naming the problem, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
