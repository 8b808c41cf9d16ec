"""LoReFT (Wu et al. 2024, "ReFT: Representation Finetuning for Language Models") through the maintained `pyreft`
package, not re-implemented: its `LoreftIntervention` edits a layer's output h in a rank-r subspace,

    LoReFT(h) = h + R^T (W h + b - R h)        (R [r, D] with orthonormal rows, W [r, D], b [r])

i.e. h's coordinates along R's rows are replaced by the learned affine map W h + b. veracity hooks the package's
module into the output of one decoder layer (`layerwise.LayerwiseSteer`'s hooks: every position, or the last token)
and scales the edit by the steer's alpha: h + alpha (LoReFT(h) - h), so alpha 1 is LoReFT as trained and alpha 0
the plain model.

Training (`train_loreft`): the package's ReFT objective for causal LMs, the language-model loss of the training
fold's best answers given their prompt (`methods.trainers.sft_examples`, the baseline prompt), in float32, with
the intervention at every position as it is when evaluated (pyreft's examples intervene on the first and last
prompt tokens only; a steer here is hooked at every position, so it is trained so). Only the intervention's
parameters train (AdamW; gradients by `torch.autograd.grad`, the model is never touched); its initial rotation is
drawn from a seeded generator. Settings: pyreft's README example (rank 4, lr 4e-3, no weight decay, dropout 0)
with the steps capped for a CPU as BiPO's (200 steps of 4 examples).

Not bakeable (h's subspace coordinates are replaced by a function of h; `layerwise`). Saved as the layerwise
steer format (R, W, b per layer); loading goes through the package's own `load_state_dict`.

`pyreft` 0.1.0 pins transformers==4.45.1 (below Gemma-3's 4.50 and veracity's 5.x), so it is installed with
``pip install --no-deps pyreft==0.1.0 pyvene==0.1.8`` plus ``pip install datasets`` (what `import pyreft`
needs); `make install-test` does that. Only its intervention module is used, which works with transformers 5."""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator, Sequence

import torch

from ..constraints import Checked, Count, Interval, Seed
from .layerwise import LayerwiseSteer
from .residual.apply import mapped_layer_output

METHODS = ("loreft",)
INSTALL = "pip install --no-deps pyreft==0.1.0 pyvene==0.1.8 && pip install datasets"


def pyreft_module():
    """The `pyreft` package (imported quietly: pyvene prints a notice about an optional backend); a missing
    package is one `BadInput` saying how to install it."""
    from ..validation import BadInput

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import pyreft
    except ImportError as e:
        raise BadInput(f"the loreft steer needs the pyreft package ({e}); install it with: {INSTALL} (its own "
                       "transformers==4.45.1 pin would downgrade transformers)") from None
    return pyreft


def new_intervention(hidden_size: int, rank: int, seed: int = 0):
    """A fresh `pyreft.LoreftIntervention` (float32, no dropout) whose random orthogonal start is drawn under
    `seed` without touching the global generator's state."""
    pyreft = pyreft_module()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return pyreft.LoreftIntervention(embed_dim=int(hidden_size), low_rank_dimension=int(rank),
                                         dtype=torch.float32, dropout=0.0)


