"""The ResidualSteer type (`steer.residual.vectors`): its files round-trip, with_alpha copies."""

from __future__ import annotations

import json

import torch

from veracity.steer.residual.vectors import ResidualSteer


def test_save_load_roundtrip(tmp_path):
    st = ResidualSteer([1, 3], torch.randn(2, 8), alpha=2.5, method="lat", provenance={"seed": 4, "data": "x"})
    js = st.save(tmp_path / "s")
    assert js.name == "s.json" and (tmp_path / "s.safetensors").exists()
    assert json.loads(js.read_text())["format"] == "veracity-residual-steer"
    back = ResidualSteer.load(tmp_path / "s.json")
    assert back.layers == [1, 3] and back.alpha == 2.5 and back.method == "lat" and back.provenance == st.provenance
    assert torch.equal(back.vectors, st.vectors)
    sh = back.with_alpha(-1.0).shifts()
    torch.testing.assert_close(sh[3], -st.vectors[1])
    assert back.alpha == 2.5  # with_alpha does not mutate
