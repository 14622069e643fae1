"""Ranking, beyond-accuracy and divergence metrics: the one implementation in recgym.

Evaluation (:mod:`recgym.evaluate`) and the environments' rewards both call these functions,
so a number in a results table and a reward an agent trained on are computed the same way.

Conventions (shapes in brackets, ``B`` = batch, ``n`` = catalogue size, ``K`` = list length):

* ranks are **0-based**: rank 0 is the top of the list;
* every function is batched and returns one value per row; averaging over rows is the
  caller's choice (the evaluator averages, ``reward@k`` sums);
* numpy in, numpy out; :func:`target_ranks`, :func:`hit_at_k` and :func:`ndcg_at_k` also
  take torch tensors and return torch tensors (so the evaluator can stay on the device);
* logarithms are natural except the ``log2`` of the NDCG discount.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

Array = np.ndarray | torch.Tensor

__all__ = [
    "target_ranks",
    "hit_at_k",
    "ndcg_at_k",
    "recall_at_k",
    "reward_at_k",
    "slate_positions",
    "ar_at_1",
    "iar_at_1",
    "kl_divergence",
    "js_divergence",
    "ild_at_k",
    "pcount_at_k",
    "npcount_at_k",
    "popularity_lists",
    "popularity_reference",
    "coverage",
    "ndcg_step_rewards",
    "ild_step_rewards",
    "pcount_step_rewards",
    "slate_step_rewards",
]


# ---------------------------------------------------------------------------------------------
# ranks and accuracy
# ---------------------------------------------------------------------------------------------
def target_ranks(scores: Array, targets: Array, exclude: Array | None = None) -> Array:
    """0-based rank of each row's target in that row's scores, ties counted pessimistically.

    ``rank[b] = #{i : s[b,i] > s[b,t]} + #{i != t : s[b,i] = s[b,t]}`` over the items ``i`` not in
    ``exclude[b]``; the target ``t = targets[b]`` itself is never excluded. So a constant scorer
    ranks every target last among the non-excluded items (no credit for ties). Computed by one
    counting pass (no sort): ``#{i : s_i >= s_t} - 1``.

    NaN scores never count as higher than the target; a NaN target score gets the worst rank
    ``n - 1 - #excluded``.

    :param scores: float ``[B, n]`` (numpy or torch), higher is better.
    :param targets: int ``[B]`` item ids in ``[0, n)``.
    :param exclude: optional bool ``[B, n]``; ``True`` removes the item from the ranking.
    :return: int64 ``[B]`` (a torch tensor when ``scores`` is one, on its device).
    """
    if isinstance(scores, torch.Tensor):
        targets_t = torch.as_tensor(targets, device=scores.device).long().reshape(-1, 1)
        _check_rank_shapes(tuple(scores.shape), tuple(targets_t.shape), targets_t)
        t = scores.gather(1, targets_t)
        ge = scores >= t
        if exclude is not None:
            ex = torch.as_tensor(exclude, device=scores.device).bool()
            ge &= ~ex
            ge.scatter_(1, targets_t, True)  # the target is never excluded
            n_avail = scores.shape[1] - ex.sum(1) + ex.gather(1, targets_t).squeeze(1).long()
        else:
            n_avail = torch.full((scores.shape[0],), scores.shape[1], device=scores.device)
        rank = ge.sum(1) - 1
        return torch.where(torch.isnan(t.squeeze(1)), n_avail - 1, rank).long()
    scores = np.asarray(scores)
    targets = np.asarray(targets).astype(np.int64).reshape(-1)
    _check_rank_shapes(scores.shape, (len(targets), 1), targets)
    rows = np.arange(len(targets))
    t = scores[rows, targets][:, None]
    ge = scores >= t
    if exclude is not None:
        ex = np.asarray(exclude, dtype=bool)
        if ex.shape != scores.shape:
            raise ValueError(f"target_ranks: exclude has shape {ex.shape}, scores {scores.shape}")
        ge &= ~ex
        ge[rows, targets] = True
        n_avail = scores.shape[1] - ex.sum(1) + ex[rows, targets]
    else:
        n_avail = np.full(len(targets), scores.shape[1])
    rank = ge.sum(1) - 1
    return np.where(np.isnan(t[:, 0]), n_avail - 1, rank).astype(np.int64)


def _check_rank_shapes(s_shape: tuple, t_shape: tuple, targets: Array) -> None:
    if len(s_shape) != 2 or t_shape[0] != s_shape[0]:
        raise ValueError(f"target_ranks: scores must be [B, n] and targets [B]; got {s_shape} and {t_shape[:1]}")
    if t_shape[0] and (int(targets.min()) < 0 or int(targets.max()) >= s_shape[1]):
        raise ValueError(f"target_ranks: targets must lie in [0, {s_shape[1]}); got [{int(targets.min())}, {int(targets.max())}]")


def hit_at_k(ranks: Array, k: int) -> Array:
    """HR@k: ``1[rank < k]`` as float ``[B]``."""
    if isinstance(ranks, torch.Tensor):
        return (ranks < k).float()
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg_at_k(ranks: Array, k: int) -> Array:
    """NDCG@k with one relevant item: ``1 / log2(rank + 2)`` when ``rank < k`` else 0, float ``[B]``.

    (With 1-based positions ``p = rank + 1`` this is the papers' ``1 / log2(p + 1)``; the ideal
    DCG is 1, so DCG = NDCG.)
    """
    if isinstance(ranks, torch.Tensor):
        r = ranks.double()
        return torch.where(ranks < k, 1.0 / torch.log2(r + 2.0), torch.zeros_like(r))
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r < k, 1.0 / np.log2(np.maximum(r, 0) + 2.0), 0.0)


def recall_at_k(ranks: Array, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Recall@k: share of a row's relevant items ranked in the top ``k``, float ``[B]``.

    ``ranks`` is ``[B]`` (one relevant item per row: Recall@k = HR@k) or ``[B, m]`` with ``m``
    relevant items per row; ``mask`` bool ``[B, m]`` marks the real ones (rows with none give 0).
    """
    r = np.asarray(ranks.cpu() if isinstance(ranks, torch.Tensor) else ranks)
    if r.ndim == 1:
        return (r < k).astype(np.float64)
    m = np.ones(r.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    n_rel = m.sum(1)
    return np.where(n_rel > 0, ((r < k) & m).sum(1) / np.maximum(n_rel, 1), 0.0)


def reward_at_k(ranks: np.ndarray, rewards: np.ndarray, k: int) -> np.ndarray:
    """Per-event contribution to "cumulative reward@k": ``rewards[b] * 1[rank_b < k]``, float ``[B]``.

    The papers' reward@k is the **sum** of this over the evaluated events.
    """
    return np.where(np.asarray(ranks) < k, np.asarray(rewards, dtype=np.float64), 0.0)


def slate_positions(slates: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based position of each row's target in its slate ``[B, K]``, or ``K`` when absent (int64 ``[B]``).

    Feeding these into :func:`hit_at_k` / :func:`ndcg_at_k` with ``k = K`` gives the list metrics.
    """
    slates = np.asarray(slates)
    hit = slates == np.asarray(targets).reshape(-1, 1)
    K = slates.shape[1]
    return np.where(hit.any(1), hit.argmax(1), K).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# policy metrics (LPI): observed / imputed reward of the greedy item, divergences
# ---------------------------------------------------------------------------------------------
def ar_at_1(greedy_items: np.ndarray, logged_items: np.ndarray, logged_rewards: np.ndarray) -> np.ndarray:
    """AR@1: observed reward of the greedy item, float ``[B]``.

    ``logged_rewards[b]`` when ``greedy_items[b] == logged_items[b]``, else 0: the log only tells
    the reward of the item that was actually shown, so a different greedy item counts as no
    reward (a pessimistic, replay-style estimate; average over rows for the reported AR@1).
    """
    g = np.asarray(greedy_items).reshape(-1)
    return np.where(g == np.asarray(logged_items).reshape(-1), np.asarray(logged_rewards, dtype=np.float64), 0.0)


def iar_at_1(
    greedy_items: np.ndarray,
    imputed: np.ndarray | Callable[[np.ndarray, np.ndarray], np.ndarray],
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """iAR@1: imputed reward ``r̂(context, greedy item)``, float ``[B]``.

    :param greedy_items: int ``[B]`` items chosen by the policy.
    :param imputed: a reward matrix ``[R, n]`` (one row per context, e.g. per user of the MF
        imputer) or a callable ``imputed(rows, items) -> [B]``.
    :param rows: int ``[B]`` row of ``imputed`` (or context id passed to the callable) for each
        greedy item; default ``arange(B)`` (``imputed`` is then ``[B, n]``, row-aligned).
    """
    g = np.asarray(greedy_items).astype(np.int64).reshape(-1)
    r = np.arange(len(g)) if rows is None else np.asarray(rows).astype(np.int64).reshape(-1)
    if callable(imputed):
        out = np.asarray(imputed(r, g), dtype=np.float64).reshape(-1)
        if out.shape != g.shape:
            raise ValueError(f"iar_at_1: the imputer returned shape {out.shape}, expected {g.shape}")
        return out
    m = np.asarray(imputed)
    if m.ndim != 2:
        raise ValueError(f"iar_at_1: imputed must be a [rows, n_items] matrix or a callable, got shape {m.shape}")
    return m[r, g].astype(np.float64)


def _as_prob_rows(p: Array, name: str) -> np.ndarray:
    p = np.asarray(p.detach().cpu() if isinstance(p, torch.Tensor) else p, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    if np.any(p < 0) or np.any(~np.isfinite(p)):
        raise ValueError(f"{name} must hold finite non-negative probabilities")
    return p


def kl_divergence(p: Array, q: Array) -> np.ndarray:
    """KL(p ‖ q) = Σ_i p_i ln(p_i / q_i) per row, float ``[B]`` (nats).

    Zeros are safe: terms with ``p_i = 0`` are 0 (``0 ln 0 = 0``); a row where ``q_i = 0 < p_i``
    gives ``+inf`` (the true value). Rows of ``p`` and ``q`` are ``[B, n]`` probabilities
    (numpy or torch; not renormalised).
    """
    from scipy.special import xlogy

    p, q = _as_prob_rows(p, "kl_divergence: p"), _as_prob_rows(q, "kl_divergence: q")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = xlogy(p, p) - xlogy(p, q)  # p>0, q=0 -> +inf; p=0 -> 0
    return np.maximum(terms.sum(1), 0.0)


def js_divergence(p: Array, q: Array) -> np.ndarray:
    """Jensen–Shannon divergence per row, float ``[B]`` (nats):
    ``JS = ½ KL(p ‖ m) + ½ KL(q ‖ m)``, ``m = (p + q) / 2``.

    Symmetric, 0 for equal rows, ``ln 2`` for rows with disjoint supports, always finite
    (``m_i > 0`` wherever ``p_i`` or ``q_i`` is); clipped to ``[0, ln 2]`` against rounding.
    """
    p, q = _as_prob_rows(p, "js_divergence: p"), _as_prob_rows(q, "js_divergence: q")
    m = 0.5 * (p + q)
    js = 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)
    return np.clip(js, 0.0, np.log(2.0))


# ---------------------------------------------------------------------------------------------
# beyond-accuracy list metrics
# ---------------------------------------------------------------------------------------------
def _unit_genres(slates: np.ndarray, genres: np.ndarray) -> np.ndarray:
    """Genre vectors of the slate's items scaled to unit norm, ``[B, K, g]``; all-zero rows stay 0."""
    g = np.asarray(genres, dtype=np.float64)[np.asarray(slates)]
    norm = np.linalg.norm(g, axis=-1, keepdims=True)
    return np.divide(g, norm, out=np.zeros_like(g), where=norm > 0)


def _pair_distances(slates: np.ndarray, genres: np.ndarray) -> np.ndarray:
    """Cosine distances ``1 - cos`` between the slate's items, ``[B, K, K]``."""
    u = _unit_genres(slates, genres)
    return 1.0 - u @ u.transpose(0, 2, 1)


def ild_at_k(slates: np.ndarray, genres: np.ndarray) -> np.ndarray:
    """ILD@K: mean pairwise cosine distance of the genre vectors of the ``K`` items, float ``[B]``.

    ``ILD = 2 / (K (K-1)) · Σ_{j<l} (1 - cos(g_j, g_l))``, in ``[0, 1]`` for multi-hot genres.
    An item with an all-zero genre vector has cosine 0 with every item, so distance 1 (no shared
    genre is known). ``K < 2`` gives 0. (The GPTRec paper's tables report half of this value.)

    :param slates: int ``[B, K]`` item ids. :param genres: float ``[n_items, g]``.
    """
    slates = np.atleast_2d(np.asarray(slates))
    K = slates.shape[1]
    if K < 2:
        return np.zeros(len(slates))
    d = _pair_distances(slates, genres)
    return np.triu(d, 1).sum((1, 2)) * 2.0 / (K * (K - 1))


def pcount_at_k(slates: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """PCOUNT@K: mean popularity share ``(1/K) Σ_j pop[slate_j]`` of the list's items, float ``[B]``.

    ``popularity`` float ``[n_items]`` is usually the training event share of each item
    (``SessionLog.popularity()``).
    """
    return np.asarray(popularity, dtype=np.float64)[np.atleast_2d(np.asarray(slates))].mean(1)


def popularity_lists(popularity: np.ndarray, k: int, history_items: np.ndarray | None = None,
                     history_offsets: np.ndarray | None = None) -> np.ndarray:
    """The popularity model's top-``k`` lists, most popular first, int64 ``[R, k]``.

    Without histories: one row, the global top-``k``. With histories (CSR: row ``r`` excludes
    ``history_items[history_offsets[r]:history_offsets[r+1]]``, ``R = len(history_offsets) − 1``):
    the ``k`` most popular items outside each row's history, what the ``pop`` agent lists under
    leave-one-out evaluation with history exclusion. Ties between equally popular items are
    broken arbitrarily (they do not change PCOUNT). Rows are processed in chunks of dense ``[c, n]``
    scores.
    """
    p = np.asarray(popularity, dtype=np.float64)
    n = len(p)
    k = min(int(k), n)
    if history_offsets is None:
        return np.argsort(-p, kind="stable")[:k][None].astype(np.int64)
    offsets = np.asarray(history_offsets, dtype=np.int64)
    items = np.asarray(history_items, dtype=np.int64)
    R, lens = len(offsets) - 1, np.diff(offsets)
    out = np.empty((R, k), dtype=np.int64)
    if k == 0:
        return out
    chunk = max(1, (1 << 22) // max(n, 1))
    for lo in range(0, R, chunk):  # chunks of rows, vectorised within
        hi = min(lo + chunk, R)
        s = np.broadcast_to(p, (hi - lo, n)).copy()
        s[np.repeat(np.arange(hi - lo), lens[lo:hi]), items[offsets[lo] : offsets[hi]]] = -np.inf
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable")
        out[lo:hi] = np.take_along_axis(top, order, 1)
    return out


def popularity_reference(popularity: np.ndarray, k: int, history_items: np.ndarray | None = None,
                         history_offsets: np.ndarray | None = None) -> float:
    """PCOUNT@k of the popularity model under the same protocol: the mean over rows of
    :func:`pcount_at_k` of :func:`popularity_lists` (global top-``k`` without histories; with
    histories, each row's top-``k`` outside its history). nPCOUNT divides by this, so the ``pop``
    agent evaluated the same way scores exactly 1 (GPTRec paper, §4.4)."""
    lists = popularity_lists(popularity, k, history_items, history_offsets)
    return float(pcount_at_k(lists, popularity).mean()) if lists.size else 0.0


def npcount_at_k(slates: np.ndarray, popularity: np.ndarray, reference: float | None = None) -> np.ndarray:
    """nPCOUNT@K = PCOUNT@K / PCOUNT@K of the popularity model, float ``[B]`` (1 = as popular as pop).

    ``reference`` is :func:`popularity_reference` of the evaluation protocol (pass the histories
    when the lists exclude them, as :func:`recgym.evaluate.evaluate_loo` does); the default is the
    global top-``K``, the popularity model's list when nothing is excluded.
    """
    slates = np.atleast_2d(np.asarray(slates))
    ref = popularity_reference(popularity, slates.shape[1]) if reference is None else float(reference)
    if ref <= 0:
        raise ValueError("npcount_at_k: the popularity model's PCOUNT is 0 (all-zero popularity)")
    return pcount_at_k(slates, popularity) / ref


def coverage(slates: np.ndarray, n_items: int) -> float:
    """Catalogue coverage: distinct recommended items / ``n_items`` (ids ``>= n_items`` ignored)."""
    s = np.asarray(slates).reshape(-1)
    s = s[(s >= 0) & (s < n_items)]
    return float(len(np.unique(s)) / n_items) if n_items else 0.0


# ---------------------------------------------------------------------------------------------
# slate step rewards (Next-K env): the term at position j depends only on the prefix slate[:, :j+1],
# and the terms of a full K-list sum to the list metric.
# ---------------------------------------------------------------------------------------------
def ndcg_step_rewards(slates: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """NDCG terms ``1[slate_j = target] / log2(j + 2)`` (0-based ``j``), float ``[B, i]``.

    On a slate without repeated items the sum over ``j < K`` equals ``ndcg_at_k(rank, K)``.
    """
    slates = np.atleast_2d(np.asarray(slates))
    disc = 1.0 / np.log2(np.arange(slates.shape[1]) + 2.0)
    return (slates == np.asarray(targets).reshape(-1, 1)) * disc


def ild_step_rewards(slates: np.ndarray, genres: np.ndarray, K: int) -> np.ndarray:
    """ILD terms ``Σ_{l<j} (1 - cos(g_j, g_l)) · 2 / (K (K-1))``, float ``[B, i]`` for a prefix of length ``i <= K``.

    Summed over a full ``K``-list they equal :func:`ild_at_k`. For one new item only, pass the
    prefix and read ``[:, -1]``. ``K < 2`` gives zeros.
    """
    slates = np.atleast_2d(np.asarray(slates))
    B, i = slates.shape
    if i > K:
        raise ValueError(f"ild_step_rewards: prefix of length {i} is longer than K={K}")
    if K < 2 or i == 0:
        return np.zeros((B, i))
    d = _pair_distances(slates, genres)
    return np.tril(d, -1).sum(2) * 2.0 / (K * (K - 1))


def pcount_step_rewards(slates: np.ndarray, popularity: np.ndarray, K: int) -> np.ndarray:
    """PCOUNT terms ``pop[slate_j] / K`` (a cost: subtract it), float ``[B, i]``; sum over a full list = PCOUNT@K."""
    slates = np.atleast_2d(np.asarray(slates))
    return np.asarray(popularity, dtype=np.float64)[slates] / K


def slate_step_rewards(
    slates: np.ndarray,
    targets: np.ndarray,
    genres: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    lambda_ild: float = 0.0,
    lambda_pop: float = 0.0,
    K: int | None = None,
) -> np.ndarray:
    """Next-K step rewards ``NDCG_j + λ_ild · ILD_j − λ_pop · PCOUNT_j``, float ``[B, i]``.

    Summed over a full list: ``NDCG@K + λ_ild · ILD@K − λ_pop · PCOUNT@K``. ``K`` defaults to the
    slate width (pass it when ``slates`` is a partial prefix). ``genres`` / ``popularity`` are
    needed only when their λ is non-zero.
    """
    slates = np.atleast_2d(np.asarray(slates))
    K = slates.shape[1] if K is None else int(K)
    r = ndcg_step_rewards(slates, targets)
    if lambda_ild:
        if genres is None:
            raise ValueError("slate_step_rewards: lambda_ild != 0 needs genres")
        r = r + lambda_ild * ild_step_rewards(slates, genres, K)
    if lambda_pop:
        if popularity is None:
            raise ValueError("slate_step_rewards: lambda_pop != 0 needs popularity")
        r = r - lambda_pop * pcount_step_rewards(slates, popularity, K)
    return r
