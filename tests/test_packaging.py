"""The package as users get it: a wheel that carries its configs and runs from any folder, configs of
the clone that is imported, and a folder of the user's own configs beside the packaged ones."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import venv
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO_ROOT, TINY_OVERRIDES, assert_one_line_error, compose_config, import_script, run_app
from lstm_forecast.cli.app import CONFIG_DIR, config_dir_of

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
NUM_SERIES, NUM_ROWS, WINDOW = 3, 240, 12  # TINY_OVERRIDES
# A user's experiment, kept outside the repository: deltas on the packaged configs.
USER_EXPERIMENT = """\
# @package _global_
defaults:
  - override /model: bilstm_hybrid
task_name: my_exp
model:
  net:
    num_lstm_layers: 1
"""


def user_config_folder(root: Path) -> Path:
    """``root/my_conf`` holding ``experiment/my_exp.yaml``."""
    (root / "my_conf" / "experiment").mkdir(parents=True)
    (root / "my_conf" / "experiment" / "my_exp.yaml").write_text(USER_EXPERIMENT)
    return root / "my_conf"


def assert_user_experiment_ran(run_dir: Path) -> None:
    """The run took the experiment's deltas (and the packaged model it overrides) and scored its model."""
    config = json.loads((run_dir / "run_info.json").read_text())["config"]
    assert config["task_name"] == "my_exp"
    assert config["model"]["net"]["num_lstm_layers"] == 1
    assert config["model"]["net"]["window_norm"] == "last"  # from the packaged bilstm_hybrid
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert math.isfinite(metrics["test/mse_z"]) and metrics["test/mse_z"] > 0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_the_wheel_lists_every_package_of_the_source_tree() -> None:
    """setuptools cannot discover packages with conf/ mapped in: a new subpackage must be listed."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    subpackages = {
        f"lstm_forecast.{p.parent.name}" for p in (REPO_ROOT / "src" / "lstm_forecast").glob("*/__init__.py")
    }
    assert set(setuptools["packages"]) == {"lstm_forecast", "lstm_forecast.conf", *subpackages}
    assert (REPO_ROOT / setuptools["package-dir"]["lstm_forecast.conf"] / "train.yaml").is_file()


def test_configs_are_those_beside_the_imported_package(tmp_path: Path) -> None:
    # A clone (or PYTHONPATH=<clone>/src): the clone's top-level conf/, whichever clone is installed.
    assert Path(CONFIG_DIR) == REPO_ROOT / "conf"
    clone_package = tmp_path / "clone" / "src" / "lstm_forecast"
    clone_package.mkdir(parents=True)
    assert config_dir_of(clone_package) == tmp_path / "clone" / "conf"
    # An installed wheel: the conf folder inside the package.
    installed_package = tmp_path / "site-packages" / "lstm_forecast"
    (installed_package / "conf").mkdir(parents=True)
    assert config_dir_of(installed_package) == installed_package / "conf"


def test_a_user_config_folder_adds_experiments(tmp_path: Path) -> None:
    """Composed as the apps compose; the wheel test below runs such an experiment end to end."""
    search_path = f"hydra.searchpath=[file://{user_config_folder(tmp_path)}]"

    cfg = compose_config("train", tmp_path, [*TINY_OVERRIDES, search_path, "experiment=my_exp"])

    assert cfg.task_name == "my_exp"
    assert cfg.model.net.num_lstm_layers == 1
    assert cfg.model.net.window_norm == "last"  # from the packaged bilstm_hybrid it overrides
    # Without the folder on the search path the experiment is unknown: one line, nothing written.
    missing = run_app("train", *TINY_OVERRIDES, "experiment=my_exp", f"hydra.run.dir={tmp_path / 'run'}")
    assert_one_line_error(missing, "my_exp")
    assert not (tmp_path / "run").exists()


def copy_source_tree(tree: Path) -> Path:
    """What a build needs of this clone, copied to ``tree`` (a build writes into its source tree)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO_ROOT / "src", tree / "src", ignore=ignore)
    shutil.copytree(REPO_ROOT / "conf", tree / "conf")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO_ROOT / name, tree / name)
    return tree


