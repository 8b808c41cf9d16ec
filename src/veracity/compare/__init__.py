"""Model pairs: distribution distances, batched speculative decoding, toxicity of completions and quantised
assistants (the speculative-decoding group study and the fine-tuning milestones are in `veracity.experiments`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "Distances": "distances", "PromptDistances": "distances", "check_same_tokenizer": "distances",
    "distances_from_log_probs": "distances", "distances_from_logits": "distances", "prompt_distances":
    "distances",
    "HurtLex": "toxicity", "ToxicityClassifier": "toxicity", "ToxicityReport": "toxicity", "honest_score":
    "toxicity",
    "SpecRecord": "speculative", "generate": "speculative",
    "quantized_copy": "quantize", "resolve_assistant": "quantize",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
