"""Print the command-line options that make ``uv pip install`` find packages where pip would.

``make install`` installs with uv (12 s against pip's 50 s for the dev environment), but uv does not
read pip's configuration: a folder of local wheels (``find-links``, where a machine may keep the CPU
build of torch), a company index or a system-wide constraints file would be ignored, and uv would fetch
other builds from PyPI. This asks pip for its configuration (``pip config list``: its files and its
``PIP_*`` environment variables) and prints the equivalent uv options, with pip's way of choosing among
several indexes (the best version on any of them) instead of uv's default (the first index that has the
package).

    .venv/bin/uv pip install $(.venv/bin/python scripts/uv_pip_settings.py) ...

With ``--install-uv`` it installs uv itself (pinned by ``constraints.txt``) into the environment of the
interpreter running it, with that environment's pip or, in an environment made without pip
(``python -m venv --without-pip``), with the pip wheel Python bundles for ``ensurepip``, run in
place: 3 s, where ``python -m venv`` spends 8 s installing and compiling pip and setuptools, which uv
then installs (uncompiled) in 1 s.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

# pip option -> uv option; pip's list options hold several values separated by white space.
UV_OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}
# Where pip reads an option from, the first that sets it winning: environment, then the install
# command's section, then the global one.
PRECEDENCE = (":env:", "install", "global")


def pip_settings(listing: str) -> dict[str, str]:
    """``{option: value}`` from ``pip config list`` output (``section.option='value'`` lines)."""
    found: dict[tuple[str, str], str] = {}
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        section, _, option = key.rpartition(".")
        found[section, option] = value.strip().strip("'\"")
    settings = {}
    for option in UV_OPTIONS:
        for section in PRECEDENCE:
            if (section, option) in found:
                settings[option] = found[section, option]
                break
    return settings


def uv_arguments(settings: dict[str, str]) -> list[str]:
    arguments = ["--index-strategy", "unsafe-best-match"]
    for option, value in settings.items():
        for item in value.split():
            arguments += [UV_OPTIONS[option], item]
    return arguments


def pip_command() -> list[str]:
    """The command that runs pip for this interpreter's environment: its own pip, else the pip wheel
    bundled with Python (a wheel runs in place: ``python pip-*.whl/pip``), else pip installed by
    ``ensurepip`` first (the slow way, where Python bundles no wheel)."""
    if importlib.util.find_spec("pip") is None:
        import ensurepip

        wheels = sorted(Path(ensurepip.__file__).parent.glob("_bundled/pip-*.whl"))
        if wheels:
            return [sys.executable, str(wheels[-1] / "pip")]
        subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True)
    return [sys.executable, "-m", "pip"]


def main() -> None:
    pip = pip_command()
    if sys.argv[1:] == ["--install-uv"]:
        constraints = Path(__file__).resolve().parents[1] / "constraints.txt"
        quiet = ["--quiet", "--disable-pip-version-check", "--no-compile"]
        subprocess.run([*pip, "install", *quiet, "-c", str(constraints), "uv"], check=True)
        return
    listing = subprocess.run([*pip, "config", "list"], capture_output=True, text=True, check=True).stdout
    print(shlex.join(uv_arguments(pip_settings(listing))))


if __name__ == "__main__":
    main()
