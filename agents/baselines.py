"""Non-neural baselines: ``pop`` (popularity), ``mc`` (Markov chain over gaps), ``bpr`` (implicit's BPR).

All three fit in seconds on the ``train`` part, score the full catalogue in one vectorised
pass, and save their parameters as plain tensors (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recgym.agents.base import Agent, AgentConfig
from recgym.data import SessionLog
from recgym.errors import DivergedError


def _np_states(states: torch.Tensor | np.ndarray, lengths: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = states.cpu().numpy() if torch.is_tensor(states) else np.asarray(states)
    n = lengths.cpu().numpy() if torch.is_tensor(lengths) else np.asarray(lengths)
    return s.astype(np.int64, copy=False), n.astype(np.int64, copy=False)


# ----------------------------------------------------------------------------- pop
@dataclass
class PopConfig(AgentConfig):
    state_len: int = 1
    """Popularity ignores the history; 1 keeps evaluation inputs small."""


class PopularityAgent(Agent):
    """``score(item) = count of item in train`` whatever the history (the "Popularity" baseline)."""

    name = "pop"
    Config = PopConfig

    def __init__(self, n_items: int, config: PopConfig | None = None, seed: int = 0, **overrides: Any) -> None:
        super().__init__(n_items, config, seed, **overrides)
        self.counts = torch.zeros(self.n_items, dtype=torch.float32)

    def fit(self, train: SessionLog, valid: SessionLog | None = None, **kwargs: Any) -> "PopularityAgent":
        _check_items(self, train)
        self.counts = torch.from_numpy(train.item_counts().astype(np.float32))
        return self

    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.counts.to(states.device)[None, :].repeat(states.shape[0], 1)  # a fresh [B, n] tensor

    def state_dict(self) -> dict[str, Any]:
        return {"counts": self.counts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = state["counts"].float()


# ----------------------------------------------------------------------------- mc
@dataclass
class MarkovChainConfig(AgentConfig):
    """GPTRec's Markov-chain teacher (Petrov & Macdonald, "Aligning GPTRec with Beyond-Accuracy Goals
    with Reinforcement Learning", §4.6; window and smoothing as in the authors' released code)."""

    state_len: int = 50
    """History window (the last ``state_len`` items are read, at most ``max_gap`` of them count)."""
    max_gap: int = 50
    decay: float = 0.6
    smoothing: float = 0.1
    pop_tiebreak: float = 1e-6
    """Adds ``pop_tiebreak · count(item) / max count`` so that ties (an empty history, unseen
    transitions) rank popular items first instead of by id; 0 disables it."""


