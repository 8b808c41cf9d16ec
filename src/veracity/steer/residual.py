"""Residual-stream steering: fit a vector per layer, add it to decoder layers' outputs, bake it exactly.

Fitting (all vectors point from false towards true, so alpha > 0 steers towards truth):
- `fit_diff_means` -- CAA / DiffMean / "DIM": mean(true rows) - mean(false rows), from labelled data;
- `fit_contrast_pairs` -- CAA's original form: the mean of paired differences pos_i - neg_i;
- `fit_lat` -- representation engineering's reading vector (LAT, Zou et al. 2023): the first principal
  component of paired differences. RepE convention, followed here: each pair's difference is taken in a
  random order (sign +-1, seeded), the differences are centred on their mean, and the top right singular
  vector of that matrix is the direction; its sign is fixed so that pos (true) projects above neg on the
  training pairs. The random order is what makes the truth direction the direction of largest *variance*
  (with every difference in the same order, centring would remove the very mean shift we look for).
  `lat_differences` exposes those signed differences so tests can redo the PCA with numpy.

Scaling (`normalize`), the same for every fit; u is the fitted unit direction:
- "raw" (default): u * (mean paired/class difference . u). For diff-means this is exactly mean(true) -
  mean(false), CAA's convention: alpha = 1 adds the full class difference.
- "sigma": u * std of the training activations projected on u (ITI's sigma): alpha is in standard
  deviations, comparable across layers and with ITI's alpha.
- "unit": u itself: alpha is in activation-norm units.

Applying: `apply_residual` adds alpha * v_l to the output of decoder layer l (what `resid.l` captures)
through forward hooks, at every position or only the last real token of each forward call (as
`steer.apply`). Note: transformers 5 records `output_hidden_states` with its own hooks, which run before
ours on the steered layer itself, so hidden_states[l + 1] does not show the shift (later layers do);
read a steered layer's output with a hook registered after entering `apply_residual`. Baking: `bake_residual` writes a plain Hugging Face folder where the constant is a
bias of the layer's last MLP projection -- exact where the MLP output is added to the residual with
nothing after it (Llama-style layers: down_proj; GPT-2: c_proj), refused (`NotBakeable`) elsewhere.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from safetensors.torch import save_file

from ..models.arch import ArchSpec
from ..runs import to_jsonable, write_json_atomic
from .apply import add_at_last_token
from .base import NotBakeable

FORMAT = "veracity-residual-steer"
FORMAT_VERSION = 1
NORMALIZE = ("raw", "sigma", "unit")
POSITIONS = ("all", "last", "prompt")


# ------------------------------------------------------------------------------------------ the steer

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

        from ..validation import BadInput

        if not math.isfinite(self.alpha):
            raise BadInput(f"steer alpha is {self.alpha}: it must be a finite number")
        if not bool(torch.isfinite(self.vectors).all()):
            raise BadInput("the steer's vectors hold NaN or inf")
        if not all(bool(torch.isfinite(v).all()) for v in self.shifts().values()):
            raise BadInput(f"alpha {self.alpha:g} x the steer's vectors overflows float32 (inf): use a smaller alpha")

    # ------------------------------------------------------------------------------------ the Steer protocol
    def apply(self, lm, positions: str = "all"):
        """Hooks adding the steer to `lm` while the block runs (`apply_residual`)."""
        return apply_residual(lm, self, positions=positions)

    def factory(self, lm, generate_positions: str = "last"):
        """The evaluation driver's phase -> context manager (`residual_factory`)."""
        return residual_factory(lm, self, generate_positions)

    def bake(self, lm, out: str | Path, *, overwrite: bool = False, verify: bool = False) -> Path:
        """A plain Hugging Face folder with the steer as an MLP output bias (`bake_residual`; else NotBakeable)."""
        return bake_residual(lm, self, out, overwrite=overwrite, verify=verify)

    def verify(self, lm, folder: str | Path, texts: list[str] | None = None, atol: float = 1e-4) -> float:
        """Max |logit difference| of a baked folder against the hooks (`verify_residual_baked`)."""
        return verify_residual_baked(lm, self, folder, texts, atol)

    # ------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write PATH.safetensors (vectors, layers) and PATH.json (the rest) through the writer guard
        (`veracity.outputs`): an existing steer is replaced only with `overwrite`, anything else there is
        refused. Returns the .json path."""
        from ..outputs import write_guarded

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
        from ..artifacts import damaged, read

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


# ------------------------------------------------------------------------------------------ fitting

def _per_layer(acts: Any, layers: Sequence[int] | None, act_layers: Sequence[int] | None) -> dict[int, torch.Tensor]:
    """{layer: [N, D] float64} from a dict {layer: [N, D]} or a tensor [N, L, D] whose axis 1 holds the
    layers `act_layers` (default 0..L-1, i.e. every decoder layer)."""
    if isinstance(acts, Mapping):
        avail = {int(k): v for k, v in acts.items()}
    else:
        T = acts if isinstance(acts, torch.Tensor) else torch.as_tensor(np.asarray(acts))
        if T.dim() == 2:
            T = T[:, None]
        if T.dim() != 3:
            raise ValueError(f"activations must be a dict of [N, D] or a tensor [N, L, D], got {tuple(T.shape)}")
        ids = list(range(T.shape[1])) if act_layers is None else [int(l) for l in act_layers]
        if len(ids) != T.shape[1]:
            raise ValueError(f"{len(ids)} act_layers for {T.shape[1]} layers on axis 1")
        avail = {l: T[:, i] for i, l in enumerate(ids)}
    chosen = sorted(avail) if layers is None else [int(l) for l in layers]
    missing = [l for l in chosen if l not in avail]
    if missing:
        raise KeyError(f"no activations for layers {missing} (have {sorted(avail)})")
    if not chosen:
        raise ValueError("no layers to fit")
    out = {}
    for l in chosen:
        x = torch.as_tensor(avail[l]).detach().to("cpu", torch.float64)
        if x.dim() != 2:
            raise ValueError(f"layer {l}: expected [N, D] activations, got {tuple(x.shape)}")
        out[l] = x
    return out


def _check_normalize(normalize: str | bool) -> str:
    if normalize is True:
        return "unit"
    if normalize is False:
        return "raw"
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
    return normalize


def _scaled(u: torch.Tensor, mean_diff: torch.Tensor, rows: torch.Tensor, normalize: str) -> tuple[torch.Tensor, float]:
    """(vector, scale) for unit direction u: see the module docstring for the three conventions."""
    if normalize == "raw":
        s = float(mean_diff @ u)
    elif normalize == "sigma":
        s = float((rows @ u).std(unbiased=False))
    else:
        s = 1.0
    return u * s, s


def _labels(labels: Any, n: int) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)).flatten()
    if y.numel() != n:
        raise ValueError(f"{y.numel()} labels for {n} rows")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("labels must be 0 (false) or 1 (true)")
    y = y.bool()
    if bool(y.all()) or not bool(y.any()):
        raise ValueError("both classes (true and false rows) are needed to fit a steering vector")
    return y


def _make(method: str, layers: list[int], vecs: list[torch.Tensor], scales: list[float], normalize: str,
          alpha: float, provenance: dict | None, extra: dict) -> ResidualSteer:
    prov = {"method": method, "normalize": normalize, "scales": scales, **extra, **(provenance or {})}
    return ResidualSteer(layers, torch.stack(vecs).float(), alpha=alpha, method=method, provenance=prov)


def fit_diff_means(acts: Any, labels: Any, layers: Sequence[int] | None = None, normalize: str | bool = "raw",
                   act_layers: Sequence[int] | None = None, alpha: float = 1.0,
                   provenance: dict | None = None) -> ResidualSteer:
    """CAA / DiffMean: v_l = mean(true rows) - mean(false rows) of layer l's activations (scaled by `normalize`).

    acts: {layer: [N, D]} or [N, L, D] (axis 1 = `act_layers`, default every layer); labels: [N] 0/1,
    1 = true. layers: which to fit (default: all given)."""
    normalize = _check_normalize(normalize)
    per = _per_layer(acts, layers, act_layers)
    n = next(iter(per.values())).shape[0]
    y = _labels(labels, n)
    vecs, scales = [], []
    for l, X in per.items():
        if X.shape[0] != n:
            raise ValueError(f"layer {l} has {X.shape[0]} rows, expected {n}")
        diff = X[y].mean(0) - X[~y].mean(0)
        nrm = diff.norm()
        if float(nrm) == 0:
            raise ValueError(f"layer {l}: the class means are identical; no direction to steer along")
        v, s = _scaled(diff / nrm, diff, X, normalize)
        vecs.append(v)
        scales.append(s)
    return _make("caa", list(per), vecs, scales, normalize, alpha, provenance,
                 {"fit": "diff-means", "n_true": int(y.sum()), "n_false": int((~y).sum())})


def _pairs(pos: Any, neg: Any, layers, act_layers) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    P = _per_layer(pos, layers, act_layers)
    Q = _per_layer(neg, list(P), act_layers)
    for l in P:
        if P[l].shape != Q[l].shape:
            raise ValueError(f"layer {l}: pos and neg differ in shape: {tuple(P[l].shape)} vs {tuple(Q[l].shape)}")
    if next(iter(P.values())).shape[0] < 2:
        raise ValueError("at least two contrast pairs are needed")
    return P, Q


def fit_contrast_pairs(pos: Any, neg: Any, layers: Sequence[int] | None = None, normalize: str | bool = "raw",
                       act_layers: Sequence[int] | None = None, alpha: float = 1.0,
                       provenance: dict | None = None) -> ResidualSteer:
    """CAA from contrast pairs: v_l = mean_i(pos_i - neg_i); row i of pos and of neg form a pair (pos = true)."""
    normalize = _check_normalize(normalize)
    P, Q = _pairs(pos, neg, layers, act_layers)
    vecs, scales = [], []
    for l in P:
        diff = (P[l] - Q[l]).mean(0)
        nrm = diff.norm()
        if float(nrm) == 0:
            raise ValueError(f"layer {l}: the mean paired difference is zero; no direction to steer along")
        v, s = _scaled(diff / nrm, diff, torch.cat([P[l], Q[l]]), normalize)
        vecs.append(v)
        scales.append(s)
    return _make("caa", list(P), vecs, scales, normalize, alpha, provenance,
                 {"fit": "contrast-pairs", "n_pairs": int(next(iter(P.values())).shape[0])})


def lat_signs(n: int, seed: int) -> torch.Tensor:
    """The +-1 order of each of n pairs used by `fit_lat` (a seeded torch generator, so tests can redo it)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, 2, (n,), generator=g).to(torch.float64) * 2 - 1


