"""Log-likelihoods from a causal LM: continuations given prefixes (the MC fast path and its one-forward
reference), and next-token log-probabilities of left-padded prompts. Always fp32 log-softmax, whatever
the model's dtype; interventions enter through an `InterventionFactory`. `ModelAdapter` (models.adapter)
bundles these with the pad rule and greedy generation.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, ContextManager, Sequence

import numpy as np

from .._lazy import torch_mode
from .batching import AutoBatch, as_batcher
from .cache import cache_kwargs, returned_cache
from .padding import expand_cache, pad_after_prefix, pad_batch

if TYPE_CHECKING:
    import torch

#: A factory for the intervention context: called with the phase ("mc", "generate", "lm") and entered
#: around the model calls of that phase, so hook-based interventions (ITI) act on exactly those tokens.
InterventionFactory = Callable[[str], ContextManager]


def _ctx(intervention: InterventionFactory | None, phase: str) -> ContextManager:
    return intervention(phase) if intervention is not None else contextlib.nullcontext()


def _model_device(model) -> torch.device:
    return next(model.parameters()).device

class SharedPrefix:
    """Token ids every prompt starts with (the instruction + primer) and their KV cache, computed once on
    first use and reused by every question whose prefix starts with them (checked token by token)."""

    def __init__(self, ids: Sequence[int]):
        self.ids = tuple(ids)
        self.cache = None
        self.last_logits = None

    def get(self, model, intervention: InterventionFactory | None):
        """The prefix's KV cache and last logits, computed on first use under `intervention` and reused after."""
        import torch
        from transformers import DynamicCache

        if self.cache is None:
            dev = _model_device(model)
            with _ctx(intervention, "mc"):
                out = model(input_ids=torch.tensor([self.ids], device=dev), use_cache=True, logits_to_keep=1,
                            **cache_kwargs(model, DynamicCache(config=model.config)))
            self.cache, self.last_logits = returned_cache(out), out.logits[0, -1]
        return self.cache, self.last_logits

@contextlib.contextmanager
def head_at(model, rows: Sequence[int], cols: Sequence[int]):
    """Inside, the LM head (the model's output embeddings) sees only the hidden states at (rows[i], cols[i]), so
    `model(...).logits` is [1, K, V] for the K positions read instead of [n, L, V]: the head's matmul and the
    log-softmax skip the padding and the positions nobody reads (with Gemma's 262k-token vocabulary the head
    costs more than the decoder layers). The model's own code still runs after the head (Gemma-2's soft-capping
    included), so the logits are the plain forward's. Yields a one-item list, True once the head ran on the
    gathered positions: a model whose forward bypasses its output embeddings leaves it False (index its full
    logits instead). A plain forward pre-hook, removed on exit; the model is not modified."""
    import torch
    hit = [False]
    head = model.get_output_embeddings()

    def pre(module, args):
        if not args or args[0].dim() != 3:
            return None
        h = args[0]
        r = torch.as_tensor(rows, dtype=torch.long, device=h.device)
        c = torch.as_tensor(cols, dtype=torch.long, device=h.device)
        hit[0] = True
        return (h[r, c].unsqueeze(0),) + tuple(args[1:])

    handle = head.register_forward_pre_hook(pre) if head is not None else None
    try:
        yield hit
    finally:
        if handle is not None:
            handle.remove()


def logits_at(model, rows: Sequence[int], cols: Sequence[int], **inputs) -> torch.Tensor:
    """[K, V] logits of `model(**inputs)` at positions (rows[i], cols[i]), the head run on those only
    (`head_at`; the full logits indexed when the model's forward bypasses its output embeddings). Enter any
    intervention context around the call."""
    with head_at(model, rows, cols) as hit:
        logits = model(**inputs).logits
    return logits[0] if hit[0] else logits[rows, cols]


