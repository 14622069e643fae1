"""Off-policy estimators of a target policy's value from logged bandit feedback.

Logged data ``D = {(x_i, a_i, r_i)}_{i=1..N}`` was collected by a logging (behaviour) policy μ
with propensity ``μ(a_i|x_i)``; the target policy π is evaluated without running it. With the
importance weight ``w_i = π(a_i|x_i) / μ(a_i|x_i)`` (optionally clipped at ``λ``: ``min(w_i, λ)``):

* IPS (inverse propensity scoring):   ``V̂ = (1/N) Σ_i w_i r_i``
* SNIPS (self-normalised IPS):        ``V̂ = Σ_i w_i r_i / Σ_i w_i``
* DM (direct method):                 ``V̂ = (1/N) Σ_i Σ_a π(a|x_i) q̂(x_i, a)``
* DR (doubly robust):                 ``V̂ = DM + (1/N) Σ_i w_i (r_i − q̂(x_i, a_i))``

(Dudík, Langford & Li, "Doubly Robust Policy Evaluation and Learning", ICML 2011, §2–3;
Swaminathan & Joachims, "The Self-Normalized Estimator for Counterfactual Learning", NeurIPS 2015.)
Slates whose positions are evaluated as separate rounds (the Open Bandit Dataset) pass the
position of each round: π, μ and q̂ are then per position, ``π(a|x, k)``.

Every estimator returns a dict: ``estimate``, ``se`` (standard error: sample std of the per-round
terms, ddof=1, over √N; delta method for SNIPS), ``ci_low``/``ci_high`` (normal 95%), ``ess``
(effective sample size of the weights, ``(Σw)² / Σw²``), ``n``, ``n_clipped`` and
``frac_clipped``. All inputs are numpy arrays; nothing here knows about agents or logs except
:func:`target_probs` / :func:`evaluate_agent` at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ips", "snips", "dm", "dr", "estimate_all", "importance_weights", "target_probs", "evaluate_agent"]

Z95 = 1.959963984540054


def _at(table: np.ndarray, actions: np.ndarray | None, positions: np.ndarray | None, name: str) -> np.ndarray:
    """Value of the logged (action, position) in a per-round table [N], [N, A] or [N, A, P]."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim == 1:
        return table
    if actions is None:
        raise ValueError(f"ope: {name} is a full distribution {table.shape}; pass actions [N]")
    rows = np.arange(len(table))
    if table.ndim == 2:
        return table[rows, actions]
    if positions is None:
        raise ValueError(f"ope: {name} has a position axis {table.shape}; pass positions [N]")
    return table[rows, actions, positions]


