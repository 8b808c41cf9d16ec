"""Tiny randomly initialised models for tests: built from configs with a fixed seed, no downloads.

They share a byte-level tokenizer (one token per UTF-8 byte plus <s>, </s>, <pad>) built in code,
so tests exercise real tokenisation, padding and chat templates without any hub access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "<s>", "</s>")
TINY_ALIASES = ("tiny-llama", "tiny-gpt2", "tiny-gemma3", "tiny-qwen2")
_CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)


def byte_tokenizer(add_bos: bool = True, padding_side: str = "right") -> PreTrainedTokenizerFast:
    """A byte-level tokenizer needing no download (one token per byte plus specials), for the tiny random test
    models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    byte_chars = list(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for ch in sorted(byte_chars):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", padding_side=padding_side
    )
    fast.chat_template = _CHAT_TEMPLATE
    return fast


def _config(alias: str, vocab_size: int):
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    common = dict(vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if alias == "tiny-llama":
        return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=False, **common)
    if alias == "tiny-qwen2":
        return Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True, **common)
    if alias == "tiny-gpt2":
        return GPT2Config(n_embd=64, n_layer=4, n_head=4, n_positions=1024, **common)
    if alias == "tiny-gemma3":
        from transformers import Gemma3TextConfig

        # head_dim * heads = 128 != hidden_size = 64, like the real Gemma 3.
        return Gemma3TextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                                num_key_value_heads=1, head_dim=32, max_position_embeddings=1024,
                                sliding_window=16, query_pre_attn_scalar=32, **common)
    raise KeyError(alias)


def build_tiny(alias: str, seed: int = 0, dtype: torch.dtype | None = None):
    """(model, tokenizer) for a tiny alias (float32 unless `dtype`); the same seed gives the same weights."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if dtype is None else dtype
    tokenizer = byte_tokenizer(add_bos=alias != "tiny-gpt2")
    config = _config(alias, vocab_size=len(tokenizer))
    config.architectures = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        # Default init (std 0.02) makes every logit ~0; a larger scale gives peaked, input-dependent
        # distributions, so tests of sampling, KL and speculative acceptance are not trivial.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, 0.15 if "emb" in name or "wte" in name or "wpe" in name else 0.12)
    model.eval()
    return model, tokenizer
