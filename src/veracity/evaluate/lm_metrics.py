"""Language-modelling side effects of an intervention: CE loss and KL(original || modified) on held-out text.

As in the ITI evaluation: N documents (default 100), the first T tokens of each (default 128, BOS as
the tokenizer adds it), CE = mean next-token loss per document averaged over documents, KL = per-token
KL(original || modified) in nats summed over the vocabulary, averaged over positions, then documents,
all in fp32. Default text: BoolQ passages (Wikipedia, offline); a text file; or a hub data set when online.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager, Sequence

import numpy as np

from .._lazy import torch_mode
from ..models.scoring import InterventionFactory

if TYPE_CHECKING:
    import torch


@dataclass
class LMMetrics:
    """CE and KL with their per-document values and where the text came from."""

    ce_loss: float | None
    kl: float | None
    n_docs: int
    max_tokens: int
    source: str
    ce_per_doc: list[float] = field(default_factory=list)
    kl_per_doc: list[float] = field(default_factory=list)


def load_texts(source: str = "boolq", n_docs: int = 100, data_dir=None) -> list[str]:
    """Held-out documents: "boolq" (the first n distinct dev passages), a path to a text file (documents
    separated by blank lines), or "hf:<dataset id>" (its `text` column, train split; needs `datasets`)."""
    if source == "boolq":
        from ..data.boolq import load_boolq

        seen, out = set(), []
        for it in load_boolq(data_dir):
            if it.passage not in seen:
                seen.add(it.passage)
                out.append(it.passage)
            if len(out) == n_docs:
                break
        return out
    if source.startswith("hf:"):
        from datasets import load_dataset  # optional dependency, online only

        ds = load_dataset(source[3:], split="train")
        return [r["text"] for r in ds.select(range(min(n_docs, len(ds))))]
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"LM text source {source!r}: use 'boolq', a text file path or 'hf:<dataset id>'")
    docs = [d.strip() for d in path.read_text().split("\n\n") if d.strip()]
    return docs[:n_docs]


def tokenize_docs(tokenizer, texts: Sequence[str], max_tokens: int = 128) -> list[list[int]]:
    """First `max_tokens` tokens of each text (special tokens as the tokenizer adds them); docs under 2
    tokens are dropped (nothing to predict)."""
    docs = [list(tokenizer(t)["input_ids"])[:max_tokens] for t in texts]
    return [d for d in docs if len(d) >= 2]


def _ctx(intervention: InterventionFactory | None) -> ContextManager:
    return intervention("lm") if intervention is not None else contextlib.nullcontext()


def _batches(docs: list[list[int]], batch_size: int):
    import torch
    for s in range(0, len(docs), batch_size):
        chunk = docs[s:s + batch_size]
        L = max(len(d) for d in chunk)
        ids = torch.zeros((len(chunk), L), dtype=torch.long)
        mask = torch.zeros((len(chunk), L), dtype=torch.long)
        for r, d in enumerate(chunk):
            ids[r, :len(d)] = torch.tensor(d)
            mask[r, :len(d)] = 1
        yield ids, mask


def _logits(model, ids, mask, intervention) -> torch.Tensor:
    dev = next(model.parameters()).device
    with _ctx(intervention):
        # right padding: real tokens keep positions 0..len-1, so no position ids needed
        return model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()


@torch_mode()
def ce_kl_per_doc(model, docs: list[list[int]], *, reference=None, intervention: InterventionFactory | None = None,
                  reference_intervention: InterventionFactory | None = None, ce: bool = True, kl: bool = True,
                  batch_size: int = 8) -> tuple[list[float], list[float]]:
    """(mean next-token cross-entropy, mean over positions of KL(reference || model)) per document, nats (the
    KL summed over the vocabulary); an empty list for a measure not asked for. One pass of the (intervened)
    model serves both: a steer's CE and KL used to run it twice, a third of a sweep row's text cost.

    `reference` may be `model` itself: then `intervention` (entered only for the modified pass) makes the
    difference, which is how a hook-based intervention is compared with its own model."""
    import torch
    import torch.nn.functional as F
    if kl and reference is None:
        raise ValueError("KL needs a reference model (the same module with an intervention will do)")
    ce_out: list[float] = []
    kl_out: list[float] = []
    for ids, mask in _batches(docs, batch_size):
        lp = torch.log_softmax(_logits(model, ids, mask, intervention), -1)
        m = mask.to(lp.device).float()
        if ce:
            nll = -lp[:, :-1].gather(-1, ids[:, 1:].to(lp.device).unsqueeze(-1)).squeeze(-1)
            ce_out += ((nll * m[:, 1:]).sum(1) / m[:, 1:].sum(1)).tolist()
        if kl:
            lp_ref = torch.log_softmax(_logits(reference, ids, mask, reference_intervention), -1)
            d = F.kl_div(lp, lp_ref.to(lp.device), log_target=True, reduction="none").sum(-1)  # [B, L]
            kl_out += ((d * m).sum(1) / m.sum(1)).tolist()
    return ce_out, kl_out


def ce_per_doc(model, docs: list[list[int]], *, intervention: InterventionFactory | None = None,
               batch_size: int = 8) -> list[float]:
    """Mean next-token cross-entropy (nats) of each document."""
    return ce_kl_per_doc(model, docs, intervention=intervention, kl=False, batch_size=batch_size)[0]


def kl_per_doc(reference, model, docs: list[list[int]], *, intervention: InterventionFactory | None = None,
               reference_intervention: InterventionFactory | None = None, batch_size: int = 8) -> list[float]:
    """Mean over positions of KL(reference || model) per document (nats, summed over the vocabulary)."""
    return ce_kl_per_doc(model, docs, reference=reference, intervention=intervention,
                         reference_intervention=reference_intervention, ce=False, batch_size=batch_size)[1]


def compute_lm_metrics(model, tokenizer, *, texts: Sequence[str] | None = None, source: str = "boolq", n_docs: int = 100,
               max_tokens: int = 128, data_dir=None, reference=None, intervention: InterventionFactory | None = None,
               ce: bool = True, kl: bool = True, batch_size: int = 8) -> LMMetrics:
    """CE of the (possibly intervened) model and KL from `reference` (default: the same model without the
    intervention). With neither a reference nor an intervention the KL is 0 by definition and not run."""
    label = source if texts is None else "texts"
    if texts is None:
        texts = load_texts(source, n_docs, data_dir)
    from ..models import LoadedModel

    # unwrap only a LoadedModel: a bare HF CausalLM also has `.model` (its base model, without logits)
    reference = reference.model if isinstance(reference, LoadedModel) else reference
    docs = tokenize_docs(tokenizer, list(texts)[:n_docs], max_tokens)
    zero_kl = kl and reference is None and intervention is None  # the model against itself
    ce_d, kl_d = ce_kl_per_doc(model, docs, reference=reference if reference is not None else model,
                               intervention=intervention, ce=ce, kl=kl and not zero_kl, batch_size=batch_size)
    kl_d = [0.0] * len(docs) if zero_kl else kl_d
    return LMMetrics(ce_loss=float(np.mean(ce_d)) if ce_d else None, kl=float(np.mean(kl_d)) if kl_d else None,
                     n_docs=len(docs), max_tokens=max_tokens, source=label,
                     ce_per_doc=ce_d, kl_per_doc=kl_d)


lm_metrics = compute_lm_metrics  # the name other modules import (`from .lm_metrics import lm_metrics`)
