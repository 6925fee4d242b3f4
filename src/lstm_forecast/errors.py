"""User-facing errors: one line that names the problem and the fix, no traceback."""

from __future__ import annotations

from collections.abc import Iterator


class UserError(Exception):
    """Bad input from the user (file, column, config value, checkpoint).

    Entry points print it as a single ``error: ...`` line and exit with status 2.
    """


def causes(error: BaseException | None) -> Iterator[BaseException]:
    """``error`` and the exceptions behind it, outermost first: each one's ``__cause__`` or, if
    none, its ``__context__``. Each exception is yielded once, so a cyclic chain ends."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def find_user_error(error: BaseException) -> UserError | None:
    """The :class:`UserError` behind ``error``, also when a library re-raised it (Hydra's
    ``instantiate`` wraps what a constructor raises)."""
    return next((cause for cause in causes(error) if isinstance(cause, UserError)), None)


def innermost_cause(error: BaseException) -> BaseException:
    """The exception at the bottom of ``error``'s chain: libraries (Hydra's ``instantiate``,
    Lightning) wrap the one that says what went wrong."""
    for cause in causes(error):
        error = cause
    return error


def one_line_reason(error: BaseException) -> str:
    """The innermost cause of ``error`` in one line: ``Type: first line of its message``."""
    error = innermost_cause(error)
    message = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    if isinstance(error, UserError):
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def check_count(key: str, value: object, or_else: str = "") -> None:
    """Refuse a config value ``key`` that is not a positive integer (None allowed when ``or_else``
    names what None means)."""
    if value is None and or_else:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        alternative = f" or {or_else}" if or_else else ""
        raise UserError(f"{key} must be a positive integer{alternative}, got {value!r}")
