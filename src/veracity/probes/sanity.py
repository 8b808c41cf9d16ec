"""Sanity checks that published critiques of truth probes ask for.

- `ccs_distractor_test` (Farquhar et al. 2023, "Challenges with unsupervised LLM knowledge discovery"):
  add a random, prominent binary feature to the contrast pairs -- in each pair one side carries +d/2
  and the other -d/2, at random (their "banana"/"shed" words, here planted directly in activation
  space along a random direction d). That feature satisfies CCS's consistency and confidence terms as
  well as truth does, so CCS is free to find it instead of truth. The test fits CCS on the clean and
  on the distracted pairs and reports the cosine of its direction with the distractor and with a
  supervised truth direction, and its accuracy against the truth labels and the distractor labels.
- `polarity_split` (Levinstein & Herrmann 2023; Bürger et al. 2024): train a probe on affirmative
  statements and test it on negated ones (and the reverse), beside held-out rows of the training
  polarity and a probe trained on both polarities, for any method of `make_probe`.
"""

from __future__ import annotations

import random
import re

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .base import as_batched, generator
from .ccs import CCSProbe
from .registry import make_probe, needs_polarity
from .splits import stratified_split


# ------------------------------------------------------------------------------------------ distractor

def add_distractor(X_pos: Any, X_neg: Any, strength: float, seed: int = 0,
                   direction: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(X_pos', X_neg', distractor labels [N] 0/1, unit directions [G, D]).

    Per pair i a fair coin z_i = +-1 (seeded): x+_i += z_i s d / 2 and x-_i -= z_i s d / 2, so the
    distractor's label is "the Yes side carries +d" (z_i > 0). s = `strength` times the RMS norm of the
    centred activations (both sides), so strength 1 is a feature as large as the data's typical spread.
    d: a random unit direction per group (seeded) unless given ([D] or [G, D])."""
    P, single = as_batched(X_pos)
    Q, _ = as_batched(X_neg, device=P.device)
    if P.shape != Q.shape:
        raise ValueError(f"x+ and x- differ in shape: {tuple(P.shape)} vs {tuple(Q.shape)}")
    N, G, D = P.shape
    gen = generator(seed)
    if direction is None:
        d = F.normalize(torch.randn(G, D, generator=gen, dtype=torch.float64), dim=-1)
    else:
        d = F.normalize(torch.as_tensor(direction, dtype=torch.float64).reshape(-1, D).expand(G, D), dim=-1)
    z = torch.randint(0, 2, (N,), generator=gen, dtype=torch.int64)
    both = torch.cat([P, Q]).double()
    rms = (both - both.mean(0)).pow(2).sum(-1).mean(0).sqrt()  # [G]
    shift = (z.double() * 2 - 1)[:, None, None] * (strength * rms)[None, :, None] * d[None] / 2  # [N, G, D]
    P2, Q2 = (P.double() + shift).to(P.dtype), (Q.double() - shift).to(Q.dtype)
    if single:
        P2, Q2 = P2.squeeze(1), Q2.squeeze(1)
    return P2, Q2, z, d.to(torch.float32)


@dataclass
class DistractorResult:
    """Per group (layer): cosines of CCS's direction with the planted distractor and with a supervised
    truth direction (|cos|: CCS's sign is arbitrary), CCS accuracy on the test rows against the truth
    and the distractor labels (either sign: the best CCS could do with a free sign), for the clean and
    the distracted pairs; `picks` says which one CCS found on the distracted pairs ("distractor" when
    its accuracy on the distractor beats that on truth)."""

    strength: float
    cos_distractor: list[float]
    cos_truth: list[float]
    acc_truth: list[float]
    acc_distractor: list[float]
    clean_cos_truth: list[float]
    clean_acc_truth: list[float]
    picks: list[str]
    n_train: int
    n_test: int
    seed: int
    ccs_params: dict = field(default_factory=dict)


def _either_sign_acc(pred: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """pred [N, G] 0/1, labels [N] -> max(acc, 1 - acc) per group."""
    acc = (pred.long() == labels.long()[:, None].to(pred.device)).double().mean(0).cpu()
    return torch.maximum(acc, 1 - acc).tolist()


def ccs_distractor_test(X_pos: Any, X_neg: Any, labels: Any, strength: float = 2.0, seed: int = 0,
                        test_size: float = 0.4, truth_direction: torch.Tensor | None = None,
                        direction: torch.Tensor | None = None, **ccs_kwargs: Any) -> DistractorResult:
    """Does CCS find truth or a planted distractor? X_pos / X_neg: [N, D] or [N, G, D] contrast pairs,
    labels: 1 when the "Yes" side is true. The truth reference is `truth_direction` when given, else the
    supervised difference of class means of x+ - x- on the training rows. `ccs_kwargs` go to `CCSProbe`
    (n_restarts, epochs, lr, ...); the same seed, split and CCS settings are used for clean and distracted."""
    P, single = as_batched(X_pos)
    Q, _ = as_batched(X_neg, device=P.device)
    y = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)).long().flatten()
    N, G, D = P.shape
    if y.numel() != N:
        raise ValueError(f"{y.numel()} labels for {N} pairs")
    sp = stratified_split(y.tolist(), test_size, seed)
    tr, te = torch.as_tensor(sp.train_idx), torch.as_tensor(sp.test_idx)
    P2, Q2, z, d = add_distractor(P, Q, strength, seed=seed + 1, direction=direction)
    if truth_direction is not None:
        t = F.normalize(torch.as_tensor(truth_direction, dtype=torch.float32).reshape(-1, D).expand(G, D), dim=-1)
    else:
        diff = (P - Q)[tr].float()
        yt = y[tr].bool()
        t = F.normalize(diff[yt].mean(0) - diff[~yt].mean(0), dim=-1)  # [G, D]
    params = {"seed": seed, **ccs_kwargs}

    def fit(A, B):
        probe = CCSProbe(**params).fit(A[tr], B[tr], y[tr])
        dirs = probe.direction_.reshape(G, D).float().cpu()
        pred = probe.predict(A[te], B[te]).reshape(len(te), G)
        return dirs, pred

    clean_dir, clean_pred = fit(P, Q)
    dist_dir, dist_pred = fit(P2, Q2)
    cos_d = (dist_dir * d).sum(-1).abs().tolist()
    cos_t = (dist_dir * t.cpu()).sum(-1).abs().tolist()
    acc_t = _either_sign_acc(dist_pred, y[te])
    acc_d = _either_sign_acc(dist_pred, z[te])
    picks = ["distractor" if a_d > a_t else "truth" for a_t, a_d in zip(acc_t, acc_d)]
    return DistractorResult(strength, cos_d, cos_t, acc_t, acc_d, (clean_dir * t.cpu()).sum(-1).abs().tolist(),
                            _either_sign_acc(clean_pred, y[te]), picks, len(tr), len(te), seed, params)


# ------------------------------------------------------------------------------------------ polarity split

@dataclass
class PolarityScore:
    """Accuracy of `method` trained on `train` rows and tested on `test` rows (per group when batched)."""

    method: str
    train: str  # "affirmative" | "negated" | "both"
    test: str  # "affirmative" | "negated"
    accuracy: float | list[float] | None
    n_train: int
    n_test: int
    note: str = ""


def polarity_split(X: Any, labels: Any, polarity: Any, methods: Sequence[str] = ("logistic", "mass-mean"),
                   topics: Any = None, seed: int = 0, test_size: float = 0.2, C: float = 1.0,
                   twins: Sequence[Any] | None = None) -> list[PolarityScore]:
    """Train on one polarity, test on the other, for every method in `methods` (names of `make_probe`).

    Every row goes to train or test once (stratified by polarity x label, `test_size`, seed); each
    training set (affirmative, negated, both) is the train rows of those polarities, and every score is
    on the test rows of the named polarity, so "affirmative -> negated" is directly comparable with
    "negated -> negated" (in distribution) and "both -> negated". Methods that need both polarities to
    fit (TTPD) are only scored when trained on both; their single-polarity rows say so in `note`.

    `twins`: a key per row naming the underlying fact (an affirmative statement and its negation share
    it). Given, whole twin groups go to train or test (seeded, ~`test_size` of the rows), so no test
    statement has its negation, with the opposite label, among the training rows; without it a probe
    that reads content rather than truth scores *below* chance on the other polarity."""
    Xb, single = as_batched(X)
    N = Xb.shape[0]
    y = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)).long().flatten()
    pol = np.asarray(polarity.cpu() if isinstance(polarity, torch.Tensor) else polarity).flatten()
    if y.numel() != N or len(pol) != N:
        raise ValueError(f"{y.numel()} labels and {len(pol)} polarities for {N} rows")
    if not set(np.unique(pol).tolist()) <= {1, -1} or len(np.unique(pol)) != 2:
        raise ValueError("polarity must be +1 (affirmative) and -1 (negated), both present")
    top = None if topics is None else np.asarray(list(topics))
    for m in methods:
        make_probe(m)  # unknown names fail before any work
    is_test = np.zeros(N, dtype=bool)
    if twins is None:
        strata = [f"{int(p)}:{int(l)}" for p, l in zip(pol, y.tolist())]
        _, codes = np.unique(strata, return_inverse=True)
        is_test[stratified_split(codes.tolist(), test_size, seed).test_idx] = True
    else:
        keys = np.asarray([str(k) for k in twins])
        if len(keys) != N:
            raise ValueError(f"{len(keys)} twin keys for {N} rows")
        _, gid = np.unique(keys, return_inverse=True)
        order = np.random.default_rng(seed).permutation(gid.max() + 1)
        sizes = np.bincount(gid)
        chosen = order[np.cumsum(sizes[order]) <= round(test_size * N)]
        is_test[np.isin(gid, chosen)] = True
    train_sets = {"affirmative": ~is_test & (pol == 1), "negated": ~is_test & (pol == -1), "both": ~is_test}
    test_sets = {"affirmative": is_test & (pol == 1), "negated": is_test & (pol == -1)}
    out: list[PolarityScore] = []
    for m in methods:
        for tr_name, tr_mask in train_sets.items():
            tr = np.nonzero(tr_mask)[0]
            probe = None
            note = ""
            if needs_polarity(m) and tr_name != "both":
                note = f"{m} needs both polarities to fit"
            elif len(np.unique(y[tr].numpy())) < 2:
                note = "training rows have a single class"
            else:
                probe = make_probe(m, seed=seed, C=C)
                Xtr = Xb[tr].squeeze(1) if single else Xb[tr]
                if needs_polarity(m):
                    probe.fit(Xtr, y[tr], polarity=pol[tr], topics=None if top is None else top[tr])
                else:
                    probe.fit(Xtr, y[tr])
            for te_name, te_mask in test_sets.items():
                te = np.nonzero(te_mask)[0]
                acc = None
                if probe is not None and len(te):
                    Xte = Xb[te].squeeze(1) if single else Xb[te]
                    s = probe.score(Xte, y[te])
                    acc = float(s) if single else [float(v) for v in s]
                out.append(PolarityScore(m, tr_name, te_name, acc, len(tr), len(te), note))
    return out


# ------------------------------------------------------------------------------------------ polarity data + experiment

POLARITY_PAIRS = ("cities", "sp_en_trans")  # Geometry-of-Truth sets with a negated twin file neg_{name}
INTERLEAVED = ("neg_companies", "neg_facts")  # Azaria & Mitchell files holding each statement and its negation
_NEGATION = re.compile(r"\b(?:not|never|no|without|none|nothing|nobody|neither|nor|cannot)\b|n't", re.I)


def polarity_statements(pairs: Sequence[str] = POLARITY_PAIRS, data_dir: Any = None, limit: int | None = None,
                        seed: int = 0):
    """A `TextDataset` of affirmative/negated twins: group = the topic, meta carries "polarity" (+1/-1),
    "file" and "twin" (the fact both statements state).

    A Geometry-of-Truth name reads `{name}.csv` (+1) and `neg_{name}.csv` (-1); `limit`: a seeded sample of
    that many statements per file. An Azaria & Mitchell interleaved name (`INTERLEAVED`, topic = the name
    without "neg_") reads its file as consecutive twins (a statement, then its opposite-label rewrite); the
    negated one is the twin with a negation word ("not", "n't", "never", ...) where the other has none, and
    pairs where both or neither have one are left out (19 of 561 in neg_facts, e.g. "include"/"exclude");
    `limit`: that many pairs."""
    from ..data import get_dataset
    from ..data.registry import TextDataset

    from ..data.statements import GOT_NAMES, DataError

    twins_of = sorted({n for n in GOT_NAMES if f"neg_{n}" in GOT_NAMES} | set(INTERLEAVED))
    bad = [n for n in pairs if n not in twins_of]
    if bad or not pairs:
        raise DataError(f"--sets: {bad[0]!r} has no negated twins; use some of {', '.join(twins_of)}" if bad
                        else f"--sets: name one or more of {', '.join(twins_of)}")
    texts, labels, groups, meta = [], [], [], []
    for name in pairs:
        if name in INTERLEAVED:
            topic = name.removeprefix("neg_")
            ds = get_dataset(f"true-false:{name}", data_dir=data_dir)
            twins = []
            for k in range(0, len(ds) - 1, 2):
                a, b = (ds.texts[k], ds.labels[k]), (ds.texts[k + 1], ds.labels[k + 1])
                na, nb = bool(_NEGATION.search(a[0])), bool(_NEGATION.search(b[0]))
                if na != nb and a[1] != b[1]:
                    twins.append((k, (a, 1 if nb else -1), (b, -1 if nb else 1)))
            if limit is not None and limit < len(twins):
                keep = sorted(random.Random(seed).sample(range(len(twins)), limit))
                twins = [twins[i] for i in keep]
            for k, *rows in twins:
                for off, ((text, label), pol) in enumerate(rows):
                    texts.append(text)
                    labels.append(label)
                    groups.append(topic)
                    meta.append({"polarity": pol, "file": name, "index": k + off, "twin": f"{topic}|{k}"})
            continue
        for pol, fname in ((1, name), (-1, f"neg_{name}")):
            ds = get_dataset(f"got:{fname}", data_dir=data_dir, limit=limit, seed=seed)
            texts += ds.texts
            labels += ds.labels
            groups += [name] * len(ds)
            meta += [{"polarity": pol, "file": fname, "index": m.get("index"), "twin": _twin_key(name, t, m)}
                     for t, m in zip(ds.texts, ds.meta)]
    return TextDataset("polarity:" + ",".join(pairs), texts, labels, groups, meta)


def _twin_key(name: str, text: str, meta: dict) -> str:
    """The fact a statement is about, shared by it and its negation: (city, country) for cities, the quoted
    words for sp_en_trans ("The Spanish word 'uno' (does not mean|means) 'one'."), else the text itself."""
    if meta.get("city") and meta.get("country"):
        return f"{name}|{meta['city']}|{meta['country']}"
    quoted = re.findall(r"'([^']*)'", text)
    return f"{name}|" + ("|".join(quoted) if len(quoted) >= 2 else text)


@dataclass
class PolarityExperiment:
    """`scores`: one row per (method, layer, train, test); train/test name a polarity ("affirmative",
    "negated", "both") and, for held-out topics, "topic!=T" / "T:affirmative" etc."""

    methods: list[str]
    layers: list[int]
    scores: list[dict]
    n_rows: int
    seed: int

    def table(self, train: str, test: str) -> list[list]:
        """Rows = methods, columns = layers, for one (train, test) pair (None where not scored)."""
        by = {(s["method"], s["layer"]): s["accuracy"] for s in self.scores if s["train"] == train and s["test"] == test}
        return [[m] + [by.get((m, l)) for l in self.layers] for m in self.methods]


def run_polarity_experiment(X: Any, labels: Any, polarity: Any, topics: Sequence[str], layers: Sequence[int],
                            methods: Sequence[str] = ("logistic", "mass-mean", "ttpd"), seed: int = 0,
                            test_size: float = 0.2, C: float = 1.0,
                            twins: Sequence[Any] | None = None) -> PolarityExperiment:
    """Every method at every layer (X [N, L, D], one batched fit per method and training set):
    1. `polarity_split` (train affirmative / negated / both, test held-out affirmative and negated rows;
       with `twins`, a statement and its negation are always on the same side);
    2. held-out topics: for each topic T, train on every other topic (both polarities) and test on T's
       affirmative and negated rows separately."""
    Xb, _ = as_batched(X)
    N, G, _ = Xb.shape
    layers = [int(l) for l in layers]
    if len(layers) != G:
        raise ValueError(f"{len(layers)} layer names for {G} layers of activations")
    y = torch.as_tensor(np.asarray(labels)).long().flatten()
    pol = np.asarray(polarity).flatten()
    top = np.asarray(list(topics))
    if len(top) != N:
        raise ValueError(f"{len(top)} topics for {N} rows")
    rows: list[dict] = []

    def add(method, train, test, acc, n_train, n_test, note=""):
        accs = acc if isinstance(acc, list) else [acc] * G
        for l, a in zip(layers, accs):
            rows.append({"method": method, "layer": l, "train": train, "test": test,
                         "accuracy": None if a is None else float(a), "n_train": n_train, "n_test": n_test,
                         "note": note})

    for r in polarity_split(Xb, y, pol, methods, topics=top, seed=seed, test_size=test_size, C=C, twins=twins):
        add(r.method, r.train, r.test, r.accuracy, r.n_train, r.n_test, r.note)
    names = sorted(set(top.tolist()))
    if len(names) > 1:
        for held in names:
            tr = np.nonzero(top != held)[0]
            for m in methods:
                probe = make_probe(m, seed=seed, C=C)
                if needs_polarity(m):
                    if len(np.unique(pol[tr])) < 2:
                        continue
                    probe.fit(Xb[tr], y[tr], polarity=pol[tr], topics=top[tr])
                else:
                    probe.fit(Xb[tr], y[tr])
                for pname, pv in (("affirmative", 1), ("negated", -1)):
                    te = np.nonzero((top == held) & (pol == pv))[0]
                    if len(te):
                        add(m, f"topic!={held}", f"{held}:{pname}", [float(v) for v in probe.score(Xb[te], y[te])],
                            len(tr), len(te))
    return PolarityExperiment(list(methods), layers, rows, N, seed)
