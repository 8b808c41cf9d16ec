"""What the shaped residual steers (ACE, angular, conditional) share: a map h -> f_l(h) applied to the output of
decoder layer l through forward hooks (every position, or the last real token of each forward call), the
`Steer` protocol around it, and one file format (PATH.json + PATH.safetensors, format
``veracity-layerwise-steer``) read back through `veracity.artifacts`' safe readers.

None of these maps is a constant added to the residual stream (ACE projects, angular steering rotates, a
conditional steer depends on a probe), and the residual stream carries a layer's output to every later layer
unchanged, so no weight of a plain Hugging Face model reproduces them: `bake` and `verify` raise `NotBakeable`.
The maps run in float32 (the hidden state is upcast, then cast back to the model's dtype)."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors.torch import save_file

from ..outputs import OutputKind, _pair_format, register_output_kind
from ..runs import to_jsonable, write_json_atomic
from .base import NotBakeable
from .apply import _unpack, check_positions, last_token_mask
from .residual.apply import layer_output_hooks

FORMAT = "veracity-layerwise-steer"
FORMAT_VERSION = 1
JSON_SCHEMA = {"format": "str", "method": "str", "alpha": "number", "layers": "list", "hidden_size": "int",
               "provenance": "dict?"}

register_output_kind(OutputKind("layerwise-steer", "a veracity layerwise steer (per-layer tensors of one family)",
                                "files", _pair_format(FORMAT), (".json", ".safetensors")))


def check_width(arch, hidden_size: int, layers: list[int], fingerprint: str | None, want: str | None) -> None:
    """Refuse a model of another width or depth, or (both fingerprints known) of other weights: ValueError."""
    if arch.hidden_size != hidden_size:
        raise ValueError(f"steer fitted for hidden size {hidden_size}, the model's is {arch.hidden_size}")
    bad = [l for l in layers if l >= arch.n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range for a {arch.n_layers}-layer model")
    if want and fingerprint and want != fingerprint:
        raise ValueError(f"steer fitted on a model with fingerprint {want}, this model has {fingerprint}")


class LayerwiseSteer:
    """Mixin of a dataclass with `layers`, `alpha`, `method` and `provenance` fields that defines
    `transform(i, h)` (h [..., D] float32 at layer `layers[i]` -> the steered h) and, for its files,
    `tensors()` / `meta()` / `from_files(meta, tensors, path)`. Subclasses may override `hooks` (the conditional
    steer computes a mask first)."""

    layers: list[int]
    alpha: float
    method: str
    provenance: dict

    # ------------------------------------------------------------------------------------ to implement
    def transform(self, i: int, h: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The steered hidden states at layer `layers[i]` (every position of `h`; the hooks pick the positions)."""
        raise NotImplementedError

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors `save` writes (safetensors), by name: the fields `SHAPES` names (override where they are
        not the steer's own fields)."""
        return {k: getattr(self, k) for k in self.SHAPES}

    def meta(self) -> dict:
        """Fields of the JSON half beyond the common ones."""
        return {}

    @property
    def hidden_size(self) -> int:  # pragma: no cover - abstract
        """The model width the steer was fitted for (checked against the model it is applied to)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------ shared
    def with_alpha(self, alpha: float):
        """A copy at strength `alpha` (the fitted directions unchanged)."""
        import dataclasses

        return dataclasses.replace(self, alpha=float(alpha), provenance=dict(self.provenance))

    def checked_layers(self) -> list[int]:
        """`layers` as ints, refused (ValueError) unless distinct absolute decoder layers: what every subclass's
        `__post_init__` checks first."""
        layers = [int(l) for l in self.layers]
        if not layers or len(set(layers)) != len(layers) or min(layers) < 0:
            raise ValueError(f"layers must be distinct absolute decoder layers, got {layers}")
        return layers

    def select(self, layers):
        """A copy steering only these of its layers (COSMIC scores one candidate layer at a time): every tensor of
        `tensors()` (one row per layer, held in the field of that name) cut to their rows."""
        import dataclasses

        missing = [int(l) for l in layers if int(l) not in self.layers]
        if missing:
            raise ValueError(f"layers {missing} not fitted; this steer has {self.layers}")
        idx = [self.layers.index(int(l)) for l in layers]
        return dataclasses.replace(self, layers=[int(l) for l in layers],
                                   **{k: v[idx] for k, v in self.tensors().items()},
                                   provenance=dict(self.provenance))

    def check_finite(self) -> None:
        """alpha and every tensor finite: a NaN anywhere makes a model that outputs NaN."""
        from ..validation import BadInput

        if not math.isfinite(self.alpha):
            raise BadInput(f"steer alpha is {self.alpha}: it must be a finite number")
        for k, t in self.tensors().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise BadInput(f"the steer's {k} hold NaN or inf")

    def check_model(self, arch, fingerprint: str | None = None) -> None:
        """Refuse a model of another width or depth (and of other weights, when both fingerprints are known)."""
        check_width(arch, self.hidden_size, self.layers, fingerprint, self.provenance.get("model_fingerprint"))
        self.check_finite()

    def layer_maps(self) -> dict[int, Callable[[torch.Tensor], torch.Tensor]]:
        """{layer: f} with f on float32 hidden states."""
        return {l: (lambda h, i=i: self.transform(i, h)) for i, l in enumerate(self.layers)}

    @contextlib.contextmanager
    def hooks(self, model, arch, positions: str) -> Iterator[None]:
        """Forward hooks replacing each steered layer's output h by f(h) (at every position, or only at the last
        real token of each forward call with positions "last"), removed on exit."""
        last_only = positions == "last"
        state: dict = {"mask": None}
        maps = self.layer_maps()

        def make_hook(f):
            def hook(module, args, output):
                h = output[0] if isinstance(output, tuple) else output
                new = f(h.float()).to(h.dtype)
                if last_only and h.dim() == 3 and h.shape[-2] > 1:
                    new = torch.where(last_token_mask(h, state["mask"])[..., None], new, h)
                return (new, *output[1:]) if isinstance(output, tuple) else new
            return hook

        with layer_output_hooks(model, arch, {l: make_hook(f) for l, f in maps.items()}, state, last_only):
            yield

    @contextlib.contextmanager
    def apply(self, lm, positions: str = "all"):
        """Hook the steer into `lm` (a `LoadedModel`, a Hugging Face causal LM or (model, ArchSpec)) for the
        block; positions "all" (or its alias "prompt") or "last". The model is unchanged afterwards."""
        check_positions(positions)
        model, arch = _unpack(lm)
        fp = lm.fingerprint if self.provenance.get("model_fingerprint") and hasattr(lm, "fingerprint") else None
        self.check_model(arch, fp)
        with self.hooks(model, arch, positions):
            yield self

    def factory(self, lm, generate_positions: str = "last"):
        """The evaluation driver's phase -> context manager: scoring phases steer every token; "generate" the
        `generate_positions`."""
        return lambda phase: self.apply(lm, generate_positions if phase == "generate" else "all")

    def bake(self, lm, out: str | Path, *, overwrite: bool = False, verify: bool = False) -> Path:
        """Never exact (see the module docstring): NotBakeable, before anything is written."""
        raise NotBakeable(f"{self.method} is not a constant added to the residual stream (a projection, rotation or "
                          "probe-gated map of the layer output): no weight of a plain model carries it; use the "
                          "hooks (apply)")

    def verify(self, lm, folder: str | Path, texts: list[str] | None = None, atol: float = 1e-4) -> float:
        """No baked folder can exist (`bake` refuses): NotBakeable."""
        self.bake(lm, folder)
        return 0.0  # pragma: no cover - bake raised

    # ------------------------------------------------------------------------------------ files
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """PATH.json + PATH.safetensors through the writer guard (`veracity.outputs`); returns the .json path."""
        from ..outputs import write_guarded

        return write_guarded(path, "layerwise-steer", self.write, overwrite=overwrite)

    def write(self, base: str | Path) -> Path:
        """Write BASE.json + BASE.safetensors without the writer guard (each atomically); returns the .json path."""
        base = Path(base)
        st = base.with_name(base.name + ".safetensors")
        tmp = st.with_name(f"{st.name}.{os.getpid()}.tmp")
        tensors = {k: v.contiguous() for k, v in self.tensors().items()}
        tensors["layers"] = torch.tensor(self.layers, dtype=torch.int64)
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "version": str(FORMAT_VERSION)})
        os.replace(tmp, st)
        js = base.with_name(base.name + ".json")
        write_json_atomic(js, {"format": FORMAT, "version": FORMAT_VERSION, "method": self.method,
                               "alpha": self.alpha, "layers": self.layers, "hidden_size": self.hidden_size,
                               **to_jsonable(self.meta()), "provenance": to_jsonable(self.provenance),
                               "tensors": st.name})
        return js

    @classmethod
    def load(cls, path: str | Path):
        """From PATH.json / PATH.safetensors / PATH, checked by the safe readers (a damaged or mismatched file is
        one line naming it); the method recorded must be this class's."""
        from ..artifacts import damaged, read_json, read_safetensors

        p = Path(path)
        base = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
        js, st = base.with_name(base.name + ".json"), base.with_name(base.name + ".safetensors")
        meta = read_json(js, JSON_SCHEMA, "layerwise steer", {"format": FORMAT})
        if meta["method"] not in cls.METHODS:
            raise damaged(js, f"holds a {meta['method']!r} steer, not one of {', '.join(cls.METHODS)}")
        expect = {k: tuple("hidden_size" if d == "D" else ("L" if d == "L" else d) for d in shape)
                  for k, shape in cls.SHAPES.items()}
        t = read_safetensors(st, {"layers": ("L",), **expect}, {"hidden_size": meta["hidden_size"],
                                                                "L": len(meta["layers"])}, "layerwise steer")
        if t["layers"].is_floating_point() or t["layers"].tolist() != meta["layers"]:
            raise damaged(st, f"holds layers {t['layers'].tolist()}, {js.name} lists {meta['layers']}: the two "
                              "files are not one steer")
        try:
            return cls.from_files(meta, t)
        except (ValueError, KeyError, TypeError) as e:
            raise damaged(js, f"does not describe a valid steer ({e})") from None

    #: tensor name -> shape ("L" = one per layer, "D" = the hidden size, another name: a size the tensors
    #: share); each is a field of the steer of that name, and the readers check them
    SHAPES: dict[str, tuple] = {}
    #: the `method` values this class reads
    METHODS: tuple[str, ...] = ()

    @classmethod
    def from_files(cls, meta: dict, tensors: dict):
        """The steer from its saved JSON metadata and tensors (what `load` reads through the safe reader): its
        `SHAPES` fields from the tensors, layers, alpha, method and provenance from the JSON (override where the
        steer holds more)."""
        return cls(layers=meta["layers"], **{k: tensors[k] for k in cls.SHAPES}, alpha=meta["alpha"],
                   method=meta["method"], provenance=meta.get("provenance") or {})


