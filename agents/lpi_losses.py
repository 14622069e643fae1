"""Losses of Local Policy Improvement (Liang & Vlassis) and its baselines, as pure functions.

Equation numbers refer to Liang & Vlassis, "Local Policy Improvement for Recommender Systems".
Every objective of the paper is a *weighted cross-entropy* ``(1/n) Σ_i w_i log π(a_i | x_i)``
that is maximised; here we minimise its negation ``mean_i w_i · CE_i`` with the weights treated
as constants (no gradient flows through them, §3.3 "we cut the gradient and treat the weights as
constant"). LPI^RL adds λ times the TD loss of its auxiliary Q head (Eqs. 10–11, :func:`td_loss`).

=========  ==========================================================  ==========
objective  weight ``w_i``                                               equation
=========  ==========================================================  ==========
L_μ        ``r_i``                                                      Eq. 6
PG         reward-to-go ``G_i``                                         §4.2
IPS        ``min(π(a_i|x_i) / μ̂(a_i|x_i), c) · r_i``                    Eq. 9
IPS-PG     ``min(π(a_i|x_i) / μ̂(a_i|x_i), c) · G_i``                    §4.2
LPI        ``exp(Â(x_i, a_i) / β)`` (shifted, batch-normalised)          Eq. 8
=========  ==========================================================  ==========

Shapes: ``B`` = batch, ``n`` = items.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def weighted_ce(logits: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_b w_b · CE_b`` = the negated weighted log-likelihood of Eqs. 6, 8, 9.

    ``weights=None`` is plain cross-entropy (μ̂, "no reward"). logits ``[B, n]``, actions int64
    ``[B]``, weights ``[B]`` (detached here) → scalar."""
    ce = F.cross_entropy(logits, actions, reduction="none")
    if weights is None:
        return ce.mean()
    if weights.shape != ce.shape:
        raise ValueError(f"weighted_ce: weights have shape {tuple(weights.shape)}, expected {tuple(ce.shape)}")
    return (weights.detach() * ce).mean()


def expected_under(values: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``E_{a∼p}[v(x, a)] = Σ_a p(a|x) v(x, a)`` per row. values, probs ``[B, n]`` → ``[B]``."""
    if values.shape != probs.shape:
        raise ValueError(f"expected_under: values {tuple(values.shape)} and probs {tuple(probs.shape)} differ")
    return (values * probs).sum(dim=1)


def analytic_advantage(values_at_action: torch.Tensor, values: torch.Tensor, mu_probs: torch.Tensor) -> torch.Tensor:
    """The advantage of the logged action relative to μ̂, computed analytically (§4.2):

    ``A(x, a) = v(x, a) − E_{a'∼μ̂(·|x)}[v(x, a')]``

    where ``v`` is the auxiliary head: ``Q̂`` for LPI^RL, or the reward model ``r̂`` for LPI^CB
    (``Â_μ = r − E_μ̂[r̂]``, the direct method of Eq. 8; pass the logged reward as
    ``values_at_action``). values_at_action ``[B]``, values / mu_probs ``[B, n]`` → ``[B]``
    (detached: the weights are constants)."""
    if values_at_action.shape != values.shape[:1]:
        raise ValueError(f"analytic_advantage: values_at_action {tuple(values_at_action.shape)} vs values {tuple(values.shape)}")
    return (values_at_action - expected_under(values, mu_probs)).detach()


def lpi_log_weights(advantage: torch.Tensor, beta: float) -> torch.Tensor:
    """``log w_i`` of the self-normalised LPI weights: ``Â_i/β − logsumexp_j(Â_j/β) + log B``
    (float64, detached; see :func:`lpi_weights`). advantage ``[B]`` → ``[B]``."""
    if not beta > 0:
        raise ValueError(f"lpi_log_weights: beta must be > 0, got {beta!r}")
    if advantage.ndim != 1:
        raise ValueError(f"lpi_log_weights: advantage must be [B], got shape {tuple(advantage.shape)}")
    z = advantage.detach().double() / beta
    return z - torch.logsumexp(z, dim=0) + math.log(z.numel())


def lpi_weights(advantage: torch.Tensor, beta: float) -> torch.Tensor:
    """The weights ``exp(Â_i / β)`` of Eq. 8, shifted and normalised over the batch to mean 1:

    ``w_i = B · exp((Â_i − c)/β) / Σ_j exp((Â_j − c)/β) = B · softmax_j(Â_j/β)_i``.

    Why this is Eq. 8. The paper's shift (§3.1): ``π ∝ μ exp(A/β) ∝ μ exp((A − g)/β)`` for any
    ``g``. Take a constant ``g = c``: each raw weight is multiplied by the same ``exp(−c/β)``, which
    cancels between ``Σ_i w_i log π_i`` and ``Σ_j w_j``; so the *normalised* objective
    ``Σ_i exp(Â_i/β) log π_i / Σ_j exp(Â_j/β)`` is the same number for every ``c``, and computing
    it with ``c = logsumexp`` (or max) keeps every exponent ≤ log B: no overflow at any β, and the
    ratios ``w_i / w_j = exp((Â_i − Â_j)/β)`` are exact (a cap on the exponent would flatten them
    into a 0/1 filter for small β). The normalised objective is Eq. 8's ``(1/n) Σ exp(Â_i/β) log π_i``
    divided by the batch's mean raw weight, a positive constant without gradient (the weights are
    constants, §3.3): each batch's gradient points where Eq. 8's does, only its length differs, and
    the maximiser ``π ∝ μ̂ exp(Â/β)`` is unchanged. β → ∞ gives ``w = 1`` (plain CE, μ̂); β → 0
    puts all the weight on the batch's best rows. Weights that underflow float32 are 0, never
    NaN. advantage ``[B]`` → ``[B]`` in its dtype (detached)."""
    return torch.exp(lpi_log_weights(advantage, beta)).to(advantage.dtype)


def td_loss(q_sa: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L̂_TD = (1/m) Σ_t (Q(x_t, a_t) − y_t)²`` of Eq. 11 (no ½: λ of Eq. 10 weighs exactly this).
    The target ``y`` is a constant. q_sa, target ``[B]`` → scalar."""
    if q_sa.shape != target.shape:
        raise ValueError(f"td_loss: q_sa {tuple(q_sa.shape)} and target {tuple(target.shape)} differ")
    return ((q_sa - target.detach()) ** 2).mean()


