"""A causal-LM judge (allenai/truthfulqa-{truth,info}-judge-llama2-7B and the like): P(" yes") after the
original prompt."""

from __future__ import annotations

import numpy as np

from ...models.padding import pad_token_id
from .base import Judge, judge_prompt


# --------------------------------------------------------------------------------------------- hf judge
class HFJudge(Judge):
    """A causal LM judge: P(" yes") after the original judge prompt. `model` is a LoadedModel or anything
    `veracity.models.load` accepts (e.g. allenai/truthfulqa-truth-judge-llama2-7B)."""

    def __init__(self, model, kind: str = "truth", batch_size: int = 8, device: str | None = None):
        if isinstance(model, str):
            from ...models import load

            self.name = f"hf:{model}"
            model = load(model, device=device)
        else:
            self.name = f"hf:{getattr(model, 'name', 'model')}"
        self.lm, self.kind, self.batch_size = model, kind, batch_size
        ids = self.lm.tokenizer(" yes", add_special_tokens=False)["input_ids"]
        self.yes_id = ids[-1]  # sentencepiece may give ["▁", "yes"] or ["▁yes"]

    def score(self, questions, answers) -> np.ndarray:
        import torch

        tok, model = self.lm.tokenizer, self.lm.model
        dev = next(model.parameters()).device
        enc = [tok(judge_prompt(q, a, self.kind))["input_ids"] for q, a in zip(questions, answers)]
        pad = pad_token_id(tok)
        out = np.zeros(len(enc))
        with torch.no_grad():
            for s in range(0, len(enc), self.batch_size):
                chunk = enc[s:s + self.batch_size]
                L = max(len(e) for e in chunk)
                ids = torch.full((len(chunk), L), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), L), dtype=torch.long)
                for r, e in enumerate(chunk):  # left padding: the last position is the next-token slot
                    ids[r, L - len(e):] = torch.tensor(e)
                    mask[r, L - len(e):] = 1
                pos = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                               position_ids=pos.to(dev)).logits[:, -1].float()
                out[s:s + len(chunk)] = torch.softmax(logits, -1)[:, self.yes_id].cpu().numpy()
        return out


