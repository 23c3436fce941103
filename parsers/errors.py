"""The one error type of the parsers: where, what, and the raw token."""
from __future__ import annotations


class ParseError(ValueError):
    """Malformed input. ``str()`` is ``path:line: reason: 'token'`` (line 0 = whole file)."""

    def __init__(self, path: str, line: int, reason: str, token: str | None = None):
        self.path = str(path)
        self.line = int(line)
        self.reason = reason
        self.token = token
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        tok = ""
        if self.token is not None:
            t = self.token if len(self.token) <= 80 else self.token[:77] + "..."
            tok = f": {t!r}"
        return f"{where}: {self.reason}{tok}"


class BundleError(ParseError):
    """A host bundle that cannot be read safely (escaping paths, bombs, missing parts)."""


class InputWarning(UserWarning):
    """Something in the input was skipped or looks cut short; ``str()`` is ``path:line: what``.
    Raised through :mod:`warnings`, so that parsers keep their return types and the command
    line prints each one as a ``Warning:`` line on stderr."""

    def __init__(self, path: str, line: int, reason: str, token: str | None = None):
        self.path, self.line, self.reason, self.token = str(path), int(line), reason, token
        super().__init__(str(ParseError(path, line, reason, token)))


def warn(path: str, line: int, reason: str, token: str | None = None) -> None:
    import warnings
    warnings.warn(InputWarning(path, line, reason, token), stacklevel=2)