def labelled_logprobs(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp32 log-prob [K] of every labelled token, its row [K]) of a right-padded training batch (`input_ids`,
    `attention_mask`, `labels` with -100 where nothing is scored): token t is scored from position t - 1, and only
    those positions go through the LM head (`head_at`), so a long prompt before a short answer costs its decoder
    layers but not the head and the log-softmax. Differentiable in whatever the forward depends on (BiPO's
    vector, LoReFT's module, LoRA's weights): the one place the trainers read answer likelihoods from."""
    import torch
    dev = _model_device(model)
    ids, mask, labels = (batch[k].to(dev) for k in ("input_ids", "attention_mask", "labels"))
    tgt = labels[:, 1:]
    rows, cols = (tgt != -100).nonzero(as_tuple=True)
    if len(rows) == 0:
        return torch.zeros(0, device=dev), rows
    flat = logits_at(model, rows, cols, input_ids=ids, attention_mask=mask)
    want = tgt[rows, cols].to(flat.device)
    # log_softmax, not logits - logsumexp (see score_requests)
    return torch.log_softmax(flat.float(), -1).gather(1, want.unsqueeze(1)).squeeze(1), rows.to(flat.device)


def labelled_logprob_sums(model, batch: dict) -> torch.Tensor:
    """[B] fp32: each row's summed log-prob of its labelled tokens (0 for a row with none); see
    `labelled_logprobs`."""
    import torch
    lp, rows = labelled_logprobs(model, batch)
    return torch.zeros(batch["input_ids"].shape[0], device=lp.device, dtype=torch.float32).index_add(0, rows, lp)


def _prefix_forward(model, prefix: tuple, shared: SharedPrefix | None, intervention):
    """(KV cache, last-position logits) of `prefix`, continuing from the shared head's cache when it applies."""
    import torch
    from transformers import DynamicCache

    dev = _model_device(model)
    S = len(shared.ids) if shared is not None else 0
    if shared is not None and S <= len(prefix) and prefix[:S] == shared.ids:
        cache, last = shared.get(model, intervention)
        cache = expand_cache(cache, 1)
        if S == len(prefix):
            return cache, last
        ids, mask, pos = pad_after_prefix([prefix[S:]], S, 0, dev)
        with _ctx(intervention, "mc"):
            out = model(input_ids=ids, **cache_kwargs(model, cache), use_cache=True, attention_mask=mask,
                        position_ids=pos, logits_to_keep=1)
        return returned_cache(out), out.logits[0, -1]
    with _ctx(intervention, "mc"):
        out = model(input_ids=torch.tensor([prefix], device=dev), use_cache=True, logits_to_keep=1,
                    **cache_kwargs(model, DynamicCache(config=model.config)))
    return returned_cache(out), out.logits[0, -1]  # logits_to_keep=1: only the last position is read

def _one_token_prefixes(model, prefixes: list, emit: Callable, batcher: AutoBatch, pad_id: int,
                         shared: SharedPrefix | None, intervention) -> None:
    """`emit(prefix, fp32 log-softmax of its last position)` for every prefix, many prefixes per forward and
    only the last real position's logits computed: the prefixes that start with the `shared` head
    right-padded after its cache, the others left-padded whole (both keep every real token's position
    and distance, so the numbers are a plain forward's up to float rounding)."""
    import torch
    dev = _model_device(model)
    S = len(shared.ids) if shared is not None else 0
    on_head = [p for p in prefixes if shared is not None and S <= len(p) and p[:S] == shared.ids]
    whole = [p for p in prefixes if not (shared is not None and S <= len(p) and p[:S] == shared.ids)]

    def run_whole(chunk: list) -> None:
        ids, mask, pos = pad_batch(chunk, pad_id, "left", dev)
        with _ctx(intervention, "mc"):
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                           logits_to_keep=1).logits[:, -1]
        for p, lp in zip(chunk, torch.log_softmax(logits.float(), -1)):
            emit(p, lp)

    def run_on_head(chunk: list) -> None:
        cache, last = shared.get(model, intervention)
        tails = [p[S:] for p in chunk]
        logits = None
        if any(tails):
            ids, mask, pos = pad_after_prefix(tails, S, pad_id, dev)
            keep = sorted({len(t) - 1 for t in tails if t})  # few distinct ends: the chunk is sorted by length
            with _ctx(intervention, "mc"):
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                               **cache_kwargs(model, expand_cache(cache, len(chunk))),
                               logits_to_keep=torch.tensor(keep)).logits
        for p, t, r in zip(chunk, tails, range(len(chunk))):
            row = last if not t else logits[r, keep.index(len(t) - 1)]
            emit(p, torch.log_softmax(row.float(), -1))

    # similar lengths share a forward: little padding, and (on the head) few distinct last positions
    batcher.map(sorted(whole, key=len), run_whole)
    batcher.map(sorted(on_head, key=len), run_on_head)


