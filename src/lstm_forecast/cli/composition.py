"""Hydra compositions made cheaper while an app starts: one copy of the config repository for all
of them (and one defaults list and merge for each choice of config groups), the run mode taken from
the apps' own check instead of a composition of its own, and the check's composition handed to the
run instead of a second one.

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


class _Composition:
    """A defaults list Hydra made from one copy of the repository, and the config it composed from it
    (before any override of a value), kept for later compositions that choose the same configs."""

    def __init__(self, defaults_list: object) -> None:
        self.defaults_list, self.config = defaults_list, None


@contextlib.contextmanager
def shared_config_repository(kept: int = 8, one_composition: bool = False) -> Iterator[None]:
    """While inside, let every composition share one copy of the config repository (the YAML files
    read and parsed once), and the work of the compositions before it that chose the same configs.

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

    Beside the copies, the latest ``4 * kept`` defaults lists and the configs merged from them are kept
    (``defaults_list_once``, ``composed_once`` below): a composition whose config-group choices a
    composition before it made takes a copy of that one's merged config and applies its own overrides
    of values to it. Building the defaults list and merging its files took 0.13 of the 0.17 s of a
    composition (``tests/test_layering.py`` holds the result equal to Hydra's own).
    """
    import hydra._internal.config_loader_impl as config_loader_impl
    from hydra._internal import defaults_list as hydras_defaults_list
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.config_repository import CachingConfigRepository

    original = getattr(ConfigLoaderImpl, "_parse_overrides_and_create_caching_repo", None)
    original_defaults_list = getattr(config_loader_impl, "create_defaults_list", None)
    original_compose = getattr(ConfigLoaderImpl, "_compose_config_from_defaults_list", None)
    defaults_list_type = getattr(hydras_defaults_list, "DefaultsList", None)
    overrides_type = getattr(hydras_defaults_list, "Overrides", None)
    hydras = (original, original_defaults_list, original_compose, defaults_list_type, overrides_type)
    if None in hydras or getattr(original, "shares_copies", False):
        yield
        return

    class CopyOfTheShared(CachingConfigRepository):
        """One composition's cache over the shared one: a file's first load in the composition is a
        copy of the shared parse, its later loads that same copy (as in Hydra's own cache)."""

        def __init__(self, shared: CachingConfigRepository, key: tuple | None) -> None:
            # Not Hydra's __init__: it deep-copies the repository it is given, the very cost saved.
            self.delegate, self.cache, self.shared_key = shared, {}, key

        def load_config(self, config_path: str) -> object:
            key = f"config_path={config_path}"
            if key not in self.cache:
                loaded = self.delegate.load_config(config_path)
                self.cache[key] = loaded if one_composition else copy.deepcopy(loaded)
            return self.cache[key]

    made: collections.OrderedDict[tuple, CachingConfigRepository] = collections.OrderedDict()
    # Keyed by the shared copy's key and the composition's choices; the latest 4 * kept (about 0.25 MB each).
    compositions: collections.OrderedDict[tuple, _Composition] = collections.OrderedDict()

    def shared(self: ConfigLoaderImpl, config_name: str | None, overrides: list[str]) -> tuple:
        parsed = OverridesParser.create().parse_overrides(overrides)
        searchpath = [o.input_line for o in parsed if o.get_key_element() == "hydra.searchpath"]
        sources = tuple((source.provider, source.path) for source in self.repository.get_sources())
        key = (sources, config_name, tuple(searchpath))
        if key not in made:
            made[key] = original(self, config_name, searchpath)[1]
            while len(made) > kept:
                dropped, _ = made.popitem(last=False)
                for composition_key in [k for k in compositions if k[0] == dropped]:
                    del compositions[composition_key]
        made.move_to_end(key)
        # One composition merges the shared parses themselves: nothing of it can be kept for another.
        return parsed, CopyOfTheShared(made[key], None if one_composition else key)

    def defaults_list_once(
        repo: object, config_name: str | None, overrides_list: list, prepend_hydra: bool, skip_missing: bool
    ) -> object:
        """Hydra's ``create_defaults_list``, made once for each choice of config groups."""
        arguments = (repo, config_name, overrides_list, prepend_hydra, skip_missing)
        shared_key = getattr(repo, "shared_key", None)
        if shared_key is None:
            return original_defaults_list(*arguments)
        # Hydra's own split: overrides of config groups choose the defaults; the rest set values.
        current = overrides_type(repo=repo, overrides_list=overrides_list)
        values = {id(override) for override in current.config_overrides}
        choices = [o.input_line for o in overrides_list if id(o) not in values and not o.is_sweep_override()]
        key = (shared_key, config_name, prepend_hydra, skip_missing, tuple(choices))
        if key not in compositions:
            compositions[key] = _Composition(original_defaults_list(*arguments))
            while len(compositions) > 4 * kept:
                compositions.popitem(last=False)
        compositions.move_to_end(key)
        made_before = compositions[key].defaults_list
        return defaults_list_type(
            defaults=made_before.defaults,
            config_overrides=current.config_overrides,
            defaults_tree=made_before.defaults_tree,
            overrides=made_before.overrides,
        )

    def composed_once(self: ConfigLoaderImpl, defaults: list, repo: object) -> DictConfig:
        """Hydra's merge of the files of ``defaults``, done once for each defaults list: a copy."""
        same = (c for k, c in compositions.items() if k[0] == getattr(repo, "shared_key", None))
        kept_one = next((c for c in same if c.defaults_list.defaults is defaults), None)
        if kept_one is None:
            return original_compose(self, defaults, repo)
        if kept_one.config is None:
            kept_one.config = original_compose(self, defaults, repo)
        return copy.deepcopy(kept_one.config)

    shared.shares_copies = True
    # Hydra's own, for a test to compare with while a block is open.
    composed_once.hydras_own, defaults_list_once.hydras_own = original_compose, original_defaults_list
    ConfigLoaderImpl._parse_overrides_and_create_caching_repo = shared
    config_loader_impl.create_defaults_list = defaults_list_once
    ConfigLoaderImpl._compose_config_from_defaults_list = composed_once
    try:
        yield
    finally:
        ConfigLoaderImpl._parse_overrides_and_create_caching_repo = original
        config_loader_impl.create_defaults_list = original_defaults_list
        ConfigLoaderImpl._compose_config_from_defaults_list = original_compose


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
