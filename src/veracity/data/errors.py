"""The one error type for bad or missing data, so callers (and the CLI) can report it in one line."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data set could not be read: missing folder or file, bad column, bad row, or no network.

    The message names the file and, for a bad row, its 1-based line number, so the user can fix
    the file instead of guessing; nothing is ever returned half-loaded.
    """


def row_error(path: str | Path, line: int | None, message: str) -> DataError:
    """A `DataError` of the form "FILE, line N: message" (line omitted when unknown)."""
    where = f"{path}, line {line}" if line is not None else f"{path}"
    return DataError(f"{where}: {message}")
