"""P(True) self-evaluation (Kadavath et al. 2022): the model is shown a question and a proposed answer (its own)
and asked whether the answer is true; the score is the log-probability of " True" minus that of " False" as
the continuation of the prompt (fp32, summed over each word's tokens), batched with prefix-cached scoring
(`ModelAdapter.loglik`). `p_true` is the same comparison as a probability over the two words,
sigmoid(logp(True) - logp(False)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..models.batching import AutoBatch

TEMPLATE = ("Question: {question}\nProposed answer: {answer}\n"
            "Is the proposed answer:\n (A) True\n (B) False\nThe proposed answer is:")
CHOICES = (" True", " False")


@dataclass(frozen=True)
class PTrue:
    """One self-evaluation: the two log-probs, their difference (`score`, higher = judged true) and P(True)."""
    logp_true: float
    logp_false: float

    @property
    def score(self) -> float:
        """logp(True) - logp(False): the detector score (a log-odds over the two words)."""
        return self.logp_true - self.logp_false

    @property
    def p_true(self) -> float:
        """P(True) renormalised over {True, False}."""
        return 1.0 / (1.0 + math.exp(-self.score))


def p_true_prompt(question: str, answer: str) -> str:
    """The self-evaluation prompt for one (question, proposed answer)."""
    return TEMPLATE.format(question=question.strip(), answer=answer.strip())


def p_true_scores(lm, questions: Sequence[str], answers: Sequence[str], *,
                  batch_size: "int | str | AutoBatch" = 32) -> list[PTrue]:
    """P(True) of each proposed answer to its question; prompts keep the tokenizer's special tokens, the two
    choice words are tokenised without them."""
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers")
    ad = lm.adapter
    conts = [ad.encode(c, add_special_tokens=False) for c in CHOICES]
    reqs = []
    for q, a in zip(questions, answers):
        pre = ad.encode(p_true_prompt(q, a))
        reqs += [(pre, conts[0]), (pre, conts[1])]
    lps = ad.loglik(reqs, batch_size=batch_size)
    return [PTrue(float(lps[2 * i]), float(lps[2 * i + 1])) for i in range(len(questions))]
