"""BiPO: a steering vector trained with the bidirectional preference objective (Cao et al. 2024, "Personalized
Steering of LLMs via Bi-directional Preference Optimization").

One vector v is added to the output of one decoder layer at every position (pi_{+v}). On (prompt, correct,
incorrect) answer pairs, each step draws d from {+1, -1} (seeded) and minimises

    L = -log sigmoid( beta * d * [ (log pi_{+dv}(c|q) - log pi(c|q)) - (log pi_{+dv}(r|q) - log pi(r|q)) ] )

(log-probs summed over the answer tokens, in float32). With d = +1 adding v must raise the correct answer's
likelihood relative to the incorrect one; with d = -1 subtracting v must do the opposite, which is what makes v a
direction rather than a one-sided bias. pi (the plain model) never changes, so its log-probs are computed once.
The model is frozen by construction: gradients are taken with `torch.autograd.grad` with respect to v only, no
parameter's `requires_grad` or `.grad` is touched.

Settings: the paper's (Llama-2-7b-chat, 32 layers: layer 15, AdamW lr 5e-4, batch 4, beta 0.1, 20 epochs, v
starting at zero) scaled to a small CPU model: the middle layer (same relative depth), the same lr, batch, beta
and zero start, and the epochs capped by `max_steps` (200 by default: 20 epochs of a full training fold are
thousands of forward/backward passes). `BipoConfig.units="activation"` trains v in units of the layer's
per-coordinate activation RMS (the paper's step sizes assume Llama-2's residual scale; at gemma3-270m's middle layer
the raw v stays ~200x shorter than the pairs' mean difference and the loss stays at log 2). The result is a
`ResidualSteer` (method "bipo"), so it is hooked, baked, saved and swept like CAA; its provenance records the training time, the losses, the steerability predictors of the pairs'
activations (`steerability.predictors`) and the cosine with the CAA
vector (mean paired difference at the same layer, last token) of the same pairs.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from ..constraints import Checked, Count, Interval, Options, Seed
from ..finetune.sft import pair_batch
from ..models.scoring import labelled_logprob_sums
from .residual.apply import mapped_layer_output
from .residual.fit import _check_normalize
from .residual.vectors import ResidualSteer
from .steerability import predictors


#: BipoConfig.units: the units v is trained in
UNITS = ("raw", "activation")


@dataclass
class BipoConfig(Checked):
    """The optimiser and objective (module docstring: the paper's values, the step cap for a CPU)."""

    _constraints = {"beta": [Interval(float, 0, None, closed="neither")],
                    "lr": [Interval(float, 0, None, closed="neither")], "weight_decay": [Interval(float, 0, None)],
                    "batch_size": [Count()], "epochs": [Count()], "max_steps": [None, Count()],
                    "max_length": [Count(2)], "seed": [Seed()], "units": [Options(UNITS)]}

    beta: float = 0.1
    lr: float = 5e-4
    weight_decay: float = 0.01  # torch's AdamW default
    batch_size: int = 4
    epochs: int = 20
    max_steps: int | None = 200
    max_length: int = 256
    seed: int = 0
    # "raw": v in the residual stream's own units, as the paper (AdamW moves each coordinate by about lr per step);
    # "activation": v = s * w with w trained and s the per-coordinate RMS of the training pairs' activations at the
    # layer, so each step moves v by about s * lr: the paper's settings keep their effect on a model whose residual
    # stream is larger (gemma3-270m's layer 9: a trained raw v of norm 0.65 beside a mean difference of 149)
    units: str = "raw"


def bipo_loss(pol_chosen: torch.Tensor, ref_chosen: torch.Tensor, pol_rejected: torch.Tensor,
              ref_rejected: torch.Tensor, direction: int, beta: float) -> torch.Tensor:
    """The mean of -log sigmoid(beta * d * [(pol_c - ref_c) - (pol_r - ref_r)]) over the batch (d = `direction`,
    +1 or -1; pol_* are the log-probs under pi_{+dv})."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    margin = (pol_chosen - ref_chosen) - (pol_rejected - ref_rejected)
    return -F.logsigmoid(beta * direction * margin).mean()


@contextlib.contextmanager
def added_vector(lm, layer: int, v: torch.Tensor) -> Iterator[None]:
    """Add `v` (kept in the autograd graph) to decoder layer `layer`'s output at every position, for the block."""
    with mapped_layer_output(lm, layer, lambda h: h + v.to(h.dtype)):
        yield


def answer_logps(lm, batch: dict, layer: int | None = None, v: torch.Tensor | None = None) -> torch.Tensor:
    """[B] float32 summed log-prob of each row's answer tokens (`labels` != -100), with `v` added at `layer`
    (None: the plain model). Differentiable in v."""
    ctx = added_vector(lm, layer, v) if v is not None else contextlib.nullcontext()
    with ctx:
        return labelled_logprob_sums(lm.model, batch)


def _batch(tokenizer, pairs: Sequence, max_length: int) -> dict:
    """Chosen rows then rejected rows of `pairs` (objects with prompt, chosen, rejected) in one batch."""
    return pair_batch(tokenizer, [p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs],
                      max_length)


def pair_loss(lm, pairs: Sequence, layer: int, v: torch.Tensor, direction: int, beta: float,
              ref: tuple[torch.Tensor, torch.Tensor], max_length: int = 256) -> torch.Tensor:
    """The BiPO loss of these pairs at `direction` (`ref`: their plain (chosen, rejected) log-probs)."""
    lp = answer_logps(lm, _batch(lm.tokenizer, pairs, max_length), layer, direction * v)
    n = len(pairs)
    return bipo_loss(lp[:n], ref[0].to(lp.device), lp[n:], ref[1].to(lp.device), direction, beta)


@torch.no_grad()
def reference_logps(lm, pairs: Sequence, max_length: int = 256, batch_size: int = 8
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen [P], rejected [P]) log-probs under the plain model, in pair order."""
    ch, rj = [], []
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s:s + batch_size]
        lp = answer_logps(lm, _batch(lm.tokenizer, chunk, max_length)).cpu()
        ch.append(lp[:len(chunk)])
        rj.append(lp[len(chunk):])
    return torch.cat(ch), torch.cat(rj)


@torch.no_grad()
def pair_activations(lm, pairs: Sequence, layer: int, max_length: int = 256, batch_size: int = 8
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct [P, D], incorrect [P, D]) float64: decoder layer `layer`'s output at the last token of
    prompt + answer, the rows CAA's mean paired difference is taken over."""
    got: list[torch.Tensor] = []

    def hook(module, args, out):
        got.append((out[0] if isinstance(out, tuple) else out).detach())

    pos, neg = [], []
    handle = lm.arch.layer(lm.model, layer).register_forward_hook(hook)
    try:
        for s in range(0, len(pairs), batch_size):
            chunk = pairs[s:s + batch_size]
            b = _batch(lm.tokenizer, chunk, max_length)
            dev = next(lm.model.parameters()).device
            got.clear()
            lm.model(input_ids=b["input_ids"].to(dev), attention_mask=b["attention_mask"].to(dev),
                     logits_to_keep=1)  # only the layer's output is read: the head on one position
            last = b["attention_mask"].sum(1) - 1
            h = got[0][torch.arange(len(last)), last.to(got[0].device)].double().cpu()
            pos.append(h[:len(chunk)])
            neg.append(h[len(chunk):])
    finally:
        handle.remove()
    return torch.cat(pos), torch.cat(neg)


def _batches(n: int, cfg: BipoConfig) -> Iterator[list[int]]:
    rng = random.Random(cfg.seed)
    for _ in range(cfg.epochs):
        order = list(range(n))
        rng.shuffle(order)
        for s in range(0, n, cfg.batch_size):
            yield order[s:s + cfg.batch_size]


def train_bipo(lm, pairs: Sequence, layer: int, config: BipoConfig | None = None, normalize: str = "raw",
               alpha: float = 1.0, provenance: dict | None = None) -> ResidualSteer:
    """A BiPO vector at decoder layer `layer` trained on `pairs` (objects with prompt, chosen, rejected: e.g.
    `finetune.dpo.PreferencePair`), as a `ResidualSteer` (method "bipo"). normalize: "raw" keeps the trained v
    (alpha 1 adds it), "unit" its direction, "sigma" its direction times the std of the pairs' activations
    along it (as the residual fits). Provenance: config, steps, losses, train_seconds, caa_cosine."""
    cfg = config or BipoConfig()
    normalize = _check_normalize(normalize)
    if len(pairs) < 1:
        raise ValueError("BiPO needs at least one (correct, incorrect) pair")
    n_layers = lm.arch.n_layers
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} out of range for a {n_layers}-layer model")
    t0 = time.time()
    dev = next(lm.model.parameters()).device
    ref = reference_logps(lm, pairs, cfg.max_length)
    pos, neg = pair_activations(lm, pairs, layer, cfg.max_length)
    # the trained parameter w, v = units * w ("activation": the pairs' per-coordinate RMS at the layer)
    units = float(torch.cat([pos, neg]).pow(2).mean().sqrt()) if cfg.units == "activation" else 1.0
    w = torch.zeros(lm.arch.hidden_size, device=dev, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.AdamW([w], lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(int(cfg.seed))
    losses, directions = [], []
    for step, idx in enumerate(_batches(len(pairs), cfg)):
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
        d = 1 if int(torch.randint(0, 2, (1,), generator=g)) else -1
        loss = pair_loss(lm, [pairs[i] for i in idx], layer, units * w, d, cfg.beta, (ref[0][idx], ref[1][idx]),
                         cfg.max_length)
        (grad,) = torch.autograd.grad(loss, [w])
        opt.zero_grad(set_to_none=True)
        w.grad = grad
        opt.step()
        losses.append(float(loss.detach()))
        directions.append(d)
    train_seconds = time.time() - t0
    trained = units * w.detach().double().cpu()
    caa = (pos - neg).mean(0)
    nrm = float(trained.norm())
    cos = float(trained @ caa / (nrm * float(caa.norm()))) if nrm > 0 and float(caa.norm()) > 0 else float("nan")
    if normalize == "raw" or nrm == 0:
        vec, scale = trained, nrm
    else:
        u = trained / nrm
        scale = 1.0 if normalize == "unit" else float((torch.cat([pos, neg]) @ u).std(unbiased=False))
        vec = u * scale
    try:  # the pairs' activations at the layer: Braun et al.'s predictors, as caa's (`steerability.predictors`)
        pred = {str(layer): predictors(pos, neg)}
    except ValueError:  # one pair, or a pair with equal activations: no agreement to measure
        pred = {}
    prov = {"method": "bipo", "normalize": normalize, "steerability": pred, "scales": [scale], "fit": "bipo", "n_pairs": len(pairs),
            "config": asdict(cfg), "steps": len(losses), "losses": losses, "directions": directions,
            "train_seconds": train_seconds, "units": units, "trained_norm": nrm, "caa_cosine": cos, "caa_norm": float(caa.norm()),
            **(provenance or {})}
    return ResidualSteer([layer], vec[None].float(), alpha=alpha, method="bipo", provenance=prov)
