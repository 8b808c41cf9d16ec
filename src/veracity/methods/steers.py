"""The steer half of a method: a steering family (`register_steer` adds one) fits a `veracity.steer.Steer` on a
fold's training questions of the model it steers; preparing, evaluating, baking and sweeping then go through the
`Steer` protocol, whatever the family."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..constraints import Count, Interval, ListOf, Options, Registered, choices_in

# the steer parameters' constraints (methods.options reads this registry, so it is not imported here)
_COUNT = (Count(),)
_FINITE = (Interval(float, None, None, msg="be a finite number"),)
_LAYERS = (None, ListOf([Interval(int, None, None)]))  # indices checked against the model once it is loaded


def _choices(module: str, name: str) -> Registered:
    """The choices in `veracity.steer.<module>.<name>`, read when checked (`constraints.choices_in`)."""
    return choices_in(f"veracity.steer.{module}", name)


#: the `SteerParam.setting` of a parameter carried by name in `MethodSettings.steer_params`: how a family adds
#: parameters with one registration (no settings field of its own); fits read it with `steer_value`
IN_PARAMS = "steer_params"


@dataclass(frozen=True)
class SteerParam:
    """One parameter of a steering family. name: what a sweep's axis and `SteerFamily.settings` call it ("k");
    default and constraints: its value when not given and what it accepts (`veracity.constraints`);
    setting: the `MethodSettings` field that carries it to the family's `fit` (`IN_PARAMS`: by name in
    `MethodSettings.steer_params`, the way for a new family; None: an option of the family's sweep only, such
    as ITI's --sigma-from); example: a non-default value, for the contract tests."""

    name: str
    default: object
    constraints: tuple
    setting: str | None
    example: object


#: ITI's parameters (`veracity.steer.iti`)
ITI_PARAMS = (SteerParam("k", 48, _COUNT, "iti_k", 8),
              SteerParam("alpha", 15.0, _FINITE, "iti_alpha", 5.0),
              SteerParam("direction", "com", (_choices("iti", "DIRECTIONS"),), "iti_direction", "probe"),
              SteerParam("sigma_from", None, (None, _choices("iti", "SIGMA_FROM")), None, "all"))
#: how a residual family picks its layer (declared once, shared by every residual family): "given" steers the
#: `layers` as given; "cosmic" scores each of them (None: `layer_select.default_candidates`) by COSMIC's
#: generation-free score on the training fold's rows only (`steer.layer_select`) and steers the best one, its
#: scores recorded in provenance["layer_select"]
LAYER_SELECT = SteerParam("layer_select", "given", (Options(("given", "cosmic")),), IN_PARAMS, "cosmic")
#: a residual-stream steer's parameters (caa, lat; `veracity.steer.residual`): layers None = the middle layer
RESIDUAL_PARAMS = (SteerParam("layers", None, _LAYERS, "residual_layers", (1,)),
                   SteerParam("alpha", 1.0, _FINITE, "residual_alpha", 2.0),
                   SteerParam("normalize", "raw", (_choices("residual.fit", "NORMALIZE"),), "residual_normalize",
                              "unit"),
                   LAYER_SELECT)


