"""User-facing errors: one line that names the problem and the fix, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (file, column, config value, checkpoint).

    Entry points print it as a single ``error: ...`` line and exit with status 2.
    """


def find_user_error(error: BaseException) -> UserError | None:
    """The :class:`UserError` behind ``error``, also when a library re-raised it (Hydra's
    ``instantiate`` wraps what a constructor raises)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
