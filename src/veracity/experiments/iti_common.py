"""What every ITI study resolves first (fit, validate, sweep): the reproduction settings (veracity's defaults
or the `--reproduce` preset), the `ITIConfig`, the revisions and the probe data with the evaluation items.
User errors raise `BadInput` (the CLI prints one line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..constraints import Checked, choices_in
from ..validation import BadInput
from ..methods import options as o
from ..methods.prepare import check_revision_pair


_ITI_LISTS = {"direction": "DIRECTIONS", "sigma_from": "SIGMA_FROM", "data": "DATA", "reproduce": "REPRODUCE"}


def _registered(name: str):
    """One of ITI's choice lists (`steer.iti`; REPRODUCE: the presets' names), read when checked."""
    return choices_in("veracity.steer.iti", _ITI_LISTS[name], name.replace("_", "-") + " choice")


@dataclass
class ITIRunOptions(Checked):
    """The options every ITI study shares (validate, sweep): the model, how ITI is fitted (None: the
    default, or the --reproduce preset's value), which questions and how they are evaluated."""

    _constraints = {"model": o.MODEL, "folds": o.FOLDS, "direction": [_registered("direction")], "judge": o.JUDGE,
                    "protocol": o.PROTOCOL, "sigma_from": [None, _registered("sigma_from")],
                    "contiguous_folds": o.BOOL, "seed": o.OPTIONAL_SEED, "data": [None, _registered("data")],
                    "mc_shift_from": [None, o.MC_SHIFT_FROM[0]],
                    "reproduce": [None, _registered("reproduce")], "limit": o.LIMIT, "acts": o.OPTIONAL_TEXT,
                    "ce_texts": o.COUNT0, "gen_positions": o.GEN_POSITIONS, "revision": o.REVISION,
                    "eval_revision": o.OPTIONAL_REVISION, "data_dir": o.OPTIONAL_TEXT, "device": o.DEVICE,
                    "side_effects": o.SIDE_EFFECTS, "side_effect_n": o.SIDE_EFFECT_N}

    model: str = "smollm2"
    folds: int = 2
    direction: str = "com"
    judge: str = "none"
    protocol: str = "truthfulqa"
    sigma_from: str | None = None
    contiguous_folds: bool = False
    seed: int | None = None
    data: str | None = None
    mc_shift_from: str | None = None
    reproduce: str | None = None
    limit: int | None = None
    acts: str | None = None
    ce_texts: int = 100
    gen_positions: str = "last"
    revision: str = "2021"
    eval_revision: str | None = None
    data_dir: str | None = None
    device: str | None = None
    side_effects: tuple = ()  # methods.side_effects measured on each held-out fold (sweep default: all)
    side_effect_n: dict = field(default_factory=dict)  # their sample sizes (default side_effects.DEFAULT_N)


@dataclass
class ITIFitConfig(Checked):
    """`veracity iti fit`: K, alpha and how ITI is fitted on every question (None: the default, or the
    --reproduce preset's value); the model's options are `models.loader.LoadConfig`'s."""

    _constraints = {"num_heads": o.NUM_HEADS, "alpha": o.ALPHA, "direction": [_registered("direction")],
                    "sigma_from": [None, _registered("sigma_from")], "seed": o.OPTIONAL_SEED,
                    "data": [None, _registered("data")], "reproduce": [None, _registered("reproduce")],
                    "limit": o.LIMIT}
    _commands = ("iti fit",)

    num_heads: int = 48
    alpha: float = 15.0
    direction: str = "com"
    sigma_from: str | None = None
    seed: int | None = None
    data: str | None = None
    reproduce: str | None = None
    limit: int | None = None


def resolve_settings(reproduce: str | None, direction: str, data: str | None, sigma_from: str | None,
                     contiguous: bool, mc_shift_from: str | None, seed: int | None) -> dict:
    """Every ITI reproduction setting, resolved: veracity's defaults, or the preset (an explicit option that
    contradicts the preset is refused). Keys: data, sigma_from, contiguous, split, ranking, probe, precision,
    mc_shift_from, seed, direction, reproduce, remaining_differences."""
    from ..steer.apply import MC_SHIFT_FROM
    from ..steer.iti import DATA, REMAINING_DIFFERENCES, REPRODUCE

    if data is not None and data not in DATA:
        raise BadInput(f"--data: expected one of {', '.join(DATA)}, got {data!r}")
    if mc_shift_from is not None and mc_shift_from not in MC_SHIFT_FROM:
        raise BadInput(f"--mc-shift-from: expected one of {', '.join(MC_SHIFT_FROM)}, got {mc_shift_from!r}")
    if reproduce is None:
        return {"data": data or "tqa-mc2", "sigma_from": sigma_from or "train", "contiguous": contiguous,
                "split": "seeded", "ranking": "stable", "probe": "batched", "precision": "float32",
                "mc_shift_from": mc_shift_from or "answer-start", "seed": 0 if seed is None else seed,
                "direction": direction, "reproduce": None, "remaining_differences": []}
    if reproduce not in REPRODUCE:
        raise BadInput(f"--reproduce: expected one of {', '.join(REPRODUCE)}, got {reproduce!r}")
    preset = REPRODUCE[reproduce]
    for key, flag, given in (("data", "--data", data), ("sigma_from", "--sigma-from", sigma_from),
                             ("mc_shift_from", "--mc-shift-from", mc_shift_from),
                             ("direction", "--direction", direction)):
        if given is not None and given != preset[key]:
            raise BadInput(f"--reproduce {reproduce} sets {flag} {preset[key]}; drop {flag} {given}")
    out = {k: v for k, v in preset.items() if k != "val_ratio"}
    out.update(seed=preset["seed"] if seed is None else seed, reproduce=reproduce,
               remaining_differences=list(REMAINING_DIFFERENCES[reproduce]))
    return out


def settings_record(st: dict) -> dict:
    """The resolved settings as a run's config.json records them (validate and sweep alike)."""
    return {"sigma_from": st["sigma_from"], "contiguous_folds": st["contiguous"], "iti_data": st["data"],
            "mc_shift_from": st["mc_shift_from"], "split": st["split"], "ranking": st["ranking"],
            "probe": st["probe"], "precision": st["precision"], "reproduce": st["reproduce"],
            "remaining_differences": st["remaining_differences"]}


def preset_lines(st: dict) -> list[str]:
    """What a --reproduce preset set and which deliberate differences remain (empty without a preset)."""
    if not st["reproduce"]:
        return []
    return ([f"--reproduce {st['reproduce']}: " + ", ".join(
        f"{k}={st[k]}" for k in ("data", "sigma_from", "contiguous", "split", "ranking", "probe", "precision",
                                 "mc_shift_from", "seed")), "deliberate differences that remain:"]
            + [f"  - {d}" for d in st["remaining_differences"]])


def iti_config(direction: str, sigma_from: str, seed: int, max_k: int | None = None, st: dict | None = None):
    """The `ITIConfig` of the command-line choices (and a reproduce preset's settings); an invalid combination is a
    one-line `BadInput`."""
    from ..steer.iti import ITIConfig

    extra = {k: st[k] for k in ("split", "ranking", "probe", "precision") if k in st} if st else {}
    try:
        return ITIConfig(direction=direction, sigma_from=sigma_from, seed=seed, max_k=max_k, **extra)
    except ValueError as e:
        raise BadInput(str(e)) from None


def check_revisions(revision: str, eval_revision: str, st: dict) -> None:
    """Refuse revision combinations the data cannot serve, before any work: `--sigma-from original` needs the 2021
    CSV."""
    check_revision_pair(revision, eval_revision)
    if revision == "2025" and st["sigma_from"] == "original":
        raise BadInput("--sigma-from original needs --revision 2021 (its tqa_gen_end_q rows)")


def load_data(lm, data_dir, limit, acts, st: dict | None = None, revision: str = "2021",
              eval_revision: str | None = None, folds: int | None = None):
    """(ITI data of `revision`, evaluation items). With `eval_revision` given, a third value: None, or when
    it differs from `revision` the matching report, the items then being that revision's questions under
    the fit revision's indices (matched by text, `data.truthfulqa.cross_revision_items`). `folds` is checked
    against the number of questions before the capture."""
    from ..data import load_truthfulqa
    from ..data.truthfulqa import cross_revision_items
    from ..steer.iti import load_iti_data
    from ..validation import check_folds

    st = st or {"data": "tqa-mc2", "sigma_from": "train", "seed": 0}
    if folds is not None:
        all_items = load_truthfulqa(data_dir, revision)
        check_folds(folds, len(all_items[:limit] if limit else all_items))
    report = None
    data = load_iti_data(lm, data_dir=data_dir, acts=acts, limit=limit, data=st["data"],
                         sigma_rows=st["sigma_from"] == "original", sigma_seed=st["seed"],
                         revision=revision).first_questions(limit)
    items = load_truthfulqa(data_dir, revision)
    if limit is not None:
        items = items[:limit]
    if eval_revision is not None and eval_revision != revision:
        items, report = cross_revision_items(items, load_truthfulqa(data_dir, eval_revision))
    if eval_revision is None:
        return data, items
    return data, items, report


def load_model(model: str, device: str | None, dtype: str = "float32", device_map: str | None = None,
               num_heads=None):
    """The model, and --num-heads (an int or a list) against its layers x heads before any work."""
    from ..models import ModelNotAvailable, load
    from ..validation import check_num_heads

    try:
        lm = load(model, dtype=dtype, device=device, device_map=device_map)
    except (ModelNotAvailable, ValueError) as e:
        raise BadInput(str(e)) from None
    if num_heads is not None:
        check_num_heads(num_heads, lm.arch.n_layers, lm.arch.n_heads)
    return lm


def as_path(p) -> str | None:
    """A Path as a string for JSON (anything else unchanged)."""
    return str(p) if isinstance(p, Path) else p
