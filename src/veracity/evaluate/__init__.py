"""TruthfulQA evaluation: MC1/MC2 in two protocols (fast prefix-cached scoring), the binary task, CE and KL on
held-out text, batched greedy generation and its health, truth/info judges (the per-fold
evaluation driver is the study `veracity.experiments.truthfulqa`)."""

from .binary import BINARY_VARIANTS, BinarySummary, score_binary, summarize_binary
from .health import generation_health, is_degenerate, is_refusal
from .generation import GeneratedAnswer, cut_answer, generate_answers, generation_prompt
from .judges import (CallableJudge, HFJudge, Judge, JudgeReport, LocalJudge, default_judge_dir, evaluate_judge,
                     get_judge, judge_prompt, train_local_judge)
from .lm_metrics import LMMetrics, ce_per_doc, compute_lm_metrics, kl_per_doc, load_texts, tokenize_docs
from .truthfulqa import (INSTRUCTION_DEFAULT, INSTRUCTION_INFORMATIVE, PROTOCOLS, QA_PRIMER, MCQuestion, MCResult,
                         MCSummary, build_mc_question, make_requests, mc1_lm_eval, mc1_truthfulqa, mc2,
                         score_mc, score_requests, score_requests_reference)

__all__ = [
    "BINARY_VARIANTS", "BinarySummary", "generation_health", "is_degenerate", "is_refusal", "score_binary",
    "summarize_binary",
    "INSTRUCTION_DEFAULT", "INSTRUCTION_INFORMATIVE", "PROTOCOLS", "QA_PRIMER",
    "CallableJudge", "GeneratedAnswer",
    "HFJudge", "Judge", "JudgeReport", "LMMetrics", "LocalJudge", "MCQuestion", "MCResult", "MCSummary",
    "build_mc_question", "ce_per_doc", "cut_answer", "default_judge_dir", 
    "evaluate_judge", "generate_answers", "generation_prompt", "get_judge", "judge_prompt",
    "compute_lm_metrics", "kl_per_doc", "load_texts", "make_requests", "mc1_lm_eval", "mc1_truthfulqa", "mc2",
    "score_mc", "score_requests", "score_requests_reference", 
    "tokenize_docs", "train_local_judge",
]
