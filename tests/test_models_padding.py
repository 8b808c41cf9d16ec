"""The one pad rule and the one padder (models.padding): hand-built batches, and left vs right padding give the
same last-token logits on a tiny model."""

from __future__ import annotations

import types

import pytest
import torch

from veracity.models.padding import pad_batch, pad_token_id


def test_pad_rule():
    assert pad_token_id(types.SimpleNamespace(pad_token_id=5, eos_token_id=2)) == 5
    assert pad_token_id(types.SimpleNamespace(pad_token_id=None, eos_token_id=2)) == 2
    assert pad_token_id(types.SimpleNamespace(pad_token_id=None, eos_token_id=None)) == 0
    assert pad_token_id(object()) == 0


def test_pad_batch_by_hand():
    ids, mask, pos = pad_batch([[7, 8, 9], [4]], 0, "left")
    assert ids.tolist() == [[7, 8, 9], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]
    ids, mask, pos = pad_batch([[7, 8, 9], [4]], 1, "right")
    assert ids.tolist() == [[7, 8, 9], [4, 1, 1]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]
    with pytest.raises(ValueError):
        pad_batch([[1]], 0, "middle")


def test_either_side_gives_the_same_logits(tiny_llama):
    seqs = [[5, 6, 7, 8, 9], [11, 12]]
    out = {}
    for side in ("left", "right"):
        ids, mask, pos = pad_batch(seqs, pad_token_id(tiny_llama.tokenizer), side)
        with torch.no_grad():
            logits = tiny_llama.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        last = [len(s) - 1 if side == "right" else ids.shape[1] - 1 for s in seqs]
        out[side] = torch.stack([logits[i, j] for i, j in enumerate(last)])
    assert torch.allclose(out["left"], out["right"], atol=1e-4)
