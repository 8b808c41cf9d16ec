"""TTPD, "Training of Truth and Polarity Direction" (Bürger, Hamprecht & Nadler, "Truth is Universal",
NeurIPS 2024).

Model of the activations (labels tau = +-1 true/false, polarity p = +1 affirmative / -1 negated):
    a = mu_(topic, polarity) + tau * t_G + tau * p * t_P + noise.
A probe trained on affirmative statements alone learns t_G + t_P, which flips sign on negated ones
(the failure the paper explains); t_G alone generalises across polarities.

The method, following the authors' reference code (sciai-lab/Truth_is_Universal, `probes.py`:
`learn_truth_directions`, `learn_polarity_direction`, `TTPD.from_data`; centring in `utils.py`:
`collect_training_data`), re-implemented here in torch and batched over groups (layers):
1. centre the activations per data set, i.e. per (topic, polarity) cell (the reference centres each
   affirmative and each negated data set file separately);
2. ordinary least squares of the centred activations on the design [tau, tau * p] (no intercept:
   the data are centred): rows of (A^T A)^-1 A^T X are t_G and t_P;
3. a polarity direction: logistic regression of the raw activations on the polarity;
4. a logistic regression on the 2-D projections [x . t_G, x . p_dir] predicts the label; the
   polarity feature lets the threshold on t_G depend on polarity.
Differences from the reference, and what they change (checked against sciai-lab/Truth_is_Universal's own
code on the same smollm2 activations):
- The truth direction t_G (steps 1-2) is the reference's: |cos| 1.0, and held-out accuracies agree
  within noise.
- The reference's logistic regressions are unpenalised (sklearn `penalty=None`); here both are
  veracity's `LogisticProbe` with L2 strength `C` on standardised features. The two would agree on
  non-separable data, but the polarity data are separable (the reference reaches training accuracy 1.000
  in every fit), where an unpenalised fit has no finite optimum and stops wherever its solver does. So
  the polarity direction (step 3) differs from the reference's: cosine 0.75-0.85. The weakest penalty
  allowed (the largest `C`) does not bring it closer but moves it further away, because the features are
  standardised first: a nearly unpenalised fit then approaches a separating direction in standardised
  coordinates, not the one the reference's solver stops at in raw coordinates.
- The projections use unit vectors (the reference projects on the raw OLS t_G; an unpenalised 2-D
  logistic regression is invariant to that scale).
- The reference's later variant that multiplies the t_G projection by sqrt(token count) is not
  implemented.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import BatchedProbe, as_batched, as_labels
from .logistic import LogisticProbe


def as_polarity(polarity: Any, n: int, device: torch.device) -> torch.Tensor:
    """Polarity as a float tensor of +-1 [N]; missing, single-valued or other values are errors."""
    if polarity is None:
        raise ValueError("TTPD needs the polarity of every training statement (+1 affirmative, -1 negated): "
                         "fit(X, y, polarity=...)")
    p = torch.as_tensor(np.asarray(polarity.cpu() if isinstance(polarity, torch.Tensor) else polarity)).flatten()
    if p.numel() != n:
        raise ValueError(f"{p.numel()} polarities for {n} rows")
    if not bool(((p == 1) | (p == -1)).all()):
        raise ValueError("polarity must be +1 (affirmative) or -1 (negated)")
    if p.min() == p.max():
        raise ValueError("TTPD needs both affirmative (+1) and negated (-1) statements in the training set; "
                         f"all {n} have polarity {int(p[0])}")
    return p.to(device).float()


def centre_per_cell(X: torch.Tensor, polarity: torch.Tensor, topics: Any = None) -> torch.Tensor:
    """X [N, G, D] minus the mean of its (topic, polarity) cell (every row one topic when `topics` is None)."""
    N = X.shape[0]
    if topics is None:
        codes = np.zeros(N, dtype=np.int64)
    else:
        t = list(topics.tolist() if isinstance(topics, (torch.Tensor, np.ndarray)) else topics)
        if len(t) != N:
            raise ValueError(f"{len(t)} topics for {N} rows")
        _, codes = np.unique(np.asarray([str(v) for v in t]), return_inverse=True)
    cell = torch.as_tensor(codes, device=X.device) * 2 + (polarity > 0).long()
    out = X.clone()
    for c in torch.unique(cell).tolist():
        m = cell == c
        out[m] -= X[m].mean(0)
    return out


def truth_directions(Xc: torch.Tensor, tau: torch.Tensor, polarity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(t_G, t_P), each [G, D]: OLS of centred Xc [N, G, D] on the design [tau, tau * p] (tau, p = +-1)."""
    A = torch.stack([tau, tau * polarity], 1).to(Xc.dtype)  # [N, 2]
    AtA = A.T @ A
    if float(torch.linalg.det(AtA).abs()) < 1e-9 * float(AtA.abs().max()) ** 2:
        raise ValueError("TTPD: truth and truth*polarity are collinear in the training set (every true statement "
                         "has the same polarity); it needs true and false statements of both polarities")
    sol = torch.einsum("kn,ngd->kgd", torch.linalg.solve(AtA, A.T), Xc)
    return sol[0], sol[1]


