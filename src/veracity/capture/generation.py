"""Generation with capture: greedy and seeded sampled answers whose hidden states are read by hooks on the
generation's own forward passes (no second forward), at the positions a truthfulness detector reads.

Per answer, for every decoder layer (`resid.L`, the layer's output as in `capture.sites`), float32 [n_layers, d]
at each of `POSITIONS`:
- "pre": the last prompt token (read in the prefill, before anything is generated);
- "answer_first" / "answer_last": the first / last token of the exact answer inside the generation
  (`data.qa.answer_span`: the first sentence of the first line, never chosen with the gold answer);
- "after_answer": the token after the answer (the answer's last token when the answer ends the generation:
  `after_in_generation` is then False);
- "answer_mean": the mean over the answer's tokens.
A token's state is the layer output at the step that feeds it, so the token that ends an answer must be fed:
the stop rule ends a row one token after it fires, and the rows whose answer runs to the batch's last generated
token (which `generate()` never feeds) get it fed by one more forward on the returned KV cache, for those rows
only and only up to the deepest layer read (a whole extra generation step cost ~6% of the generation). Neither
changes the returned tokens. `layers` reads a subset (a kept detector's): only those layers are hooked, the
others' features are NaN. Memory per batch: float32 [layers read, batch, steps, d], reduced to the five
positions when the batch ends.

Sampling is batch-independent: each sampled row has its own `torch.Generator` seeded from (seed, item id,
sample index), and a logits processor draws its token (Gumbel-max over temperature-scaled logits, optional
top-p) and forces it; greedy rows take the argmax, as plain `generate()` does. The same processor records
each chosen token's log-probability under the unscaled model (float32 log-softmax of the logits).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
if TYPE_CHECKING:
    import torch
    from ..models.batching import AutoBatch

from .._lazy import torch_mode
from ..data.qa import QAItem, answer_span, first_line_done, qa_prompt

POSITIONS = ("pre", "answer_first", "answer_last", "after_answer", "answer_mean")


@dataclass
class CapturedAnswer:
    """One answer with its label and hidden states; `features` is float32 [len(POSITIONS), n_layers, d]."""
    item_id: str
    sample: int  # -1 for the greedy answer, 0..N-1 for the seeded samples
    prompt_ids: list[int]
    token_ids: list[int]  # new tokens, cut at EOS / the stop rule / max_new_tokens
    text: str  # decoded token_ids
    logprobs: np.ndarray  # float32 [len(token_ids)], each token's log-prob under the model (unscaled)
    answer: str  # the exact answer span's text
    span: tuple[int, int]  # token span of the answer in token_ids, end exclusive
    correct: bool | None  # normalised alias match of the first line (None without aliases)
    after_in_generation: bool
    features: torch.Tensor | None = field(default=None, repr=False)

    def feature(self, position: str, layer: int) -> torch.Tensor:
        """[d] float32 at one of `POSITIONS` and one layer (negative counts from the end)."""
        return self.features[POSITIONS.index(position), layer]


def sample_seed(seed: int, item_id: str, sample: int) -> int:
    """The generator seed of one sampled answer: stable across runs, batch sizes and orders."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{item_id}:{sample}".encode()).digest()[:8], "little") >> 1


class _Picker:
    """Logits processor: chooses every row's token itself (argmax, or a seeded Gumbel-max draw), records its fp32
    log-prob, and returns logits that force it."""

    def __init__(self, gens: list[torch.Generator | None], temperature: float, top_p: float):
        import torch
        self.gens, self.temperature, self.top_p = gens, temperature, top_p
        self.logprobs: list[torch.Tensor] = []

    def _draw(self, logits: torch.Tensor, gen: torch.Generator) -> int:
        import torch
        z = logits / self.temperature
        if self.top_p < 1.0:
            p, idx = torch.softmax(z, -1).sort(descending=True)
            drop = (p.cumsum(-1) - p) >= self.top_p  # keep the smallest head whose mass reaches top_p
            z = z.clone()
            z[idx[drop]] = float("-inf")
        u = torch.rand(z.shape, generator=gen, device=gen.device, dtype=torch.float64)
        return int((z.double() - torch.log(-torch.log(u))).argmax())

    def __call__(self, input_ids, scores):
        import torch
        scores = scores.float()
        tok = scores.argmax(-1)
        for r, g in enumerate(self.gens):
            if g is not None:
                tok[r] = self._draw(scores[r], g)
        lp = torch.log_softmax(scores, -1).gather(1, tok[:, None])[:, 0]
        self.logprobs.append(lp.cpu())
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, tok[:, None], 0.0)


