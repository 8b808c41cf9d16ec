"""Input checks shared by every command, run before any work (nothing loaded, nothing created).

Each check raises `BadInput` (a `ValueError`) with one line naming the option and the cause; the CLI turns
it (and the library's other one-line error types, listed in the CLI's `USER_ERRORS`) into
`error: ...` and exit status 2. Library callers get an ordinary exception they can catch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Sequence


class BadInput(ValueError):
    """An option or argument that cannot work; the message says which and why."""


def check_limit(limit: int | None, option: str = "--limit") -> None:
    """`None` (everything) or a positive count: 0 must not silently mean "all"."""
    if limit is not None and limit < 1:
        raise BadInput(f"{option} must be a positive number of items, got {limit} (leave it out for all)")


def check_positive(value: int | float | None, option: str) -> None:
    """`BadInput` unless `value` is positive (None passes: the option was not given)."""
    if value is not None and not value > 0:
        raise BadInput(f"{option} must be positive, got {value}")


def check_finite(value: float | None, option: str) -> None:
    """`BadInput` unless `value` is a finite number (None passes)."""
    if value is not None and not math.isfinite(float(value)):
        raise BadInput(f"{option} must be a finite number, got {value}")


def check_fraction(value: float, option: str) -> None:
    """`BadInput` unless `value` lies strictly between 0 and 1."""
    if not 0 < value < 1:
        raise BadInput(f"{option} must be strictly between 0 and 1, got {value}")


def check_num_heads(ks: int | Iterable[int], n_layers: int | None = None, n_heads: int | None = None,
                    option: str = "--num-heads") -> None:
    """Each K is >= 1 and, once the model is known, <= its layers x heads."""
    for k in ([ks] if isinstance(ks, int) else list(ks)):
        if k < 1:
            raise BadInput(f"{option} must be at least 1, got {k}")
        if n_layers is not None and n_heads is not None and k > n_layers * n_heads:
            raise BadInput(f"{option} {k} is more than the model's {n_layers} layers x {n_heads} heads "
                           f"= {n_layers * n_heads} heads")


def check_folds(folds: int, n_questions: int | None = None, option: str = "--folds") -> None:
    """`BadInput` unless there are at least 2 folds and no more folds than questions to split."""
    if folds < 2:
        raise BadInput(f"{option} must be at least 2, got {folds}")
    if n_questions is not None and folds > n_questions:
        raise BadInput(f"{option} {folds} is more than the {n_questions} questions to split")


def check_layers(layers: Sequence[int] | None, n_layers: int, option: str = "--layers") -> None:
    """Layer indices (negatives count from the end) against the model's layer count."""
    for l in layers or []:
        if not -n_layers <= l < n_layers:
            raise BadInput(f"{option}: layer {l} out of range for a {n_layers}-layer model "
                           f"(0..{n_layers - 1}, or -{n_layers}..-1 from the end)")


def check_exclusive(**given: object) -> None:
    """At most one of the named options may be set (truthy)."""
    on = [k for k, v in given.items() if v]
    if len(on) > 1:
        raise BadInput(f"{' and '.join(on)} cannot be used together")


def check_out_path(out: str | Path, option: str = "--out") -> Path:
    """`out` must be (or become) a writable folder: not a regular file, its nearest existing ancestor
    a writable folder on a writable file system. Creates nothing."""
    p = Path(out).expanduser()
    if p.exists() and not p.is_dir():
        raise BadInput(f"{option} {p} is a file, not a folder")
    anc = p if p.exists() else next((a for a in p.absolute().parents if a.exists()), None)
    if anc is None:
        raise BadInput(f"{option} {p}: no existing parent folder")
    if not anc.is_dir():
        raise BadInput(f"{option} {p}: {anc} is a file, not a folder")
    if _read_only_fs(anc):
        raise BadInput(f"{option} {p}: {anc} is on a read-only file system")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise BadInput(f"{option} {p}: no permission to write in {anc}")
    return p


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False
