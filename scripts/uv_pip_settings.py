"""Print the command-line options that make ``uv pip install`` find packages where pip would.

``make install`` installs with uv (12 s against pip's 50 s for the dev environment), but uv does not
read pip's configuration: a folder of local wheels (``find-links``, where a machine may keep the CPU
build of torch), a company index or a system-wide constraints file would be ignored, and uv would fetch
other builds from PyPI. This asks pip for its configuration (``pip config list``: its files and its
``PIP_*`` environment variables) and prints the equivalent uv options, with pip's way of choosing among
several indexes (the best version on any of them) instead of uv's default (the first index that has the
package).

    .venv/bin/uv pip install $(.venv/bin/python scripts/uv_pip_settings.py) ...
"""

from __future__ import annotations

import shlex
import subprocess
import sys

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


def main() -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    print(shlex.join(uv_arguments(pip_settings(listing))))


if __name__ == "__main__":
    main()
