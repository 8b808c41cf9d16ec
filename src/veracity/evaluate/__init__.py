"""TruthfulQA evaluation."""
