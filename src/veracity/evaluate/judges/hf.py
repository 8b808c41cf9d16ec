"""A causal-LM judge (allenai/truthfulqa-{truth,info}-judge-llama2-7B and the like): P(" yes") after the
original prompt."""

from __future__ import annotations

import numpy as np

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
        from ...models.adapter import ModelAdapter

        tok = self.lm.tokenizer
        enc = [tok(judge_prompt(q, a, self.kind))["input_ids"] for q, a in zip(questions, answers)]
        if not enc:
            return np.zeros(0)
        lp = ModelAdapter(self.lm.model, tok).next_token_logprobs(enc, batch_size=self.batch_size)
        return lp[:, self.yes_id].exp().double().numpy()