class TTPDProbe(BatchedProbe):
    """`fit(X, y, polarity, topics=None)`; X [N, D] or [N, G, D] (one probe per group), y 0/1 (1 = true),
    polarity +1/-1 (required, both values), topics: data set / topic of each row (centring cells).

    Parameters: `C` L2 strength of the final 2-D logistic regression, `polarity_C` that of the polarity
    direction's logistic regression. Learned: `t_g_`, `t_p_` (OLS directions, raw scale), `direction_`
    (unit t_G, what transfers), `polarity_direction_` (unit), `coef_2d_` / `intercept_` (the 2-D
    classifier on [x . t_G_unit, x . polarity_unit]) and `coef_` (that classifier as one vector in
    activation space: predictions are X @ coef_ + intercept_ > 0)."""

    def __init__(self, C: float = 1.0, polarity_C: float = 1.0):
        self.C = C
        self.polarity_C = polarity_C

    def fit(self, X: Any, y: Any, polarity: Any = None, topics: Any = None) -> "TTPDProbe":
        """Fit TTPD: the general truth direction t_G and the polarity direction from rows of both polarities, then the
        2-D classifier on the two projections."""
        Xb, self._single = as_batched(X)
        N, G, D = Xb.shape
        self._device = Xb.device
        yt = as_labels(y, N, Xb.device)
        p = as_polarity(polarity, N, Xb.device)
        tau = 2 * yt - 1
        Xc = centre_per_cell(Xb, p, topics)
        t_g, t_p = truth_directions(Xc, tau, p)
        u_g = F.normalize(t_g, dim=-1)
        pol = LogisticProbe(C=self.polarity_C).fit(Xb, (p > 0).long())
        u_p = F.normalize(pol.coef_.reshape(G, D).to(Xb.dtype), dim=-1)
        feats = torch.stack([torch.einsum("ngd,gd->ng", Xb, u_g), torch.einsum("ngd,gd->ng", Xb, u_p)], -1)
        # [N, G, 2] -> one 2-D classifier per group, in float64: two features cost nothing, and in float32 the
        # weakly identified polarity weight stops where the objective's rounding hides the rest (the same data
        # as one group or as one of three gave 0.193 and 0.185; float64 gives 0.1845 both ways)
        clf = LogisticProbe(C=self.C).fit(feats.double(), yt.long())
        w = clf.coef_.reshape(G, 2).to(Xb.dtype)
        self.t_g_, self.t_p_ = self._out(t_g), self._out(t_p)
        self.direction_ = self._out(u_g)
        self.polarity_direction_ = self._out(u_p)
        self.coef_2d_ = self._out(w)
        self.coef_ = self._out(w[:, :1] * u_g + w[:, 1:] * u_p)
        self.intercept_ = self._out(clf.intercept_.reshape(G).to(Xb.dtype))
        return self

    def decision_function(self, X: Any) -> torch.Tensor:
        """The logit of the 2-D classifier on the projections onto t_G and the polarity direction, per row (and
        group)."""
        Xb = self._in(X)
        G = Xb.shape[1]
        z = torch.einsum("ngd,gd->ng", Xb, self.coef_.reshape(G, -1).to(Xb.dtype)) + self.intercept_.reshape(G).to(Xb.dtype)
        return z.squeeze(1) if self._single else z

    def truth_projection(self, X: Any) -> torch.Tensor:
        """x . unit t_G: the polarity-independent truth score ([N] or [N, G])."""
        Xb = self._in(X)
        z = torch.einsum("ngd,gd->ng", Xb, self.direction_.reshape(Xb.shape[1], -1).to(Xb.dtype))
        return z.squeeze(1) if self._single else z