class _StopLate:
    """Row r is done one token after `stop(decoded new tokens)` first holds, so the token that fired is fed."""

    def __init__(self, tok, start: int, stop: Callable[[str], bool]):
        self.tok, self.start, self.stop = tok, start, stop

    def __call__(self, input_ids, scores, **kwargs):
        import torch
        rows = [len(r) > self.start + 1 and self.stop(self.tok.decode(r[self.start:-1], skip_special_tokens=True))
                for r in input_ids.tolist()]
        return torch.tensor(rows, dtype=torch.bool, device=input_ids.device)


@contextlib.contextmanager
def _read_layers(lm, keep: dict[int, list[torch.Tensor]]):
    """Hooks on the decoder layers keyed in `keep`, appending a float32 copy of the newest position's state
    ([B, d]) to keep[layer]. A copy, not a view: a view would keep each forward's whole layer output alive (the
    prefill's [B, L, d] at every layer) until the batch ends (one profile: capture / plain 1.089 with views,
    1.014 with copies); the copy is B x d per layer and step."""
    import torch

    from .hooks import _first
    handles = [lm.arch.layer(lm.model, i).register_forward_hook(
        lambda m, a, o, i=i: keep[i].append(_first(o)[:, -1].to(torch.float32, copy=True)))
        for i in keep]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class _Enough(Exception):
    """Raised by the last read layer's hook to end a forward whose later layers and logits nobody reads."""


def _feed_last(lm, gen, mask: torch.Tensor, cache, rows: list[int], last_layer: int) -> None:
    """Feed the batch's last generated token to `rows` only, on `generate()`'s returned KV cache (cut to those
    rows; the cache is spent afterwards), up to `last_layer` (the deepest layer read; the rest of the forward and
    the logits are skipped): the reading hooks then see its state as a further generation step would have
    shown it, at a fraction of that step's cost. `mask` is the prompt's attention mask; generated positions are
    all attended, as `generate()` attends them."""
    import torch

    from ..models.cache import cache_kwargs

    def enough(module, args, out):
        raise _Enough

    idx = torch.tensor(rows, device=gen.device)
    cache.batch_select_indices(idx)
    full = torch.cat([mask[idx], mask.new_ones(len(rows), gen.shape[1] - mask.shape[1])], 1)  # [k, T]
    pos = full.long().sum(-1, keepdim=True) - 1  # left padding: a position counts the attended tokens before it
    stop = lm.arch.layer(lm.model, last_layer).register_forward_hook(enough)  # runs after the reading hook
    try:
        lm.model(input_ids=gen[idx, -1:], attention_mask=full, position_ids=pos, use_cache=True,
                 cache_position=torch.tensor([gen.shape[1] - 1], device=gen.device), **cache_kwargs(lm.model, cache))
    except _Enough:
        pass
    finally:
        stop.remove()


def _cut(tok, new: list[int], eos, max_new_tokens: int, stop: Callable[[str], bool] | None) -> list[int]:
    if eos is not None and eos in new:
        new = new[:new.index(eos)]
    new = new[:max_new_tokens]
    if stop is not None:
        for k in range(1, len(new) + 1):
            if stop(tok.decode(new[:k], skip_special_tokens=True)):
                return new[:k]
    return new


