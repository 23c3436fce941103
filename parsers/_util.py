"""Shared helpers for the /proc parsers: reading whole pseudo-files, strict integers."""
from __future__ import annotations

from pathlib import Path

from parsers.errors import ParseError


def to_int(token: str, path: str, line: int, what: str = "number") -> int:
    try:
        return int(token)
    except ValueError:
        raise ParseError(path, line, f"bad {what}", token) from None


def read_text(root: str | Path, name: str) -> str:
    """Read a /proc file in one go (its stat size is wrong and it can change between reads)."""
    p = Path(root) / name
    try:
        with open(p, "rb") as fh:
            data = fh.read()
    except FileNotFoundError as err:
        raise ParseError(str(p), 0, "no such file") from err
    except PermissionError as err:
        raise ParseError(str(p), 0, "permission denied (pagetypeinfo needs root since ~5.4)") from err
    except OSError as err:
        raise ParseError(str(p), 0, err.strerror or str(err)) from err
    return data.decode("utf-8", "replace")
