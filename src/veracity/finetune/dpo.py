"""Direct Preference Optimisation (Rafailov et al. 2023) on (prompt, chosen, rejected) triples.

Loss per pair, with pi the trained policy and ref the frozen original model (log-probs summed over the
answer tokens only):

    L = -log sigmoid( beta * [ (log pi(c) - log ref(c)) - (log pi(r) - log ref(r)) ] )

The reference never changes, so its log-probs are computed once per pair before training (one
no-grad pass of the original model) instead of at every step. At step 0 the policy equals the
reference (LoRA starts at zero), so the first loss is exactly log 2: a useful check. Implemented here
rather than through TRL (not installed), on the shared `train_loop`; the original model is not modified.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Sequence


from .._lazy import torch_mode
from ..constraints import Checked, Instance, Interval
from ..models.loader import LoadedModel
from .sft import pair_batch
from .train import TrainConfig, TrainResult, train_loop, trainable_copy

if TYPE_CHECKING:
    import torch


@dataclass
class PreferencePair:
    """The model should prefer `prompt + chosen` over `prompt + rejected`."""

    prompt: str
    chosen: str
    rejected: str


@dataclass
class DPOConfig(Checked):
    """`beta` scales the implicit reward (TRL's default 0.1); `train` is the shared optimiser/LoRA config."""

    _constraints = {"beta": [Interval(float, 0, None, closed="neither")], "train": [Instance(TrainConfig)]}

    beta: float = 0.1
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class DPOResult(TrainResult):
    """TrainResult plus, per step, the fraction of pairs whose implicit reward ranks chosen first."""

    reward_accuracies: list[float] = field(default_factory=list)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean loss, chosen rewards, rejected rewards) from summed sequence log-probs ([B] each).
    Rewards are beta * (log pi - log ref), detached, as TRL reports them."""
    import torch.nn.functional as F
    chosen = policy_chosen - ref_chosen
    rejected = policy_rejected - ref_rejected
    loss = -F.logsigmoid(beta * (chosen - rejected)).mean()
    return loss, beta * chosen.detach(), beta * rejected.detach()


def sequence_logps(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Summed log-prob of each row's labelled tokens ([B], fp32): token t is scored from position t-1."""
    from ..models.scoring import labelled_logprob_sums
    return labelled_logprob_sums(model, batch)


def _pair_batch(tokenizer, pairs: Sequence[PreferencePair], max_length: int) -> dict:
    """Chosen rows then rejected rows in one right-padded batch (one forward for both)."""
    prompts = [p.prompt for p in pairs] * 2
    answers = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    return pair_batch(tokenizer, prompts, answers, max_length)


@torch_mode()
def reference_logps(model: torch.nn.Module, tokenizer, pairs: Sequence[PreferencePair], max_length: int,
                    batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen [P], rejected [P]) summed log-probs under the frozen reference, in pair order."""
    import torch
    was = model.training
    model.eval()
    ch, rj = [], []
    try:
        for s in range(0, len(pairs), batch_size):
            chunk = pairs[s:s + batch_size]
            lp = sequence_logps(model, _pair_batch(tokenizer, chunk, max_length)).cpu()
            ch.append(lp[:len(chunk)])
            rj.append(lp[len(chunk):])
    finally:
        model.train(was)
    return torch.cat(ch), torch.cat(rj)


def dpo_batches(tokenizer, pairs: Sequence[PreferencePair], batch_size: int, max_length: int, epochs: int,
                seed: int) -> Iterator[dict]:
    """Seeded shuffle per epoch; each batch carries `index` (pair positions) to look up reference log-probs."""
    import torch
    rng = random.Random(seed)
    for _ in range(epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            b = _pair_batch(tokenizer, [pairs[i] for i in idx], max_length)
            b["index"] = torch.tensor(idx)
            yield b


def train_dpo(lm: LoadedModel, pairs: Sequence[PreferencePair], config: DPOConfig,
              callback: Callable[[int, float], None] | None = None) -> DPOResult:
    """DPO on a trainable copy of `lm`; the reference is `lm` itself (frozen, never modified)."""
    import torch
    if not pairs:
        raise ValueError("DPO needs at least one preference pair")
    tc = config.train
    ref_c, ref_r = reference_logps(lm.model, lm.tokenizer, pairs, tc.max_length, tc.batch_size)
    torch.manual_seed(tc.seed)
    trained = trainable_copy(lm, tc)
    params = [p for p in trained.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    accs: list[float] = []

    def loss_fn(model: torch.nn.Module, batch: dict) -> torch.Tensor:
        idx = batch["index"]
        lp = sequence_logps(model, batch)
        n = len(idx)
        dev = lp.device
        loss, rc, rr = dpo_loss(lp[:n], lp[n:], ref_c[idx].to(dev), ref_r[idx].to(dev), config.beta)
        accs.append(float((rc > rr).float().mean()))
        return loss

    batches = dpo_batches(lm.tokenizer, pairs, tc.batch_size, tc.max_length, tc.epochs, tc.seed)
    losses = train_loop(trained.model, batches, loss_fn, opt, tc.max_steps, tc.grad_clip, callback)
    return DPOResult(trained, losses, len(losses), reward_accuracies=accs[:len(losses)])


@torch_mode()
def dpo_eval_loss(policy: torch.nn.Module, reference: torch.nn.Module, tokenizer, pairs: Sequence[PreferencePair],
                  beta: float = 0.1, max_length: int = 256, batch_size: int = 8) -> float:
    """Mean DPO loss of `policy` against `reference` over `pairs` (log 2 when they are the same model)."""
    ref_c, ref_r = reference_logps(reference, tokenizer, pairs, max_length, batch_size)
    pol_c, pol_r = reference_logps(policy, tokenizer, pairs, max_length, batch_size)
    return float(dpo_loss(pol_c, pol_r, ref_c, ref_r, beta)[0])
