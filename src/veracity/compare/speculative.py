"""Batched speculative decoding: a main model verifies tokens drafted by an assistant, many prompts at once.

transformers' assisted generation refuses batch size > 1, because rows accept different numbers of draft
tokens and its KV cache is cropped for the whole batch. Here every row keeps its own accepted length:
both models' caches are kept *right-aligned* (left padding), and after each step every row's cache is
rolled back to its own accepted prefix and re-aligned (a per-row gather along the sequence axis; the
freed slots on the left become padding that the attention mask hides). Position ids are passed per row,
so rotary and absolute position embeddings see each row's true positions. A row whose cache must be
rolled back further than the others simply re-feeds a token, which keeps every forward call rectangular.

Greedy mode reproduces the main model's plain greedy decoding token for token; sampling mode uses the
standard rule (accept draft x with probability min(1, p(x)/q(x)), else resample from norm(max(0, p - q)),
and a bonus token from p when every draft is accepted), whose output distribution is exactly p's.
Every row starts each prompt at `gamma`; the "heuristic" schedule (+2 after a fully accepted step, -1
otherwise, as in transformers) is kept per row and reset for every prompt, so prompt order and batch
composition never leak into another prompt's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from .distances import check_same_tokenizer, left_pad
from ..models.cache import cache_kwargs, returned_cache
from ..models.padding import pad_token_id


@dataclass
class SpecRecord:
    """One prompt's speculative generation. Per step: `proposals[s]` draft tokens considered and
    `n_matches[s]` of them accepted (each step also emits one token from the main model). Per draft token
    (flat, in order; `draft_step` says which step): the token, its probability under the main model
    (`p_main`) and the assistant (`q_assistant`), and whether it was accepted."""

    index: int
    prompt: str
    text: str
    tokens: list[int]
    n_matches: list[int] = field(default_factory=list)
    proposals: list[int] = field(default_factory=list)
    draft_tokens: list[int] = field(default_factory=list)
    draft_step: list[int] = field(default_factory=list)
    p_main: list[float] = field(default_factory=list)
    q_assistant: list[float] = field(default_factory=list)
    accepted: list[bool] = field(default_factory=list)

    @property
    def main_calls(self) -> int:
        """Forward calls of the main model (one per step): the cost speculative decoding saves."""
        return len(self.n_matches)

    @property
    def mean_accepted(self) -> float:
        """Mean accepted draft tokens per step."""
        return sum(self.n_matches) / max(1, len(self.n_matches))

    @property
    def acceptance_rate(self) -> float:
        """Accepted over proposed draft tokens."""
        return sum(self.n_matches) / max(1, sum(self.proposals))

    @property
    def tokens_per_call(self) -> float:
        """Generated tokens per main-model forward call (1.0 without speculation)."""
        return len(self.tokens) / max(1, self.main_calls)


class _Stream:
    """One model's batched KV cache, kept right-aligned: row i's valid tokens fill slots [T - c_i, T)."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        from transformers import DynamicCache

        self.model = model
        self.device = device
        self.cache = DynamicCache()
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=device)
        self.count: torch.Tensor | None = None  # valid tokens per row

    def feed(self, ids: torch.Tensor, new_mask: torch.Tensor, keep_logits: int) -> torch.Tensor:
        """Append tokens (left-padded where new_mask is 0) and return logits of the last `keep_logits`."""
        b = ids.shape[0]
        if self.count is None:
            self.count = torch.zeros(b, dtype=torch.long, device=self.device)
            self.mask = torch.zeros((b, 0), dtype=torch.long, device=self.device)
        full = torch.cat([self.mask, new_mask], dim=1)
        pos = (self.count[:, None] + new_mask.cumsum(1) - 1).clamp_min(0)
        out = self.model(input_ids=ids, attention_mask=full, position_ids=pos, **cache_kwargs(self.model, self.cache),
                         use_cache=True, logits_to_keep=keep_logits)
        self.cache = returned_cache(out)
        self.mask = full
        self.count = self.count + new_mask.sum(1)
        return out.logits[:, -keep_logits:].float()

    def keep(self, keep: torch.Tensor) -> None:
        """Roll every row back to its first keep[i] valid tokens and re-align the rows on the right."""
        if self.count is None:
            return
        t = self.mask.shape[1]
        drop = self.count - keep
        if bool((drop < 0).any()):
            raise RuntimeError("internal error: cannot keep more tokens than are cached")
        t_new = int(keep.max().item()) if keep.numel() else 0
        if bool((drop == drop[0]).all()):  # fast path: the same crop for every row, then trim left padding
            d = int(drop[0].item())
            lo, hi = t - d - t_new, t - d
            sl = slice(lo, hi)
            for layer in self.cache.layers:
                if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.numel():
                    layer.keys = layer.keys[:, :, sl]
                    layer.values = layer.values[:, :, sl]
            self.mask = self.mask[:, sl]
        else:
            s = torch.arange(t_new, device=self.device)[None, :]
            start = (t - self.count)[:, None]
            offset = (t_new - keep)[:, None]
            src = (start + s - offset).clamp(0, max(t - 1, 0))
            valid = s >= offset
            for layer in self.cache.layers:
                if not (getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.numel()):
                    continue
                _, h, _, dk = layer.keys.shape
                idx = src[:, None, :, None].expand(-1, h, -1, dk)
                layer.keys = layer.keys.gather(2, idx)
                layer.values = layer.values.gather(2, src[:, None, :, None].expand(-1, h, -1, layer.values.shape[-1]))
            self.mask = valid.long()
        self.count = keep.clone()

    def select(self, rows: torch.Tensor) -> None:
        if self.count is None:
            return
        for layer in self.cache.layers:
            if getattr(layer, "is_initialized", True) and layer.keys is not None and layer.keys.numel():
                layer.keys = layer.keys[rows]
                layer.values = layer.values[rows]
        self.mask = self.mask[rows]
        self.count = self.count[rows]


