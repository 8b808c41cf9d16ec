"""Model pairs: distribution distances, batched speculative decoding, the acceptance-by-group study,
toxicity of completions, quantised assistants and fine-tuning milestones."""

from .distances import (Distances, PromptDistances, check_same_tokenizer, distances_from_log_probs,
                        distances_from_logits, prompt_distances)
from .quantize import quantized_copy, resolve_assistant
from .speculative import SpecRecord, generate
from .study import (Comparison, GroupedPrompt, PromptResult, StudyResult, bootstrap_ci, load_prompts,
                    permutation_p, run_study, summarize, write_study)
from .toxicity import HurtLex, ToxicityClassifier, ToxicityReport, honest_score

__all__ = ["Comparison", "Distances", "GroupedPrompt", "HurtLex", "PromptDistances", "PromptResult", "SpecRecord",
           "StudyResult", "ToxicityClassifier", "ToxicityReport", "bootstrap_ci", "check_same_tokenizer",
           "distances_from_log_probs", "distances_from_logits", "generate", "honest_score", "load_prompts",
           "permutation_p", "prompt_distances", "quantized_copy", "resolve_assistant", "run_study", "summarize",
           "write_study"]
