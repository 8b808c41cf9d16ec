"""The options of the commands that fit or bake one intervention or steering vector (`iti bake`, `steer fit`,
`steer bake`), declared as checked Configs (`veracity.constraints`) so bad values stop before any model or
file is read."""

from __future__ import annotations

from dataclasses import dataclass

from ..constraints import Boolean, Checked, Interval, ListOf, Seed, choices_in

_ALPHA = Interval(float, None, None, msg="be a finite number")
_LAYERS = [None, ListOf([Interval(int, None, None)])]
#: a residual steer's scale (`steer.residual.fit.NORMALIZE`), declared once for every Config that takes it
NORMALIZE = [choices_in("veracity.steer.residual.fit", "NORMALIZE", "normalize choice")]


@dataclass
class BakeConfig(Checked):
    """`veracity iti bake`: the alpha override (None: the stored one), the check against the hooks, the
    o_proj-only layout."""

    _constraints = {"alpha": [None, _ALPHA], "verify": [Boolean()], "o_proj_only": [Boolean()]}
    _commands = ("iti bake",)

    alpha: float | None = None
    verify: bool = True
    o_proj_only: bool = False


@dataclass
class ResidualFitConfig(Checked):
    """`veracity steer fit`: method, layers (None: every captured one), scale, stored alpha, seed."""

    _constraints = {"method": [choices_in("veracity.steer.residual_tqa", "RESIDUAL_METHODS", "residual method")],
                    "layers": _LAYERS,
                    "normalize": NORMALIZE,
                    "alpha": [_ALPHA], "seed": [Seed()]}
    _commands = ("steer fit",)

    method: str = "caa"
    layers: list | None = None
    normalize: str = "raw"
    alpha: float = 1.0
    seed: int = 0


@dataclass
class ResidualBakeConfig(Checked):
    """`veracity steer bake`: the alpha override and the layers to bake (None: all of the steer's)."""

    _constraints = {"alpha": [None, _ALPHA], "layers": _LAYERS}
    _commands = ("steer bake",)

    alpha: float | None = None
    layers: list | None = None