@dataclass(frozen=True)
class SteerFamily:
    """name: the method component ("iti"). fit(lm, train_questions, test_questions, settings, *, data_dir, limit,
    acts, fold, revision) -> a `Steer` fitted on `train_questions` only (`settings`: the run's `MethodSettings`).
    store: the name of its activation store; shares_acts: it reads the `acts` store given for the original model
    as is (else `<acts>-<store>`, never another family's store). params: its parameters (`SteerParam`: names,
    defaults, constraints), what a sweep ranges over and the only steer options a run of it accepts; sweep: the
    study that varies them ("heads": `veracity iti sweep`, "layers": `veracity steer sweep`).
    check(lm, settings): refuse settings this model cannot take, before any work (None: nothing to check).
    identity_alpha: the alpha at which the fitted steer is the identity, i.e. the plain model (caa's 0: nothing
    added); None: no alpha is (ACE's 0 is an ablation, angular's 0 a rotation). A sweep shares the plain model's
    evaluation only for it. identity_of(settings): the same where it depends on the settings (a conditional
    steer: its inner steer's); it overrides identity_alpha. load(path): read back a fit written by its `save`
    (the safe reader of its class); a sweep keeps each fold's fit in its run folder and reads it on a resume instead
    of refitting (None: always refit)."""

    name: str
    fit: Callable[..., object]
    store: str
    params: tuple[SteerParam, ...]
    sweep: str
    shares_acts: bool = False
    check: Callable[[object, object], None] | None = None
    identity_alpha: float | None = None
    identity_of: Callable[[object], float | None] | None = None
    load: Callable[[str | Path], object] | None = None

    def identity(self, settings) -> float | None:
        """The alpha at which this family's steer, fitted with `settings`, is the plain model (None: none)."""
        return self.identity_of(settings) if self.identity_of is not None else self.identity_alpha

    def param(self, name: str) -> SteerParam:
        """The parameter called `name`; a ValueError naming the family's parameters when it has none."""
        for p in self.params:
            if p.name == name:
                return p
        raise ValueError(f"steer {self.name!r} has no parameter {name!r}; its parameters: "
                         f"{', '.join(p.name for p in self.params)}")

    def settings(self, base, **values):
        """`base` (a `MethodSettings`) with these of the family's parameters set: how a sweep fits one cell
        without knowing which settings field carries which parameter."""
        fields = {}
        for name, v in values.items():
            p = self.param(name)
            if p.setting is None:
                raise ValueError(f"steer {self.name!r}: {name!r} is an option of its sweep, not of its fit")
            if p.setting == IN_PARAMS:
                fields[IN_PARAMS] = {**fields.get(IN_PARAMS, base.steer_params), name: v}
            else:
                fields[p.setting] = v
        return dataclasses.replace(base, **fields)

    def store_path(self, acts, workdir, trainer: str | None, prompt: str, fold: int):
        """Where this family's activations of the model it steers live: a trained copy's under the run folder,
        the original model's at `acts` (None: the veracity cache)."""
        if trainer is not None and workdir is not None:
            return Path(workdir) / f"{self.store}-{trainer}-{prompt}-fold{fold}"
        if acts is None or self.shares_acts:
            return acts
        return Path(f"{acts}-{self.store}")


def steers_with(param: str) -> tuple[str, ...]:
    """The registered families that have a parameter called `param` (read when asked: later registrations count)."""
    return tuple(n for n, f in STEERS.items() if any(p.name == param for p in f.params))


def setting_params() -> dict[str, SteerParam]:
    """Every registered family's parameters by the `MethodSettings` field of their own that carries them."""
    return {p.setting: p for f in STEERS.values() for p in f.params if p.setting not in (None, IN_PARAMS)}


def steer_value(settings, family: str, name: str):
    """The value of family `family`'s parameter `name` in these `MethodSettings` (its declared default when not
    set): what a family's `fit` reads."""
    p = STEERS[family].param(name)
    if p.setting == IN_PARAMS:
        return settings.steer_params.get(name, p.default)
    return getattr(settings, p.setting) if p.setting else p.default


def check_steer_params(values) -> dict:
    """`MethodSettings.steer_params` checked against the registered families' declarations (read when checked,
    so a family registered later counts): each name must be an `IN_PARAMS` parameter of some family, and its
    value must pass that parameter's constraints. ValueError / TypeError otherwise."""
    from ..constraints import _field_error

    if not isinstance(values, dict):
        raise TypeError(f"a mapping of steer parameter names to values, got {type(values).__name__}")
    for name, v in values.items():
        owners = [(f.name, p) for f in STEERS.values() for p in f.params if p.name == name and p.setting == IN_PARAMS]
        if not owners:
            have = sorted({p.name for f in STEERS.values() for p in f.params if p.setting == IN_PARAMS})
            raise ValueError(f"no registered steer has a parameter {name!r}"
                             + (f" (these do: {', '.join(have)})" if have else ""))
        for family, p in owners:
            msg = _field_error(f"{family} {name}", v, list(p.constraints))
            if msg:
                raise ValueError(msg)
    return values