def pip_into(python: Path) -> list[str | Path]:
    """This environment's pip, installing into the environment of ``python``, offline."""
    return [
        sys.executable,
        "-m",
        "pip",
        "--disable-pip-version-check",
        "--python",
        python,
        "install",
        "--no-index",
    ]


def build_wheel(out_dir: Path) -> Path:
    """The wheel of this source tree, built offline with this environment's setuptools."""
    tree = copy_source_tree(out_dir / "tree")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out_dir), str(tree)]
    subprocess.run(build, check=True, capture_output=True, text=True)
    (wheel,) = out_dir.glob("lstm_forecast-*.whl")
    return wheel


def fresh_venv_with_our_dependencies(root: Path) -> Path:
    """A new virtualenv whose site-packages sees this environment's installed distributions (torch,
    Lightning... count as installed) except lstm-forecast itself; returns its python.

    The distributions are linked one by one into a folder named by a ``.pth`` file, so the repo's
    own (editable) install stays invisible and pip never considers touching this environment.
    """
    dependencies = root / "dependencies"
    dependencies.mkdir(parents=True)
    for site_dir in dict.fromkeys(Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")):
        for entry in site_dir.iterdir():
            linked = dependencies / entry.name
            if not entry.name.startswith(("lstm_forecast", "__editable__")) and not linked.exists():
                linked.symlink_to(entry)
    venv.create(root / "venv", with_pip=False)
    python = root / "venv" / "bin" / "python"
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site_packages) / "dependencies.pth").write_text(f"{dependencies}\n")
    return python


