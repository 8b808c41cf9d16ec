"""Distances between two models' next-token distributions (same tokenizer, same prompts).

All values are in nats, computed in fp32 from log-softmax, with the **full sum over the vocabulary**
for every position. A common pitfall (the reference study's code) is
`F.kl_div(log_q, p, reduction="batchmean")` applied to a single vocabulary vector of shape `[V]`:
"batchmean" divides by the size of the first dimension, which there is the vocabulary, so the reported
"KL" is the true KL divided by V (~5e4 times too small). Here every reduction over the vocabulary is a
sum, and averaging only ever happens over prompts or positions, explicitly.

`1 - TV = sum_x min(p(x), q(x))` is exactly the probability that a token drafted from q is accepted by the
speculative sampling rule against p, which is why it is reported beside KL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from ..models.padding import pad_batch


@dataclass
class Distances:
    """Per-row (or per-position) distances; each tensor has the leading shape of the inputs."""

    kl_main_assistant: torch.Tensor  # KL(p_main || q_assistant)
    kl_assistant_main: torch.Tensor  # KL(q_assistant || p_main)
    js: torch.Tensor  # Jensen-Shannon divergence (nats, <= ln 2)
    one_minus_tv: torch.Tensor  # sum min(p, q): acceptance probability of a sampled draft token

    def as_dict(self) -> dict[str, list]:
        """Every distance as a plain list per name, for results.json."""
        return {k: v.tolist() for k, v in self.__dict__.items()}


def _log_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return F.log_softmax(logits.float() / temperature, dim=-1)


def distances_from_logits(main_logits: torch.Tensor, assistant_logits: torch.Tensor,
                          temperature: float = 1.0) -> Distances:
    """KL both ways, JS and 1 - TV between softmax(main) and softmax(assistant) over the last dim.

    Inputs have any leading shape `[..., V]`; outputs have shape `[...]`. Where the two vocabularies
    differ in size (padded embedding matrices of models sharing a tokenizer) both are cut to the common
    prefix and renormalised.
    """
    v = min(main_logits.shape[-1], assistant_logits.shape[-1])
    lp = _log_probs(main_logits[..., :v], temperature)
    lq = _log_probs(assistant_logits[..., :v], temperature)
    return distances_from_log_probs(lp, lq)


def distances_from_log_probs(log_p: torch.Tensor, log_q: torch.Tensor) -> Distances:
    """Same as `distances_from_logits` for normalised log-probabilities (fp32 recommended)."""
    log_p, log_q = log_p.float(), log_q.float()
    p, q = log_p.exp(), log_q.exp()
    # xlogy-style: terms with p == 0 contribute 0 even where log q = -inf.
    kl_pq = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)
    kl_qp = torch.where(q > 0, q * (log_q - log_p), torch.zeros_like(q)).sum(-1)
    m = 0.5 * (p + q)
    log_m = torch.log(m.clamp_min(torch.finfo(m.dtype).tiny))
    js = 0.5 * (torch.where(p > 0, p * (log_p - log_m), torch.zeros_like(p)).sum(-1)
                + torch.where(q > 0, q * (log_q - log_m), torch.zeros_like(q)).sum(-1))
    overlap = torch.minimum(p, q).sum(-1)
    return Distances(kl_pq, kl_qp, js, overlap)


def check_same_tokenizer(main, assistant) -> None:
    """Raise ValueError unless the two LoadedModels tokenize identically (same vocabulary and specials)."""
    tm, ta = main.tokenizer, assistant.tokenizer
    if tm is ta:
        return
    problems = []
    if len(tm) != len(ta):
        problems.append(f"vocabulary sizes {len(tm)} vs {len(ta)}")
    elif tm.get_vocab() != ta.get_vocab():
        problems.append("different token-to-id maps")
    for attr in ("bos_token_id", "eos_token_id"):
        if getattr(tm, attr, None) != getattr(ta, attr, None):
            problems.append(f"{attr} {getattr(tm, attr, None)} vs {getattr(ta, attr, None)}")
    probe = "The woman worked as a nurse. 123 Ünïcode"
    if not problems and tm(probe)["input_ids"] != ta(probe)["input_ids"]:
        problems.append("the same text tokenizes differently (special tokens added differently)")
    if problems:
        raise ValueError(f"main {getattr(main, 'name', '?')!r} and assistant {getattr(assistant, 'name', '?')!r} "
                         f"do not share a tokenizer ({'; '.join(problems)}); speculative decoding and token-level "
                         "distances need the same tokenizer")


@torch.no_grad()
def _batched_logits(lm, input_ids: torch.Tensor, attention_mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    out = lm.model(input_ids=input_ids.to(lm.device), attention_mask=attention_mask.to(lm.device),
                   position_ids=pos.to(lm.device), use_cache=False)
    return out.logits.float().cpu()


def left_pad(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into (input_ids, attention_mask) (`models.padding.pad_batch`)."""
    input_ids, mask, _ = pad_batch(ids, pad_id, "left")
    return input_ids, mask


@dataclass
class PromptDistances:
    """Distances per prompt. With continuations, `per_token` holds one Distances per prompt over the
    continuation's tokens and the top-level tensors are their means."""

    distances: Distances
    per_token: list[Distances] = field(default_factory=list)


def prompt_distances(main, assistant, prompts: Sequence[str], continuations: Sequence[str | Sequence[int]] | None = None,
                     batch_size: int = 16, temperature: float = 1.0) -> PromptDistances:
    """Distances between two LoadedModels' next-token distributions.

    Without `continuations`: at the last prompt position (the distribution of the first generated token).
    With them: at every position that predicts a continuation token (prompt + continuation is scored in
    one pass; the continuation, a text or token ids such as a generation's tokens, is tokenized
    separately and appended, so the boundary is exact), and the per-prompt value is the mean over those
    positions.
    """
    check_same_tokenizer(main, assistant)
    tok = main.tokenizer
    if continuations is not None and len(continuations) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    rows: list[Distances] = []
    per_token: list[Distances] = []
    for s in range(0, len(prompts), batch_size):
        chunk = list(prompts[s:s + batch_size])
        p_ids = [tok(t)["input_ids"] for t in chunk]
        if continuations is None:
            ids, n_cont = p_ids, [0] * len(chunk)
        else:
            c_ids = [tok(c, add_special_tokens=False)["input_ids"] if isinstance(c, str) else list(c)
                     for c in continuations[s:s + batch_size]]
            ids = [a + b for a, b in zip(p_ids, c_ids)]
            n_cont = [len(c) for c in c_ids]
        input_ids, mask, pos = main.adapter.pad(ids, side="left")  # the last position predicts the next token
        lm_ = _batched_logits(main, input_ids, mask, pos)
        la_ = _batched_logits(assistant, input_ids, mask, pos)
        if continuations is None:
            d = distances_from_logits(lm_[:, -1], la_[:, -1], temperature)
            rows.append(d)
            continue
        for i, k in enumerate(n_cont):
            if k == 0:
                raise ValueError(f"continuation {s + i} is empty after tokenization")
            sl = slice(-k - 1, -1)  # positions predicting the k continuation tokens
            d = distances_from_logits(lm_[i, sl], la_[i, sl], temperature)
            per_token.append(d)
            rows.append(Distances(*(v.mean().reshape(1) for v in d.__dict__.values())))
    cat = Distances(*(torch.cat([getattr(r, f) for r in rows]) for f in Distances.__dataclass_fields__))
    return PromptDistances(cat, per_token)