def lat_differences(pos: torch.Tensor, neg: torch.Tensor, seed: int) -> torch.Tensor:
    """[N, D] float64: s_i (pos_i - neg_i), s_i = +-1 from `lat_signs` (RepE's shuffled pair order)."""
    pos, neg = torch.as_tensor(pos).double(), torch.as_tensor(neg).double()
    return (pos - neg) * lat_signs(pos.shape[0], seed)[:, None]


def fit_lat(pos: Any, neg: Any, seed: int = 0, layers: Sequence[int] | None = None, normalize: str | bool = "raw",
            act_layers: Sequence[int] | None = None, alpha: float = 1.0,
            provenance: dict | None = None) -> ResidualSteer:
    """LAT reading vector: the first principal component of the (randomly ordered, centred) paired
    differences, sign fixed so that pos (true) projects above neg on most training pairs; see the module
    docstring for the convention. Also records `explained_variance_ratio` per layer in provenance."""
    normalize = _check_normalize(normalize)
    P, Q = _pairs(pos, neg, layers, act_layers)
    vecs, scales, evr, agree = [], [], [], []
    for l in P:
        Dm = lat_differences(P[l], Q[l], seed)
        Dc = Dm - Dm.mean(0)
        _, S, Vh = torch.linalg.svd(Dc, full_matrices=False)
        u = Vh[0]
        d = P[l] - Q[l]
        votes = d @ u
        frac = float((votes > 0).double().mean())
        if frac < 0.5 or (frac == 0.5 and float(votes.sum()) < 0):  # most pairs: true above false
            u, votes = -u, -votes
        v, s = _scaled(u, d.mean(0), torch.cat([P[l], Q[l]]), normalize)
        vecs.append(v)
        scales.append(s)
        evr.append(float(S[0] ** 2 / (S ** 2).sum().clamp_min(1e-300)))
        agree.append(float((votes > 0).double().mean()))
    return _make("lat", list(P), vecs, scales, normalize, alpha, provenance,
                 {"fit": "lat-pca", "seed": int(seed), "n_pairs": int(next(iter(P.values())).shape[0]),
                  "explained_variance_ratio": evr, "train_pair_accuracy": agree})