def intervention_from(rotate: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """The package's intervention holding these tensors (R^T [D, r], W [r, D], b [r]), set through its own
    `load_state_dict`."""
    m = new_intervention(rotate.shape[0], rotate.shape[1])
    with torch.random.fork_rng(devices=[]):  # its load_state_dict draws a fresh layer before overwriting it
        m.load_state_dict({"weight": weight.float(), "bias": bias.float(), "rotate_layer": rotate.float()})
    return m.eval()


def intervention_tensors(m) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(R^T [D, r], W [r, D], b [r]) float32 of a `LoreftIntervention`, detached, on the CPU."""
    sd = m.state_dict()
    return (sd["rotate_layer"].detach().float().cpu().clone(), sd["weight"].detach().float().cpu().clone(),
            sd["bias"].detach().float().cpu().clone())


@dataclass
class LoreftSteer(LayerwiseSteer):
    """layers: decoder layers; rotate [L, D, r] (R^T: orthonormal columns), weight [L, r, D], bias [L, r]: each
    layer's `pyreft.LoreftIntervention`; alpha scales its edit (1: as trained, 0: none)."""

    layers: list[int]
    rotate: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    alpha: float = 1.0
    method: str = "loreft"
    provenance: dict = field(default_factory=dict)

    SHAPES = {"rotate": ("L", "D", "rank"), "weight": ("L", "rank", "D"), "bias": ("L", "rank")}
    METHODS = METHODS

    def __post_init__(self) -> None:
        self.layers = self.checked_layers()
        L = len(self.layers)
        self.rotate = torch.as_tensor(self.rotate).detach().float().reshape(L, *self.rotate.shape[-2:])
        D, r = self.rotate.shape[1:]
        self.weight = torch.as_tensor(self.weight).detach().float().reshape(L, r, D)
        self.bias = torch.as_tensor(self.bias).detach().float().reshape(L, r)
        gram = self.rotate.double().transpose(1, 2) @ self.rotate.double()
        if not bool(((gram - torch.eye(r, dtype=torch.float64)).abs() < 1e-4).all()):
            raise ValueError("the rotation's columns are not orthonormal")
        self.alpha = float(self.alpha)
        self._modules: dict = {}

    @property
    def hidden_size(self) -> int:
        """The model width the interventions were trained for."""
        return int(self.rotate.shape[1])

    @property
    def rank(self) -> int:
        """The subspace's dimension r."""
        return int(self.rotate.shape[2])

    def module(self, i: int, device) -> torch.nn.Module:
        """Layer `layers[i]`'s `pyreft.LoreftIntervention` on `device` (built once per device)."""
        key = (i, str(device))
        if key not in self._modules:
            self._modules[key] = intervention_from(self.rotate[i], self.weight[i], self.bias[i]).to(device)
        return self._modules[key]

    def transform(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """h + alpha (LoReFT(h) - h), LoReFT being the package's module."""
        with torch.no_grad():
            edited = self.module(i, h.device)(h)
        return h + self.alpha * (edited - h)

    @contextlib.contextmanager
    def hooks(self, model, arch, positions: str) -> Iterator[None]:
        """The layerwise hooks with each orthogonal parametrisation computed once for the block, not per call."""
        from torch.nn.utils import parametrize

        dev = next(model.parameters()).device
        for i in range(len(self.layers)):
            self.module(i, dev)
        with parametrize.cached(), super().hooks(model, arch, positions):
            yield


@dataclass
class LoreftConfig(Checked):
    """The intervention and its optimiser (module docstring: pyreft's README values, the step cap for a CPU)."""

    _constraints = {"rank": [Count()], "lr": [Interval(float, 0, None, closed="neither")],
                    "weight_decay": [Interval(float, 0, None)], "batch_size": [Count()], "epochs": [Count()],
                    "max_steps": [None, Count()], "max_length": [Count(2)], "seed": [Seed()]}

    rank: int = 4
    lr: float = 4e-3
    weight_decay: float = 0.0
    batch_size: int = 4
    epochs: int = 20
    max_steps: int | None = 200
    max_length: int = 256
    seed: int = 0


def answer_loss(lm, batch: dict) -> torch.Tensor:
    """Mean float32 cross-entropy of the answer tokens (`labels` != -100) of a `finetune.sft.pair_batch`
    (`finetune.train.lm_loss`: the SFT trainer's loss)."""
    from ..finetune.train import lm_loss
    return lm_loss(lm.model, batch)


def train_loreft(lm, examples: Sequence, layer: int, config: LoreftConfig | None = None, alpha: float = 1.0,
                 provenance: dict | None = None) -> LoreftSteer:
    """A LoReFT intervention at decoder layer `layer` trained on `examples` (objects with prompt, answer:
    `finetune.sft.SFTExample`), as a `LoreftSteer`. Provenance: config, layer, n_examples, steps, the loss of
    every step, train_seconds."""
    from ..finetune.sft import sft_batches

    cfg = config or LoreftConfig()
    if not examples:
        raise ValueError("LoReFT needs at least one (prompt, answer) example")
    if not 0 <= layer < lm.arch.n_layers:
        raise ValueError(f"layer {layer} out of range for a {lm.arch.n_layers}-layer model")
    t0 = time.time()
    dev = next(lm.model.parameters()).device
    module = new_intervention(lm.arch.hidden_size, cfg.rank, cfg.seed).to(dev).train()
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    with mapped_layer_output(lm, layer, lambda h: module(h.float()).to(h.dtype)):  # in the autograd graph
        for step, batch in enumerate(sft_batches(lm.tokenizer, examples, cfg.batch_size, cfg.max_length,
                                                 cfg.epochs, cfg.seed)):
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
            loss = answer_loss(lm, batch)
            grads = torch.autograd.grad(loss, params)
            opt.zero_grad(set_to_none=True)
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            losses.append(float(loss.detach()))
    rotate, weight, bias = intervention_tensors(module.eval())
    prov = {"method": "loreft", "fit": "pyreft.LoreftIntervention", "config": asdict(cfg), "layer": int(layer),
            "n_examples": len(examples), "steps": len(losses), "losses": losses,
            "train_seconds": time.time() - t0, **(provenance or {})}
    return LoreftSteer([layer], rotate[None], weight[None], bias[None], alpha=alpha, provenance=prov)
