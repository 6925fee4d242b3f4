"""The exception-chain walker behind every one-line error."""

from __future__ import annotations

from lstm_forecast.errors import UserError, causes, find_user_error, innermost_cause, one_line_reason


def chained() -> BaseException:
    """``RuntimeError`` raised from a ``KeyError`` raised while handling a ``UserError``."""
    try:
        try:
            try:
                raise UserError("bad value")
            except UserError:
                raise KeyError("k")  # noqa: B904 -- implicit context on purpose
        except KeyError as error:
            raise RuntimeError("wrapped") from error
    except RuntimeError as error:
        return error


def test_causes_walks_cause_then_context_outermost_first():
    assert [type(cause) for cause in causes(chained())] == [RuntimeError, KeyError, UserError]
    assert list(causes(None)) == []


def test_causes_ends_on_a_cyclic_chain():
    first, second = ValueError("a"), TypeError("b")
    first.__cause__, second.__cause__ = second, first
    assert list(causes(first)) == [first, second]
    assert innermost_cause(first) is second


def test_helpers_built_on_causes():
    error = chained()
    assert str(find_user_error(error)) == "bad value"
    assert find_user_error(RuntimeError("x")) is None
    assert isinstance(innermost_cause(error), UserError)
    assert one_line_reason(error) == "bad value"
    assert one_line_reason(ValueError("first\nsecond")) == "ValueError: first"
    assert one_line_reason(ValueError()) == "ValueError"
