"""Next-K slate rewards: thin adapters over :mod:`recgym.metrics` (the one implementation).

The env never re-implements a metric: the per-step reward is the last column of
``recgym.metrics.slate_step_rewards`` on the slate prefix, and the final list metrics are
``ndcg_at_k`` / ``ild_at_k`` / ``pcount_at_k`` of the finished slate, so the per-step rewards of a
slate without repeats sum exactly to ``NDCG@K + λ_ild · ILD@K − λ_pop · PCOUNT@K``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recgym import metrics


@dataclass(frozen=True)
class SlateReward:
    """Weights and item data of the slate reward ``NDCG + λ_ild · ILD − λ_pop · PCOUNT``.

    ``genres`` float ``[n_items, g]`` (needed when ``lambda_ild != 0``), ``popularity`` float
    ``[n_items]`` (training event share; needed when ``lambda_pop != 0``), ``slate_size`` the list length K.
    """

    slate_size: int = 10
    lambda_ild: float = 0.0
    lambda_pop: float = 0.0
    genres: np.ndarray | None = None
    popularity: np.ndarray | None = None

    def __post_init__(self) -> None:
        from recgym.envs.common import check_weight

        for arg in ("lambda_ild", "lambda_pop"):
            object.__setattr__(self, arg, check_weight(getattr(self, arg), arg, "SlateReward"))
        if self.lambda_ild and self.genres is None:
            raise ValueError("SlateReward: lambda_ild != 0 needs item genres (the data source has none)")
        if self.lambda_pop and self.popularity is None:
            raise ValueError("SlateReward: lambda_pop != 0 needs item popularity")

    def step(self, prefix: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Reward of the last item of each prefix: ``prefix`` int ``[B, i]`` (``1 <= i <= K``),
        ``targets`` int ``[B]`` → float ``[B]``."""
        return metrics.slate_step_rewards(
            prefix, targets, self.genres, self.popularity, self.lambda_ild, self.lambda_pop, K=self.slate_size
        )[:, -1]

    def steps(self, slates: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """All per-position rewards of full slates ``[B, K]`` → ``[B, K]``."""
        return metrics.slate_step_rewards(
            slates, targets, self.genres, self.popularity, self.lambda_ild, self.lambda_pop, K=self.slate_size
        )

    def list_metrics(self, slates: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """List metrics of finished slates ``[B, K]``: ``ndcg@K``, ``hit@K``, ``ild@K``, ``pcount@K``
        (when the data allows) and ``reward`` = the weighted combination, each float ``[B]``."""
        slates = np.atleast_2d(slates)
        K = self.slate_size
        pos = metrics.slate_positions(slates, targets)
        out = {f"ndcg@{K}": metrics.ndcg_at_k(pos, K), f"hit@{K}": metrics.hit_at_k(pos, K)}
        total = out[f"ndcg@{K}"].copy()
        if self.genres is not None:
            out[f"ild@{K}"] = metrics.ild_at_k(slates, self.genres)
            total += self.lambda_ild * out[f"ild@{K}"]
        if self.popularity is not None:
            out[f"pcount@{K}"] = metrics.pcount_at_k(slates, self.popularity)
            total -= self.lambda_pop * out[f"pcount@{K}"]
        out["reward"] = total
        return out
