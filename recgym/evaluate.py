"""The logged-data evaluation protocols (docs/evaluation.md): one implementation each.

* :func:`evaluate_sessions` — the SQN/SA2C/PRL/CCQL/LPI protocol: every event of every session
  is a prediction from the history before it (the first event too, with an empty history),
  the full catalogue is ranked, HR@k / NDCG@k over all, click and purchase events, reward@k.
* :func:`evaluate_loo` — leave-one-out (SASRec split, GPTRec metrics): the last event of each
  session is the target, the events before it are the input (and are excluded from the ranking
  by default); Recall@1/10, NDCG@10 and list metrics on the top-10 list.

An *evaluable* is anything with ``n_items``, ``state_len`` and
``scores(states int64 [B, L] right-padded with n_items, lengths int64 [B]) -> [B, n_items]``
(:class:`recgym.agents.base.Agent`). ``scores`` must return a tensor the caller may modify (a fresh
one, as a matmul gives; views and non-contiguous results are copied before the leave-one-out
exclusion writes ``-inf`` into them). Scoring runs in batches under ``torch.no_grad``; ranks come from
one counting pass over each score batch (:func:`recgym.metrics.target_ranks` semantics:
ties count against the target), never a sort.

Simulated evaluation (the greedy policy of an evaluable in a Gymnasium env):

* :func:`greedy_actions` — top-1 items for a batch of histories (scores go to the host once per batch);
* :func:`evaluate_in_env` — in an MF user env (``recgym/MFUser-*``, ``recgym/NetflixIAR-v0``) every
  held-out context is scored in one batched pass: imputed reward ``iar@1``, observed reward and hit
  when it is the logged item (``ar@1``, ``hit@1``), on Synthetic the World's true expected reward
  (``true@1``); equal to the mean return of the ``horizon=1`` env over all its contexts, without
  sampling noise. Any other env is run episode by episode (:func:`run_episodes`) with the greedy,
  mask-respecting action (:func:`greedy_action`);
* :func:`true_value_on_log` — Synthetic only: the World oracle's value of the greedy policy on the
  logged contexts.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np
import torch

from recgym import metrics
from recgym.data import KIND_CLICK, KIND_PURCHASE, SessionLog, Transitions, last_items, last_items_of_rows
from recgym.errors import BadInputError

__all__ = ["Evaluable", "evaluate", "evaluate_in_env", "evaluate_loo", "evaluate_sessions", "greedy_action",
           "greedy_actions", "loo_ranks", "run_episodes", "session_ranks", "true_value_on_log"]


class Evaluable(Protocol):
    n_items: int
    state_len: int

    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor: ...


def _device_of(agent: Any, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device(getattr(agent, "device", "cpu"))


def _check(agent: Any, log: SessionLog) -> None:
    for attr in ("n_items", "state_len", "scores"):
        if not hasattr(agent, attr):
            raise TypeError(f"evaluate: {type(agent).__name__} has no {attr!r} (an evaluable needs n_items, state_len, scores)")
    if int(agent.n_items) != log.n_items:
        raise ValueError(f"evaluate: agent has n_items={agent.n_items} but log {log.name!r} has n_items={log.n_items}")


def _score_batch(agent: Evaluable, states: np.ndarray, lengths: np.ndarray, device: torch.device,
                 rows: np.ndarray | None = None, what: str = "event", log_name: str = "") -> torch.Tensor:
    """``agent.scores`` of a batch, checked: shape ``[B, n_items]`` and no NaN (a NaN ranks as
    nothing and would turn into silent zero metrics). ``rows`` are the batch rows' indices in the
    log (events or sessions, as ``what`` says) for the error message."""
    s = agent.scores(
        torch.from_numpy(np.ascontiguousarray(states, dtype=np.int64)).to(device),
        torch.from_numpy(np.ascontiguousarray(lengths, dtype=np.int64)).to(device),
    )
    if s.ndim != 2 or s.shape != (len(states), agent.n_items):
        raise ValueError(f"evaluate: agent.scores returned shape {tuple(s.shape)}, expected {(len(states), agent.n_items)}")
    if s.is_floating_point() and torch.isnan(s.sum()):  # one reduction; the exact scan only when it is NaN
        bad = torch.isnan(s).any(dim=1).nonzero()
        if len(bad):
            i = int(bad[0, 0])
            row = int(rows[i]) if rows is not None else i
            raise BadInputError(f"evaluate: {type(agent).__name__}.scores returned NaN, first for {what} {row} of log {log_name!r} "
                                f"(history length {int(lengths[i])}); NaN scores cannot be ranked")
    return s


_CPU_ROWS = 16  # rows per counting chunk on CPU: 16 x 70k bools stay in L2


def _count_ge(scores: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``#{i : scores[b, i] >= t[b]}`` per row, int64 ``[B]`` (NaN scores never count).

    On CPU, numpy's SIMD ``count_nonzero`` over small row chunks is ~10x faster than torch's
    bool reduction (measured: torch ``(s >= t).sum(1)`` ran slower than the scoring matmul
    itself at 70k items); on an accelerator torch is used directly.
    """
    if scores.device.type != "cpu" or scores.dtype not in (torch.float32, torch.float64):
        return (scores >= t).sum(1, dtype=torch.int64)
    s, tv = scores.detach().numpy(), t.detach().numpy()
    out = np.empty(len(s), dtype=np.int64)
    for i in range(0, len(s), _CPU_ROWS):  # loop over row chunks, not rows
        out[i : i + _CPU_ROWS] = np.count_nonzero(s[i : i + _CPU_ROWS] >= tv[i : i + _CPU_ROWS], axis=1)
    return torch.from_numpy(out)


