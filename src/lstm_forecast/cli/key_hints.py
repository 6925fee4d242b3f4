"""Unknown config keys answered with the keys meant: "did you mean data.window_size?".

Hydra answers an override of a key the config lacks (``data.windw_size=24``) with "use
+data.windw_size=24", which adds the key and then fails when the object is built (its constructor
takes no such argument). These helpers turn both failures into one line that names every unknown
key with its close matches in the composed config (:mod:`difflib`), and never suggest adding a key.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable

from omegaconf import DictConfig

from lstm_forecast.errors import UserError, causes
from lstm_forecast.training.run_folder import override_key

NOT_IN_CONFIG = re.compile(r"Could not override '([^']+)'")
UNEXPECTED_ARGUMENT = re.compile(r"unexpected keyword argument '(\w+)'")
TARGET = re.compile(r"Error in call to target '([\w.]+)'")
FULL_KEY = re.compile(r"full_key: (\S+)")
OPTION_NOT_FOUND = re.compile(
    r"Could not find '(.+)/([^/']+)'\s+Available options in '[^']+':\n((?:\t[^\n]+\n?)+)"
)
# Close enough to be the key meant (difflib's ratio: 2 * matching characters / total characters),
# and within this much of the closest (data.source.dayfrst: dayfirst, 0.93; not freq, 0.80).
MATCH_CUTOFF = 0.75
MATCH_SPREAD = 0.05
MAX_MATCHES = 3


def config_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every key of ``cfg`` as a dotted path, nodes and leaves (list items excluded); interpolations
    are not resolved."""
    keys = []
    for name in cfg:
        path = f"{prefix}{name}"
        keys.append(path)
        node = cfg._get_node(name)  # the node, not its value: no interpolation is resolved
        if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
            keys.extend(config_keys(node, f"{path}."))
    return keys


def _closest(word: str, candidates: list[str]) -> list[str]:
    """The candidates at least :data:`MATCH_CUTOFF` alike ``word`` and within :data:`MATCH_SPREAD` of
    the closest, closest first."""
    scored = [(difflib.SequenceMatcher(None, word, c).ratio(), c) for c in candidates]
    scored = sorted((s for s in scored if s[0] >= MATCH_CUTOFF), key=lambda s: -s[0])
    return [c for score, c in scored if score >= scored[0][0] - MATCH_SPREAD][:MAX_MATCHES]


def close_keys(key: str, keys: list[str]) -> list[str]:
    """The keys of ``keys`` closest to ``key``: by the whole dotted path, else by the last part alone
    (``windw_size`` -> ``data.window_size``)."""
    matches = _closest(key, keys)
    if matches:
        return matches
    by_leaf: dict[str, list[str]] = {}
    for path in keys:
        by_leaf.setdefault(path.rsplit(".", 1)[-1], []).append(path)
    close = _closest(key.rsplit(".", 1)[-1], list(by_leaf))
    return [path for name in close for path in by_leaf[name]][:MAX_MATCHES]


def _named(key: str, keys: list[str]) -> str:
    matches = close_keys(key, keys)
    if not matches:
        return f"{key} (no key is close)"
    return f"{key} (did you mean {' or '.join(matches)}?)"


def _key_not_in_config(error: BaseException) -> str | None:
    """The key of Hydra's "Could not override" anywhere in ``error``'s chain."""
    for cause in causes(error):
        found = NOT_IN_CONFIG.search(str(cause))
        if found:
            return found.group(1)
    return None


def _config_being_overridden(error: BaseException) -> DictConfig | None:
    """The config Hydra was applying the overrides to when ``error`` was raised, read from the failing
    frame: composing it again would double the time a rejected override takes to answer. None where
    Hydra's code differs (the caller then composes)."""
    traceback = error.__traceback__
    while traceback is not None:
        frame = traceback.tb_frame
        if frame.f_code.co_name == "_apply_overrides_to_config":
            cfg = frame.f_locals.get("cfg")
            return cfg if isinstance(cfg, DictConfig) else None
        traceback = traceback.tb_next
    return None


def unknown_keys_error(
    error: BaseException, overrides: list[str], compose: Callable[[list[str]], DictConfig], groups: set[str]
) -> UserError | None:
    """The one-line error for overrides of keys the config lacks, found in ``error`` (Hydra's
    "Could not override"), or None for another error.

    The keys are those of the config Hydra was overriding when it failed (its groups chosen), else
    of ``compose(overrides)`` with the overrides that choose config groups (``data=long_csv``: no dot
    in the key; an unknown one among them is taken out and the config composed again). Every
    override of a key the config lacks and not of a config group (``groups``: ``experiment``...) is
    named, each with the keys and groups it is close to."""
    found = _key_not_in_config(error)
    if found is None:
        return None
    unknown = [found]
    overridden = _config_being_overridden(error)
    choices = [o for o in overrides if "." not in override_key(o) and override_key(o) != found]
    keys = config_keys(overridden) if overridden is not None else []
    for _ in range(0 if overridden is not None else len(choices) + 1):  # each takes one unknown key out
        try:
            keys = config_keys(compose(choices))
            break
        except Exception as again:  # another unknown key, or any other fault: no matches
            more = _key_not_in_config(again)
            if more is None or more in unknown:
                break
            unknown.append(more)
            choices = [o for o in choices if override_key(o) != more]
    keys = [*keys, *sorted(groups - set(keys))]
    known = set(keys)
    for override in overrides:
        key = override_key(override)
        # A key set (not added) must exist; judged where its parent does (the root, or a node).
        parent = key.rpartition(".")[0]
        lacking = override[0] not in "+~" and key not in known and (not parent or parent in known)
        if lacking and key not in unknown:
            unknown.append(key)
    named = ", ".join(_named(key, keys) for key in unknown)
    return UserError(
        f"unknown config key{'s' if len(unknown) > 1 else ''} {named}; "
        "--cfg job prints every key, --help the config groups"
    )


def unexpected_argument_error(error: BaseException) -> UserError | None:
    """The one-line error for a key added to a config node (``+data.windw_size=24``) whose object
    takes no such argument (the ``TypeError`` Hydra's ``instantiate`` wraps), naming the arguments it
    takes that are close; None for another error."""
    text = "\n".join(str(cause) for cause in causes(error))
    argument, target = UNEXPECTED_ARGUMENT.search(text), TARGET.search(text)
    if argument is None or target is None:
        return None
    node = FULL_KEY.search(text)
    prefix = f"{node.group(1)}." if node else ""
    key = f"{prefix}{argument.group(1)}"
    try:
        from hydra.utils import get_object

        parameters = list(inspect.signature(get_object(target.group(1))).parameters)
    except Exception:  # no signature to read: no matches
        parameters = []
    return UserError(
        f"{target.group(1).rsplit('.', 1)[-1]} (config {node.group(1) if node else 'node'}) takes no "
        f"{argument.group(1)!r}: {_named(key, [f'{prefix}{name}' for name in parameters])}; drop +{key}"
    )


def unknown_option_error(error: BaseException) -> UserError | None:
    """The one-line error for a config group option that does not exist (``model=seg_bilstmm``): every
    option of the group, the close ones first (Hydra's own message lists them on lines the one-line
    error would cut); None for another error."""
    for cause in causes(error):
        found = OPTION_NOT_FOUND.search(str(cause))
        if found:
            group, option = found.group(1), found.group(2)
            options = [line.strip() for line in found.group(3).splitlines() if line.strip()]
            close = _closest(option, options)
            meant = f" (did you mean {' or '.join(close)}?)" if close else ""
            return UserError(f"unknown {group} option {option!r}{meant}; choose one of {options}")
    return None