def char_to_token_span(tok, ids: Sequence[int], start: int, end: int) -> tuple[int, int]:
    """Tokens of `ids` whose decoded characters overlap [start, end) (decode of each prefix gives the offsets);
    an empty character span gives the token holding `start` (or the last token)."""
    ends = [len(tok.decode(list(ids[:k + 1]), skip_special_tokens=True)) for k in range(len(ids))]
    begins = [0] + ends[:-1]
    hit = [k for k in range(len(ids)) if begins[k] < max(end, start + 1) and ends[k] > start]
    if not hit:
        k = next((k for k in range(len(ids)) if ends[k] > start), len(ids) - 1)
        return k, k + 1
    return hit[0], hit[-1] + 1


@torch_mode()
def generate_with_capture(lm, prompts: Sequence[Sequence[int]], *, aliases: Sequence[Sequence[str]] | None = None,
                          seeds: Sequence[int | None] | None = None, item_ids: Sequence[str] | None = None,
                          samples: Sequence[int] | None = None, temperature: float = 1.0, top_p: float = 1.0,
                          max_new_tokens: int = 32, stop: Callable[[str], bool] | None = first_line_done,
                          batch_size: "int | str | AutoBatch" = 16, capture: bool = True,
                          layers: Sequence[int] | None = None, intervention=None) -> list[CapturedAnswer]:
    """One answer per tokenised prompt: greedy where `seeds[i]` is None, else sampled from its own generator;
    left-padded batches (longest prompts first), outputs in input order. With `capture`, hidden states at
    `POSITIONS` come from hooks on the generation's forwards; without it (the plain baseline) nothing is hooked
    and `features` is None; `layers` hooks only those decoder layers (a detector's), the others' features are
    NaN. `aliases[i]` labels and locates the answer (module doc). `intervention("generate")`
    (a steer's phase factory, `models.scoring.InterventionFactory`) is entered around each batch's generate()
    before the reading hooks, so they read the steered states, as `models.generate.generate_greedy` answers."""
    import torch
    from ..models.batching import as_batcher
    from ..models.padding import pad_batch, pad_token_id
    if temperature <= 0 or not 0 < top_p <= 1:
        raise ValueError(f"temperature must be > 0 and top_p in (0, 1], got {temperature}, {top_p}")
    from transformers import LogitsProcessorList, StoppingCriteriaList

    n = len(prompts)
    seeds = [None] * n if seeds is None else list(seeds)
    item_ids = [str(i) for i in range(n)] if item_ids is None else list(item_ids)
    samples = [-1 if s is None else 0 for s in seeds] if samples is None else list(samples)
    model, tok = lm.model, lm.tokenizer
    n_layers = lm.arch.n_layers
    read = list(range(n_layers)) if layers is None else sorted({int(l) % n_layers for l in layers})
    if layers is not None and (not read or any(not -n_layers <= int(l) < n_layers for l in layers)):
        raise ValueError(f"layers must name decoder layers of the model's {n_layers}, got {list(layers)}")
    pad, eos = pad_token_id(tok), tok.eos_token_id
    dev = next(model.parameters()).device
    out: list[CapturedAnswer | None] = [None] * n

    def run_chunk(chunk: list[int]) -> None:
        ids, mask, _ = pad_batch([list(prompts[i]) for i in chunk], pad, "left", dev)
        L = ids.shape[1]
        gens = []
        for i in chunk:
            g = None
            if seeds[i] is not None:
                g = torch.Generator(device=dev)
                g.manual_seed(int(seeds[i]))
            gens.append(g)
        picker = _Picker(gens, temperature, top_p)
        extra = {"stopping_criteria": StoppingCriteriaList([_StopLate(tok, L, stop)])} if stop is not None else {}
        keep: dict[int, list[torch.Tensor]] = {l: [] for l in read}
        ctx = _read_layers(lm, keep) if capture else contextlib.nullcontext()
        steer = intervention("generate") if intervention is not None else contextlib.nullcontext()
        with steer, ctx:
            res = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos,
                                 temperature=None, top_p=None, top_k=None, return_dict_in_generate=True,
                                 logits_processor=LogitsProcessorList([picker]), **extra)
            gen = res.sequences
            S = gen.shape[1] - L  # generated steps; keep[l] holds S states (prompt's last token + S - 1 fed)
            cuts = [_cut(tok, gen[r, L:].tolist(), eos, max_new_tokens, stop) for r in range(len(chunk))]
            unfed = [r for r, new in enumerate(cuts) if len(new) == S]  # answers reaching the unfed last token
            if capture and unfed:
                from ..models.cache import returned_cache
                _feed_last(lm, gen, mask, returned_cache(res), unfed, read[-1])
        del res
        lps = torch.stack(picker.logprobs, 1)  # [B, steps]
        states = None
        if capture:  # [layers read, B, S (+1 for the rows fed their last token), d]
            last = {l: keep[l].pop() for l in read} if unfed else {}
            states = torch.stack([torch.stack(keep[l][:S], 1) for l in read], 0).cpu()
            if unfed:
                tail = torch.zeros(len(read), len(chunk), 1, states.shape[-1])
                tail[:, unfed, 0] = torch.stack([last[l] for l in read]).cpu()
                states = torch.cat([states, tail], 2)
        for r, i in enumerate(chunk):
            new = cuts[r]
            text = tok.decode(new, skip_special_tokens=True)
            al = list(aliases[i]) if aliases is not None else []
            cs, ce, ok = answer_span(text, al)
            correct = ok if al else None
            if new:
                a0, a1 = char_to_token_span(tok, new, cs, ce)
            else:
                a0, a1 = 0, 0
            feats = None
            after_in = a1 < len(new)
            if states is not None:
                st = states[:, r]  # [layers read, S, d]: step 0 = prompt's last token, step j+1 = new token j
                assert st.shape[1] >= len(new) + 1, "generation stopped before the last token was fed"
                pre = st[:, 0]
                if new:
                    ans = st[:, 1 + a0: 1 + a1]
                    after = st[:, 1 + (a1 if after_in else a1 - 1)]
                    got = torch.stack([pre, ans[:, 0], ans[:, -1], after, ans.mean(1)])
                else:  # an empty generation: every answer position reads the prompt's last token
                    got = torch.stack([pre] * len(POSITIONS))
                if len(read) == n_layers:
                    feats = got
                else:
                    feats = torch.full((len(POSITIONS), n_layers, got.shape[-1]), float("nan"))
                    feats[:, read] = got
            out[i] = CapturedAnswer(
                item_ids[i], samples[i], list(prompts[i]), new, text, lps[r, :len(new)].numpy().astype(np.float32),
                text[cs:ce], (a0, a1), correct, after_in, feats)

    order = sorted(range(n), key=lambda i: -len(prompts[i]))
    as_batcher(batch_size, dev).map(order, run_chunk)
    return out  # type: ignore[return-value]


def answer_questions(lm, items: Sequence[QAItem], *, n_samples: int = 0, greedy: bool = True, seed: int = 0,
                     temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 32,
                     batch_size: "int | str | AutoBatch" = 16, capture: bool = True,
                     layers: Sequence[int] | None = None,
                     prompt: Callable[[object, str], str] = qa_prompt) -> list[CapturedAnswer]:
    """The greedy answer (when `greedy`) and `n_samples` seeded samples for every question, labelled by
    normalised alias match and captured at `POSITIONS` (at `layers` only, when given); grouped by question,
    greedy first."""
    tok = lm.tokenizer
    chat = bool(getattr(tok, "chat_template", None))
    enc, als, seeds, ids, samples = [], [], [], [], []
    for it in items:
        p = list(tok(prompt(tok, it.question), add_special_tokens=not chat)["input_ids"])
        for s in ([-1] if greedy else []) + list(range(n_samples)):
            enc.append(p)
            als.append(it.aliases)
            seeds.append(None if s < 0 else sample_seed(seed, it.id, s))
            ids.append(it.id)
            samples.append(s)
    return generate_with_capture(lm, enc, aliases=als, seeds=seeds, item_ids=ids, samples=samples,
                                 temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size, capture=capture, layers=layers)
