"""Data sets as typed records, prompt builders, and the named registry that capture reads.

Every loader takes a data folder (or the file itself); without one it uses $VERACITY_DATA, then
the original sources when online. Bad input raises `DataError` naming the file and the line.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_DATASET": "registry", "TextDataset": "registry", "get_dataset": "registry", "list_datasets":
    "registry",
    "DEFAULT_TOPICS": "statements", "Statement": "statements", "available_topics": "statements",
    "load_geometry_of_truth": "statements", "load_statements": "statements", "load_true_false": "statements",
    "BoolQItem": "boolq", "load_boolq": "boolq",
    "DataError": "errors",
    "HonestTemplate": "honest", "load_honest": "honest",
    "QAItem": "qa", "is_match": "qa", "load_qa": "qa", "load_truthfulqa_qa": "qa", "normalise_answer": "qa",
    "TruthfulQAItem": "truthfulqa", "load_truthfulqa": "truthfulqa", "split_answers": "truthfulqa",
    "ccs_contrast_pair": "prompts", "chat_prompt": "prompts", "iti_prompt": "prompts", "yes_no_prompt":
    "prompts",
    "data_file": "paths", "resolve_data_dir": "paths",
    "load_synthetic": "synthetic", "number_words": "synthetic",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
