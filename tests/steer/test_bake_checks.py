"""Numbers checked before a bake trusts them (issue 25, section 4), through the CLI on tiny-llama.

An alpha that overflows float32 (1e39), a NaN alpha in a saved file, a vector or direction holding NaN, an
intervention naming heads on layer 99 of a 4-layer model: each is refused with one `error:` line, exit 2,
and no output folder. Behind those checks, both bake verifications refuse any non-finite logit (max()
over differences ignores NaN, so a NaN model used to pass as "max |logit difference| 0.00e+00") and remove
the folder they verified; the last two tests switch the checks off to reach that second line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

TINY = ["--model", "tiny-llama", "--device", "cpu"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_llama):
    """A valid residual steer and ITI intervention for tiny-llama, and damaged copies of each."""
    from veracity.steer import Intervention, ResidualSteer

    d = tmp_path_factory.mktemp("bake")
    lm = tiny_llama
    a = lm.arch
    g = torch.Generator().manual_seed(0)
    vec = torch.randn(1, a.hidden_size, generator=g)
    ResidualSteer([1], vec, alpha=2.0).save(d / "v")
    bad = vec.clone()
    bad[0, 3] = float("nan")
    ResidualSteer([1], bad, alpha=2.0).save(d / "v_nan_vector")
    ResidualSteer([1], vec, alpha=2.0).save(d / "v_nan_alpha")
    meta = json.loads((d / "v_nan_alpha.json").read_text())
    (d / "v_nan_alpha.json").write_text(json.dumps({**meta, "alpha": float("nan")}))  # written as NaN

    dirs = torch.nn.functional.normalize(torch.randn(2, a.head_dim, generator=g), dim=-1)
    kw = dict(heads=[(1, 2), (3, 0)], sigmas=torch.ones(2), alpha=2.0, n_layers=a.n_layers, n_heads=a.n_heads,
              head_dim=a.head_dim, provenance={"model_fingerprint": lm.fingerprint})
    Intervention(directions=dirs, **kw).save(d / "iv")
    for name in ("iv_nan_alpha", "iv_layer99", "iv_nan_direction"):
        Intervention(directions=dirs, **kw).save(d / name)
    meta = json.loads((d / "iv_nan_alpha.json").read_text())
    (d / "iv_nan_alpha.json").write_text(json.dumps({**meta, "alpha": float("nan")}))
    meta = json.loads((d / "iv_layer99.json").read_text())
    (d / "iv_layer99.json").write_text(json.dumps({**meta, "heads": [[99, 2], [3, 0]]}))
    from safetensors.torch import load_file, save_file

    t = load_file(str(d / "iv_nan_direction.safetensors"))
    t["directions"][0, 0] = float("nan")
    save_file(t, str(d / "iv_nan_direction.safetensors"))
    return d


CASES = [
    ("steer-alpha-1e39", ["steer", "bake", *TINY, "--steer", "{d}/v", "--alpha", "1e39"], "overflows float32"),
    ("steer-nan-alpha-in-file", ["steer", "bake", *TINY, "--steer", "{d}/v_nan_alpha"],
     "v_nan_alpha.json has 'alpha' = nan, expected a finite number"),
    ("steer-nan-vector", ["steer", "bake", *TINY, "--steer", "{d}/v_nan_vector"],
     "v_nan_vector.safetensors has NaN or inf in tensor 'vectors'"),
    ("iti-alpha-1e39", ["iti", "bake", *TINY, "-i", "{d}/iv", "--alpha", "1e39"], "overflows float32"),
    ("iti-nan-alpha-in-file", ["iti", "bake", *TINY, "-i", "{d}/iv_nan_alpha"],
     "iv_nan_alpha.json has 'alpha' = nan, expected a finite number"),
    ("iti-heads-on-layer-99", ["iti", "bake", *TINY, "-i", "{d}/iv_layer99"], "iv_layer99.json lists heads [[99, 2]"),
    ("iti-nan-direction", ["iti", "bake", *TINY, "-i", "{d}/iv_nan_direction"],
     "iv_nan_direction.safetensors has NaN or inf in tensor 'directions'"),
]


def _check_refused(text: str, out: Path, expect: str) -> None:
    """`text`: the output of `cli(..., code=2)`, whose runner re-raises any exception but SystemExit (so exit
    2 is the CLI's own refusal, not a crash)."""
    # (progress bars on stderr may share the error's line: count from "error:")
    errors = [l[l.index("error:"):] for l in text.splitlines() if "error:" in l]
    assert "Traceback" not in text and len(errors) == 1 and expect in errors[0], text
    assert not out.exists(), f"{out} was left behind"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bake_refuses_non_finite_or_out_of_range(case, files, tmp_path, cli):
    name, argv, expect = case
    out = tmp_path / "baked"
    _check_refused(cli([a.format(d=files) for a in argv] + ["--out", str(out)], code=2), out, expect)


def test_heads_outside_the_model_are_refused_before_the_bake(files, tiny_llama):
    """`check_model`: a head index outside the loaded model (an intervention built by hand, never saved)."""
    from veracity.steer.intervention import Intervention, InterventionError

    a = tiny_llama.arch
    iv = Intervention.load(files / "iv")
    iv.heads = [(a.n_layers + 95, 0), (3, 0)]  # edited after construction, as a notebook might
    with pytest.raises(InterventionError, match=f"names head \\({a.n_layers + 95}, 0\\)"):
        iv.check_model(a)


@pytest.mark.parametrize("cmd", ["steer", "iti"])
def test_verification_refuses_non_finite_logits_and_removes_the_folder(cmd, files, tmp_path, monkeypatch, cli):
    """With the checks before the bake switched off, alpha 1e39 bakes inf biases: the verification (both
    kinds) must refuse the NaN/inf logits with one line and remove the folder, not report 0.00e+00."""
    from veracity.steer.intervention import Intervention
    from veracity.steer.residual import ResidualSteer

    monkeypatch.setattr(ResidualSteer, "check_finite", lambda self: None)
    monkeypatch.setattr(Intervention, "check_finite", lambda self: None)
    out = tmp_path / "baked"
    argv = (["steer", "bake", *TINY, "--steer", str(files / "v")] if cmd == "steer"
            else ["iti", "bake", *TINY, "-i", str(files / "iv")])
    _check_refused(cli(argv + ["--alpha", "1e39", "--out", str(out)], code=2), out, "outputs NaN or inf logits")


def test_compare_logits_sees_nan_that_max_ignores(tmp_path):
    """The difference check itself: a NaN logit is an error even where max(|a - b|) would read 0."""
    from veracity.steer.bake import BakeFailed, compare_logits

    a = torch.zeros(1, 3, 5)
    b = a.clone()
    assert compare_logits(a, b, tmp_path, "the hooks") == 0.0
    b[0, 1, 2] = float("nan")
    with pytest.raises(BakeFailed, match="the baked model outputs NaN or inf logits"):
        compare_logits(a, b, tmp_path, "the hooks")
