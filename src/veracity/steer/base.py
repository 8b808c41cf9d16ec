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

    def with_alpha(self, alpha: float) -> "Steer":
        """A copy at strength `alpha` (the fitted directions unchanged): sweeps re-scale one fit instead of
        refitting."""
        ...

    def apply(self, lm, positions: str = "all") -> ContextManager:
        """Hook the steer into `lm` for the `with` block, at the token `positions` given; the model is unchanged
        after it."""
        ...

    def factory(self, lm, generate_positions: str = "last") -> Callable[[str], ContextManager]:
        """The evaluation driver's hook: phase ("mc", "lm", "generate") -> a context manager steering `lm` as that
        phase needs."""
        ...

    def bake(self, lm, out: str | Path, *, overwrite: bool = False, verify: bool = False) -> Path:
        """Write a plain Hugging Face folder with the steer added to the weights (exact only; else `NotBakeable`),
        usable with no veracity installed."""
        ...

    def verify(self, lm, folder: str | Path, texts: list[str] | None = None, atol: float = 1e-4) -> float:
        """The largest logit difference between the baked `folder` and the hooked model on `texts`; more than `atol`
        raises."""
        ...

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the steer's files (JSON + safetensors, never a pickle) with its provenance, refusing to overwrite
        unless asked."""
        ...

    @classmethod
    def load(cls, path: str | Path) -> "Steer":
        """Read a steer written by `save`, checked (a damaged file is one line naming it)."""
        ...

    def check_model(self, arch, fingerprint: str | None = None) -> None:
        """Refuse a model the steer was not fitted for (other shape, or other weights when `fingerprint` is given),
        before anything is hooked."""
        ...