def _typed(p: SteerParam, text: str):
    """A command line's text as parameter `p`'s type (that of its default, else of its example)."""
    kind = type(p.default if p.default is not None else p.example)
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"--steer-param {p.name}: give true or false, got {text!r}")
        return text.lower() == "true"
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"--steer-param {p.name}: give a number, got {text!r}") from None
    return text


def parse_steer_params(pairs, steers) -> dict:
    """{name: value} from NAME=VALUE texts (the repeatable --steer-param), each NAME a parameter carried by name
    (`IN_PARAMS`) of at least one of the chosen `steers` (family names), its value typed as that parameter's
    default: a ValueError naming the parameters the chosen steers have otherwise. The values are then checked
    against the declarations when `MethodSettings` is built."""
    chosen = [STEERS[n] for n in dict.fromkeys(steers)]
    have = {p.name: p for f in chosen for p in f.params if p.setting == IN_PARAMS}
    out: dict = {}
    for text in pairs:
        name, eq, value = str(text).partition("=")
        name = name.strip()
        if not eq or not name:
            raise ValueError(f"--steer-param: give NAME=VALUE, got {text!r}")
        if name not in have:
            which = ", ".join(f.name for f in chosen) or "none"
            raise ValueError(f"--steer-param {name}: no chosen steer ({which}) has a parameter {name!r}"
                             + (f"; theirs: {', '.join(sorted(have))}" if have else ""))
        if name in out:
            raise ValueError(f"--steer-param {name} given twice")
        out[name] = _typed(have[name], value.strip())
    return out


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


def _loader(module: str, name: str) -> Callable[[str | Path], object]:
    """`<module>.<name>.load`, imported when called (a family's class is imported only when a fit is read)."""
    def load(path: str | Path):
        import importlib

        return getattr(importlib.import_module(module, __package__), name).load(path)
    return load


_RESIDUAL_LOAD = _loader("..steer.residual", "ResidualSteer")


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
    store="acts", params=ITI_PARAMS, sweep="heads", shares_acts=True, check=_check_iti, identity_alpha=0.0,
    load=_loader("..steer.intervention", "Intervention")))


def _layer_selected(family: str, fit: Callable[..., object], one_layer: bool = False,
                    opposite: Callable | None = None) -> Callable[..., object]:
    """`fit` with the shared ``layer_select`` option: "given" fits as asked; "cosmic" fits at every candidate
    layer (the given `layers`, else `layer_select.default_candidates`) on the training questions only, scores
    them on the training questions' rows (`layer_select.cosmic_scores`, at the fit's alpha; `opposite`: the
    steer towards false, default alpha negated) and keeps the best layer. one_layer: the family fits one layer
    per fit (bipo), so each candidate is fitted on its own."""
    def wrapped(lm, train_questions, test_questions, settings, *, data_dir=None, limit=None, acts=None, fold=0,
                revision="2021"):
        kw = dict(data_dir=data_dir, limit=limit, acts=acts, fold=fold, revision=revision)
        if steer_value(settings, family, "layer_select") != "cosmic":
            return fit(lm, train_questions, test_questions, settings, **kw)
        from ..steer.layer_select import cosmic_scores, cosmic_select, default_candidates, training_texts

        n = lm.arch.n_layers
        given = settings.residual_layers
        cands = (default_candidates(n) if given is None else
                 list(dict.fromkeys(int(l) + n if int(l) < 0 else int(l) for l in given)))
        texts, labels = training_texts(data_dir, revision, limit, train_questions)
        if one_layer:
            fits: dict = {}

            def at(layer: int):
                fits[layer] = fit(lm, train_questions, test_questions,
                                  dataclasses.replace(settings, residual_layers=(layer,)), **kw)
                return fits[layer]
            scores = cosmic_select(lm, texts, labels, cands, at, opposite=opposite)
            chosen = fits[scores.layer]
        else:
            multi = fit(lm, train_questions, test_questions,
                        dataclasses.replace(settings, residual_layers=tuple(cands)), **kw)
            scores = cosmic_scores(lm, texts, labels, multi, opposite=opposite)
            chosen = multi.select([scores.layer])
        chosen.provenance["layer_select"] = {**scores.to_json(), "candidates": cands}
        return chosen
    return wrapped


