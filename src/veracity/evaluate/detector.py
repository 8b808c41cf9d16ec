"""A detector of wrong answers you can keep: the `veracity detect` study's best linear detector, saved as
PATH.json + PATH.safetensors, loaded with one call, and used to score a model's new answers.

The detector is a stack of linear read-outs, one per (layer, position) component, each on standardised hidden
states: score = stack_bias + sum_k stack_weight_k * (w_k . (x_k - mean_k) / scale_k + b_k). A single probe is
one component with stack weight 1 and bias 0. The score is the belief the answer is CORRECT (higher = more
likely correct); an answer scoring below `threshold` (set on a control split at `fpr` false positives) is
flagged wrong, and `calibration` (Platt a, b) maps a score to P(correct). The hidden states come from the
generation's own forward passes (`capture.generation`), so scoring costs no second forward.

The JSON records the model fingerprint the detector was fitted on; scoring with another model is refused.

`Detector.watch(lm)` is the deployed form: a context manager whose plain PyTorch hooks (removed on exit) read the
fed tokens and the detector's layers during any `lm.model.generate(...)` call inside it, so every generated
answer gets a truth score from the generation's own forwards, with no change to how the caller generates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..capture.generation import POSITIONS

FORMAT = "veracity-detector"


@dataclass
class Detector:
    """A kept detector (module doc). weights / means / scales: float32 [K, d]; biases, stack_weights: [K]."""
    layers: list[int]
    positions: list[str]
    weights: np.ndarray
    biases: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    stack_weights: np.ndarray
    stack_bias: float
    threshold: float
    calibration: dict  # {"method": "platt", "a": ..., "b": ...}
    model_fingerprint: str
    name: str = ""
    provenance: dict = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        """The model width the detector's weights read (checked against the model it scores)."""
        return int(self.weights.shape[1])

    def score_features(self, features) -> np.ndarray:
        """Scores of answers from their captured features, [n, len(POSITIONS), n_layers, d] (or one answer's
        [len(POSITIONS), n_layers, d])."""
        F = torch.as_tensor(features, dtype=torch.float32)
        if F.dim() == 3:
            F = F[None]
        out = np.full(F.shape[0], float(self.stack_bias), dtype=np.float64)
        for k, (layer, pos) in enumerate(zip(self.layers, self.positions)):
            x = F[:, POSITIONS.index(pos), layer].double().numpy()
            z = ((x - self.means[k]) / self.scales[k]) @ self.weights[k].astype(np.float64) + float(self.biases[k])
            out += float(self.stack_weights[k]) * z
        return out

    def verdicts(self, features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, P(correct), flagged) of answers from their captured features (`score_features`): the one
        verdict `detect-score` and a fold evaluation's `--detector` both give."""
        scores = self.score_features(features) if len(features) else np.zeros(0)
        return scores, self.probability(scores), scores < self.threshold

    def probability(self, scores) -> np.ndarray:
        """P(correct) of scores under the validation split's Platt calibration."""
        s = np.asarray(scores, dtype=np.float64)
        return 1 / (1 + np.exp(-(self.calibration["a"] * s + self.calibration["b"])))

    def check_model(self, lm) -> None:
        """Refuse a model of other weights (fingerprint), width or depth than the detector was fitted on."""
        from ..validation import BadInput

        if lm.fingerprint != self.model_fingerprint:
            raise BadInput(f"the detector was fitted on a model with fingerprint {self.model_fingerprint}; "
                           f"{lm.name} has {lm.fingerprint}: fit a detector for this model (`veracity detect`)")
        if lm.arch.hidden_size != self.hidden_size or max(self.layers) >= lm.arch.n_layers:
            raise BadInput(f"the detector reads width {self.hidden_size} at layers {self.layers}; {lm.name} does "
                           "not have them")

    def identity(self) -> str:
        """A digest of everything the detector computes with (its JSON and tensors): what a resumable study
        records, so a resume with another detector is refused rather than mixing two detectors' rows."""
        import hashlib
        import json

        h = hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode())
        for k, t in sorted(self.tensors().items()):
            h.update(k.encode() + t.numpy().tobytes())
        return h.hexdigest()[:16]

    def watch(self, lm, *, max_new_tokens: int | None = None) -> "DetectorWatch":
        """A context manager that scores every answer `lm.model.generate` produces inside it (`DetectorWatch`)."""
        return DetectorWatch(self, lm, max_new_tokens=max_new_tokens)

    # ------------------------------------------------------------------------------------ files
    def to_json(self) -> dict:
        """PATH.json: everything but the tensors (they are PATH.safetensors)."""
        return {"format": FORMAT, "name": self.name, "layers": [int(l) for l in self.layers],
                "positions": list(self.positions), "hidden_size": self.hidden_size, "n_components": len(self.layers),
                "stack_bias": float(self.stack_bias), "threshold": float(self.threshold),
                "calibration": dict(self.calibration), "model_fingerprint": self.model_fingerprint,
                "provenance": self.provenance}

    def tensors(self) -> dict[str, torch.Tensor]:
        """PATH.safetensors: the components' weights, biases and normalisation, and the stack weights."""
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
        return {"weights": t(self.weights), "biases": t(self.biases), "means": t(self.means),
                "scales": t(self.scales), "stack_weights": t(self.stack_weights)}

    def write_files(self, base: str | Path) -> Path:
        """Write base.json + base.safetensors as they are (callers go through a guard: `save`, or a run folder)."""
        from safetensors.torch import save_file

        from ..runs import write_json_atomic

        base = Path(base)
        save_file(self.tensors(), str(base.with_name(base.name + ".safetensors")), metadata={"format": FORMAT})
        write_json_atomic(base.with_name(base.name + ".json"), self.to_json())
        return base.with_name(base.name + ".json")

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write PATH.json + PATH.safetensors through the writer guard (`outputs.write_guarded`, kind "detector")."""
        from ..outputs import write_guarded

        return write_guarded(path, "detector", self.write_files, overwrite=overwrite)


def load_detector(path: str | Path) -> Detector:
    """Read a detector saved by `Detector.save` or a `veracity detect` run (PATH, PATH.json or the run folder,
    which holds detector.json + detector.safetensors) through the safe readers (`artifacts`, kind "detector")."""
    from ..artifacts import read

    p = Path(path)
    if p.is_dir():
        p = p / "detector"
    elif p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    d = read("detector", p)
    meta, ts = d[".json"], d[".safetensors"]
    arr = lambda k: ts[k].double().numpy() if hasattr(ts[k], "double") else np.asarray(ts[k], dtype=np.float64)  # noqa: E731
    from ..artifacts import damaged

    bad = [q for q in meta["positions"] if q not in POSITIONS]
    if bad or len(meta["positions"]) != len(meta["layers"]) or not {"a", "b"} <= set(meta["calibration"]):
        raise damaged(p.with_name(p.name + ".json"), "has positions, layers or calibration that do not fit together")
    return Detector([int(l) for l in meta["layers"]], list(meta["positions"]), arr("weights"), arr("biases"),
                    arr("means"), arr("scales"), arr("stack_weights"), float(meta["stack_bias"]),
                    float(meta["threshold"]), dict(meta["calibration"]), str(meta["model_fingerprint"]),
                    meta.get("name", ""), meta.get("provenance") or {})


@dataclass
class WatchedAnswer:
    """One answer generated under `Detector.watch`: its row in the `generate` call, text, answer span and verdict."""
    call: int  # which generate call inside the watch (0, 1, ...)
    row: int  # the row of that call's batch
    text: str  # the new tokens, decoded, cut at EOS and one line past the answer (as `capture.generation` cuts)
    answer: str
    score: float
    p_correct: float
    flagged: bool


class DetectorWatch:
    """Scores the answers of every `generate` call made inside it (`with detector.watch(lm) as w: ...; w.scores`).

    Plain hooks, registered on entry and removed on exit (also on an error): a forward pre-hook on the model reads
    the token ids each forward is fed (the prompt at the prefill, then one new token per step), and a forward hook
    on each layer the detector reads keeps the newest position's float32 state. A generation call starts at a
    forward fed more than one token (the prefill; prompts need two tokens or more). The last generated token is
    never fed, so it has no state: an answer is cut as `capture.generation` cuts it (EOS, the first line's end,
    `max_new_tokens`) among the FED tokens; generate at least one token past the answer (`veracity detect-score`
    does: its scores are these). Batches must be left-padded, as `generate` needs."""

    def __init__(self, detector: Detector, lm, *, max_new_tokens: int | None = None):
        self.detector, self.lm, self.max_new_tokens = detector, lm, max_new_tokens
        self._calls: list[dict] = []
        self._handles: list = []

    def __enter__(self) -> "DetectorWatch":
        from ..capture.hooks import _first

        self.detector.check_model(self.lm)
        self._calls = []
        layers = sorted(set(self.detector.layers))

        def on_ids(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                return
            if ids.shape[1] > 1 or not self._calls:  # the prefill: a new generate call
                self._calls.append({"prompt": ids.detach().cpu(), "fed": [], "states": {l: [] for l in layers}})
            else:
                self._calls[-1]["fed"].append(ids.detach().cpu())

        def on_layer(module, args, out, layer):
            if self._calls:
                self._calls[-1]["states"][layer].append(_first(out)[:, -1].detach().float().cpu())

        try:
            self._handles.append(self.lm.model.register_forward_pre_hook(on_ids, with_kwargs=True))
            for l in layers:
                self._handles.append(self.lm.arch.layer(self.lm.model, l).register_forward_hook(
                    lambda m, a, o, l=l: on_layer(m, a, o, l)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @property
    def scores(self) -> list[WatchedAnswer]:
        """Every answer generated so far inside the watch, call by call, row by row."""
        from ..capture.generation import _cut, char_to_token_span
        from ..data.qa import answer_span, first_line_done

        tok, det = self.lm.tokenizer, self.detector
        n_layers = self.lm.arch.n_layers
        out = []
        for c, call in enumerate(self._calls):
            fed = torch.cat(call["fed"], 1) if call["fed"] else torch.zeros(call["prompt"].shape[0], 0, dtype=torch.long)
            st = {l: torch.stack(v, 1) for l, v in call["states"].items()}  # [B, 1 + fed, d]
            for r in range(fed.shape[0]):
                new = _cut(tok, fed[r].tolist(), tok.eos_token_id, self.max_new_tokens or fed.shape[1],
                           first_line_done)
                text = tok.decode(new, skip_special_tokens=True)
                cs, ce, _ = answer_span(text, [])
                a0, a1 = char_to_token_span(tok, new, cs, ce) if new else (0, 0)
                after = a1 if a1 < len(new) else a1 - 1
                feats = torch.zeros(len(POSITIONS), n_layers, det.hidden_size)
                for l, s in st.items():
                    s = s[r]
                    rows = [s[0]] * len(POSITIONS) if not new else \
                        [s[0], s[1 + a0], s[a1], s[1 + after], s[1 + a0:1 + a1].mean(0)]
                    feats[:, l] = torch.stack(rows)
                sc = float(det.score_features(feats)[0])
                out.append(WatchedAnswer(c, r, text, text[cs:ce], sc, float(det.probability(sc)),
                                         bool(sc < det.threshold)))
        return out


@dataclass
class ScoredAnswer:
    """One generated answer with the detector's verdict."""
    item_id: str
    question: str
    answer: str
    correct: bool | None
    score: float
    p_correct: float
    flagged: bool


