"""The one interface every steering family implements (ITI's `Intervention`, residual steering's `ResidualSteer`),
so fold preparation, evaluation, baking and the CLI call a steer without knowing its family."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, ContextManager, Protocol, runtime_checkable


class NotBakeable(ValueError):
    """The architecture has no parameter that adds the steer's constant exactly: use the hooks (`Steer.apply`)."""


@runtime_checkable
class Steer(Protocol):
    """A fitted steer. `apply` hooks it into a model for a block; `factory` is the evaluation driver's
    phase -> context manager; `bake` writes a plain Hugging Face folder where that is exact (else `NotBakeable`)
    and `verify` compares a baked folder with the hooks; `save`/`load` are its files; `check_model` refuses a
    model it was not fitted for."""

    alpha: float

    def with_alpha(self, alpha: float) -> "Steer": ...

    def apply(self, lm, positions: str = "all") -> ContextManager: ...

    def factory(self, lm, generate_positions: str = "last") -> Callable[[str], ContextManager]: ...

    def bake(self, lm, out: str | Path, *, overwrite: bool = False, verify: bool = False) -> Path: ...

    def verify(self, lm, folder: str | Path, texts: list[str] | None = None, atol: float = 1e-4) -> float: ...

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path: ...

    @classmethod
    def load(cls, path: str | Path) -> "Steer": ...

    def check_model(self, arch, fingerprint: str | None = None) -> None: ...
