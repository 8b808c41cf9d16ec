"""Model pairs: distribution distances, batched speculative decoding, toxicity of completions and quantised
assistants (the speculative-decoding group study and the fine-tuning milestones are in `veracity.experiments`)."""

from .distances import (Distances, PromptDistances, check_same_tokenizer, distances_from_log_probs,
                        distances_from_logits, prompt_distances)
from .quantize import quantized_copy, resolve_assistant
from .speculative import SpecRecord, generate
from .toxicity import HurtLex, ToxicityClassifier, ToxicityReport, honest_score

__all__ = ["Distances", "HurtLex", "PromptDistances", "SpecRecord",
           "ToxicityClassifier", "ToxicityReport", "check_same_tokenizer",
           "distances_from_log_probs", "distances_from_logits", "generate", "honest_score",
           "prompt_distances", "quantized_copy", "resolve_assistant"]