def pair_by_group(labels: Any, groups: Sequence[Any], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(pos_idx, neg_idx): contrast pairs from labelled rows, a true and a false row of the same group
    (e.g. two answers to one TruthfulQA question). Per group both sides are shuffled (seeded) and zipped,
    so a group with t true and f false rows gives min(t, f) pairs and no row is used twice."""
    y = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)).flatten().bool()
    groups = list(groups)
    if len(groups) != y.numel():
        raise ValueError(f"{len(groups)} groups for {y.numel()} labels")
    rng = np.random.default_rng(int(seed))
    by: dict[Any, tuple[list[int], list[int]]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, ([], []))[0 if bool(y[i]) else 1].append(i)
    pos, neg = [], []
    for g in by:
        t, f = (rng.permutation(np.asarray(s, dtype=np.int64)) for s in by[g])
        m = min(len(t), len(f))
        pos.extend(t[:m].tolist())
        neg.extend(f[:m].tolist())
    if not pos:
        raise ValueError("no group has both a true and a false row: no contrast pairs")
    return torch.tensor(pos), torch.tensor(neg)


# ------------------------------------------------------------------------------------------ applying

def _unpack(target) -> tuple[torch.nn.Module, ArchSpec]:
    if hasattr(target, "model") and hasattr(target, "arch"):  # LoadedModel
        return target.model, target.arch
    if isinstance(target, tuple) and len(target) == 2 and isinstance(target[1], ArchSpec):
        return target[0], target[1]
    if isinstance(target, torch.nn.Module):
        return target, ArchSpec.from_model(target)
    raise TypeError(f"expected a LoadedModel, a Hugging Face model or (model, ArchSpec), got {type(target).__name__}")


def _fingerprint_of(target, steer: ResidualSteer) -> str | None:
    """The target's fingerprint, computed only when the steer records one to compare with."""
    if steer.provenance.get("model_fingerprint") and hasattr(target, "fingerprint"):
        return target.fingerprint
    return None


@contextlib.contextmanager
def apply_residual(target, steer: ResidualSteer, positions: str = "all",
                   alpha: float | None = None) -> Iterator[ResidualSteer]:
    """Add alpha * v_l to the output hidden states of each steered decoder layer while the block runs.

    target: a `LoadedModel`, a Hugging Face causal LM, or (model, ArchSpec). positions: "all" (every
    position of every forward call; what a baked model does; "prompt" is an alias) or "last" (the last
    real token of each row in every forward call, by the call's attention mask). alpha overrides the
    steer's. The model is not modified; hooks are removed on exit, also on error. Yields the steer used."""
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, got {positions!r}")
    model, arch = _unpack(target)
    st = steer if alpha is None else steer.with_alpha(alpha)
    st.check_model(arch, _fingerprint_of(target, st))
    shifts = st.shifts()
    last_only = positions == "last"
    state: dict[str, torch.Tensor | None] = {"mask": None}
    cache: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def vec(layer: int, x: torch.Tensor) -> torch.Tensor:
        key = (layer, x.device, x.dtype)
        if key not in cache:
            cache[key] = shifts[layer].to(device=x.device, dtype=x.dtype)
        return cache[key]

    def make_hook(layer: int):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            v = vec(layer, h)
            if not last_only or h.dim() < 3 or h.shape[-2] == 1:
                h = h + v
            else:
                h = add_at_last_token(h, v, state["mask"])
            return (h, *output[1:]) if isinstance(output, tuple) else h
        return hook

    def record_mask(module, args, kwargs):
        state["mask"] = kwargs.get("attention_mask")

    handles = []
    try:
        if last_only:
            handles.append(model.register_forward_pre_hook(record_mask, with_kwargs=True))
        for layer in sorted(shifts):
            handles.append(arch.layer(model, layer).register_forward_hook(make_hook(layer)))
        yield st
    finally:
        for h in handles:
            h.remove()
        state["mask"] = None


def residual_factory(target, steer: ResidualSteer, generate_positions: str = "last"):
    """A factory for the evaluation driver (phase -> context manager), as `steer.apply.intervention_factory`:
    scoring phases shift every token; "generate" uses `generate_positions`."""
    def factory(phase: str):
        return apply_residual(target, steer, positions=generate_positions if phase == "generate" else "all")
    return factory


# ------------------------------------------------------------------------------------------ baking

_LLAMA_LAYER_TYPES = ("llama", "mistral", "qwen2")


def bake_plan(model: torch.nn.Module, arch: ArchSpec) -> tuple[str, str]:
    """(how, module path template of the bias that carries the constant, "{i}" = layer), or NotBakeable.

    Exact only when decoder layer i computes h + mlp(...) with nothing applied after the MLP's last
    projection (no norm, no scale): then a bias b on that projection adds b to the layer's output."""
    mt = arch.model_type
    layer0 = arch.layer(model, 0)
    if mt in ("gemma3", "gemma3_text", "gemma2"):
        raise NotBakeable(f"cannot bake residual steering into {mt!r}: a post-feedforward RMSNorm follows the MLP, "
                          "so no bias adds a constant to the layer output; use apply_residual (hooks) instead")
    if mt in _LLAMA_LAYER_TYPES:
        for attr in ("post_feedforward_layernorm", "post_mlp_layernorm"):
            if hasattr(layer0, attr):
                raise NotBakeable(f"cannot bake into {mt!r}: its layers have {attr} after the MLP")
        if not hasattr(layer0, "mlp") or not hasattr(layer0.mlp, "down_proj"):
            raise NotBakeable(f"cannot bake into {mt!r}: no mlp.down_proj in its decoder layers")
        how = "mlp_bias" if mt == "llama" else f"{mt}->llama mlp_bias"
        return how, arch.layers_path + ".{i}.mlp.down_proj"
    if mt == "gpt2":
        if type(layer0).__name__ != "GPT2Block" or getattr(layer0.mlp.c_proj, "bias", None) is None:
            raise NotBakeable("cannot bake into this GPT-2 variant: no c_proj bias in the block's MLP")
        return "existing c_proj bias", arch.layers_path + ".{i}.mlp.c_proj"
    raise NotBakeable(f"cannot bake residual steering into {mt!r}: veracity only knows where the residual "
                      "constant goes in Llama-style layers (llama, mistral, qwen2) and GPT-2; "
                      "use apply_residual (hooks) instead")


def _baked_config(cfg, model_type: str):
    cfg = copy.deepcopy(cfg)
    if model_type == "gpt2":
        return cfg
    if model_type == "llama":
        cfg.mlp_bias = True  # also creates gate/up biases: written as zeros
        return cfg
    from transformers import LlamaConfig

    from .bake import _as_llama_layer

    new = _as_llama_layer(cfg, LlamaConfig, "LlamaForCausalLM", attention_bias=(model_type == "qwen2"))
    new.mlp_bias = True
    return new


@torch.no_grad()
def baked_residual_state_dict(target, steer: ResidualSteer) -> tuple[dict[str, torch.Tensor], object, str]:
    """(state dict of the baked model, its config, how). Unchanged tensors are shared with the original
    (no copy); new biases are zeros except the steered layers' MLP output bias, which gains alpha * v_l."""
    from transformers import AutoModelForCausalLM

    model, arch = _unpack(target)
    steer.check_model(arch, _fingerprint_of(target, steer))
    how, template = bake_plan(model, arch)
    cfg = _baked_config(model.config, arch.model_type)
    sd = dict(model.state_dict())
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(cfg)
    wdt = next(model.parameters()).dtype
    dev = next(model.parameters()).device
    new_sd: dict[str, torch.Tensor] = {}
    for k, t in skeleton.state_dict().items():
        shape = tuple(t.shape)
        if k in sd:
            if tuple(sd[k].shape) != shape:
                raise NotBakeable(f"bake: {k} has shape {tuple(sd[k].shape)}, the baked config wants {shape}")
            new_sd[k] = sd[k]
        elif k.endswith(".bias"):
            new_sd[k] = torch.zeros(shape, dtype=wdt, device=dev)
        else:
            raise NotBakeable(f"bake: the baked config adds a non-bias parameter {k}")
    lost = [k for k in sd if k not in new_sd and not k.endswith("inv_freq")]
    if lost:
        raise NotBakeable(f"bake: the baked config lost parameters {lost[:3]}")
    for layer, s in steer.shifts().items():
        key = template.format(i=layer) + ".bias"
        if key not in new_sd:
            raise NotBakeable(f"bake: no {key} in the baked model")
        b = new_sd[key]
        new_sd[key] = (b.double() + s.to(b.device, torch.float64)).to(b.dtype)
    return new_sd, cfg, how


def bake_residual(target, steer: ResidualSteer, out: str | Path, tokenizer=None, *, overwrite: bool = False,
                  verify: bool = False) -> Path:
    """Write a Hugging Face folder that `AutoModelForCausalLM.from_pretrained(out)` loads as the steered
    model, at every position (a bias is constant: it equals `apply_residual(..., positions="all")`), plus
    `veracity_steer.{json,safetensors}` and `veracity_bake.json`. Raises `NotBakeable` before writing
    anything when the architecture has no exact place for the constant. Through the writer guard, as
    `veracity.steer.bake.bake` (staged, renamed into place only when complete and, with `verify`, checked)."""
    from ..outputs import Output
    from .bake import BakeFailed, write_model_folder

    dest = Output(out, "baked-model", overwrite=overwrite)
    model, arch = _unpack(target)
    tok = tokenizer if tokenizer is not None else getattr(target, "tokenizer", None)
    sd, cfg, how = baked_residual_state_dict(target, steer)
    with dest.writing() as folder:
        write_model_folder(model, tok, sd, cfg, folder)
        steer.write(folder / "veracity_steer")
        meta = {"kind": "residual", "how": how, "method": steer.method, "layers": steer.layers,
                "alpha": steer.alpha, "semantics": "every position (a bias), prompt included"}
        if verify:
            try:
                meta["max_abs_logit_diff_vs_hooks"] = verify_residual_baked(target, steer, folder)  # exact: 1e-4
            except BakeFailed as e:
                raise BakeFailed(f"{e}: the bake is refused, nothing was written to {dest.path}") from None
        write_json_atomic(folder / "veracity_bake.json", meta)
    return dest.path


@torch.no_grad()
def verify_residual_baked(target, steer: ResidualSteer, folder: str | Path, texts: list[str] | None = None,
                          atol: float = 1e-4) -> float:
    """Max |logit difference| between the folder loaded with plain `from_pretrained` (fp32) and the hooks
    at every position; `BakeFailed` above `atol` or on any non-finite logit."""
    from transformers import AutoModelForCausalLM

    from .bake import check_tolerance, compare_logits

    model, arch = _unpack(target)
    tok = getattr(target, "tokenizer", None)
    baked = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    texts = texts or ["Q: What happens if you crack your knuckles a lot? A: Nothing in particular happens."]
    dev = next(model.parameters()).device
    baked.to(dev)
    worst = 0.0
    for t in texts:
        ids = tok(t, return_tensors="pt")["input_ids"].to(dev) if tok is not None else torch.tensor([[1, 2, 3]], device=dev)
        with apply_residual((model, arch), steer, positions="all"):
            a = model(input_ids=ids).logits.float()
        b = baked(input_ids=ids).logits.float()
        worst = max(worst, compare_logits(a, b, folder, "the hooks"))
    return check_tolerance(worst, atol, folder, "the hooks")


def fit_residual_from_store(store, method: str = "caa", layers: Sequence[int] | None = None,
                            normalize: str = "raw", seed: int = 0, alpha: float = 1.0) -> ResidualSteer:
    """A residual steer fitted on any labelled capture store with ``resid`` sites at the last token
    (true/false statements, Geometry of Truth, TruthfulQA answers, sycophancy pairs): `caa` from the class
    means, `lat` from the first principal component of paired differences (a true and a false row of the
    same group: the store's groups, else all rows, paired by `pair_by_group` with `seed`). `store`: an
    `Activations` or its path; `layers`: absolute or negative decoder layers (default: every captured one)."""
    from ..capture import Activations

    acts = Activations.open(store) if not hasattr(store, "stack") else store
    if acts.labels is None:
        raise ValueError(f"{acts.root or 'the store'} has no labels; capture a labelled data set")
    captured = sorted({int(s.split(".")[1]) for s in acts.sites if s.startswith("resid.")})
    if not captured:
        raise ValueError("the store has no resid.* sites; capture with --sites resid")
    n_layers = acts.n_layers
    want = captured if layers is None else [l + n_layers if l < 0 else int(l) for l in layers]
    missing = [l for l in want if l not in captured]
    if missing:
        raise ValueError(f"layers {missing} are not in the store (captured: {captured})")
    X = acts.stack("resid", want).float()  # [N, len(want), D]
    y = torch.as_tensor(np.asarray(acts.labels)).long()
    prov = {"store": str(acts.root or ""), "dataset": (acts.manifest or {}).get("dataset", {}).get("name"),
            "model_fingerprint": (acts.manifest or {}).get("model", {}).get("fingerprint"), "seed": int(seed)}
    if method == "caa":
        return fit_diff_means(X, y, normalize=normalize, act_layers=want, alpha=alpha, provenance=prov)
    if method == "lat":
        groups = list(acts.groups) if acts.groups is not None else ["all"] * len(y)
        pos, neg = pair_by_group(y, groups, seed=seed)
        return fit_lat(X[pos], X[neg], seed=seed, normalize=normalize, act_layers=want, alpha=alpha, provenance=prov)
    raise ValueError(f"method must be caa or lat, got {method!r}")