@torch_mode()
def score_requests(model, requests: Sequence[tuple[Sequence[int], Sequence[int]]], *,
                   batch_size: "int | str | AutoBatch" = 32,
                   intervention: InterventionFactory | None = None, intervene_prompt: bool = False,
                   pad_id: int = 0, per_token: bool = False, shared: SharedPrefix | None = None) -> list:
    """Summed log-prob (fp32, nats) of each continuation given its prefix: the fast path.

    Each distinct prefix runs once with a KV cache; its continuations run in right-padded batches over a
    copy of the cache, with position ids continuing from the prefix. The intervention (if any) is entered
    around the continuation forwards only, so it shifts every answer token's forward and no prompt token:
    the first answer token is scored unshifted (read at the prompt's last position), the original ITI legacy
    MC code leaves two (its shift starts at len(enc(prompt)) + 4; see `veracity.steer.apply`).
    `intervene_prompt=True` enters it around the prefix forward too.
    Prefixes whose continuations are all one token (BoolQ's " Yes" / " No", the binary task's " A" / " B")
    need no continuation forward: they are read at the prefix's last position, `batch_size` prefixes per
    padded forward with only that position's logits computed (`_one_token_prefixes`).
    `per_token=True` returns each continuation's per-token log-probs instead of the sum. `shared`: a
    `SharedPrefix` (the instruction + primer) whose cache is reused across calls. `batch_size`: an int,
    "auto" or a shared `AutoBatch` (continuations or one-token prefixes per forward; halved on
    out-of-memory, see `models.batching`).
    """
    import torch
    dev = _model_device(model)
    batcher = as_batcher(batch_size, dev)
    groups: "OrderedDict[tuple, list[int]]" = OrderedDict()
    for i, (p, _) in enumerate(requests):
        groups.setdefault(tuple(p), []).append(i)
    out: list = [None] * len(requests)
    for i, (_, c) in enumerate(requests):
        if not c:
            out[i] = np.zeros(0, np.float32) if per_token else 0.0

    def put(i: int, lp: torch.Tensor) -> None:  # lp: [len(continuation)] fp32 log-probs
        out[i] = lp.cpu().numpy() if per_token else float(lp.double().sum())

    one = [p for p, idxs in groups.items()
           if any(requests[i][1] for i in idxs) and all(len(requests[i][1]) <= 1 for i in idxs)]

    def emit(prefix: tuple, lp: torch.Tensor) -> None:
        for i in groups[prefix]:
            if requests[i][1]:
                put(i, lp[requests[i][1][0]].float().reshape(1))

    if one:
        _one_token_prefixes(model, one, emit, batcher, pad_id, shared, intervention if intervene_prompt else None)
    one_set = set(one)
    for prefix, idxs in groups.items():
        todo = [i for i in idxs if len(requests[i][1]) > 0]
        if not todo or prefix in one_set:
            continue
        P = len(prefix)
        cache0, last = _prefix_forward(model, prefix, shared, intervention if intervene_prompt else None)
        first_lp = torch.log_softmax(last.float(), -1)

        def run_chunk(chunk: list[int]) -> None:  # halved and retried by `batcher` on out-of-memory
            # a one-token continuation is read at the prefix's last position: no forward needed
            longer = [i for i in chunk if len(requests[i][1]) > 1]
            for i in chunk:
                if len(requests[i][1]) == 1:
                    put(i, first_lp[requests[i][1][0]].float().reshape(1))
            if not longer:
                return
            conts = [list(requests[i][1]) for i in longer]
            ids, mask, pos = pad_after_prefix(conts, P, pad_id, dev)
            # token k of a continuation (k >= 1) is predicted at its row position k - 1: only those positions
            # go through the LM head (no padding, no last position)
            rows = [r for r, c in enumerate(conts) for _ in range(len(c) - 1)]
            cols = [k for c in conts for k in range(len(c) - 1)]
            with _ctx(intervention, "mc"):
                flat = logits_at(model, rows, cols, input_ids=ids, attention_mask=mask, position_ids=pos,
                                 **cache_kwargs(model, expand_cache(cache0, len(conts))), use_cache=True)
            # log_softmax, not logits - logsumexp: on CPU the latter is biased by ~1e-5 nats/token on real LMs
            logp = torch.log_softmax(flat.float(), -1)
            ld = logp.device  # the LM head's device: not `dev` when a device_map spreads the model
            tgt = torch.tensor([t for c in conts for t in c[1:]], device=ld)
            picked = logp.gather(1, tgt.unsqueeze(1)).squeeze(1)
            at = 0
            for r, c in enumerate(conts):
                lp = torch.empty(len(c), dtype=torch.float32, device=ld)
                lp[0] = first_lp[c[0]].to(ld)
                lp[1:] = picked[at:at + len(c) - 1]
                at += len(c) - 1
                put(longer[r], lp)

        batcher.map(todo, run_chunk)
    return out