def unit_rows(v: torch.Tensor) -> torch.Tensor:
    """Each row scaled to norm 1 (float64); a zero row is a ValueError (no direction to steer along)."""
    v = torch.as_tensor(v).double()
    n = v.norm(dim=-1, keepdim=True)
    if bool((n == 0).any()):
        raise ValueError("a direction has norm zero")
    return v / n


def kept_unit(v: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    """[L, D] float32 rows of norm 1: `v` itself when it already is (to `tol`), so a saved, loaded or re-scaled
    steer keeps its exact bits; else `unit_rows(v)`."""
    v = torch.as_tensor(v).detach().cpu()
    if bool(((v.double().norm(dim=-1) - 1).abs() < tol).all()):
        return v.float()
    return unit_rows(v).float()


def training_rows(data, train_questions, layers, seed: int = 0, fold: int | None = None):
    """(X [n, len(layers), D] float64, y [n] bool, resolved layers, provenance) of the rows of `train_questions`
    only, from a `residual_tqa.ResidualData` (what caa and lat fit on); layers None = the middle layer, negatives
    count from the end."""
    from .residual_tqa import fold_rows

    rows, layers, prov = fold_rows(data, train_questions, layers, seed, fold)
    X = data.X[torch.as_tensor(rows)][:, layers].double()
    y = data.labels[torch.as_tensor(rows)].bool()
    if bool(y.all()) or not bool(y.any()):
        raise ValueError("both classes (true and false rows) are needed to fit a direction")
    fold_at = prov.pop("fold", None)  # the counts go before the fold, as they always have in saved provenance
    prov.update(n_true=int(y.sum()), n_false=int((~y).sum()))
    if fold_at is not None:
        prov["fold"] = fold_at
    return X, y, layers, prov


def scales(u: torch.Tensor, X: torch.Tensor, y: torch.Tensor, normalize: str) -> torch.Tensor:
    """[L] the length of one unit of alpha along each unit direction u [L, D] (residual steering's `normalize`):
    raw = the class-mean difference projected on u, sigma = the std of the projections, unit = 1."""
    from .residual.fit import NORMALIZE

    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
    proj = torch.einsum("nld,ld->nl", X, u)
    if normalize == "raw":
        return proj[y].mean(0) - proj[~y].mean(0)
    if normalize == "sigma":
        return proj.std(0, unbiased=False)
    return torch.ones(u.shape[0], dtype=torch.float64)
