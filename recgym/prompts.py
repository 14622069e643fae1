"""Prompt generation for Prompt-based RL (PRL, Xin et al. SIGIR'22, §3.1.1, Algorithm 1).

A PRL prompt is the tuple ``{R_t, x_{1:t}, t}`` and its label the next item ``x_{t+1}``:

* ``R_t`` — the return-to-go of the event (Eq. 7). :class:`recgym.data.Transitions` already
  carries it as ``rtg`` (O(|τ|) per session, vectorised over sessions); this module reuses it.
  Eq. 7 as printed discounts by the *absolute* step (``λ^{t'}``, whence Algorithm 1's
  ``R_{t+1} = R_t − λ^t r_t``); ``rtg`` discounts relative to ``t`` (``λ^{t'−t}``). The two
  coincide for the default λ = 1 (the authors' code) and differ by the factor ``λ^t`` otherwise;
  recgym uses the relative form (the usual return-to-go, and what ``Transitions`` carries).
* ``x_{1:t}`` — the right-padded window of the last ``state_len`` items (``Transitions.state``).
* ``t`` — the step index of the event in its session, clipped to ``max_step`` (steps past it share
  one embedding; see :func:`prompt_steps`). :func:`generate_prompts` defaults to the window
  (``state_len``); PRL passes its own ``max_step``.

:class:`ReturnStats` keeps the per-step mean return ``R̄_t`` with the model (buffers, so they live
in the state dict and load with ``torch.load(weights_only=True)``); PRL needs it for the inference
prompt ``R̃_t = N(μ, ε²) · R̄_t`` (Eq. 16) and, only with the authors' normalisation option, to
divide ``R_t`` by ``R̄_t`` during training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recgym.data import Transitions

__all__ = ["Prompts", "ReturnStats", "generate_prompts", "prompt_steps", "return_to_go_quadratic", "step_means"]


def prompt_steps(t: np.ndarray | torch.Tensor, max_step: int) -> np.ndarray | torch.Tensor:
    """Step index of the prompt: ``min(t, max_step)`` (one embedding for "max_step or later")."""
    if isinstance(t, torch.Tensor):
        return t.clamp(min=0, max=max_step)
    return np.clip(np.asarray(t, dtype=np.int64), 0, max_step)


@dataclass(frozen=True)
class Prompts:
    """The prompt-based training set ``D_p`` of Algorithm 1 (one row per logged event).

    returns float32 [N] (``R_t``), states int32 [N, L], lengths int64 [N], steps int64 [N]
    (clipped to ``max_step``), actions int64 [N] (``x_{t+1}``), rewards float32 [N] (``r_t``).
    """

    returns: np.ndarray
    states: np.ndarray
    lengths: np.ndarray
    steps: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    max_step: int

    def __len__(self) -> int:
        return len(self.actions)


def generate_prompts(tr: Transitions, max_step: int | None = None) -> Prompts:
    """Algorithm 1 on replay rows: views on ``tr`` plus the clipped step (no copy of the states).

    :param max_step: largest step index kept apart (default ``tr.state_len_max``).
    """
    max_step = tr.state_len_max if max_step is None else int(max_step)
    if max_step < 0:
        raise ValueError(f"generate_prompts: max_step must be >= 0, got {max_step}")
    return Prompts(returns=tr.rtg, states=tr.state, lengths=tr.state_len, steps=prompt_steps(tr.t, max_step),
                   actions=tr.action, rewards=tr.reward, max_step=max_step)


def step_means(steps: np.ndarray, returns: np.ndarray, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-step mean return ``R̄_s`` and count, float64 ``[n_steps]`` each (NaN mean where count 0)."""
    steps = np.asarray(steps, dtype=np.int64)
    if len(steps) and (steps.min() < 0 or steps.max() >= n_steps):
        raise ValueError(f"step_means: steps must lie in [0, {n_steps}), got [{steps.min()}, {steps.max()}]")
    count = np.bincount(steps, minlength=n_steps).astype(np.float64)
    total = np.bincount(steps, weights=np.asarray(returns, dtype=np.float64), minlength=n_steps)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan), count


def return_to_go_quadratic(rewards: np.ndarray, offsets: np.ndarray, discount: float = 1.0) -> np.ndarray:
    """The O(|τ|²) definition ``R_t = Σ_{t' ≥ t} λ^{t'−t} r_{t'}`` (a reference for tests)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.zeros(len(rewards))
    for a, b in zip(offsets[:-1], offsets[1:]):
        r = rewards[a:b]
        for t in range(b - a):
            out[a + t] = float(np.sum(discount ** np.arange(b - a - t) * r[t:]))
    return out.astype(np.float32)


class ReturnStats(nn.Module):
    """Per-step mean return ``R̄_s``, ``s = 0..max_step``, kept with the model (buffers).

    Steps never seen in training fall back to the overall mean; a mean of 0 (no reward at that
    step) is replaced by 1 when normalising, so a prompt is never divided by zero.
    """

    mean: torch.Tensor
    count: torch.Tensor

    def __init__(self, max_step: int) -> None:
        super().__init__()
        self.max_step = int(max_step)
        self.register_buffer("mean", torch.ones(self.max_step + 1))
        self.register_buffer("count", torch.zeros(self.max_step + 1))

    def fit(self, prompts: Prompts) -> "ReturnStats":
        if prompts.max_step != self.max_step:
            raise ValueError(f"ReturnStats.fit: prompts have max_step={prompts.max_step}, stats {self.max_step}")
        mean, count = step_means(prompts.steps, prompts.returns, self.max_step + 1)
        overall = float(np.mean(prompts.returns)) if len(prompts) else 1.0
        mean = np.where(count > 0, mean, overall)
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.count.copy_(torch.as_tensor(count, dtype=self.count.dtype))
        return self

    def denominator(self, steps: torch.Tensor) -> torch.Tensor:
        """``R̄_s`` for each step ``[B]`` (1 where ``R̄_s == 0``): the training normaliser."""
        m = self.mean[steps]
        return torch.where(m.abs() > 1e-12, m, torch.ones_like(m))

    def inference_prompt(self, steps: torch.Tensor, mu: float, eps: float,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """Eq. 16: ``R̃_t = N(μ, ε²) · R̄_t``, float ``[B]`` (deterministic ``μ · R̄_t`` when ε = 0)."""
        scale = torch.full(steps.shape, float(mu), dtype=self.mean.dtype, device=self.mean.device)
        if eps > 0:
            scale = scale + float(eps) * torch.randn(steps.shape, generator=generator, dtype=self.mean.dtype,
                                                     device="cpu").to(self.mean.device)
        return scale * self.mean[steps]
