"""PPO pieces for Next-K generation (GPTRec-PPO paper, Appendix A.3), CleanRL-style functions.

A rollout is a batch of ``B`` histories with ``K`` generated items each: ``rewards [B, K]``
(per-position terms whose sum is the list metric, from :mod:`recgym.metrics`), ``values [B, K]``
(``V(h, g^{(i)})`` before choosing item ``i+1``) and ``log π_old [B, K]``. The episode ends after
``K`` items, so ``V`` after the last item is 0.
"""

from __future__ import annotations

import torch


def discounted_returns(rewards: torch.Tensor, discount: float) -> torch.Tensor:
    """``G_i = Σ_{j>=i} γ^{j-i} r_j`` per row (Eq. 7's target), ``[B, K]``."""
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for i in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, i] + discount * running
        out[:, i] = running
    return out


def gae(rewards: torch.Tensor, values: torch.Tensor, discount: float = 0.99, lam: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a ``K``-step episode (Eqs. 9-10).

    ``δ_i = r_i + γ V_{i+1} − V_i`` (``V_K = 0``), ``A_i = Σ_l (γλ)^l δ_{i+l}``.

    :param rewards, values: ``[B, K]``.
    :return: ``(advantages [B, K], λ-returns A + V [B, K])``.
    """
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    deltas = rewards + discount * next_values - values
    adv = torch.empty_like(deltas)
    running = torch.zeros_like(deltas[:, 0])
    for i in range(deltas.shape[1] - 1, -1, -1):
        running = deltas[:, i] + discount * lam * running
        adv[:, i] = running
    return adv, adv + values


def clipped_surrogate_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                           clip: float = 0.2) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's CLIP objective as a loss (Eq. 12, averaged over positions and rows):
    ``−mean(min(ρ A, clip(ρ, 1−ε, 1+ε) A))``, ``ρ = exp(logp − logp_old)``.

    Where the ratio has left the clip range in the direction the advantage favours, the clipped
    term is the minimum and is constant: its gradient is 0.
    :return: the loss and ``{"clip_frac", "approx_kl"}``.
    """
    ratio = torch.exp(logp - logp_old)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    loss = -torch.minimum(unclipped, clipped).mean()
    with torch.no_grad():
        clip_frac = float(((ratio - 1.0).abs() > clip).float().mean())
        approx_kl = float(((ratio - 1.0) - (logp - logp_old)).mean())  # Schulman's k3 estimator
    return loss, {"clip_frac": clip_frac, "approx_kl": approx_kl}


def masked_entropy(logp: torch.Tensor) -> torch.Tensor:
    """Entropy ``H = −Σ_a π(a) log π(a)`` of each distribution, ``[...]``, from log-probabilities
    ``[..., n]`` where masked actions hold ``−inf`` (they contribute 0, with a zero gradient)."""
    finite = torch.isfinite(logp)
    safe = torch.where(finite, logp, torch.zeros_like(logp))
    return -(safe.exp() * safe).masked_fill(~finite, 0.0).sum(-1)


def value_loss(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 8: mean squared error of ``V`` against its targets."""
    return 0.5 * (values - targets).pow(2).mean()


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Batch advantage normalisation (zero mean, unit std) as in SB3 / CleanRL."""
    return (x - x.mean()) / (x.std() + eps) if x.numel() > 1 else x - x.mean()


__all__ = ["clipped_surrogate_loss", "discounted_returns", "gae", "masked_entropy", "normalize", "value_loss"]
