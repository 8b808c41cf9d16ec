"""Data sets as typed records, prompt builders, and the named registry that capture reads.

Every loader takes a data folder (or the file itself); without one it uses $VERACITY_DATA, then
the original sources when online. Bad input raises `DataError` naming the file and the line.
"""

from .boolq import BoolQItem, load_boolq
from .errors import DataError
from .honest import HonestTemplate, load_honest
from .paths import data_file, resolve_data_dir
from .qa import QAItem, is_match, load_qa, load_truthfulqa_qa, normalise_answer
from .prompts import ccs_contrast_pair, chat_prompt, iti_prompt, yes_no_prompt
from .registry import DEFAULT_DATASET, TextDataset, get_dataset, list_datasets
from .statements import (DEFAULT_TOPICS, Statement, available_topics, load_geometry_of_truth, load_statements,
                         load_true_false)
from .synthetic import load_synthetic, number_words
from .truthfulqa import TruthfulQAItem, load_truthfulqa, split_answers

__all__ = ["DEFAULT_DATASET", "DEFAULT_TOPICS", "BoolQItem", "DataError", "HonestTemplate", "QAItem", "Statement",
           "TextDataset",
           "TruthfulQAItem", "available_topics", "ccs_contrast_pair", "chat_prompt", "data_file", "get_dataset",
           "is_match", "iti_prompt", "list_datasets", "load_boolq", "load_geometry_of_truth", "load_honest", "load_qa",
           "load_statements",
           "load_synthetic", "load_true_false", "load_truthfulqa", "load_truthfulqa_qa", "normalise_answer",
           "number_words", "resolve_data_dir", "split_answers",
           "yes_no_prompt"]