def score_answers(lm, detector: Detector, items: Sequence, *, max_new_tokens: int = 24,
                  batch_size: int = 16) -> list[ScoredAnswer]:
    """Answer each question greedily with hidden states captured by the generation's own hooks (at the
    detector's layers only), and attach the detector's score, P(correct) and flag to every answer (a detector of
    another model is refused)."""
    from ..capture.generation import answer_questions

    detector.check_model(lm)
    answers = answer_questions(lm, items, n_samples=0, greedy=True, max_new_tokens=max_new_tokens,
                               batch_size=batch_size, layers=detector.layers)
    scores, probs, flags = detector.verdicts(torch.stack([a.features for a in answers]) if answers else [])
    q = {it.id: it.question for it in items}
    return [ScoredAnswer(a.item_id, q[a.item_id], a.text, a.correct, float(s), float(p), bool(f))
            for a, s, p, f in zip(answers, scores, probs, flags)]


def load_detector_for(path: str | Path | None, lm=None) -> Detector | None:
    """A study's `--detector`: read it through the safe readers (None for no path) and, given the run's model,
    refuse one fitted on another (`Detector.check_model`), so a sweep or comparison stops before any work."""
    from ..artifacts import ArtifactError
    from ..validation import BadInput

    if path is None:
        return None
    try:
        det = load_detector(path)
    except ArtifactError as e:
        raise BadInput(f"--detector: {e}") from None
    if lm is not None:
        det.check_model(lm)
    return det


def score_questions(detector: str | Path, model: str, *, tables: Sequence[str] | None = None,
                    n_questions: int | None = None, seed: int = 0, max_new_tokens: int = 24,
                    device: str | None = None) -> list[ScoredAnswer]:
    """`veracity detect-score`: read the detector (refused when damaged, before any model is loaded), load the
    model (refused when it is not the detector's), and score its greedy answers to QA-table questions (a seeded
    draw of `n_questions`)."""
    import random

    from ..data.qa import load_qa
    from ..models import load_checked
    from ..validation import BadInput

    if n_questions is not None and n_questions < 1:
        raise BadInput(f"--n-questions must be a positive number of questions, got {n_questions}")
    det = load_detector(detector)
    items = load_qa(tables)
    if n_questions is not None and n_questions < len(items):
        keep = sorted(random.Random(f"detect:{seed}").sample(range(len(items)), n_questions))
        items = [items[i] for i in keep]
    lm = load_checked(model, device)
    return score_answers(lm, det, items, max_new_tokens=max_new_tokens)
