"""Fine-tuning (LoRA via peft, or full) with a reusable, objective-agnostic training loop."""

from .train import (TrainConfig, TrainResult, eval_loss, finetune, lm_batches, lm_loss, load_corpus, merged,
                    train_loop, trainable_copy)

__all__ = ["TrainConfig", "TrainResult", "eval_loss", "finetune", "lm_batches", "lm_loss", "load_corpus", "merged",
           "train_loop", "trainable_copy"]