def _eos_ids(lm) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None),
                getattr(lm.tokenizer, "eos_token_id", None)):
        if isinstance(src, int):
            ids.add(src)
        elif src is not None:
            ids.update(int(x) for x in src)
    return ids


def _pending(seqs: list[list[int]], good: list[int], pad: int, device) -> tuple[int, list[int], torch.Tensor, torch.Tensor]:
    """Tokens to feed so that every row feeds the same count K: rows roll back (keep) to len - K."""
    k = max(len(s) - g for s, g in zip(seqs, good))
    keep = [max(len(s) - k, 0) for s in seqs]
    ids, mask = left_pad([s[kp:] for s, kp in zip(seqs, keep)], pad)
    return k, keep, ids.to(device), mask.to(device)


@torch.no_grad()
def generate(main, assistant, prompts: Sequence[str] | Sequence[Sequence[int]], gamma: int = 5,
             batch_size: int = 16, do_sample: bool = False, temperature: float = 1.0, max_new_tokens: int = 32,
             schedule: str = "constant", seed: int = 0, sort_by_length: bool = True) -> list[SpecRecord]:
    """Speculative decoding of `prompts` (texts, or token-id lists) with LoadedModels `main` and `assistant`.

    Returns one `SpecRecord` per prompt, in the input order. `gamma` is the draft length (the starting
    length under `schedule="heuristic"`). Prompts are batched by length (`sort_by_length`) to cut padding;
    results do not depend on batching in greedy mode.
    """
    if schedule not in ("constant", "heuristic"):
        raise ValueError(f"schedule must be 'constant' or 'heuristic', not {schedule!r}")
    if gamma < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError("gamma, batch_size and max_new_tokens must be >= 1")
    if do_sample and temperature <= 0:
        raise ValueError("temperature must be > 0 when sampling")
    check_same_tokenizer(main, assistant)
    tok = main.tokenizer
    ids = [list(p) if not isinstance(p, str) else tok(p)["input_ids"] for p in prompts]
    if any(len(x) == 0 for x in ids):
        raise ValueError("empty prompt after tokenization")
    order = sorted(range(len(ids)), key=lambda i: len(ids[i])) if sort_by_length else list(range(len(ids)))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    records: list[SpecRecord | None] = [None] * len(ids)
    for s in range(0, len(order), batch_size):
        batch = order[s:s + batch_size]
        for i, rec in zip(batch, _generate_batch(main, assistant, [ids[i] for i in batch], gamma, do_sample,
                                                 temperature, max_new_tokens, schedule, gen)):
            rec.index = i
            rec.prompt = prompts[i] if isinstance(prompts[i], str) else tok.decode(ids[i])
            records[i] = rec
    return records  # type: ignore[return-value]


def _probs(logits: torch.Tensor, do_sample: bool, temperature: float) -> torch.Tensor:
    return F.softmax(logits / (temperature if do_sample else 1.0), dim=-1)


