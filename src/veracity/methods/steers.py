"""The steer half of a method: a steering family (`register_steer` adds one) fits a `veracity.steer.Steer` on a
fold's training questions of the model it steers; preparing, evaluating, baking and sweeping then go through the
`Steer` protocol, whatever the family."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence


@dataclass(frozen=True)
class SteerFamily:
    """name: the method component ("iti"). fit(lm, train_questions, test_questions, settings, *, data_dir, limit,
    acts, fold, revision) -> a `Steer` fitted on `train_questions` only (`settings`: the run's `MethodSettings`).
    store: the name of its activation store; shares_acts: it reads the `acts` store given for the original model
    as is (else `<acts>-<store>`, never another family's store). params: the parameters a sweep varies; sweep:
    the sweep engine that varies them ("heads": `veracity iti sweep`, "layers": `veracity steer sweep`).
    check(lm, settings): refuse settings this model cannot take, before any work (None: nothing to check)."""

    name: str
    fit: Callable[..., object]
    store: str
    params: tuple[str, ...]
    sweep: str
    shares_acts: bool = False
    check: Callable[[object, object], None] | None = None

    def store_path(self, acts, workdir, trainer: str | None, prompt: str, fold: int):
        """Where this family's activations of the model it steers live: a trained copy's under the run folder,
        the original model's at `acts` (None: the veracity cache)."""
        if trainer is not None and workdir is not None:
            return Path(workdir) / f"{self.store}-{trainer}-{prompt}-fold{fold}"
        if acts is None or self.shares_acts:
            return acts
        return Path(f"{acts}-{self.store}")


STEERS: dict[str, SteerFamily] = {}


def register_steer(family: SteerFamily) -> SteerFamily:
    """Add a steering family to the registry: `parse_method` accepts its name (and its combinations) from then on."""
    STEERS[family.name] = family
    return family


def fit_iti_for_fold(lm, train_questions: Sequence[int], test_questions: Sequence[int], settings, data_dir=None,
                     limit: int | None = None, acts: str | Path | None = None, fold: int = 0,
                     revision: str = "2021"):
    """An ITI intervention fitted on the training questions' activations of `lm` (captured once per model
    into `acts`, default the veracity cache keyed by the weights' fingerprint) on `revision`'s rows."""
    from ..steer.iti import ITIConfig, fit_fold, load_iti_data

    data = load_iti_data(lm, data_dir=data_dir, limit=limit, acts=acts, progress=False,
                         revision=revision).first_questions(limit)
    cfg = ITIConfig(direction=settings.iti_direction, seed=settings.seed, max_k=settings.iti_k)
    ff = fit_fold(data, list(train_questions), cfg, fold=fold, test_questions=list(test_questions))
    return ff.intervention(min(settings.iti_k, len(ff.heads)), settings.iti_alpha)


def _check_iti(lm, settings) -> None:
    from ..validation import check_num_heads

    check_num_heads(settings.iti_k, lm.arch.n_layers, lm.arch.n_heads)


def _residual(method: str) -> Callable[..., object]:
    def fit(lm, train_questions, test_questions, settings, *, data_dir=None, limit=None, acts=None, fold=0,
            revision="2021"):
        from ..steer.residual_tqa import fit_residual_for_fold

        return fit_residual_for_fold(lm, list(train_questions), method, settings.residual_layers,
                                     settings.residual_alpha, settings.residual_normalize, settings.seed, data_dir,
                                     limit, acts, fold, revision)
    return fit


register_steer(SteerFamily(
    "iti", lambda lm, train_q, test_q, settings, *, data_dir=None, limit=None, acts=None, fold=0, revision="2021":
    fit_iti_for_fold(lm, train_q, test_q, settings, data_dir, limit, acts, fold, revision),
    store="acts", params=("k", "alpha"), sweep="heads", shares_acts=True, check=_check_iti))
register_steer(SteerFamily("caa", _residual("caa"), store="resid", params=("layer", "alpha"), sweep="layers"))
register_steer(SteerFamily("lat", _residual("lat"), store="resid", params=("layer", "alpha"), sweep="layers"))
