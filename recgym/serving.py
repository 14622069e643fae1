"""Serving with your own ids: an agent plus the raw item ids of the log it was trained on.

Agents work on dense item ids ``0..n_items-1``; a log read with :func:`recgym.data.read_table` keeps
the raw ids in ``log.item_ids`` (strings, ``log.item_ids[dense] -> raw``). :class:`Recommender`
maps raw ids in and out::

    log = recgym.data.read_table("ratings.csv", columns="user=userId,item=movieId,time=timestamp,rating=rating")
    agent = make_agent("sasrec", log.n_items).fit(split.train, split.valid, protocol=split.protocol)
    rec = Recommender(agent, log)
    rec.recommend([[296, 318, 593]], k=5)      # -> [["2571", "260", ...]] raw movieIds, history excluded
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from recgym.errors import BadInputError

__all__ = ["Recommender"]


class Recommender:
    """``agent.recommend`` with raw ids: histories of raw item ids in, top-``k`` raw item ids out.

    Args:
        agent: a fitted recgym agent (``n_items`` dense ids).
        items: the log the agent was trained on (its ``item_ids``), or the raw ids themselves
            (``items[dense] -> raw``). Raw ids compare as strings (``296`` and ``"296"`` are one id).
    """

    def __init__(self, agent: Any, items: Any) -> None:
        raw = getattr(items, "item_ids", items)
        if raw is None:
            raise BadInputError("Recommender: the log has no raw item ids (item_ids is None); its ids are already dense")
        self.item_ids = np.asarray(raw).astype(str)
        if len(self.item_ids) != int(agent.n_items):
            raise BadInputError(f"Recommender: {len(self.item_ids)} raw item ids but the agent has n_items={agent.n_items}")
        self.agent = agent
        self._index = pd.Index(self.item_ids)

    def encode(self, raw_ids: Sequence[Any]) -> np.ndarray:
        """Dense ids of raw ids, int64; ``-1`` for an id the log does not have."""
        return self._index.get_indexer(np.asarray(raw_ids, dtype=object).astype(str)).astype(np.int64)

    def decode(self, dense_ids: np.ndarray) -> np.ndarray:
        """Raw ids (strings) of dense ids, same shape."""
        return self.item_ids[np.asarray(dense_ids, dtype=np.int64)]

    def recommend(self, histories: Sequence[Sequence[Any]], k: int = 10, exclude_seen: bool = True,
                  unknown: str = "ignore") -> np.ndarray:
        """Top-``k`` raw item ids for each history of raw item ids (oldest first).

        ``exclude_seen`` removes every item of the whole given history. ``unknown``: what to do with
        a raw id the log does not have (an item newer than the model): ``"ignore"`` drops it from
        the history, ``"error"`` raises :class:`BadInputError` naming it. Returns str ``[B, k]``.
        """
        if unknown not in ("ignore", "error"):
            raise BadInputError(f"Recommender.recommend: unknown must be 'ignore' or 'error', got {unknown!r}")
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        flat = self.encode([x for h in histories for x in h]) if lengths.sum() else np.zeros(0, np.int64)
        if unknown == "error" and (flat < 0).any():
            bad = [x for h in histories for x in h][int(np.flatnonzero(flat < 0)[0])]
            raise BadInputError(f"Recommender.recommend: item {bad!r} is not in the log the agent was trained on")
        dense = [d[d >= 0] for d in np.split(flat, np.cumsum(lengths)[:-1])] if len(histories) else []
        return self.decode(self.agent.recommend(dense, k=k, exclude_seen=exclude_seen))
