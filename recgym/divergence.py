"""How far a learned policy moved from the estimated logging policy μ̂ (LPI paper, §4.1, Eq. 12).

For every evaluation state ``x`` both policies give a distribution over the catalogue (the
softmax of their scores, or the agent's own ``probs``); we average the per-state
``D_JS(π̂(·|x) ‖ μ̂(·|x))`` (≤ ln 2) and ``D_KL(π̂(·|x) ‖ μ̂(·|x))`` over the states, computed by
:func:`recgym.metrics.js_divergence` / :func:`recgym.metrics.kl_divergence`.

Evaluation states follow the protocol: ``"session"`` — the history before every event of every
session (first event included, empty history); ``"loo"`` — the input of each session's last
event. Each policy sees its own ``state_len`` window of the same history.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recgym import metrics
from recgym.data import SessionLog, Transitions

__all__ = ["divergence_to_logging_policy", "evaluation_states", "policy_divergence", "policy_probs"]


def evaluation_states(log: SessionLog, protocol: str, max_states: int | None = None, seed: int = 0) -> np.ndarray:
    """Event indices whose preceding history is an evaluation state (int64, sorted).

    ``max_states`` keeps a uniform sample of that many (seeded), for speed on large logs."""
    if protocol == "session":
        idx = np.arange(log.n_events, dtype=np.int64)
    elif protocol == "loo":
        nonempty = np.flatnonzero(log.lengths > 0)
        idx = (log.offsets[nonempty + 1] - 1).astype(np.int64)
    else:
        raise ValueError(f"policy_divergence: protocol must be 'session' or 'loo', got {protocol!r}")
    if max_states is not None and len(idx) > max_states:
        if max_states < 1:
            raise ValueError(f"policy_divergence: max_states must be >= 1, got {max_states}")
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=int(max_states), replace=False))
    return idx


def policy_probs(agent: Any, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``π(·|x)`` as float64 ``[B, n_items]``: ``agent.probs`` when it has one, else the softmax
    of ``agent.scores`` (in float64, so no probability underflows to an exact 0 needlessly)."""
    with torch.no_grad():
        if hasattr(agent, "scores"):
            p = torch.softmax(agent.scores(states, lengths).double(), dim=1)
        else:
            p = agent.probs(states, lengths).double()
    return p.cpu()


def policy_divergence(
    agent: Any,
    mu_agent: Any,
    log: SessionLog,
    protocol: str = "session",
    max_states: int | None = 20_000,
    batch_size: int = 512,
    seed: int = 0,
) -> dict[str, float]:
    """Mean per-state JS and KL divergence of ``agent``'s policy from ``mu_agent``'s on ``log``.

    :param agent, mu_agent: evaluables (``n_items``, ``state_len``, ``scores``), e.g. an LPI agent
        and its ``logging_policy``.
    :param protocol: which states (module docstring).
    :param max_states: cap on the number of states (uniform seeded sample); ``None`` = all.
    :return: ``{"js": mean JS (nats, ≤ ln 2), "kl": mean KL(π̂ ‖ μ̂) (nats), "n_states": count}``.
    """
    if int(agent.n_items) != log.n_items or int(mu_agent.n_items) != log.n_items:
        raise ValueError(f"policy_divergence: n_items differ (agent {agent.n_items}, μ̂ {mu_agent.n_items}, "
                         f"log {log.name!r} {log.n_items})")
    idx = evaluation_states(log, protocol, max_states, seed)
    if len(idx) == 0:
        raise ValueError(f"policy_divergence: log {log.name!r} has no evaluation state")
    tr_a = Transitions.from_log(log, state_len=int(agent.state_len))
    tr_m = tr_a if int(mu_agent.state_len) == int(agent.state_len) else Transitions.from_log(log, int(mu_agent.state_len))
    js_sum = kl_sum = 0.0
    for lo in range(0, len(idx), batch_size):
        rows = idx[lo : lo + batch_size]
        p = policy_probs(agent, torch.from_numpy(tr_a.state[rows].astype(np.int64)), torch.from_numpy(tr_a.state_len[rows]))
        q = policy_probs(mu_agent, torch.from_numpy(tr_m.state[rows].astype(np.int64)), torch.from_numpy(tr_m.state_len[rows]))
        js_sum += float(metrics.js_divergence(p, q).sum())
        kl_sum += float(metrics.kl_divergence(p, q).sum())
    n = len(idx)
    return {"js": js_sum / n, "kl": kl_sum / n, "n_states": float(n)}


def divergence_to_logging_policy(
    agent: Any, log: SessionLog, protocol: str = "session", mu_agent: Any = None, max_states: int | None = 20_000,
) -> dict[str, float]:
    """What ``scripts/offline_eval.py`` merges into its results: ``{"js_mu": ..., "kl_mu": ...}``.

    μ̂ is ``mu_agent`` when given, else the agent's own ``logging_policy`` attribute (the LPI
    family carries one); returns ``{}`` when no μ̂ is available (nothing to compare with)."""
    mu = mu_agent if mu_agent is not None else getattr(agent, "logging_policy", None)
    if mu is None or mu is agent:
        return {}
    d = policy_divergence(agent, mu, log, protocol, max_states=max_states)
    return {"js_mu": d["js"], "kl_mu": d["kl"]}
