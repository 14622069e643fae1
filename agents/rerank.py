"""Greedy re-rankers over any Top-K agent: ``mmr`` (diversity) and ``pop-rerank`` (popularity bias).

Both take the base agent's top ``candidates`` items (history items removed), normalise the base
scores to ``rel ∈ [0, 1]`` per row (min-max over the candidates) and build a ``slate_size`` list:

* ``mmr`` (Carbonell & Goldstein's Maximal Marginal Relevance on genre cosine distance): the
  first item is the most relevant; then greedily
  ``argmax_i (1 − w) · rel_i + w · min_{j ∈ S} (1 − cos(genres_i, genres_j))``;
* ``pop-rerank``: ``argmax_i (1 − w) · rel_i − w · pop_i / max pop`` (the penalty does not depend on
  the items already chosen, so the greedy list is a sort).

``w = weight`` is the trade-off (0 = the base ranking).

``nextk-decode`` is not a re-ranker but the same kind of wrapper: it decodes any Top-K agent
Next-K style (GPTRec paper, Figure 3): the list is built item by item, each pick appended to the
history before the base scores the next position. ``scores`` ranks the re-ranked list first, in
order, then the other items by the base scores, so :func:`recgym.evaluate.evaluate_loo` measures
the re-ranked list. Wrap an already fitted base with ``fit(train, base=agent)`` (no retraining: a
weight sweep costs only the re-ranking).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recgym.agents.base import Agent, AgentConfig
from recgym.data import SessionLog
from recgym.data.windows import last_items_of_rows


@dataclass
class WrapperConfig(AgentConfig):
    """What every wrapper of a fitted Top-K agent takes (``nextk-decode`` takes only these)."""

    base: str = "bert4rec"
    """Registered Top-K agent to wrap (used when ``fit`` gets no fitted ``base``)."""
    slate_size: int = 10
    state_len: int = 200
    """Overwritten by the base agent's window when a base is attached."""
    device: str = "cpu"
    """Device of the base agent built by ``fit`` or ``load`` (a given fitted base keeps its own)."""


@dataclass
class RerankConfig(WrapperConfig):
    weight: float = 0.5
    """Trade-off ``w`` between relevance (0) and the secondary objective (1)."""
    candidates: int = 100
    """How many of the base's top unseen items the list is chosen from."""


