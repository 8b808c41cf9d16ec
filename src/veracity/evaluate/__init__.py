"""TruthfulQA evaluation: MC1/MC2 in two protocols (fast prefix-cached scoring), the binary task, CE and KL on
held-out text, batched greedy generation and its health, truth/info judges (the per-fold
evaluation driver is the study `veracity.experiments.truthfulqa`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "BINARY_VARIANTS": "binary", "BinarySummary": "binary", "score_binary": "binary", "summarize_binary":
    "binary",
    "generation_health": "health", "is_degenerate": "health", "is_refusal": "health",
    "INSTRUCTION_DEFAULT": "truthfulqa", "INSTRUCTION_INFORMATIVE": "truthfulqa", "PROTOCOLS": "truthfulqa",
    "EVAL_PROTOCOLS": "truthfulqa",
    "QA_PRIMER": "truthfulqa", "MCQuestion": "truthfulqa", "MCResult": "truthfulqa", "MCSummary": "truthfulqa",
    "build_mc_question": "truthfulqa", "make_requests": "truthfulqa", "mc1_lm_eval": "truthfulqa",
    "mc1_truthfulqa": "truthfulqa", "mc2": "truthfulqa", "score_mc": "truthfulqa", "score_requests":
    "truthfulqa", "score_requests_reference": "truthfulqa",
    "CallableJudge": "judges", "HFJudge": "judges", "Judge": "judges", "JudgeReport": "judges", "LocalJudge":
    "judges", "default_judge_dir": "judges", "evaluate_judge": "judges", "get_judge": "judges", "judge_prompt":
    "judges", "train_local_judge": "judges",
    "GeneratedAnswer": "generation", "cut_answer": "generation", "generate_answers": "generation",
    "generation_prompt": "generation",
    "LMMetrics": "lm_metrics", "ce_per_doc": "lm_metrics", "compute_lm_metrics": "lm_metrics", "kl_per_doc":
    "lm_metrics", "load_texts": "lm_metrics", "tokenize_docs": "lm_metrics",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
