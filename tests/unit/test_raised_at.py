"""``functions.http.raised_at``: where an unexpected exception came from, for the one log line of a 500."""

from __future__ import annotations

import inspect

from functions.http import raised_at


def _fails(secret: str) -> None:
    raise RuntimeError(f"dictionary changed size ({secret})")


def test_names_the_innermost_frame_and_never_the_message():
    try:
        _fails("+12015550123")
    except RuntimeError as exc:
        where = raised_at(exc)
    line = inspect.getsourcelines(_fails)[1] + 1
    assert where == f"tests/unit/test_raised_at.py:{line} _fails"
    assert "555" not in where


def test_an_exception_never_raised_has_no_place():
    assert raised_at(ValueError("x")) == "unknown"
