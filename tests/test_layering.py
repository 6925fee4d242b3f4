"""The package's layers import only downwards, and no module outgrows a reader.

    api -> cli -> training | inference -> evaluation -> models -> data -> core (errors, files, memory)

``training`` and ``inference`` are siblings: neither imports the other. ``api`` (the Python
``Forecaster``) is a front end beside the console apps of ``cli``; it ranks just above ``cli``
because it reuses their plumbing (where the configs live, composing a run's config, one-line
errors) rather than a second copy of it, and ``cli`` never imports it. The top-level
``lstm_forecast.<app>`` modules are shims for ``python -m lstm_forecast.<app>``.

``lstm_forecast/__init__.py`` (core) exposes ``Forecaster`` lazily: the import sits in the module's
``__getattr__`` and runs on first use of the attribute, never on ``import lstm_forecast``, so it
is not an upward import of the package's own (checked below by importing the package).
"""

from __future__ import annotations

import ast
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lstm_forecast"
LAYERS = {
    "core": 0,
    "data": 1,
    "models": 2,
    "evaluation": 3,
    "training": 4,
    "inference": 4,
    "cli": 5,
    "api": 6,
    "shim": 7,
}
CORE_MODULES = {"errors", "files", "memory", "__init__"}
MAX_LINES = 400


def layer_of(module: str) -> str:
    """``lstm_forecast.data.windows`` -> ``data``; core modules and app shims by name."""
    parts = module.split(".")[1:]
    if not parts or parts[0] in CORE_MODULES:
        return "core"
    if len(parts) == 1:
        return "shim"
    return parts[0]


def lazy_attribute_imports(tree: ast.Module) -> set[ast.AST]:
    """Nodes inside a module-level ``__getattr__``: they run when the attribute is first asked for."""
    return {
        node
        for function in tree.body
        if isinstance(function, ast.FunctionDef) and function.name == "__getattr__"
        for node in ast.walk(function)
    }


def package_imports(path: Path) -> set[str]:
    """``lstm_forecast...`` modules imported by the file, also under ``if TYPE_CHECKING``; the lazy
    imports of the package's own ``__getattr__`` are the exception (see the module docstring)."""
    imported = set()
    tree = ast.parse(path.read_text())
    lazy = lazy_attribute_imports(tree) if path == PACKAGE / "__init__.py" else set()
    for node in ast.walk(tree):
        if node in lazy:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lstm_forecast"):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names if alias.name.startswith("lstm_forecast"))
    return imported


MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(("lstm_forecast", *path.relative_to(PACKAGE).with_suffix("").parts))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_downwards(path: Path) -> None:
    here = layer_of(module_name(path))
    for module in package_imports(path):
        there = layer_of(module)
        same_layer = there == here
        assert same_layer or LAYERS[there] < LAYERS[here], (
            f"{module_name(path)} ({here}) imports {module} ({there})"
        )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_readable(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it into named steps"


def test_the_layers_are_what_the_package_holds() -> None:
    folders = {
        path.relative_to(PACKAGE).parts[0] for path in MODULES if len(path.relative_to(PACKAGE).parts) > 1
    }
    assert folders == {"api", "cli", "data", "evaluation", "inference", "models", "training"}


def test_importing_the_package_stays_light() -> None:
    """``import lstm_forecast`` loads neither the API nor torch, Lightning or Hydra (``Forecaster`` is
    imported on first use; tests/test_api.py imports it that way)."""
    heavy = ("lstm_forecast.api", "torch", "pytorch_lightning", "hydra")
    check = f"import sys, lstm_forecast; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_apps_start_without_torch_or_lightning() -> None:
    """Each app's entry module loads neither torch, Lightning nor pandas: ``--help``, ``--cfg job`` and a
    rejected override answer from Hydra and the configs alone (under a second on 2 cores,
    docs/performance.md); the work is imported when a run starts."""
    heavy = ("torch", "pytorch_lightning", "lightning_fabric", "pandas")
    apps = ("train", "evaluate", "predict", "backtest", "export")
    check = (
        f"import sys\nfor app in {apps!r}: __import__('lstm_forecast.cli.' + app)\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    # A rejected override is answered in one line, before any of them is needed.
    rejected = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lstm_forecast.train", "data.windw_size=3"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert rejected.returncode == 2 and "windw_size" in rejected.stderr
    assert " torch\n" not in rejected.stderr and "pytorch_lightning" not in rejected.stderr
    # Every app's ``python -m`` module launches it (the other app tests call its main in-process).
    for app in (*apps, "summarize"):
        helped = subprocess.run(
            [sys.executable, "-m", f"lstm_forecast.{app}", "--help"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert helped.returncode == 0 and app in helped.stdout, (app, helped.stderr[-2000:])


def test_help_copies_hydras_config_repository_once_and_says_the_same(monkeypatch) -> None:
    """``--help`` lists every config group; Hydra copies its whole repository for each (0.8 s of a 1.3 s
    help): the apps let the listing share one copy (0.55 s in all on 2 cores, docs/performance.md)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    import lstm_forecast.cli.app as app
    from conftest import run_app

    original = ConfigLoaderImpl._parse_overrides_and_create_caching_repo
    copies = []

    def counted(self, config_name, overrides):
        copies.append(config_name)
        return original(self, config_name, overrides)

    monkeypatch.setattr(ConfigLoaderImpl, "_parse_overrides_and_create_caching_repo", counted)
    shared = run_app("train", "--help")
    assert shared.returncode == 0 and "data: etth1, long_csv, synthetic, wide_file" in shared.stdout
    assert 0 < len(copies) <= 3, len(copies)
    assert ConfigLoaderImpl._parse_overrides_and_create_caching_repo is counted  # put back
    monkeypatch.setattr(app, "shared_config_repository", lambda **_: contextlib.nullcontext())
    copies.clear()
    plain = run_app("train", "--help")
    assert len(copies) > 50 and plain.stdout == shared.stdout  # Hydra's own help, word for word


def test_a_run_composes_its_config_once_as_hydra_would_compose_it(monkeypatch, tmp_path) -> None:
    """A run's config is composed once: the apps' check of the overrides composes it (one copy of the
    repository), Hydra's look at the run mode takes the check's, and Hydra's run is handed the check's
    config. The run's config and Hydra config (job name, the pinned run folder, its overrides, a
    user's config folder on the search path) are those of three compositions of Hydra's own."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    import lstm_forecast.cli.app as app
    from conftest import TINY_OVERRIDES, run_app
    from test_packaging import user_config_folder

    original_copy, original_load = (
        ConfigLoaderImpl._parse_overrides_and_create_caching_repo,
        ConfigLoaderImpl._load_configuration_impl,
    )
    copies, compositions = [], []

    def counted_copy(self, config_name, overrides):
        copies.append(config_name)
        return original_copy(self, config_name, overrides)

    def counted_load(self, config_name, *args, **kwargs):
        compositions.append(config_name)
        return original_load(self, config_name, *args, **kwargs)

    def composed(cwd: Path) -> tuple[str, str]:
        """The run's config and Hydra config, its folder (left for the check to pick) and cwd named."""
        # The default callbacks and logger: they are composed too.
        cwd.mkdir()
        args = [*TINY_OVERRIDES, "trainer.max_epochs=1", *user_experiment]
        result = run_app("train", *args, cwd=cwd)
        assert result.returncode == 0, result.stderr
        (run_dir,) = (cwd / "outputs" / "runs" / "my_exp").iterdir()
        named = {str(run_dir): "RUN", str(run_dir.relative_to(cwd)): "RUN", str(cwd): "CWD"}
        texts = [(run_dir / ".hydra" / name).read_text() for name in ("config.yaml", "hydra.yaml")]
        for path, name in named.items():
            texts = [text.replace(path, name) for text in texts]
        return tuple(texts)

    user_experiment = [f"hydra.searchpath=[file://{user_config_folder(tmp_path)}]", "experiment=my_exp"]
    monkeypatch.setattr(ConfigLoaderImpl, "_parse_overrides_and_create_caching_repo", counted_copy)
    monkeypatch.setattr(ConfigLoaderImpl, "_load_configuration_impl", counted_load)
    shared = composed(tmp_path / "shared")
    assert "task_name: my_exp" in shared[0] and "name: train" in shared[1]
    assert copies == ["train"] and compositions == ["train"], (copies, compositions)
    assert ConfigLoaderImpl.load_configuration.__qualname__ == "ConfigLoaderImpl.load_configuration"  # back
    for name in ("shared_config_repository", "run_mode_known", "handed_to_the_run"):
        monkeypatch.setattr(app, name, lambda *_, **__: contextlib.nullcontext())
    copies.clear(), compositions.clear()
    plain = composed(tmp_path / "plain")
    assert len(copies) == 3 and len(compositions) == 3
    assert plain[0] == shared[0]
    assert plain[1] == shared[1]


# Config-group choices (in either order, added, deleted, a packaged experiment), each composition with
# its own values; the leak check composes a choice again without the value the one before it set.
COMPOSITIONS = [
    ("train", ["data.window_size=12"]),
    ("train", ["trainer=ddp_cpu", "model=seg_bilstm", "model.net.seg_len=6"]),
    ("train", ["model=seg_bilstm", "trainer=ddp_cpu"]),
    (
        "train",
        [
            "data=wide_file",
            "data.source.path=elsewhere.csv",
            "+logger@extra_logger=csv",
        ],
    ),
    ("train", ["data=wide_file", "~logger"]),
    ("train", ["experiment=etth1_h24", "data.window_size=48"]),
    ("train", ["experiment=etth1_h24"]),
    ("predict", ["run=A", "horizon=3"]),
    ("predict", ["run=B"]),
    ("train", ["data=no_such_data"]),
]


def test_compositions_that_reuse_earlier_work_equal_hydras_own(monkeypatch) -> None:
    """A composition whose config-group choices an earlier one made starts from a copy of that one's
    merged config (``cli/composition.py``): config and Hydra config as Hydra composes them alone, a
    bad choice refused alike, and no value of the earlier composition left in the later one."""
    from hydra._internal import config_loader_impl
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from omegaconf import OmegaConf

    from lstm_forecast.cli.app import compose_config
    from lstm_forecast.errors import UserError

    def composed_all() -> list[str]:
        texts = []
        for config_name, overrides in COMPOSITIONS:
            try:
                cfg = compose_config(config_name, overrides, return_hydra_config=True)
            except UserError as error:
                texts.append(f"error: {error}")
            else:
                texts.append(OmegaConf.to_yaml(cfg))
        return texts

    # The test session's block is open (conftest.py): twice through, so every composition but a
    # refused one reuses an earlier one's work the second time; then with Hydra's own two methods.
    reused = composed_all() + composed_all()
    for owner, name in (
        (ConfigLoaderImpl, "_compose_config_from_defaults_list"),
        (config_loader_impl, "create_defaults_list"),
    ):
        monkeypatch.setattr(owner, name, getattr(owner, name).hydras_own)
    hydras = composed_all()
    assert [text.startswith("error: ") for text in hydras] == [False] * 9 + [
        True
    ] and "no_such_data" in hydras[-1]
    assert "elsewhere.csv" not in hydras[4] and "window_size: 48" not in hydras[6]
    for (config_name, overrides), own, first, second in zip(
        COMPOSITIONS, hydras, reused[: len(hydras)], reused[len(hydras) :], strict=True
    ):
        assert first == own and second == own, (config_name, overrides)


def test_compositions_sharing_the_repository_see_only_their_own_overrides() -> None:
    """Hydra merges the nodes it loads into the composed config without copying them: a shared copy
    of the repository must hand out copies, or ``run=A`` stays in a later composition without it."""
    from lstm_forecast.cli.app import compose_config
    from lstm_forecast.cli.composition import shared_config_repository

    with shared_config_repository():
        first = compose_config("export", ["run=A"])
        later = compose_config("export", ["ckpt_path=B"])
    assert first.run == "A" and later.run is None and later.ckpt_path == "B"
