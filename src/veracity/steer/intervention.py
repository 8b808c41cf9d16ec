"""The `Intervention`: which heads to shift, along which unit directions, by how many sigmas.

Kept as plain tensors plus provenance so one fit can be re-scaled (`with_alpha`) or truncated to
fewer heads (`top`) without refitting: the sweep reuses one fit per fold across every alpha and K.
Saved as `NAME.safetensors` (tensors) + `NAME.json` (everything else, human-readable).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..artifacts import ArtifactError, damaged
from ..runs import to_jsonable, write_json_atomic

FORMAT_VERSION = 1


class InterventionError(ValueError):
    """An intervention that cannot be used (missing, or fitted on another model, or not finite). A damaged
    file is `ArtifactError` (`veracity.artifacts`), which callers that refit a damaged cache catch too."""


DAMAGED = (InterventionError, ArtifactError)  # what a reader of a possibly damaged intervention file catches


class InterventionMissing(InterventionError, FileNotFoundError):
    """Its .json or .safetensors file does not exist."""


@dataclass
class Intervention:
    """ITI shift: for selected head k, alpha * sigmas[k] * directions[k] is added to head k's slice
    of the attention output projection's input (the concatenated head outputs).

    heads: (layer, head) pairs, best first. directions: [K, head_dim] unit vectors. sigmas: [K] std of
    the training activations projected on each direction. n_layers/n_heads/head_dim: the model shape
    it was fitted on (checked when applied). provenance: how it was fitted (method, fold, seed, ...).
    head_scores: optional [n_layers, n_heads] validation accuracy of every head's probe.
    """

    heads: list[tuple[int, int]]
    directions: torch.Tensor
    sigmas: torch.Tensor
    alpha: float
    n_layers: int
    n_heads: int
    head_dim: int
    provenance: dict = field(default_factory=dict)
    head_scores: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.heads = [(int(l), int(h)) for l, h in self.heads]
        self.directions = torch.as_tensor(self.directions).detach().to("cpu", torch.float32).reshape(
            len(self.heads), self.head_dim)
        self.sigmas = torch.as_tensor(self.sigmas).detach().to("cpu", torch.float32).reshape(len(self.heads))
        if self.head_scores is not None:
            self.head_scores = torch.as_tensor(self.head_scores).detach().to("cpu", torch.float32)
        self.alpha = float(self.alpha)
        for l, h in self.heads:
            if not (0 <= l < self.n_layers and 0 <= h < self.n_heads):
                raise ValueError(f"head ({l}, {h}) outside a {self.n_layers} x {self.n_heads} model")
        if len(set(self.heads)) != len(self.heads):
            raise ValueError("duplicate heads in intervention")

    @property
    def k(self) -> int:
        """The number of steered heads (ITI's K)."""
        return len(self.heads)

    @property
    def layers(self) -> list[int]:
        """The layers holding at least one steered head, sorted."""
        return sorted({l for l, _ in self.heads})

    def with_alpha(self, alpha: float) -> "Intervention":
        """A copy at strength `alpha` (heads, directions and sigmas unchanged): alpha sweeps need no refit."""
        return dataclasses.replace(self, alpha=float(alpha), provenance=dict(self.provenance))

    def top(self, k: int) -> "Intervention":
        """The first k heads (heads are stored best first)."""
        if k > self.k:
            raise ValueError(f"asked for {k} heads; this intervention has {self.k}")
        return dataclasses.replace(self, heads=self.heads[:k], directions=self.directions[:k],
                                   sigmas=self.sigmas[:k], provenance=dict(self.provenance))

    def head_shifts(self) -> torch.Tensor:
        """[K, head_dim] fp32: alpha * sigma * direction per selected head."""
        return self.alpha * self.sigmas[:, None] * self.directions

    def layer_shifts(self) -> dict[int, torch.Tensor]:
        """{layer: [n_heads * head_dim] fp32} shift of the o_proj input; zero for unselected heads."""
        out: dict[int, torch.Tensor] = {}
        shifts = self.head_shifts()
        for (l, h), s in zip(self.heads, shifts):
            v = out.setdefault(l, torch.zeros(self.n_heads * self.head_dim))
            v[h * self.head_dim:(h + 1) * self.head_dim] += s
        return out

    @property
    def fingerprint(self) -> str | None:
        """Weights fingerprint of the model it was fitted on (`LoadedModel.fingerprint`; ITI fits record
        it from their activation store), None when unknown (e.g. built by hand)."""
        return self.provenance.get("model_fingerprint") or self.provenance.get("fingerprint")

    def check_model(self, arch, fingerprint: str | None = None) -> None:
        """Refuse a model of another shape (an intervention is tied to its model's heads) and, when both
        fingerprints are known, a model with other weights (a same-shaped model is still another model)."""
        got = (arch.n_layers, arch.n_heads, arch.head_dim)
        want = (self.n_layers, self.n_heads, self.head_dim)
        if got != want:
            raise InterventionError(f"intervention fitted for (layers, heads, head_dim) = {want}, model has {got}")
        bad = [(l, h) for l, h in self.heads if not (0 <= l < arch.n_layers and 0 <= h < arch.n_heads)]
        if bad:
            raise InterventionError(f"intervention names head {bad[0]} of a model with {arch.n_layers} layers x "
                                    f"{arch.n_heads} heads")
        self.check_finite()
        if fingerprint and self.fingerprint and fingerprint != self.fingerprint:
            raise InterventionError(
                f"intervention fitted on another model (fingerprint {self.fingerprint}"
                f"{', ' + str(self.provenance['model']) if self.provenance.get('model') else ''}); this model's "
                f"fingerprint is {fingerprint} (other weights, or another dtype): fit it on this model")

    def check_finite(self) -> None:
        """alpha, directions, sigmas and the shifts they make (alpha * sigma * direction in float32: 1e39
        overflows) are finite: a NaN or inf shift makes a model that outputs NaN."""
        import math

        if not math.isfinite(self.alpha):
            raise InterventionError(f"intervention alpha is {self.alpha}: it must be a finite number")
        for name, t in (("directions", self.directions), ("sigmas", self.sigmas)):
            if not bool(torch.isfinite(t).all()):
                raise InterventionError(f"intervention {name} hold NaN or inf")
        if not bool(torch.isfinite(self.head_shifts()).all()):
            raise InterventionError(f"alpha {self.alpha:g} x sigma x direction overflows float32 (inf): "
                                    "use a smaller alpha")

    # ------------------------------------------------------------------------------------ the Steer protocol
    def apply(self, lm, positions: str = "all"):
        """Hooks adding the head shifts to `lm` while the block runs (`veracity.steer.apply.apply`)."""
        from .apply import apply

        return apply(lm, self, positions=positions)

    def factory(self, lm, generate_positions: str = "last", mc_shift_from: str = "answer-start"):
        """The evaluation driver's phase -> context manager (`veracity.steer.apply.intervention_factory`)."""
        from .apply import intervention_factory

        return intervention_factory(lm, self, generate_positions, mc_shift_from)

    def bake(self, lm, out: str | Path, *, overwrite: bool = False, verify: bool = False) -> Path:
        """A plain Hugging Face folder with the shifts as o_proj biases (`veracity.steer.bake.bake`; exact for
        every architecture whose o_proj veracity can give a bias, else `BakeFailed`)."""
        from .bake import bake

        return bake(lm, self, out, overwrite=overwrite, verify=verify)

    def verify(self, lm, folder: str | Path, texts: list[str] | None = None, atol: float = 1e-4) -> float:
        """Max |logit difference| of a baked folder against the hooks (`veracity.steer.bake.verify_baked`)."""
        from .bake import verify_baked

        return verify_baked(lm, self, folder, texts, atol)

    # ------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write PATH.safetensors and PATH.json (suffix of `path` ignored) through the writer guard
        (`veracity.outputs`): an existing intervention is replaced only with `overwrite`, anything else
        there is refused. Returns the .json path."""
        from ..outputs import write_guarded

        return write_guarded(path, "intervention", self.write, overwrite=overwrite)

    def write(self, base: str | Path) -> Path:
        """Write BASE.json + BASE.safetensors without the writer guard: for code that owns the folder (a run
        folder's own files, a staging folder). Each file is written atomically. Returns the .json path."""
        base = Path(base)
        tensors = {"directions": self.directions.contiguous(), "sigmas": self.sigmas.contiguous(),
                   "heads": torch.tensor(self.heads, dtype=torch.int64).reshape(-1, 2)}
        if self.head_scores is not None:
            tensors["head_scores"] = torch.as_tensor(self.head_scores, dtype=torch.float32).contiguous()
        st = base.with_name(base.name + ".safetensors")
        tmp = st.with_name(f"{st.name}.{os.getpid()}.tmp")
        save_file(tensors, str(tmp), metadata={"format": "veracity-intervention", "version": str(FORMAT_VERSION)})
        os.replace(tmp, st)
        meta = {"format": "veracity-intervention", "version": FORMAT_VERSION, "alpha": self.alpha,
                "model_fingerprint": self.fingerprint,
                "n_layers": self.n_layers, "n_heads": self.n_heads, "head_dim": self.head_dim,
                "k": self.k, "heads": self.heads, "sigmas": self.sigmas.tolist(),
                "provenance": to_jsonable(self.provenance), "tensors": st.name}
        write_json_atomic(base.with_name(base.name + ".json"), meta)
        return base.with_name(base.name + ".json")

    @classmethod
    def load(cls, path: str | Path) -> "Intervention":
        """From PATH.json / PATH.safetensors / PATH (either suffix or none)."""
        base = Path(path)
        base = base.with_suffix("") if base.suffix in (".json", ".safetensors") else base
        js, st = base.with_name(base.name + ".json"), base.with_name(base.name + ".safetensors")
        for f in (js, st):
            if not f.is_file():
                raise InterventionMissing(f"intervention file {f} not found (an intervention is NAME.json + "
                                          "NAME.safetensors, from `veracity iti fit`)")
        from ..artifacts import read

        files = read("iti-intervention", base)  # format, keys, shapes, finite: one line naming the file
        meta, t = files[".json"], files[".safetensors"]
        heads = [tuple(x) for x in t["heads"].tolist()]
        if t["heads"].is_floating_point():
            raise damaged(st, "holds float 'heads', expected (layer, head) integers")
        try:
            listed = [tuple(int(x) for x in h) for h in meta["heads"]]
        except (TypeError, ValueError):
            raise damaged(js, "'heads' is not a list of (layer, head) pairs") from None
        if listed != heads or meta["k"] != len(heads):
            raise damaged(js, f"lists heads {meta['heads'][:4]}... (k={meta['k']}) that are not the heads of "
                              f"{st.name}: the two files are not one intervention")
        for l, h in heads:
            if not (0 <= l < meta["n_layers"] and 0 <= h < meta["n_heads"]):
                raise damaged(st, f"names head ({l}, {h}) outside the {meta['n_layers']} x {meta['n_heads']} "
                                  "model its .json records")
        if len(set(heads)) != len(heads):
            raise damaged(st, "lists a head twice")
        prov = dict(meta.get("provenance") or {})
        if meta.get("model_fingerprint"):
            prov.setdefault("model_fingerprint", meta["model_fingerprint"])
        return cls(heads=heads, directions=t["directions"], sigmas=t["sigmas"], alpha=meta["alpha"],
                   n_layers=meta["n_layers"], n_heads=meta["n_heads"], head_dim=meta["head_dim"], provenance=prov,
                   head_scores=t.get("head_scores"))
