"""A custom agent in 40 lines: popularity with recency, plugged into every recgym tool.

    python scripts/compare.py --agents pop,examples.my_agent:RecencyPopAgent --data-param n_sessions=1000
    python scripts/offline_eval.py --agent examples.my_agent:RecencyPopAgent --set half_life=0.1

Score of item ``i`` after history ``h``::

    score(i | h) = log(1 + Σ_events-of-i 0.5 ** (age / (half_life · span))) − repeat_penalty · [i ∈ h]

where ``age`` is how long before the last training event the event happened and ``span`` the
training time span: recent popularity counts more, and items the user has just consumed are pushed
down (users tire of repeats). Run from the repository root (``examples`` is then importable), or
put the file anywhere on ``PYTHONPATH`` and pass ``my_agent:RecencyPopAgent``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recgym.agents.base import Agent, AgentConfig
from recgym.data import SessionLog


@dataclass
class RecencyPopConfig(AgentConfig):
    state_len: int = 10
    """History window (items in it are penalised)."""
    half_life: float = 0.25
    """Half-life of an event's weight, as a share of the training time span."""
    repeat_penalty: float = 1.0
    """Subtracted from the score of items already in the history."""


class RecencyPopAgent(Agent):
    """Time-decayed popularity minus a repeat penalty (no training loop: one vectorised pass)."""

    name = "recency-pop"
    Config = RecencyPopConfig

    def __init__(self, n_items: int, config: RecencyPopConfig | None = None, seed: int = 0, **overrides: Any) -> None:
        super().__init__(n_items, config, seed, **overrides)
        self.log_counts = torch.zeros(self.n_items, dtype=torch.float32)

    def fit(self, train: SessionLog, valid: SessionLog | None = None, **kwargs: Any) -> "RecencyPopAgent":
        t = np.asarray(train.timestamps, dtype=np.float64)
        span = max(float(t.max() - t.min()), 1e-9) if len(t) else 1.0
        w = 0.5 ** ((t.max() - t) / (self.config.half_life * span)) if len(t) else t
        counts = np.bincount(train.items, weights=w, minlength=self.n_items)
        self.log_counts = torch.from_numpy(np.log1p(counts).astype(np.float32))
        return self

    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``states`` int64 ``[B, L]`` right-padded with ``n_items`` -> float ``[B, n_items]``."""
        seen = torch.zeros(states.shape[0], self.n_items + 1)  # extra column swallows the padding
        seen.scatter_(1, states.long(), 1.0)
        return self.log_counts[None, :] - self.config.repeat_penalty * seen[:, : self.n_items]

    def state_dict(self) -> dict[str, Any]:
        return {"log_counts": self.log_counts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_counts = state["log_counts"].float()