register_steer(SteerFamily("caa", _layer_selected("caa", _residual("caa")), store="resid", params=RESIDUAL_PARAMS,
                           sweep="layers", identity_alpha=0.0, load=_RESIDUAL_LOAD))
register_steer(SteerFamily("lat", _layer_selected("lat", _residual("lat")), store="resid", params=RESIDUAL_PARAMS,
                           sweep="layers", identity_alpha=0.0, load=_RESIDUAL_LOAD))


#: BiPO's parameters (`veracity.steer.bipo`): one layer (None = the middle one), the strength and the scaling of the
#: trained vector, and the units it is trained in (`BipoConfig.units`: "raw" as the paper, "activation" for a model
#: whose residual stream is far larger than Llama-2's); the optimiser settings are `BipoConfig`'s documented
#: defaults, seeded by the run's seed
BIPO_PARAMS = RESIDUAL_PARAMS + (SteerParam("units", "raw", (_choices("bipo", "UNITS"),), IN_PARAMS,
                                            "activation"),)


def _one_layer_inputs(lm, train_questions: Sequence[int], settings, data_dir, fold: int, revision: str):
    """(the training questions' TruthfulQA items, the one layer of `settings.residual_layers` (None: the middle
    one; negative: from the end), the provenance) of a family trained at one layer on the training fold only."""
    from ..data.truthfulqa import load_truthfulqa

    keep = {int(q) for q in train_questions}
    items = [it for it in load_truthfulqa(data_dir, revision) if it.index in keep]
    if not items:
        raise ValueError("no TruthfulQA items for the training questions")
    n_layers, layers = lm.arch.n_layers, settings.residual_layers
    layer = n_layers // 2 if layers is None else (layers[0] + n_layers if layers[0] < 0 else int(layers[0]))
    prov = {"train_questions": sorted(keep), "fold": int(fold), "seed": int(settings.seed), "revision": revision,
            "model": lm.name, "model_fingerprint": lm.fingerprint}
    return items, layer, prov


def fit_bipo_for_fold(lm, train_questions: Sequence[int], test_questions: Sequence[int], settings, data_dir=None,
                      limit: int | None = None, acts=None, fold: int = 0, revision: str = "2021"):
    """A BiPO vector trained on (best, incorrect) answer pairs of the training questions only (the baseline
    prompt; `preference_pairs`, as DPO's, seeded), at the one layer of `settings.residual_layers`."""
    from ..steer.bipo import BipoConfig, train_bipo
    from .trainers import preference_pairs

    items, layer, prov = _one_layer_inputs(lm, train_questions, settings, data_dir, fold, revision)
    pairs = preference_pairs(items, "baseline", lm.tokenizer, settings.pairs_per_question, settings.seed)
    return train_bipo(lm, pairs, layer, BipoConfig(seed=settings.seed, units=steer_value(settings, "bipo", "units")),
                      settings.residual_normalize,
                      settings.residual_alpha, prov)


