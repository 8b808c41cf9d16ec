"""The residual steer itself: per-layer vectors and a strength alpha, their checks against a model, and their
files (PATH.json + PATH.safetensors). Fitting (`fit`), hooks (`apply`) and baking (`bake`) live beside it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import save_file

from ...models.arch import ArchSpec
from ...runs import to_jsonable, write_json_atomic

FORMAT = "veracity-residual-steer"
FORMAT_VERSION = 1


@dataclass
class ResidualSteer:
    """alpha * vectors[i] is added to the output of decoder layer layers[i].

    layers: decoder layer indices (absolute). vectors: [len(layers), hidden] float32, the per-layer
    vectors before alpha (their scale is set by the fit's `normalize`, recorded in provenance).
    method: "caa", "lat", or any name. provenance: how it was fitted (data, seed, normalize, model
    fingerprint, ...)."""

    layers: list[int]
    vectors: torch.Tensor
    alpha: float = 1.0
    method: str = "caa"
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.layers = [int(l) for l in self.layers]
        if not self.layers:
            raise ValueError("a ResidualSteer needs at least one layer")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"duplicate layers in {self.layers}")
        if min(self.layers) < 0:
            raise ValueError(f"layers must be absolute (>= 0), got {self.layers}")
        v = torch.as_tensor(self.vectors).detach().to("cpu", torch.float32)
        if v.dim() == 1 and len(self.layers) == 1:
            v = v[None]
        if v.dim() != 2 or v.shape[0] != len(self.layers):
            raise ValueError(f"vectors must be [{len(self.layers)}, hidden], got {tuple(v.shape)}")
        self.vectors = v.contiguous()
        self.alpha = float(self.alpha)
        self.method = str(self.method)

    @property
    def hidden_size(self) -> int:
        """The model width the steering vectors were fitted for."""
        return int(self.vectors.shape[1])

    def with_alpha(self, alpha: float) -> "ResidualSteer":
        """A copy at strength `alpha` (the vectors unchanged): alpha sweeps need no refit."""
        return dataclasses.replace(self, alpha=float(alpha), provenance=dict(self.provenance))

    def select(self, layers: Sequence[int]) -> "ResidualSteer":
        """The same fit restricted to some of its layers (a sweep reuses one fit for every layer subset)."""
        missing = [l for l in layers if l not in self.layers]
        if missing:
            raise ValueError(f"layers {missing} were not fitted (fitted: {self.layers})")
        idx = [self.layers.index(l) for l in layers]
        return dataclasses.replace(self, layers=list(layers), vectors=self.vectors[idx],
                                   provenance=dict(self.provenance))

    def shifts(self) -> dict[int, torch.Tensor]:
        """{layer: alpha * vector} in float32 on CPU."""
        return {l: self.alpha * v for l, v in zip(self.layers, self.vectors)}

    def check_model(self, arch: ArchSpec, fingerprint: str | None = None) -> None:
        """Refuse a model of another width or depth (and of other weights, when both fingerprints are known)."""
        if arch.hidden_size != self.hidden_size:
            raise ValueError(f"steer vectors have width {self.hidden_size}, the model's hidden size is {arch.hidden_size}")
        bad = [l for l in self.layers if l >= arch.n_layers]
        if bad:
            raise ValueError(f"layers {bad} out of range for a {arch.n_layers}-layer model")
        want = self.provenance.get("model_fingerprint")
        if want and fingerprint and want != fingerprint:
            raise ValueError(f"steer fitted on a model with fingerprint {want}, this model has {fingerprint}")
        self.check_finite()

    def check_finite(self) -> None:
        """alpha, the vectors and alpha * vector in float32 (1e39 overflows) are finite: a NaN or inf shift
        makes a model that outputs NaN."""
        import math

        from ...validation import BadInput

        if not math.isfinite(self.alpha):
            raise BadInput(f"steer alpha is {self.alpha}: it must be a finite number")
        if not bool(torch.isfinite(self.vectors).all()):
            raise BadInput("the steer's vectors hold NaN or inf")
        if not all(bool(torch.isfinite(v).all()) for v in self.shifts().values()):
            raise BadInput(f"alpha {self.alpha:g} x the steer's vectors overflows float32 (inf): use a smaller alpha")

    # ------------------------------------------------------------------------------------ the Steer protocol
    def apply(self, lm, positions: str = "all"):
        """Hooks adding the steer to `lm` while the block runs (`apply_residual`)."""
        from .apply import apply_residual

        return apply_residual(lm, self, positions=positions)

    def factory(self, lm, generate_positions: str = "last"):
        """The evaluation driver's phase -> context manager (`residual_factory`)."""
        from .apply import residual_factory

        return residual_factory(lm, self, generate_positions)

    def bake(self, lm, out: str | Path, *, overwrite: bool = False, verify: bool = False) -> Path:
        """A plain Hugging Face folder with the steer as an MLP output bias (`bake_residual`; else NotBakeable)."""
        from .bake import bake_residual

        return bake_residual(lm, self, out, overwrite=overwrite, verify=verify)

    def verify(self, lm, folder: str | Path, texts: list[str] | None = None, atol: float = 1e-4) -> float:
        """Max |logit difference| of a baked folder against the hooks (`verify_residual_baked`)."""
        from .bake import verify_residual_baked

        return verify_residual_baked(lm, self, folder, texts, atol)

    # ------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write PATH.safetensors (vectors, layers) and PATH.json (the rest) through the writer guard
        (`veracity.outputs`): an existing steer is replaced only with `overwrite`, anything else there is
        refused. Returns the .json path."""
        from ...outputs import write_guarded

        return write_guarded(path, "steer", self.write, overwrite=overwrite)

    def write(self, base: str | Path) -> Path:
        """Write BASE.json + BASE.safetensors without the writer guard: for code that owns the folder (a run
        folder's own files, a staging folder). Each file is written atomically. Returns the .json path."""
        base = Path(base)
        st = base.with_name(base.name + ".safetensors")
        tmp = st.with_name(f"{st.name}.{os.getpid()}.tmp")
        save_file({"vectors": self.vectors.contiguous(), "layers": torch.tensor(self.layers, dtype=torch.int64)},
                  str(tmp), metadata={"format": FORMAT, "version": str(FORMAT_VERSION)})
        os.replace(tmp, st)
        write_json_atomic(base.with_name(base.name + ".json"),
                          {"format": FORMAT, "version": FORMAT_VERSION, "method": self.method,
                           "alpha": self.alpha, "layers": self.layers, "hidden_size": self.hidden_size,
                           "vector_norms": self.vectors.norm(dim=1).tolist(),
                           "provenance": to_jsonable(self.provenance), "tensors": st.name})
        return base.with_name(base.name + ".json")

    @classmethod
    def load(cls, path: str | Path) -> "ResidualSteer":
        """From PATH.json / PATH.safetensors / PATH."""
        base = _base(path)
        js, st = base.with_name(base.name + ".json"), base.with_name(base.name + ".safetensors")
        from ...artifacts import damaged, read

        files = read("residual-steer", base)  # format, keys, shapes, finite: one line naming the file
        meta, t = files[".json"], files[".safetensors"]
        if t["layers"].is_floating_point():
            raise damaged(st, "holds float 'layers', expected decoder layer indices")
        layers = t["layers"].tolist()
        if meta["layers"] != layers:
            raise damaged(js, f"lists layers {meta['layers']}, {st.name} holds layers {layers}: the two files "
                              "are not one steer")
        try:
            return cls(layers=layers, vectors=t["vectors"], alpha=meta["alpha"], method=meta["method"],
                       provenance=meta.get("provenance") or {})
        except ValueError as e:  # duplicate or negative layers
            raise damaged(st, str(e)) from None


def _base(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