def _generate_batch(main, assistant, prompt_ids: list[list[int]], gamma: int, do_sample: bool, temperature: float,
                    max_new_tokens: int, schedule: str, gen: torch.Generator) -> list[SpecRecord]:
    dev_m, dev_a = main.device, assistant.device
    pad = pad_token_id(main.tokenizer)
    eos = _eos_ids(main)
    ms, as_ = _Stream(main.model, dev_m), _Stream(assistant.model, dev_a)
    n = len(prompt_ids)
    recs = [SpecRecord(index=-1, prompt="", text="", tokens=[]) for _ in range(n)]
    rows = list(range(n))  # batch row -> record index, for active rows
    seqs = [list(p) for p in prompt_ids]
    good_m = [0] * n
    good_a = [0] * n
    g_row = [gamma] * n
    step = 0
    while rows:
        rem = [max_new_tokens - len(recs[r].tokens) for r in rows]
        g_eff = [min(g_row[r], max(rm - 1, 0)) for r, rm in zip(rows, rem)]
        G = max(g_eff)
        b = len(rows)
        # --- draft G tokens with the assistant (per-row limits g_eff applied at acceptance) ---
        drafts = torch.zeros((b, G), dtype=torch.long)
        q_all = torch.zeros((b, G, 0))
        if G > 0:
            k, keep, ids, mask = _pending(seqs, good_a, pad, dev_a)
            as_.keep(torch.tensor(keep, device=dev_a))
            logits = as_.feed(ids, mask, 1)[:, -1].cpu()
            qs = []
            for j in range(G):
                q = _probs(logits, do_sample, temperature)
                x = torch.multinomial(q, 1, generator=gen)[:, 0] if do_sample else q.argmax(-1)
                qs.append(q)
                drafts[:, j] = x
                if j < G - 1:
                    logits = as_.feed(x[:, None].to(dev_a), torch.ones((b, 1), dtype=torch.long, device=dev_a),
                                      1)[:, -1].cpu()
            q_all = torch.stack(qs, 1)
            good_a_fed = [len(sq) + G - 1 for sq in seqs]  # cached after drafting (before acceptance)
        # --- verify with the main model: pending tokens + G drafts in one call ---
        k, keep, ids, mask = _pending(seqs, good_m, pad, dev_m)
        ms.keep(torch.tensor(keep, device=dev_m))
        ids = torch.cat([ids, drafts.to(dev_m)], 1)
        mask = torch.cat([mask, torch.ones((b, G), dtype=torch.long, device=dev_m)], 1)
        p_all = _probs(ms.feed(ids, mask, G + 1).cpu(), do_sample, temperature)  # [b, G+1, V]
        v = min(p_all.shape[-1], q_all.shape[-1]) if G > 0 else p_all.shape[-1]
        finished = []
        for bi, r in enumerate(rows):
            rec, g = recs[r], g_eff[bi]
            n_acc = 0
            new: list[int] = []
            for j in range(g):
                x = int(drafts[bi, j])
                pj, qj = float(p_all[bi, j, x]), float(q_all[bi, j, x])
                if do_sample:
                    ok = bool(torch.rand((), generator=gen) < min(1.0, pj / qj if qj > 0 else float("inf")))
                else:
                    ok = x == int(p_all[bi, j].argmax())
                rec.draft_tokens.append(x)
                rec.draft_step.append(step)
                rec.p_main.append(pj)
                rec.q_assistant.append(qj)
                rec.accepted.append(ok)
                if not ok:
                    break
                n_acc += 1
                new.append(x)
            if n_acc < g:  # rejected: the main model's correction
                if do_sample:
                    resid = (p_all[bi, n_acc, :v] - q_all[bi, n_acc, :v]).clamp_min(0)
                    if float(resid.sum()) <= 0:
                        resid = p_all[bi, n_acc]
                    nxt = int(torch.multinomial(resid / resid.sum(), 1, generator=gen))
                else:
                    nxt = int(p_all[bi, n_acc].argmax())
            else:  # all accepted (or no drafts): bonus token from the main model
                pb = p_all[bi, g]
                nxt = int(torch.multinomial(pb, 1, generator=gen)) if do_sample else int(pb.argmax())
            new.append(nxt)
            rec.n_matches.append(n_acc)
            rec.proposals.append(g)
            if schedule == "heuristic" and g > 0:
                g_row[r] = g_row[r] + 2 if n_acc == g else max(1, g_row[r] - 1)
            # bookkeeping of what each cache holds that is still valid
            base = len(seqs[bi])
            good_m[bi] = base + n_acc
            if G > 0:
                good_a[bi] = min(good_a_fed[bi], base + n_acc)
            new = new[:rem[bi]]
            done = False
            for t_i, t in enumerate(new):
                if t in eos:
                    new, done = new[:t_i + 1], True
                    break
            rec.tokens.extend(new)
            seqs[bi].extend(new)
            if done or len(rec.tokens) >= max_new_tokens:
                finished.append(bi)
        step += 1
        if finished:
            live = [bi for bi in range(b) if bi not in set(finished)]
            rows = [rows[bi] for bi in live]
            seqs = [seqs[bi] for bi in live]
            good_m = [good_m[bi] for bi in live]
            good_a = [good_a[bi] for bi in live]
            if live:
                ms.select(torch.tensor(live, device=dev_m))
                as_.select(torch.tensor(live, device=dev_a))
    for rec in recs:
        rec.text = main.tokenizer.decode(rec.tokens, skip_special_tokens=True)
    return recs
