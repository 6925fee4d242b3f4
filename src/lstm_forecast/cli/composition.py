"""Hydra compositions made cheaper while an app starts: one copy of the config repository for all
of them, the run mode taken from the apps' own check instead of a composition of its own, and the
check's composition handed to the run instead of a second one.

Each replaces a method of Hydra's internals for the time of a ``with`` block and puts it back on the
way out; a Hydra without that method runs unchanged.
"""

from __future__ import annotations

import collections
import contextlib
import copy
from collections.abc import Iterator

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict


@contextlib.contextmanager
def shared_config_repository(kept: int = 8, one_composition: bool = False) -> Iterator[None]:
    """While inside, let every composition share one copy of the config repository (the YAML files
    read and parsed once).

    Hydra deep-copies its whole repository (every search path and plugin config) and reads the config
    files again for every composition: twice for each run (the apps' check of the overrides, the
    run), once per config group that ``--help`` lists (about 100: 0.8 s of a 1.3 s ``--help``). The
    copy depends only on the search path and the primary config, so it is shared between
    compositions that have the same; the latest ``kept`` copies are held.

    Each composition gets its own copy of every file it loads, as if Hydra had read it afresh: Hydra
    merges the nodes it loaded into the composed config without copying them, so an override would
    otherwise change the shared file too, and a later composition without that override would still
    see its value. With ``one_composition`` (Hydra's ``--help`` and ``--cfg``: one config composed,
    the rest only listed) that composition takes the parsed files themselves, as no later one can
    see them. Inside another such block (a program, or a test session, that starts several apps in
    one process) the outer one's copies are used.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.config_repository import CachingConfigRepository

    original = getattr(ConfigLoaderImpl, "_parse_overrides_and_create_caching_repo", None)
    if original is None or getattr(original, "shares_copies", False):
        yield
        return

    class CopyOfTheShared(CachingConfigRepository):
        """One composition's cache over the shared one: a file's first load in the composition is a
        copy of the shared parse, its later loads that same copy (as in Hydra's own cache)."""

        def __init__(self, shared: CachingConfigRepository) -> None:
            # Not Hydra's __init__: it deep-copies the repository it is given, the very cost saved.
            self.delegate, self.cache = shared, {}

        def load_config(self, config_path: str) -> object:
            key = f"config_path={config_path}"
            if key not in self.cache:
                loaded = self.delegate.load_config(config_path)
                self.cache[key] = loaded if one_composition else copy.deepcopy(loaded)
            return self.cache[key]

    made: collections.OrderedDict[tuple, object] = collections.OrderedDict()

    def shared(self: ConfigLoaderImpl, config_name: str | None, overrides: list[str]) -> tuple:
        parsed = OverridesParser.create().parse_overrides(overrides)
        searchpath = [o.input_line for o in parsed if o.get_key_element() == "hydra.searchpath"]
        sources = tuple((source.provider, source.path) for source in self.repository.get_sources())
        key = (sources, config_name, tuple(searchpath))
        if key not in made:
            made[key] = original(self, config_name, searchpath)[1]
            while len(made) > kept:
                made.popitem(last=False)
        made.move_to_end(key)
        return parsed, CopyOfTheShared(made[key])

    shared.shares_copies = True
    ConfigLoaderImpl._parse_overrides_and_create_caching_repo = shared
    try:
        yield
    finally:
        ConfigLoaderImpl._parse_overrides_and_create_caching_repo = original


@contextlib.contextmanager
def run_mode_known(mode: RunMode | bool | None) -> Iterator[None]:
    """Let Hydra take the run mode (``hydra.mode``) from the apps' check of the overrides instead of
    composing the whole config once more to read it (``Hydra.get_mode``: a fifth of a tiny run's
    start). ``False`` (nothing composed) leaves Hydra as it is."""
    from hydra._internal.hydra import Hydra

    original = getattr(Hydra, "get_mode", None)
    if mode is False or original is None:
        yield
        return
    Hydra.get_mode = lambda self, config_name, overrides: mode
    try:
        yield
    finally:
        Hydra.get_mode = original


def apply_hydra_override(cfg: DictConfig, line: str) -> None:
    """Apply the override ``line`` of a ``hydra.*`` value to the composed ``cfg`` as Hydra's
    composition applies it: the parsed value set, the line recorded in ``hydra.overrides.hydra``."""
    (override,) = OverridesParser.create().parse_overrides([line])
    assert override.is_hydra_override() and not override.is_sweep_override(), line
    with open_dict(cfg):
        OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
    cfg.hydra.overrides.hydra.append(line)


@contextlib.contextmanager
def handed_to_the_run(config_name: str, overrides: list[str], cfg: DictConfig | None) -> Iterator[None]:
    """Let Hydra's run take ``cfg``, the apps' check's composition of ``config_name`` with
    ``overrides``, instead of composing it again (a sixth of a tiny run's time), once, when it
    composes that with those overrides and Hydra's own settings after them (``hydra.mode=RUN``,
    applied to ``cfg`` as :func:`apply_hydra_override`). The check composed ``cfg`` under the job
    name Hydra's run gives; ``tests/test_layering.py`` holds the result equal to Hydra's own
    composition. None (nothing composed, a multirun) leaves Hydra as it is."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    original = getattr(ConfigLoaderImpl, "load_configuration", None)
    if cfg is None or original is None:
        yield
        return
    handed, composed = [cfg], (config_name, list(overrides), RunMode.RUN)

    def hydras_own(added: list[str]) -> bool:
        parsed = OverridesParser.create().parse_overrides(added)
        return all(o.is_hydra_override() and not o.is_sweep_override() for o in parsed)

    def load_configuration(
        self: ConfigLoaderImpl, config_name: str | None, overrides: list[str], run_mode: RunMode, **kwargs
    ) -> DictConfig:
        ours, added = list(overrides[: len(composed[1])]), list(overrides[len(composed[1]) :])
        if handed and (config_name, ours, run_mode) == composed and hydras_own(added):
            for line in added:
                apply_hydra_override(handed[0], line)
            return handed.pop()
        return original(self, config_name, overrides, run_mode, **kwargs)

    ConfigLoaderImpl.load_configuration = load_configuration
    try:
        yield
    finally:
        ConfigLoaderImpl.load_configuration = original