class _Wrapper(Agent):
    """An agent built on a fitted Top-K ``base_agent``: attaching it, its window and device, saving."""

    Config = WrapperConfig
    config: WrapperConfig

    def __init__(self, n_items: int, config: WrapperConfig | None = None, seed: int = 0, **overrides: Any) -> None:
        super().__init__(n_items, config, seed, **overrides)
        self.base_agent: Agent | None = None
        self.genres = torch.zeros(n_items, 1)
        self.pop = torch.zeros(n_items)

    @property
    def state_len(self) -> int:
        return int(self.base_agent.state_len) if self.base_agent is not None else self.config.state_len

    @property
    def device(self) -> torch.device:
        """The base agent's device (where the re-ranking runs)."""
        return torch.device(getattr(self.base_agent, "device", "cpu") if self.base_agent is not None else self.config.device)

    def fit(self, train: SessionLog, valid: SessionLog | None = None, base: Agent | None = None, **kwargs: Any) -> "_Wrapper":
        """Attach a fitted ``base`` (or fit ``config.base`` on ``train``) and read genres / popularity."""
        if base is None:
            from recgym.agents.registry import device_override, make_agent

            name = self.config.base
            base = make_agent(name, self.n_items, seed=self.seed, protocol="loo", **device_override(name, self.config.device))
            base.fit(train, valid, **kwargs)
        if base.n_items != self.n_items:
            raise ValueError(f"{self.name}: base agent has n_items={base.n_items}, re-ranker {self.n_items}")
        self.base_agent = base
        g = train.genres if train.genres is not None else np.zeros((self.n_items, 1), np.float32)
        norm = np.linalg.norm(g, axis=1, keepdims=True)
        self.genres = torch.from_numpy(np.divide(g, norm, out=np.zeros_like(g), where=norm > 0).astype(np.float32))
        p = train.popularity().astype(np.float32)
        self.pop = torch.from_numpy(p / max(float(p.max()), 1e-12))
        return self

    def state_dict(self) -> dict[str, Any]:
        b = self.base_agent
        # the base's name and config travel with its weights (it may be any fitted agent)
        return {"genres": self.genres, "pop": self.pop, "base": b.state_dict() if b else {},
                "base_agent": b.name if b else "", "base_config_json": json.dumps(b.config_dict()) if b else "{}"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from recgym.agents.registry import device_override, get_agent_class

        self.genres, self.pop = state["genres"], state["pop"]
        if state.get("base"):
            name = state.get("base_agent") or self.config.base
            cls = get_agent_class(name)
            cfg = {**json.loads(state.get("base_config_json", "{}")), **device_override(name, self.config.device)}
            self.base_agent = cls(self.n_items, config=cls.Config(**cfg))
            self.base_agent.load_state_dict(state["base"])


class _Reranker(_Wrapper):
    Config = RerankConfig
    config: RerankConfig

    def __init__(self, n_items: int, config: RerankConfig | None = None, seed: int = 0, **overrides: Any) -> None:
        super().__init__(n_items, config, seed, **overrides)
        if not 0.0 <= self.config.weight <= 1.0:
            raise ValueError(f"{self.name}: weight must lie in [0, 1], got {self.config.weight}")

    def _select(self, rel: torch.Tensor, cand: torch.Tensor, k: int) -> torch.Tensor:
        """Positions (into ``cand``) of the re-ranked list, ``[B, k]``."""
        raise NotImplementedError

    @torch.no_grad()
    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.base_agent is None:
            raise RuntimeError(f"{self.name}: no base agent (call fit)")
        states, lengths = states.to(self.device), lengths.to(self.device)
        base = self.base_agent.scores(states, lengths).float().clone()
        seen = torch.zeros(len(base), self.n_items + 1, dtype=torch.bool, device=base.device)
        valid = torch.arange(states.shape[1], device=states.device)[None, :] < lengths[:, None]
        seen.scatter_(1, torch.where(valid, states, self.n_items), True)
        masked = base.masked_fill(seen[:, : self.n_items], -torch.inf)
        n_cand = min(self.config.candidates, self.n_items)
        top, cand = torch.topk(masked, n_cand, dim=1)
        finite = torch.isfinite(top)
        lo = torch.where(finite, top, top.new_full((), torch.inf)).min(1, keepdim=True).values
        hi = top[:, :1]
        rel = torch.where(finite, (top - lo) / (hi - lo).clamp(min=1e-12), torch.full_like(top, -1e9))
        k = min(self.config.slate_size, n_cand)
        picked = self._select(rel, cand, k)
        items = cand.gather(1, picked)
        # the base ranking below the list: squash it into (−1, 0) so the list (k..1) stays on top
        out = -torch.sigmoid(-base)
        out.scatter_(1, items, torch.arange(k, 0, -1, dtype=out.dtype, device=out.device).expand(len(items), k))
        return out


class MMRAgent(_Reranker):
    """``mmr``: Maximal Marginal Relevance on genre cosine distance (see the module docstring)."""

    name = "mmr"

    def _select(self, rel: torch.Tensor, cand: torch.Tensor, k: int) -> torch.Tensor:
        w = self.config.weight
        u = self.genres.to(rel.device)[cand]  # [B, N, g] unit genre vectors
        dist = 1.0 - u @ u.transpose(1, 2)  # [B, N, N]
        # an all-zero genre vector has cosine 0 with everything (distance 1), as recgym.metrics.ild_at_k
        B, N = rel.shape
        rows = torch.arange(B, device=rel.device)
        chosen = torch.zeros(B, N, dtype=torch.bool, device=rel.device)
        min_dist = torch.zeros(B, N, device=rel.device)
        out = torch.empty(B, k, dtype=torch.long, device=rel.device)
        for i in range(k):  # k greedy steps, vectorised over the batch
            obj = rel if i == 0 else (1.0 - w) * rel + w * min_dist
            a = obj.masked_fill(chosen, -torch.inf).argmax(1)
            out[:, i] = a
            chosen[rows, a] = True
            d = dist[rows, a]  # [B, N] distance to the new item
            min_dist = d if i == 0 else torch.minimum(min_dist, d)
        return out


class PopRerankAgent(_Reranker):
    """``pop-rerank``: greedy popularity penalty (see the module docstring)."""

    name = "pop-rerank"

    def _select(self, rel: torch.Tensor, cand: torch.Tensor, k: int) -> torch.Tensor:
        w = self.config.weight
        obj = (1.0 - w) * rel - w * self.pop.to(rel.device)[cand]
        return torch.topk(obj, k, dim=1).indices


class NextKDecoder(_Wrapper):
    """``nextk-decode``: Next-K decoding of a Top-K agent. Position ``i`` is the base's best unseen
    item for the history followed by the ``i − 1`` items already generated (the window keeps the
    base's last ``state_len`` items); it has no trade-off ``weight`` and no candidate pool (every
    unseen item can be picked). ``scores`` puts the generated list first, then the other items by the
    base's first-position scores, like the re-rankers."""

    name = "nextk-decode"

    @torch.no_grad()
    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.base_agent is None:
            raise RuntimeError(f"{self.name}: no base agent (call fit)")
        states, lengths = states.to(self.device), lengths.to(self.device)
        B, L = states.shape
        k, pad, dev = min(self.config.slate_size, self.n_items), self.n_items, states.device
        seq = torch.cat([states, torch.full((B, k), pad, dtype=states.dtype, device=dev)], dim=1)  # history + list
        valid = torch.arange(L, device=dev)[None, :] < lengths[:, None]
        seen = torch.zeros(B, self.n_items + 1, dtype=torch.bool, device=dev)
        seen.scatter_(1, torch.where(valid, states, pad), True)
        window = min(int(self.base_agent.state_len), L + k)
        rows = torch.arange(B, device=dev)
        first = None
        items = torch.empty(B, k, dtype=torch.long, device=dev)
        for i in range(k):
            total = lengths + i  # history items plus those generated so far
            win, win_len = last_items_of_rows(seq, total, window, pad)
            sc = self.base_agent.scores(win, win_len).float()
            if first is None:
                first = sc.clone()
            pick = sc.masked_fill(seen[:, : self.n_items], -torch.inf).argmax(1)
            items[:, i] = pick
            seen[rows, pick] = True
            seq[rows, total] = pick
        out = -torch.sigmoid(-first)
        out.scatter_(1, items, torch.arange(k, 0, -1, dtype=out.dtype, device=dev).expand(B, k))
        return out


__all__ = ["MMRAgent", "NextKDecoder", "PopRerankAgent", "RerankConfig", "WrapperConfig"]