def run_installed(
    command: list[str | Path], cwd: Path, pythonpath: Path | None = None
) -> subprocess.CompletedProcess:
    """``command`` from ``cwd`` as a user of the installed package: no PYTHONPATH (unless given)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True)


def where_installed(python: Path, cwd: Path) -> dict[str, str]:
    """Where the fresh environment imports the package, its configs and its licence from."""
    code = (
        "import json, lstm_forecast, importlib.metadata as m; from lstm_forecast.cli import app;"
        "d = m.distribution('lstm-forecast');"
        "print(json.dumps({'package': lstm_forecast.__file__, 'configs': app.CONFIG_DIR,"
        " 'license': str(d.locate_file(next(f for f in d.files if f.name == 'LICENSE')))}))"
    )
    result = run_installed([python, "-c", code], cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.launches
def test_the_wheel_installs_and_runs_outside_the_repository(tmp_path: Path) -> None:
    started = time.perf_counter()
    wheel = build_wheel(tmp_path / "dist")
    python = fresh_venv_with_our_dependencies(tmp_path / "env")
    bin_dir = python.parent
    # pip checks the requirements, [sweep]'s caps included, against the linked distributions.
    constraints = REPO_ROOT / "constraints.txt"
    installed = run_installed([*pip_into(python), "-c", constraints, f"{wheel}[sweep]"], tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = where_installed(python, work)
    venv_root = (tmp_path / "env" / "venv").resolve()
    for path in where.values():
        assert Path(path).resolve().is_relative_to(venv_root), where
    assert Path(where["configs"], "train.yaml").is_file()
    assert Path(where["license"]).read_text() == (REPO_ROOT / "LICENSE").read_text()
    scripts = ("lstm-train", "lstm-evaluate", "lstm-predict", "lstm-backtest", "lstm-summarize")
    assert all((bin_dir / script).is_file() for script in scripts)

    # Train with a user's experiment from a folder of their own, then predict with the run's model.
    # The model summary on, as by default: the console shows what a user sees, warnings included, and
    # the default logger and callbacks add nothing to it that does not concern the user.
    search_path = f"hydra.searchpath=[file://{user_config_folder(work)}]"
    overrides = [o for o in TINY_OVERRIDES if "enable_model_summary" not in o]
    train = [bin_dir / "lstm-train", *overrides, search_path, "experiment=my_exp", "hydra.run.dir=run"]
    trained = run_installed(train, work)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert_user_experiment_ran(work / "run")
    console = trained.stdout + trained.stderr
    for noise in ("Tip:", "LeafSpec", "logging interval", "Total params", "Warning"):
        assert noise not in console, noise
    assert "test/mse_z" in console  # the run's own result line is still there
    assert json.loads((work / "run" / "run_info.json").read_text())["git_commit"] is None  # not a clone

    predicted = run_installed([bin_dir / "lstm-predict", "run=run", "hydra.run.dir=predicted"], work)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    predictions = pd.read_csv(work / "predicted" / "predictions.csv")
    assert len(predictions) == (NUM_ROWS - WINDOW + 1) * NUM_SERIES  # every full window, one step each
    assert predictions["prediction"].notna().all()
    print(f"wheel built, installed and run in {time.perf_counter() - started:.1f} s")


@pytest.mark.slow
@pytest.mark.launches
def test_an_editable_install_reads_the_configs_of_the_clone_it_imports(tmp_path: Path) -> None:
    """With conf/ mapped, setuptools' editable install maps ``lstm_forecast.conf`` to the installed
    clone's conf/; a second clone run with ``PYTHONPATH=<it>/src`` must still read its own."""
    clone, worktree = copy_source_tree(tmp_path / "clone"), copy_source_tree(tmp_path / "worktree")
    python = fresh_venv_with_our_dependencies(tmp_path / "env")
    editable = [*pip_into(python), "--no-deps", "--no-build-isolation", "--quiet", "-e", clone]
    installed = run_installed(editable, tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    config_dir = [python, "-c", "from lstm_forecast.cli.app import CONFIG_DIR; print(CONFIG_DIR)"]

    from_clone = run_installed(config_dir, tmp_path)
    from_worktree = run_installed(config_dir, tmp_path, pythonpath=worktree / "src")

    assert Path(from_clone.stdout.strip()) == clone / "conf", from_clone.stderr[-3000:]
    assert Path(from_worktree.stdout.strip()) == worktree / "conf", from_worktree.stderr[-3000:]


def test_make_install_gives_uv_the_package_sources_pip_is_configured_with() -> None:
    """``scripts/uv_pip_settings.py``: the option pip itself would use (environment, then the install
    section, then the global one), list options split into one uv option per value, and pip's choice of
    the best version over every index."""
    settings = import_script("uv_pip_settings")
    listing = (
        ":env:.find-links='/opt/wheels'\n"
        "global.find-links='/elsewhere'\n"
        "global.extra-index-url='file:///a/simple file:///b/simple'\n"
        "install.index-url='https://mirror/simple'\n"
        "global.index-url='https://ignored/simple'\n"
        "global.cert='/etc/ssl/certs/ca-certificates.crt'\n"
    )
    arguments = settings.uv_arguments(settings.pip_settings(listing))
    options = list(zip(arguments[::2], arguments[1::2], strict=True))
    assert options[0] == ("--index-strategy", "unsafe-best-match")
    assert sorted(options[1:]) == [
        ("--extra-index-url", "file:///a/simple"),
        ("--extra-index-url", "file:///b/simple"),
        ("--find-links", "/opt/wheels"),
        ("--index-url", "https://mirror/simple"),
    ]
    assert settings.uv_arguments(settings.pip_settings("")) == ["--index-strategy", "unsafe-best-match"]


def test_make_install_finds_a_pip_for_a_venv_made_without_one(monkeypatch) -> None:
    """``make install`` makes the venv without pip; the pip wheel bundled with Python installs uv."""
    settings = import_script("uv_pip_settings")
    assert settings.pip_command() == [sys.executable, "-m", "pip"]  # this environment has its own
    monkeypatch.setattr(settings.importlib.util, "find_spec", lambda name: None)  # as in a bare venv
    bundled = settings.pip_command()
    assert bundled[0] == sys.executable and bundled[1].endswith(".whl/pip"), bundled
    version = subprocess.run([*bundled, "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0 and version.stdout.startswith("pip "), version.stderr