class MarkovChainAgent(Agent):
    """Markov chain over item gaps.

    With ``C_d[src, dst]`` the number of training sessions positions where ``dst`` comes ``d``
    steps after ``src``, and ``N_d[src] = Σ_dst C_d[src, dst]`` (clamped to >= 1), the score of
    ``dst`` after a history ``h_1..h_n`` is::

        score(dst) = Σ_{d=1..min(n, max_gap)} decay^d · log((C_d[h_{n-d+1}, dst] + smoothing) / N_d[h_{n-d+1}])

    i.e. the paper's ``Σ_j β^j log p(dst | h_{n-j+1})`` with an add-``smoothing`` empirical
    probability. ``log(C + s) = log s + log1p(C / s)`` splits each term into a constant per
    history and a sparse matrix, so a batch is scored by one sparse product
    ``S [B, D·(n+1)] @ M [D·(n+1), n]``. Seen items are not filtered here (the evaluator's
    ``exclude_history`` does it).
    """

    name = "mc"
    Config = MarkovChainConfig
    config: MarkovChainConfig

    def __init__(self, n_items: int, config: MarkovChainConfig | None = None, seed: int = 0, **overrides: Any) -> None:
        super().__init__(n_items, config, seed, **overrides)
        if self.config.max_gap < 1 or not 0 < self.config.decay or self.config.smoothing <= 0:
            raise ValueError(f"MarkovChainConfig: need max_gap >= 1, decay > 0, smoothing > 0; got {self.config}")
        n_rows = self.config.max_gap * (self.n_items + 1)  # row (d-1)*(n+1) + src; src = pad -> empty row
        self.M = sp.csr_matrix((n_rows, self.n_items), dtype=np.float32)
        self.log_norm = np.zeros(n_rows, dtype=np.float64)
        self.tiebreak = np.zeros(self.n_items, dtype=np.float64)

    def fit(self, train: SessionLog, valid: SessionLog | None = None, **kwargs: Any) -> "MarkovChainAgent":
        _check_items(self, train)
        cfg, n = self.config, self.n_items
        pos = train.position_of_event
        remaining = np.repeat(train.lengths, train.lengths) - 1 - pos  # events after this one
        rows, cols = [], []
        for d in range(1, cfg.max_gap + 1):  # one vectorised pass per gap
            src = np.flatnonzero(remaining >= d)
            if len(src) == 0:
                break
            rows.append((d - 1) * (n + 1) + train.items[src].astype(np.int64))
            cols.append(train.items[src + d].astype(np.int64))
        n_rows = cfg.max_gap * (n + 1)
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        counts = sp.csr_matrix((np.ones(len(r), np.float64), (r, c)), shape=(n_rows, n))
        counts.sum_duplicates()
        self.log_norm = np.log(np.maximum(np.asarray(counts.sum(axis=1)).ravel(), 1.0))
        counts.data = np.log1p(counts.data / cfg.smoothing)
        self.M = counts.astype(np.float32)
        pop = train.item_counts().astype(np.float64)
        self.tiebreak = cfg.pop_tiebreak * pop / max(pop.max(), 1.0)
        return self

    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        cfg, n = self.config, self.n_items
        s, ln = _np_states(states, lengths)
        B, L = s.shape
        p = np.arange(L)[None, :]
        gap = ln[:, None] - p  # gap between position p and the predicted event
        valid = (p < ln[:, None]) & (gap <= cfg.max_gap)
        b_idx = np.broadcast_to(np.arange(B)[:, None], (B, L))[valid]
        rows = (gap[valid] - 1) * (n + 1) + s[valid]
        w = cfg.decay ** gap[valid].astype(np.float64)
        S = sp.csr_matrix((w, (b_idx, rows)), shape=(B, self.M.shape[0]))
        const = np.bincount(b_idx, weights=w * (np.log(cfg.smoothing) - self.log_norm[rows]), minlength=B)
        out = (S @ self.M).toarray() + const[:, None] + self.tiebreak[None, :]
        return torch.from_numpy(out.astype(np.float32)).to(states.device if torch.is_tensor(states) else "cpu")

    def state_dict(self) -> dict[str, Any]:
        M = self.M.tocsr()
        return {"indptr": torch.from_numpy(M.indptr.astype(np.int64)), "indices": torch.from_numpy(M.indices.astype(np.int64)),
                "data": torch.from_numpy(M.data.astype(np.float32)), "log_norm": torch.from_numpy(self.log_norm),
                "tiebreak": torch.from_numpy(self.tiebreak)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shape = (self.config.max_gap * (self.n_items + 1), self.n_items)
        self.M = sp.csr_matrix((state["data"].numpy(), state["indices"].numpy(), state["indptr"].numpy()), shape=shape)
        self.log_norm = state["log_norm"].numpy().astype(np.float64)
        self.tiebreak = state["tiebreak"].numpy().astype(np.float64)


# ----------------------------------------------------------------------------- bpr
@dataclass
class BPRConfig(AgentConfig):
    """``implicit``'s BPR defaults, 64 factors (the GPTRec "MF-BPR" baseline)."""

    state_len: int = 50
    factors: int = 64
    lr: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    num_threads: int = 1
    """1 keeps training deterministic for a seed (implicit's Hogwild threads are not)."""


class BPRAgent(Agent):
    """Matrix factorisation by BPR (``implicit.cpu.bpr``), one "user" per training session.

    Sessions at evaluation time are new users, so a history is folded in without training:
    its user vector is the **mean of its items' factors** (the last ``state_len`` items),
    with implicit's bias coordinate set to 1, and ``score(i) = u · item_factors[i]`` (factors
    plus item bias). An empty history scores by the item biases alone.
    """

    name = "bpr"
    Config = BPRConfig
    config: BPRConfig

    def __init__(self, n_items: int, config: BPRConfig | None = None, seed: int = 0, **overrides: Any) -> None:
        super().__init__(n_items, config, seed, **overrides)
        self.item_factors = torch.zeros(self.n_items, self.config.factors + 1)

    def fit(self, train: SessionLog, valid: SessionLog | None = None, show_progress: bool = False, **kwargs: Any) -> "BPRAgent":
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from implicit.recommender_base import ModelFitError
        from threadpoolctl import threadpool_limits

        _check_items(self, train)
        cfg = self.config
        user_items = sp.csr_matrix(
            (np.ones(train.n_events, np.float32), (train.session_of_event, train.items.astype(np.int64))),
            shape=(train.n_sessions, self.n_items),
        )
        user_items.data[:] = 1.0  # repeated (session, item) pairs: a binary interaction
        model = BayesianPersonalizedRanking(
            factors=cfg.factors, learning_rate=cfg.lr, regularization=cfg.regularization,
            iterations=cfg.iterations, num_threads=cfg.num_threads, random_state=self.seed,
        )
        diverged = DivergedError(f"{self.name}: training diverged: non-finite item factors (lr={cfg.lr})")
        with threadpool_limits(1, "blas"):  # implicit warns (and slows) under multi-threaded BLAS
            try:
                model.fit(user_items, show_progress=show_progress)
            except ModelFitError:  # implicit's own NaN check
                raise diverged from None
        factors = np.asarray(model.item_factors, dtype=np.float32)
        if not np.isfinite(factors).all():
            raise diverged
        self.item_factors = torch.from_numpy(factors.copy())
        return self

    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        f = self.item_factors.to(states.device)
        padded = torch.cat([f, torch.zeros(1, f.shape[1], device=f.device)])  # pad id -> zero vector
        mask = (torch.arange(states.shape[1], device=states.device)[None, :] < lengths[:, None]).float()
        user = (padded[states.clamp(max=self.n_items)] * mask[..., None]).sum(1) / lengths.clamp(min=1)[:, None].float()
        user[:, -1] = 1.0  # implicit's bias coordinate
        return user @ f.T

    def state_dict(self) -> dict[str, Any]:
        return {"item_factors": self.item_factors}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.item_factors = state["item_factors"].float()


def _check_items(agent: Agent, log: SessionLog) -> None:
    if log.n_items != agent.n_items:
        raise ValueError(f"{agent.name}: the log {log.name!r} has n_items={log.n_items}, the agent {agent.n_items}")


__all__ = ["BPRAgent", "BPRConfig", "MarkovChainAgent", "MarkovChainConfig", "PopConfig", "PopularityAgent"]
