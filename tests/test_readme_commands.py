"""Every app command in README.md and docs/*.md composes: its config group choices and keys exist.

Each command in their code blocks (``lstm-<app> ...``, ``.venv/bin/lstm-<app> ...``,
``python -m lstm_forecast.<app> ...``) is composed as ``--cfg job`` would compose it, with Hydra's
compose API and the Hydra config included (launchers, sweepers); a multirun is composed with its
first job's overrides. Placeholders such as ``<time>`` stand for a run folder's name.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lstm_forecast.cli.app import CONFIG_DIR, _first_job_overrides
from lstm_forecast.cli.summarize import argument_parser

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
APP = re.compile(
    r"(?:^|/)lstm-(train|evaluate|predict|backtest|export|summarize)$"
    r"|^lstm_forecast\.(train|evaluate|predict|backtest|export|summarize)$"
)
SHELL_ASSIGNMENT = re.compile(r"^([A-Z_]+)=(.+)$")
PLACEHOLDERS = {"<time>": "2026-01-01_00-00-00", "<run>": "train/2026-01-01_00-00-00"}


def documented_commands(document: Path) -> list[tuple[str, list[str]]]:
    """``(app, arguments)`` of every app command in the fenced code blocks of ``document``."""
    commands = []
    in_block = False
    lines: list[str] = []
    for line in document.read_text().splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            lines.append(line)
    joined = "\n".join(lines).replace("\\\n", " ")
    shell_variables: dict[str, str] = {}  # NAME="..." lines, expanded in the commands that follow
    for line in joined.splitlines():
        assignment = SHELL_ASSIGNMENT.match(line)
        if assignment:
            shell_variables[assignment.group(1)] = " ".join(shlex.split(assignment.group(2)))
            continue
        for name, value in shell_variables.items():
            line = line.replace(f"${name}", value)
        for placeholder, value in PLACEHOLDERS.items():
            line = line.replace(placeholder, value)
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        for position, token in enumerate(tokens):
            match = APP.search(token)
            if match and (match.group(1) or (position > 0 and tokens[position - 1] == "-m")):
                commands.append((match.group(1) or match.group(2), tokens[position + 1 :]))
                break
    return commands


README_COMMANDS = documented_commands(REPO / "README.md")
# Each distinct command once: several documents show the same one.
COMMANDS = list(
    dict.fromkeys(
        (app, tuple(arguments)) for document in DOCUMENTS for app, arguments in documented_commands(document)
    )
)


def test_the_readme_shows_every_app() -> None:
    assert {app for app, _ in README_COMMANDS} == {
        "train",
        "evaluate",
        "predict",
        "backtest",
        "export",
        "summarize",
    }
    assert len(COMMANDS) >= 30


# Hydra's own flags that take a value (``--cfg job``, ``--info searchpath``): not overrides.
FLAGS_WITH_VALUES = {"--cfg", "-c", "--info", "-i", "--package", "-p", "--config-name", "-cn"}


def hydra_overrides(arguments: list[str]) -> list[str]:
    """The ``key=value`` overrides of a command line, without Hydra's flags and their values."""
    overrides, skip_next = [], False
    for argument in arguments:
        if skip_next:
            skip_next = False
        elif argument in FLAGS_WITH_VALUES:
            skip_next = True
        elif not argument.startswith("-"):
            overrides.append(argument)
    return overrides


def documented_experiments() -> dict[str, str]:
    """``{task_name: text}`` of the ``# @package _global_`` experiment files shown in the docs."""
    experiments = {}
    for document in DOCUMENTS:
        for block in re.findall(r"```yaml\n(.*?)```", document.read_text(), flags=re.DOTALL):
            name = re.search(r"^task_name: (\w+)$", block, flags=re.MULTILINE)
            if block.startswith("# @package _global_") and name:
                experiments[name.group(1)] = block
    return experiments


def user_search_path(override: str, tmp_path: Path) -> str:
    """A ``hydra.searchpath=[file://<your folder>]`` override pointed at a folder holding the
    experiment files the docs show, so the documented user-folder commands compose as written."""
    if not override.startswith("hydra.searchpath="):
        return override
    for name, text in documented_experiments().items():
        (tmp_path / "experiment").mkdir(exist_ok=True)
        (tmp_path / "experiment" / f"{name}.yaml").write_text(text)
    return f"hydra.searchpath=[file://{tmp_path}]"


@pytest.mark.parametrize(
    ("app", "arguments"), COMMANDS, ids=[" ".join([a, *args])[:90] for a, args in COMMANDS]
)
def test_readme_command_composes(app: str, arguments: tuple[str, ...], tmp_path: Path) -> None:
    if app == "summarize":  # not a Hydra app: its own command line
        assert argument_parser().parse_args(arguments).sweep_dir
        return
    overrides = hydra_overrides(arguments)
    overrides = [user_search_path(override, tmp_path) for override in overrides]
    if "-m" in arguments or "--multirun" in arguments:
        overrides = _first_job_overrides(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name=app, overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    if app == "train":
        assert cfg.data.source.kind in {"synthetic", "wide_file", "long_file"}
    else:  # the checkpoint apps name their model one way or the other
        assert (cfg.get("run") is None) != (cfg.get("ckpt_path") is None), arguments