def _check_one_layer(family: str) -> Callable[[object, object], None]:
    """The check of a family that trains at one layer (bipo, loreft): one layer (several only as COSMIC's
    candidates), in range."""
    def check(lm, settings) -> None:
        from ..validation import BadInput

        layers = settings.residual_layers
        cosmic = steer_value(settings, family, "layer_select") == "cosmic"  # the layers are its candidates
        if layers is not None and len(layers) != 1 and not cosmic:
            raise BadInput(f"{family} trains at one layer; got layers {list(layers)}")
        bad = [l for l in (layers or ()) if not -lm.arch.n_layers <= l < lm.arch.n_layers]
        if bad:
            raise BadInput(f"{family} layer {bad[0]} out of range for a {lm.arch.n_layers}-layer model")
    return check


register_steer(SteerFamily(
    "bipo", _layer_selected("bipo", lambda lm, train_q, test_q, settings, *, data_dir=None, limit=None, acts=None,
                            fold=0, revision="2021":
                            fit_bipo_for_fold(lm, train_q, test_q, settings, data_dir, limit, acts, fold, revision),
                            one_layer=True),
    store="bipo", params=BIPO_PARAMS, sweep="layers", check=_check_one_layer("bipo"), identity_alpha=0.0,
    load=_RESIDUAL_LOAD))


# ---------------------------------------------------------------- ace, angular steering, conditional (CAST-style)
_PROBABILITY = (Interval(float, 0, 1, closed="neither", msg="be a probability strictly between 0 and 1"),)
#: ACE's parameters (`veracity.steer.ace`): the residual ones (alpha: the coordinate's offset from the reference, in
#: `normalize` units; 0 = ablation about the reference) and the reference point
ACE_PARAMS = RESIDUAL_PARAMS + (SteerParam("reference", "false", (_choices("ace", "REFERENCES"),), IN_PARAMS, "all"),)
#: angular steering's parameters (`veracity.steer.angular`): alpha is the angle theta in degrees from the direction
ANGULAR_PARAMS = (RESIDUAL_PARAMS[0], SteerParam("alpha", 0.0, _FINITE, IN_PARAMS, 90.0), LAYER_SELECT)
#: the conditional steer's parameters (`veracity.steer.conditional`): the inner steer's (layers, alpha, normalize
#: reach it), which steer, the condition probe and its threshold
CONDITIONAL_PARAMS = RESIDUAL_PARAMS + (
    SteerParam("steer", "caa", (_choices("conditional", "INNER_FITS"),), IN_PARAMS, "ace"),
    SteerParam("probe", "logistic", (_choices("conditional", "PROBES"),), IN_PARAMS, "mass-mean"),
    SteerParam("threshold", 0.5, _PROBABILITY, IN_PARAMS, 0.7))


def _fit_ace(lm, train_questions, test_questions, settings, *, data_dir=None, limit=None, acts=None, fold=0,
             revision="2021"):
    from ..steer.ace import fit_ace_for_fold

    return fit_ace_for_fold(lm, list(train_questions), settings.residual_layers, settings.residual_alpha,
                            settings.residual_normalize, steer_value(settings, "ace", "reference"), settings.seed, data_dir, limit,
                            acts, fold, revision)


def _angular(adaptive: bool) -> Callable[..., object]:
    def fit(lm, train_questions, test_questions, settings, *, data_dir=None, limit=None, acts=None, fold=0,
            revision="2021"):
        from ..steer.angular import fit_angular_for_fold

        return fit_angular_for_fold(lm, list(train_questions), settings.residual_layers,
                                    steer_value(settings, "angular", "alpha"),
                                    adaptive, settings.seed, data_dir, limit, acts, fold, revision)
    return fit