def _per_round_dist(table: np.ndarray, positions: np.ndarray | None, name: str) -> np.ndarray:
    """The full action distribution / prediction of each round's position, [N, A]."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim == 2:
        return table
    if table.ndim == 3:
        if positions is None:
            raise ValueError(f"ope: {name} has a position axis {table.shape}; pass positions [N]")
        return table[np.arange(len(table)), :, positions]
    raise ValueError(f"ope: {name} must be [N, n_actions] or [N, n_actions, n_positions], got shape {table.shape}")


def importance_weights(
    pscore: np.ndarray,
    target: np.ndarray,
    actions: np.ndarray | None = None,
    positions: np.ndarray | None = None,
    clip: float | None = None,
) -> tuple[np.ndarray, int]:
    """``w_i = π(a_i|x_i) / μ(a_i|x_i)``, clipped at ``clip`` when given; returns (w [N], n_clipped).

    ``pscore``: μ(a_i|x_i) [N] (> 0). ``target``: π(a_i|x_i) [N], or π(·|x_i) [N, A] / [N, A, P]
    with ``actions`` (and ``positions``) [N].
    """
    mu = np.asarray(pscore, dtype=np.float64)
    pi = _at(target, actions, positions, "target")
    if mu.ndim != 1 or pi.shape != mu.shape:
        raise ValueError(f"ope: pscore {mu.shape} and target probabilities {pi.shape} must both be [N]")
    if not np.all(mu > 0):
        raise ValueError(f"ope: pscore must be > 0 (row {int(np.flatnonzero(~(mu > 0))[0])} is {mu[~(mu > 0)][0]})")
    if np.any(pi < 0) or np.any(pi > 1 + 1e-9):
        raise ValueError("ope: target probabilities must lie in [0, 1]")
    w = pi / mu
    if clip is None:
        return w, 0
    if clip <= 0:
        raise ValueError(f"ope: clip must be > 0, got {clip}")
    return np.minimum(w, clip), int(np.sum(w > clip))


def _summary(estimate: float, se: float, w: np.ndarray | None, n_clipped: int, n: int) -> dict[str, float]:
    if w is None:
        ess = float(n)  # no weights (DM)
    else:
        ess = float(np.sum(w) ** 2 / np.sum(w**2)) if np.any(w > 0) else 0.0
    return {
        "estimate": float(estimate), "se": float(se),
        "ci_low": float(estimate - Z95 * se), "ci_high": float(estimate + Z95 * se),
        "ess": ess, "n": float(n), "n_clipped": float(n_clipped), "frac_clipped": n_clipped / max(n, 1),
    }  # fmt: skip


def _mean_se(terms: np.ndarray) -> tuple[float, float]:
    n = len(terms)
    if n == 0:
        raise ValueError("ope: no logged rounds")
    return float(terms.mean()), float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def _rewards(rewards: np.ndarray) -> np.ndarray:
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or not np.all(np.isfinite(r)):
        raise ValueError(f"ope: rewards must be a finite 1-D array, got shape {r.shape}")
    return r


def ips(rewards, pscore, target, actions=None, positions=None, clip=None) -> dict[str, float]:
    """Inverse propensity scoring: ``V̂ = (1/N) Σ_i w_i r_i``; SE = std(w r, ddof=1)/√N."""
    r = _rewards(rewards)
    w, n_clip = importance_weights(pscore, target, actions, positions, clip)
    est, se = _mean_se(w * r)
    return _summary(est, se, w, n_clip, len(r))


def snips(rewards, pscore, target, actions=None, positions=None, clip=None) -> dict[str, float]:
    """Self-normalised IPS: ``V̂ = Σ_i w_i r_i / Σ_i w_i``.

    SE by the delta method: ``sqrt(Σ_i w_i² (r_i − V̂)²) / Σ_i w_i``."""
    r = _rewards(rewards)
    w, n_clip = importance_weights(pscore, target, actions, positions, clip)
    sw = w.sum()
    if sw <= 0:
        raise ValueError("ope: snips needs some logged action with π(a|x) > 0 (all weights are 0)")
    est = float(np.sum(w * r) / sw)
    se = float(np.sqrt(np.sum(w**2 * (r - est) ** 2)) / sw)
    return _summary(est, se, w, n_clip, len(r))


def dm(target_dist, q_hat, positions=None) -> dict[str, float]:
    """Direct method: ``V̂ = (1/N) Σ_i Σ_a π(a|x_i) q̂(x_i, a)``; SE = std(per-round value)/√N.

    ``target_dist`` π(·|x_i) and ``q_hat`` q̂(x_i, ·): [N, A] or [N, A, P] (with ``positions``)."""
    pi = _per_round_dist(target_dist, positions, "target_dist")
    q = _per_round_dist(q_hat, positions, "q_hat")
    if pi.shape != q.shape:
        raise ValueError(f"ope: target_dist {pi.shape} and q_hat {q.shape} differ in shape")
    est, se = _mean_se(np.sum(pi * q, axis=1))
    return _summary(est, se, None, 0, len(pi))


def dr(rewards, pscore, target_dist, q_hat, actions, positions=None, clip=None) -> dict[str, float]:
    """Doubly robust: ``V̂ = (1/N) Σ_i [Σ_a π(a|x_i) q̂(x_i, a) + w_i (r_i − q̂(x_i, a_i))]``.

    SE = std(per-round term, ddof=1)/√N. Clipping applies to ``w_i`` in the correction only."""
    r = _rewards(rewards)
    w, n_clip = importance_weights(pscore, target_dist, actions, positions, clip)
    pi = _per_round_dist(target_dist, positions, "target_dist")
    q = _per_round_dist(q_hat, positions, "q_hat")
    if pi.shape != q.shape or len(q) != len(r):
        raise ValueError(f"ope: target_dist {pi.shape}, q_hat {q.shape} and rewards {r.shape} disagree")
    q_logged = q[np.arange(len(q)), np.asarray(actions)]
    est, se = _mean_se(np.sum(pi * q, axis=1) + w * (r - q_logged))
    return _summary(est, se, w, n_clip, len(r))


def estimate_all(rewards, pscore, target_dist, actions, q_hat=None, positions=None, clip=None) -> dict[str, dict]:
    """IPS and SNIPS, plus DM and DR when ``q_hat`` is given, keyed by estimator name."""
    out = {"ips": ips(rewards, pscore, target_dist, actions, positions, clip),
           "snips": snips(rewards, pscore, target_dist, actions, positions, clip)}
    if q_hat is not None:
        out["dm"] = dm(target_dist, q_hat, positions)
        out["dr"] = dr(rewards, pscore, target_dist, q_hat, actions, positions, clip)
    return out


# ---------------------------------------------------------------------- agents over a log
def target_probs(agent: Any, log: Any, policy: str = "softmax", logged_only: bool = False,
                 batch_size: int = 1024) -> np.ndarray:
    """π(·|x_t) of an agent at every event of ``log``: float64 ``[n_events, n_items]``, or only
    π(a_t|x_t) of the logged items ``[n_events]`` with ``logged_only`` (no full matrix is kept).

    The context of event ``t`` is the session's items before it (the :func:`recgym.evaluate.session_ranks`
    state). ``policy="softmax"``: ``agent.probs``; ``"greedy"``: all mass on the top-scored item
    (ties split evenly).
    """
    import torch

    from recgym.data import Transitions

    if policy not in ("softmax", "greedy"):
        raise ValueError(f"ope: policy must be 'softmax' or 'greedy', got {policy!r}")
    if int(agent.n_items) != log.n_items:
        raise ValueError(f"ope: agent has n_items={agent.n_items} but log {log.name!r} has {log.n_items}")
    tr = Transitions.from_log(log, state_len=int(agent.state_len))
    out = np.empty(log.n_events if logged_only else (log.n_events, log.n_items))
    logged = torch.from_numpy(log.items.astype(np.int64))
    with torch.no_grad():
        for lo in range(0, log.n_events, batch_size):
            s = torch.from_numpy(np.ascontiguousarray(tr.state[lo : lo + batch_size], dtype=np.int64))
            n = torch.from_numpy(np.ascontiguousarray(tr.state_len[lo : lo + batch_size], dtype=np.int64))
            if policy == "softmax":
                p = agent.probs(s, n).double()
            else:
                sc = agent.scores(s, n).double()
                top = (sc == sc.max(dim=1, keepdim=True).values).double()
                p = top / top.sum(dim=1, keepdim=True)
            if logged_only:
                p = p.gather(1, logged[lo : lo + len(s), None].to(p.device))[:, 0]
            out[lo : lo + len(s)] = p.cpu().numpy()
    return out


def evaluate_agent(agent: Any, log: Any, behaviour: Any = None, policy: str = "softmax", q_hat: np.ndarray | None = None,
                   clip: float | None = None) -> dict[str, dict]:
    """Off-policy value of ``agent`` (as π) on the logged events of ``log`` (a ``SessionLog``).

    μ(a_t|x_t) is ``log.propensities`` when the log has them (OBD, the Synthetic world), else the
    probability that a fitted behaviour model ``behaviour`` (μ̂, any agent with ``probs``, e.g. a
    supervised next-item model of the logging policy as in the LPI paper) gives the logged item;
    by default the agent's own ``logging_policy`` when it carries one (the LPI family).
    ``q_hat`` [n_events, n_items] (e.g. the simulator's reward model) adds DM and DR.
    """
    pi = target_probs(agent, log, policy, logged_only=q_hat is None)  # DM/DR need the full π(·|x)
    behaviour = behaviour if behaviour is not None else getattr(agent, "logging_policy", None)
    actions = log.items.astype(np.int64)
    if log.propensities is not None:
        mu = log.propensities.astype(np.float64)
    elif behaviour is not None:
        mu = target_probs(behaviour, log, "softmax", logged_only=True)
    else:
        raise ValueError(f"ope: log {log.name!r} has no propensities; pass a fitted behaviour model (μ̂)")
    return estimate_all(log.rewards.astype(np.float64), mu, pi, actions, q_hat=q_hat, clip=clip)