def _ranks_in_batch(
    s: torch.Tensor, targets: torch.Tensor, rows: np.ndarray | None = None, cols: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks of ``targets`` [B] in scores ``s`` [B, n] with items ``(rows, cols)`` removed.

    Removal writes ``-inf`` into the scores (copied first when ``s`` is a view or not
    contiguous); the target keeps its own score for the count, so it is never excluded.
    Ties count against the target; a NaN target score gets rank ``n - 1``; so does a target
    the agent itself scores ``-inf`` (the removed items then tie with it).

    :return: ``(ranks int64 [B] on s's device, scores with the removals applied)``.
    """
    tgt = targets[:, None]
    t = s.gather(1, tgt)
    if rows is not None and len(rows):
        if s._base is not None or not s.is_contiguous() or not s.is_floating_point():
            s = s.float().contiguous().clone()  # never write into an agent's buffer or view
        idx = (torch.from_numpy(rows).to(s.device), torch.from_numpy(cols).to(s.device))
        s.index_put_(idx, torch.tensor(-torch.inf, dtype=s.dtype, device=s.device))
    # items >= the target's score, minus the target itself when it is among them (it is not
    # when the removal overwrote it, i.e. when it was in the history)
    ge = _count_ge(s, t).to(s.device) - (s.gather(1, tgt) >= t)[:, 0].long()
    return torch.where(torch.isnan(t[:, 0]), s.shape[1] - 1, ge), s


@torch.no_grad()
def session_ranks(
    agent: Evaluable,
    log: SessionLog,
    batch_size: int = 1024,
    exclude_history: bool = False,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """0-based full-catalogue rank of every event of ``log`` (int64 ``[n_events]``), in event order.

    The state of event ``t`` of a session is its last ``agent.state_len`` items before ``t``
    (right-padded; empty for ``t = 0``). With ``exclude_history`` the items of that state window
    (except the target) are removed from the ranking.
    """
    _check(agent, log)
    dev = _device_of(agent, device)
    tr = Transitions.from_log(log, state_len=int(agent.state_len))
    n = log.n_events
    ranks = np.empty(n, dtype=np.int64)
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        states = tr.state[lo:hi]
        s = _score_batch(agent, states, tr.state_len[lo:hi], dev, np.arange(lo, hi), "event", log.name)
        targets = torch.from_numpy(tr.action[lo:hi]).to(dev)
        rows = cols = None
        if exclude_history:
            rows, j = np.nonzero(states != log.pad_id)
            cols = states[rows, j].astype(np.int64)
        r, _ = _ranks_in_batch(s, targets, rows, cols)
        ranks[lo:hi] = r.cpu().numpy()
    return ranks


def evaluate_sessions(
    agent: Evaluable,
    log: SessionLog,
    ks: Sequence[int] = (5, 10, 20),
    batch_size: int = 1024,
    exclude_history: bool = False,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """The logged-session protocol (SQN/SA2C/PRL/CCQL/LPI).

    Every event is a target. ``hr@k`` / ``ndcg@k`` average over all events, ``*_click`` over
    events with ``kind == KIND_CLICK``, ``*_purchase`` over ``kind == KIND_PURCHASE`` (NaN when
    the log has no such event); ``reward@k`` = **sum** of ``log.rewards`` of the events whose
    target ranks in the top ``k``. NDCG@k = ``1 / log2(rank + 2)`` for 0-based ``rank < k``.

    :return: flat dict with ``hr@k``, ``ndcg@k``, ``hr@k_click``, ``ndcg@k_click``,
        ``hr@k_purchase``, ``ndcg@k_purchase``, ``reward@k`` for each ``k``, and ``n_events``,
        ``n_click``, ``n_purchase``.
    """
    ranks = session_ranks(agent, log, batch_size=batch_size, exclude_history=exclude_history, device=device)
    kinds = np.asarray(log.kinds)
    groups = {"": np.ones(len(ranks), dtype=bool), "_click": kinds == KIND_CLICK, "_purchase": kinds == KIND_PURCHASE}
    out: dict[str, float] = {}
    for k in ks:
        hit = metrics.hit_at_k(ranks, k)
        ndcg = metrics.ndcg_at_k(ranks, k)
        for suffix, m in groups.items():
            out[f"hr@{k}{suffix}"] = _mean(hit[m])
            out[f"ndcg@{k}{suffix}"] = _mean(ndcg[m])
        out[f"reward@{k}"] = float(metrics.reward_at_k(ranks, log.rewards, k).sum())
    out["n_events"] = float(len(ranks))
    out["n_click"] = float(groups["_click"].sum())
    out["n_purchase"] = float(groups["_purchase"].sum())
    return out


@torch.no_grad()
def loo_ranks(
    agent: Evaluable,
    log: SessionLog,
    exclude_history: bool = True,
    slate_size: int = 10,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks and top-``slate_size`` lists for the last event of every non-empty session.

    The input is the session without its last event (the agent reads its last ``state_len``
    items); with ``exclude_history`` every item of the whole input (not only the window) is
    removed from the ranking and from the list — except the target in the ranking.

    :return: ``(ranks int64 [S], lists int64 [S, slate_size], sessions int64 [S])``.
    """
    _check(agent, log)
    dev = _device_of(agent, device)
    sessions = np.flatnonzero(log.lengths > 0)
    targets_all = log.items[log.offsets[1:][sessions] - 1].astype(np.int64)
    in_items, in_offsets = _loo_inputs(log, sessions)
    in_len = np.diff(in_offsets)
    states, slen = last_items(in_items, in_offsets[:-1], in_offsets[1:], int(agent.state_len), log.pad_id)
    S = len(sessions)
    k_list = min(slate_size, log.n_items)
    ranks = np.empty(S, dtype=np.int64)
    lists = np.empty((S, k_list), dtype=np.int64)
    for lo in range(0, S, batch_size):
        hi = min(lo + batch_size, S)
        s = _score_batch(agent, states[lo:hi], slen[lo:hi], dev, sessions[lo:hi], "session", log.name)
        targets = torch.from_numpy(targets_all[lo:hi]).to(dev)
        rows = cols = None
        if exclude_history:
            rows = np.repeat(np.arange(hi - lo), in_len[lo:hi])
            cols = in_items[in_offsets[lo] : in_offsets[hi]]
        r, s = _ranks_in_batch(s, targets, rows, cols)
        ranks[lo:hi] = r.cpu().numpy()
        lists[lo:hi] = torch.topk(s, k_list, dim=1).indices.cpu().numpy()
    return ranks, lists, sessions


def _loo_inputs(log: SessionLog, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out inputs (every event but the last) of ``sessions``, CSR ``(items, offsets)``."""
    in_len = log.lengths[sessions] - 1
    in_offsets = np.concatenate([[0], np.cumsum(in_len)]).astype(np.int64)
    in_idx = np.repeat(log.offsets[:-1][sessions] - in_offsets[:-1], in_len) + np.arange(in_offsets[-1], dtype=np.int64)
    return log.items[in_idx].astype(np.int64), in_offsets


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else float("nan")


def evaluate_loo(
    agent: Evaluable,
    log: SessionLog,
    ks: Sequence[int] = (1, 10),
    exclude_history: bool = True,
    genres: np.ndarray | None = None,
    popularity: np.ndarray | None = None,
    slate_size: int = 10,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """The leave-one-out protocol: the last event of each session is the target.

    ``recall@k`` (= ``hr@k``, one target per user) and ``ndcg@k`` for each ``k``; on the agent's
    top-``slate_size`` list (history excluded when ``exclude_history``): ``ild@10`` (genres given, or
    ``log.genres`` when present), ``pcount@10`` and ``npcount@10`` (``popularity`` given: the
    **training** item shares ``[n_items]``; nPCOUNT = PCOUNT / PCOUNT of the popularity model's
    lists under the same protocol, i.e. each user's 10 most popular items outside the history when
    ``exclude_history``, so ``pop`` scores exactly 1), ``coverage@10`` (distinct listed items / ``n_items``); ``n_users``.
    """
    ranks, lists, sessions = loo_ranks(agent, log, exclude_history=exclude_history, slate_size=slate_size,
                                batch_size=batch_size, device=device)
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = _mean(metrics.recall_at_k(ranks, k))
        out[f"hr@{k}"] = _mean(metrics.hit_at_k(ranks, k))
        out[f"ndcg@{k}"] = _mean(metrics.ndcg_at_k(ranks, k))
    genres = log.genres if genres is None else genres
    if genres is not None:
        genres = np.asarray(genres)
        if genres.shape[0] != log.n_items:
            raise ValueError(f"evaluate_loo: genres has {genres.shape[0]} rows, expected n_items={log.n_items}")
        out[f"ild@{slate_size}"] = _mean(metrics.ild_at_k(lists, genres))
    if popularity is not None:
        popularity = np.asarray(popularity, dtype=np.float64)
        if popularity.shape != (log.n_items,):
            raise ValueError(f"evaluate_loo: popularity has shape {popularity.shape}, expected ({log.n_items},)")
        out[f"pcount@{slate_size}"] = _mean(metrics.pcount_at_k(lists, popularity))
        # the popularity model's PCOUNT under this protocol: its own lists for the same users
        # (history excluded or not), averaged the same way, so pop gets exactly 1
        no_hist = (np.zeros(0, np.int64), np.zeros(len(sessions) + 1, np.int64))
        hist = _loo_inputs(log, sessions) if exclude_history else no_hist
        ref = metrics.popularity_reference(popularity, lists.shape[1], *hist)
        out[f"npcount@{slate_size}"] = out[f"pcount@{slate_size}"] / ref if ref > 0 else float("nan")
    out[f"coverage@{slate_size}"] = metrics.coverage(lists, log.n_items)
    out["n_users"] = float(len(ranks))
    return out


def evaluate(agent: Evaluable, log: SessionLog, protocol: str, **kw: Any) -> dict[str, float]:
    """Dispatch to :func:`evaluate_sessions` (``"session"``) or :func:`evaluate_loo` (``"loo"``)."""
    if protocol == "session":
        return evaluate_sessions(agent, log, **kw)
    if protocol == "loo":
        return evaluate_loo(agent, log, **kw)
    raise ValueError(f"evaluate: protocol must be 'session' or 'loo', got {protocol!r}")


# ---------------------------------------------------------------------------- simulated evaluation
@torch.no_grad()
def greedy_actions(agent: Evaluable, hist: np.ndarray, lengths: np.ndarray, batch_size: int = 1024,
                   masks: np.ndarray | None = None) -> np.ndarray:
    """The agent's top-1 item for right-padded histories ``hist`` int ``[B, L]`` with ``lengths`` ``[B]``
    (each row's last ``agent.state_len`` items are its state) -> int64 ``[B]``. ``masks`` bool
    ``[B, n_items]``: only ``True`` items may be chosen."""
    states, slen = last_items_of_rows(hist, lengths, int(agent.state_len), int(agent.n_items))
    dev = _device_of(agent, None)
    out = np.empty(len(states), dtype=np.int64)
    for lo in range(0, len(states), batch_size):
        s = _score_batch(agent, states[lo : lo + batch_size], slen[lo : lo + batch_size], dev).float()
        if masks is not None:
            m = torch.from_numpy(np.asarray(masks[lo : lo + batch_size], dtype=bool)).to(s.device)
            s = s.masked_fill(~m, -torch.inf)
        out[lo : lo + batch_size] = s.argmax(dim=1).cpu().numpy()
    return out


def greedy_action(agent: Evaluable, obs: dict[str, Any], mask: np.ndarray | None = None) -> int:
    """The greedy item for one env observation ``{"history": [L] right-padded, "length": [1]}``."""
    hist = np.asarray(obs["history"])[None]
    n = np.asarray(obs.get("length", [(hist != agent.n_items).sum()])).reshape(1)
    return int(greedy_actions(agent, hist, n, masks=None if mask is None else np.asarray(mask)[None])[0])


def run_episodes(env: Any, act: Any, episodes: int, seed: int = 0) -> dict[str, float]:
    """Mean return of ``act(obs) -> action`` over ``episodes`` episodes of ``env`` (reset with ``seed``
    once), the mean of the numeric ``"...@..."`` entries of each episode's final ``info`` and, where
    the env reports ``true_reward`` per step, its mean (``true_value``)."""
    returns, finals, true_r = [], {}, []
    obs, _ = env.reset(seed=seed)
    for _ in range(int(episodes)):
        done, ret, info = False, 0.0, {}
        while not done:
            obs, r, term, trunc, info = env.step(act(obs))
            ret += float(r)
            done = term or trunc
            if "true_reward" in info:
                true_r.append(float(info["true_reward"]))
        for k, v in info.items():
            if "@" in k and np.isscalar(v):
                finals.setdefault(k, []).append(float(v))
        returns.append(ret)
        obs, _ = env.reset()
    out = {"mean_return": float(np.mean(returns)), "episodes": float(episodes),
           **{k: float(np.mean(v)) for k, v in finals.items()}}
    if true_r:
        out["true_value"] = float(np.mean(true_r))
    return out


def evaluate_in_env(agent: Evaluable, env: Any, episodes: int = 200, seed: int = 0) -> dict[str, float]:
    """Simulated value of ``agent``'s greedy policy in ``env`` (see the module docstring).

    MF user envs: ``{"iar@1", "ar@1", "hit@1", "n_contexts"}`` (+ ``"true@1"`` on Synthetic), over
    every held-out context. Other envs: :func:`run_episodes` with :func:`greedy_action` (invalid items
    masked when the env has ``action_masks``)."""
    from recgym.errors import BadInputError

    u = env.unwrapped
    if getattr(u, "n_items", agent.n_items) != agent.n_items:
        raise BadInputError(f"env {env.spec.id if env.spec else u!r} has n_items={u.n_items}, the agent {agent.n_items}")
    if hasattr(u, "imputed_reward") and hasattr(u, "targets"):
        hlen = np.asarray(u.hlen, dtype=np.int64).reshape(-1)
        items = greedy_actions(agent, np.asarray(u.hist), hlen)
        users = np.asarray(u.users, dtype=np.int64)
        hit = items == np.asarray(u.targets)
        out = {"iar@1": float(np.mean(u.imputed_reward(users, items))),
               "ar@1": float(np.mean(np.where(hit, u.target_rewards, 0.0))),
               "hit@1": float(np.mean(hit)), "n_contexts": float(len(items))}
        if getattr(u, "world", None) is not None:
            out["true@1"] = float(np.mean(u.world.expected_reward(users, np.asarray(u.hist), hlen, items[:, None])))
        return out
    masks_fn = getattr(u, "action_masks", None)
    out = run_episodes(env, lambda obs: greedy_action(agent, obs, None if masks_fn is None else masks_fn()),
                       episodes, seed)
    out.pop("true_value", None)
    return out


def true_value_on_log(agent: Evaluable, log: SessionLog) -> float | None:
    """Synthetic only: mean true expected reward of the agent's greedy item over every event
    context of ``log`` (``World.true_value``); ``None`` when the log carries no World."""
    from recgym.sim.world import World

    if "world" not in (getattr(log, "meta", None) or {}):
        return None
    world = World.from_log(log)
    users, hist, lengths = world.contexts(log)
    return float(world.true_value(agent, users, hist, lengths, k=1))