def importance_ratio(pi_a: torch.Tensor, mu_a: torch.Tensor, clip: float | None = 30.0) -> torch.Tensor:
    """``min(π(a|x) / μ̂(a|x), clip)`` (Eq. 9 with weight clipping at 30, as the paper; Chen et al.)

    Detached: as in Chen et al.'s off-policy REINFORCE the ratio multiplies ``∇ log π`` and is not
    differentiated. μ̂ is floored at 1e-12 against division by zero. pi_a, mu_a ``[B]`` → ``[B]``."""
    ratio = pi_a.detach() / mu_a.detach().clamp(min=1e-12)
    if clip is not None:
        if not clip > 0:
            raise ValueError(f"importance_ratio: clip must be > 0, got {clip!r}")
        ratio = ratio.clamp(max=clip)
    return ratio


def ips_weights(pi_a: torch.Tensor, mu_a: torch.Tensor, returns: torch.Tensor, clip: float | None = 30.0) -> torch.Tensor:
    """IPS (Eq. 9) / IPS-PG weights: ``min(π/μ̂, clip) · r`` with ``r`` the immediate reward (IPS)
    or the reward-to-go (IPS-PG). All ``[B]`` → ``[B]`` (detached)."""
    return importance_ratio(pi_a, mu_a, clip) * returns.detach()


def lpi_objective(
    logits: torch.Tensor, actions: torch.Tensor, advantage: torch.Tensor, beta: float, td: torch.Tensor | None = None,
    lam: float = 1.0,
) -> torch.Tensor:
    """The loss minimised by LPI: ``−(L̂_LPI − λ · L̂_TD)`` of Eq. 10 with L̂_LPI of Eq. 8 (weights
    of :func:`lpi_weights`), i.e. ``mean_b w_b CE_b + λ · td``. ``td=None`` drops the TD part."""
    loss = weighted_ce(logits, actions, lpi_weights(advantage, beta))
    return loss if td is None else loss + lam * td


__all__ = [
    "analytic_advantage", "expected_under", "importance_ratio", "ips_weights", "lpi_log_weights", "lpi_objective",
    "lpi_weights", "td_loss", "weighted_ce",
]  # fmt: skip