def _fit_conditional(lm, train_questions, test_questions, settings, *, data_dir=None, limit=None, acts=None, fold=0,
                     revision="2021"):
    from ..steer.conditional import fit_conditional_for_fold

    inner = STEERS[steer_value(settings, "conditional", "steer")].fit(lm, train_questions, test_questions, settings, data_dir=data_dir,
                                            limit=limit, acts=acts, fold=fold, revision=revision)
    return fit_conditional_for_fold(lm, inner, list(train_questions), list(test_questions), steer_value(settings, "conditional", "probe"),
                                    steer_value(settings, "conditional", "threshold"), settings.seed, data_dir, limit, acts, fold, revision)


def _turned_back(steer):
    """Angular steering's steer towards false for COSMIC: the angle mirrored about the plane's normal (180 - theta)."""
    return steer.with_alpha(180.0 - steer.alpha)


def _inner_identity(settings) -> float | None:
    return STEERS[steer_value(settings, "conditional", "steer")].identity(settings)


# no identity alpha: ACE's 0 is the ablation about the reference, angular's 0 turns every activation onto b1
register_steer(SteerFamily("ace", _layer_selected("ace", _fit_ace), store="resid", params=ACE_PARAMS, sweep="layers",
                           load=_loader("..steer.ace", "AceSteer")))
register_steer(SteerFamily("angular", _layer_selected("angular", _angular(False), opposite=_turned_back),
                           store="resid", params=ANGULAR_PARAMS, sweep="layers",
                           load=_loader("..steer.angular", "AngularSteer")))
register_steer(SteerFamily("angular-adaptive", _layer_selected("angular-adaptive", _angular(True),
                                                               opposite=_turned_back),
                           store="resid", params=ANGULAR_PARAMS, sweep="layers",
                           load=_loader("..steer.angular", "AngularSteer")))
# the inner steer (caa, lat, ace) picks its layer itself (the shared layer_select); the probe reads the one chosen
register_steer(SteerFamily("conditional", _fit_conditional, store="resid", params=CONDITIONAL_PARAMS, sweep="layers",
                           identity_of=_inner_identity, load=_loader("..steer.conditional", "ConditionalSteer")))


# ---------------------------------------------------------------- LoReFT through pyreft
#: LoReFT's parameters (`veracity.steer.loreft`): one layer (None = the middle one), alpha scaling the trained edit
#: (1: as trained, 0: none) and the subspace's rank; the optimiser settings are `LoreftConfig`'s documented defaults
LOREFT_PARAMS = (RESIDUAL_PARAMS[0], RESIDUAL_PARAMS[1], SteerParam("rank", 4, _COUNT, IN_PARAMS, 2), LAYER_SELECT)


def fit_loreft_for_fold(lm, train_questions: Sequence[int], test_questions: Sequence[int], settings, data_dir=None,
                        limit: int | None = None, acts=None, fold: int = 0, revision: str = "2021"):
    """A LoReFT intervention (`pyreft.LoreftIntervention`) trained on the training questions' best answers only
    (the baseline prompt, `sft_examples`), at the one layer of `settings.residual_layers`."""
    from ..steer.loreft import LoreftConfig, pyreft_module, train_loreft
    from .trainers import sft_examples

    pyreft_module()  # a missing package is one clear error before any work
    items, layer, prov = _one_layer_inputs(lm, train_questions, settings, data_dir, fold, revision)
    cfg = LoreftConfig(rank=steer_value(settings, "loreft", "rank"), seed=settings.seed)
    return train_loreft(lm, sft_examples(items, "baseline", lm.tokenizer), layer, cfg, settings.residual_alpha, prov)


register_steer(SteerFamily(
    "loreft", _layer_selected("loreft", lambda lm, train_q, test_q, settings, *, data_dir=None, limit=None,
                              acts=None, fold=0, revision="2021":
                              fit_loreft_for_fold(lm, train_q, test_q, settings, data_dir, limit, acts, fold,
                                                  revision), one_layer=True),
    store="loreft", params=LOREFT_PARAMS, sweep="layers", check=_check_one_layer("loreft"), identity_alpha=0.0,
    load=_loader("..steer.loreft", "LoreftSteer")))
