"""Refuse a job that would not fit in memory before it starts, in one line, instead of being killed by
the kernel midway without a message."""

from __future__ import annotations

from pathlib import Path

from lstm_forecast.errors import UserError

MEMINFO = Path("/proc/meminfo")
GIB = 1 << 30


def available_bytes() -> int | None:
    """The memory the machine can give a new job without swapping (``MemAvailable`` of
    ``/proc/meminfo``), None where it cannot be read (not Linux)."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(job: str, needs: dict[str, tuple[int, str]]) -> None:
    """Raise a one-line :class:`UserError` when the parts of ``job`` need more memory than is
    available; nothing where the available memory is unknown.

    Parameters
    ----------
    job : str
        What would run (``"lstm-predict horizon=28"``).
    needs : dict
        ``{part: (bytes, remedy)}``: what each part needs beyond what is already held, and the option
        that shrinks it; the largest part's remedy is named.
    """
    available = available_bytes()
    total = sum(size for size, _ in needs.values())
    if available is None or total <= available:
        return
    part, (size, remedy) = max(needs.items(), key=lambda item: item[1][0])
    raise UserError(
        f"{job} needs about {total / GIB:.1f} GiB more memory but {available / GIB:.1f} GiB are available "
        f"(the {part}: {size / GIB:.1f} GiB); {remedy}"
    )
