"""`veracity steer fit` from a labelled capture store (caa = the class-mean difference by hand, lat = the
first principal component of paired differences) and `veracity steer bake` into a plain Hugging Face folder
(equal to the hooks; refused clearly where the architecture has no exact place)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_llama):
    from veracity.capture import capture_dataset
    from veracity.data import get_dataset

    out = tmp_path_factory.mktemp("st") / "cap"
    capture_dataset(tiny_llama, get_dataset("synthetic", limit=40, seed=0), "resid", out=out, progress=False)
    return out


def test_fit_caa_is_the_class_mean_difference(store, tmp_path, cli):
    from veracity.capture import Activations
    from veracity.steer.residual import ResidualSteer

    text = cli(["steer", "fit", "--acts", store, "--method", "caa", "--layers", "1,-1", "--out", tmp_path / "v"])
    assert "caa steer" in text
    s = ResidualSteer.load(tmp_path / "v")
    acts = Activations.open(store)
    y = np.asarray(acts.labels).astype(bool)
    assert s.layers == [1, acts.n_layers - 1]
    for l, v in zip(s.layers, s.vectors):
        X = acts.stack("resid", [l])[:, 0].double().numpy()
        assert torch.allclose(v.double(), torch.as_tensor(X[y].mean(0) - X[~y].mean(0)), atol=1e-4)
    cli(["steer", "fit", "--acts", store, "--method", "lat", "--layers", "2", "--out", tmp_path / "p"])
    assert ResidualSteer.load(tmp_path / "p").method == "lat"
    assert "not in the store" in cli(["steer", "fit", "--acts", store, "--layers", "9", "--out", tmp_path / "x"], code=2)


def test_bake_equals_hooks_and_refuses_gemma3(store, tmp_path, cli, tiny_llama):
    from transformers import AutoModelForCausalLM

    from veracity.steer.residual import ResidualSteer, apply_residual

    cli(["steer", "fit", "--acts", store, "--layers", "2", "--out", tmp_path / "v"])
    text = cli(["steer", "bake", "--model", "tiny-llama", "--device", "cpu", "--steer", tmp_path / "v", "--alpha",
                "3", "--out", tmp_path / "baked"])
    assert "max |logit difference| against the hooks" in text
    lm = tiny_llama
    steer = ResidualSteer.load(tmp_path / "v").with_alpha(3.0)
    ids = lm.tokenizer("The capital of France is Paris.", return_tensors="pt")["input_ids"]
    baked = AutoModelForCausalLM.from_pretrained(str(tmp_path / "baked"), dtype=torch.float32)
    with torch.no_grad(), apply_residual(lm, steer, positions="all"):
        want = lm.model(input_ids=ids).logits
    with torch.no_grad():
        assert torch.allclose(baked(input_ids=ids).logits, want, atol=1e-4)
    # another architecture: refused with one line (tiny-gemma3 has a norm after its MLP), nothing written
    bad = cli(["steer", "bake", "--model", "tiny-gemma3", "--device", "cpu", "--steer", tmp_path / "v", "--out",
               tmp_path / "g"], code=2)
    assert "error:" in bad and not (tmp_path / "g").exists()
