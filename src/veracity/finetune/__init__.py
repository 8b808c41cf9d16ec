"""Fine-tuning (LoRA via peft, or full) with a reusable, objective-agnostic training loop."""

from .._lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "train", "TrainResult": "train", "eval_loss": "train", "finetune": "train", "lm_batches":
    "train", "lm_loss": "train", "load_corpus": "train", "merged": "train", "train_loop": "train",
    "trainable_copy": "train",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
