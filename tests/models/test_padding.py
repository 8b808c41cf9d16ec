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


def test_pad_after_prefix_by_hand():
    from veracity.models.padding import pad_after_prefix

    ids, mask, pos = pad_after_prefix([[5, 6, 7], [8], []], prefix_len=2, pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert pos.tolist() == [[2, 3, 4]] * 3
    ids, mask, pos = pad_after_prefix([[], []], prefix_len=3, pad_id=9)
    assert ids.tolist() == [[9], [9]] and mask.tolist() == [[1, 1, 1, 0]] * 2 and pos.tolist() == [[3], [3]]


def test_rows_after_a_cached_prefix_equal_whole_forwards(tiny_llama):
    """The prefix-cache path (pad_after_prefix + expand_cache) gives each row's logits of the whole
    prompt run alone, for rows of different lengths, and leaves the prefix cache reusable."""
    import torch

    from veracity.models.cache import cache_kwargs, returned_cache
    from veracity.models.padding import expand_cache, pad_after_prefix

    m = tiny_llama.model
    prefix, rows = [3, 14, 15, 9], [[2, 6, 5], [3], [5, 8]]
    with torch.no_grad():
        head = returned_cache(m(input_ids=torch.tensor([prefix]), use_cache=True))
        for _ in range(2):  # twice: the head's cache is copied, never consumed
            ids, mask, pos = pad_after_prefix(rows, len(prefix), 0)
            got = m(input_ids=ids, attention_mask=mask, position_ids=pos, **cache_kwargs(m, expand_cache(head, 3)),
                    use_cache=True).logits
            for r, row in enumerate(rows):
                want = m(input_ids=torch.tensor([prefix + row])).logits[0, len(prefix):]
                assert torch.allclose(got[r, :len(row)], want, atol=1e-5)