@torch_mode()
def score_requests_reference(model, requests: Sequence[tuple[Sequence[int], Sequence[int]]], *,
                             intervention: InterventionFactory | None = None, per_token: bool = False) -> list:
    """One full forward per continuation (prefix + continuation, no cache, no padding): the slow path the
    reference implementations use; kept for tests and the benchmark."""
    import torch
    dev = _model_device(model)
    out: list = []
    for prefix, cont in requests:
        if not cont:
            out.append(np.zeros(0, np.float32) if per_token else 0.0)
            continue
        ids = torch.tensor([list(prefix) + list(cont)], device=dev)
        with _ctx(intervention, "mc"):
            logits = model(input_ids=ids).logits[0].float()
        lp_all = torch.log_softmax(logits[len(prefix) - 1:-1], -1)
        lp = lp_all[torch.arange(len(cont)), torch.tensor(list(cont), device=lp_all.device)]
        out.append(lp.cpu().numpy() if per_token else float(lp.double().sum()))
    return out


@torch_mode()
def next_token_logprobs(model, seqs: Sequence[Sequence[int]], pad_id: int, *, batch_size: int = 16,
                        intervention: InterventionFactory | None = None, phase: str = "mc") -> torch.Tensor:
    """[N, vocab] fp32 log-probabilities of the token after each sequence (input order): left-padded
    batches of similar lengths, position ids from each row's first real token (padding changes nothing),
    only the last position's logits computed. `intervention(phase)` is entered around each forward, so a
    hook sees the whole prompt (as `score_requests(..., intervene_prompt=True)` does)."""
    import torch
    dev = _model_device(model)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))  # similar lengths together: little padding
    out: list = [None] * len(seqs)
    for b in range(0, len(order), batch_size):
        rows = order[b:b + batch_size]
        ids, mask, pos = pad_batch([seqs[i] for i in rows], pad_id, "left", dev)
        with _ctx(intervention, phase):
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                           logits_to_keep=1).logits[:, -1]
        for i, lp in zip(rows, torch.log_softmax(logits.float(), -1).cpu()):
            out[i] = lp
    return torch.stack(out) if out else torch.empty(0)


@torch_mode()
def position_logprobs(model, seqs: Sequence[Sequence[int]], start: Sequence[int], pad_id: int, *,
                      batch_size: int = 8) -> list[torch.Tensor]:
    """Per sequence, [len - start + 1, vocab] fp32 log-probabilities at positions start-1 .. len-1 (the
    distributions of tokens start .. len, and of the next one); right-padded batches, longest first, and only
    those positions through the LM head (`head_at`), so long passages cost no [T, vocab] head or softmax."""
    import torch
    dev = _model_device(model)
    out: list[torch.Tensor] = [None] * len(seqs)  # type: ignore[list-item]
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for b in range(0, len(order), batch_size):
        rows = order[b:b + batch_size]
        ids, mask, _ = pad_batch([seqs[i] for i in rows], pad_id, "right", dev)
        spans = [range(start[i] - 1, len(seqs[i])) for i in rows]
        rr = [j for j, sp in enumerate(spans) for _ in sp]
        kk = [k for sp in spans for k in sp]
        flat = logits_at(model, rr, kk, input_ids=ids, attention_mask=mask, use_cache=False)
        flat = torch.log_softmax(flat.float(), -1).cpu()
        at = 0
        for sp, i in zip(spans, rows):
            out[i] = flat[at:at + len(sp)]
            at += len(sp)
    return out
