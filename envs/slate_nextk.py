"""The Next-K slate env (GPTRec's PPO stage): build a K-item list for one user, one item per step.

Context per episode (kwarg ``split``):

* ``"train"``: a uniformly drawn training sequence of length >= 2 and a uniformly drawn prefix
  length ``p in [1, len-1]``; the history is the first ``p`` items, the target the item at ``p``
  (random prefixes, as GPTRec's PPO draws them);
* ``"valid"`` / ``"test"``: the leave-one-out contexts of that part (each sequence without its
  last item; the last item is the target), in log order (``order="sequential"``) or drawn.

Observation: ``{"history": int64 [L] (pad n_items), "length": int64 [1], "slate": int64 [K]
(pad n_items), "position": int64 [1]}``. Action: ``Discrete(n_items)``. Step ``j`` (0-based)
earns ``NDCG_j + λ_ild · ILD_j − λ_pop · PCOUNT_j`` from :mod:`recgym.envs.rewards` (= ``recgym.metrics``).
``action_masks()`` is False for items already in the slate and, with ``mask_history=True``, for
items in the observed history. An invalid (masked) action is still placed in the slate (so every
episode has exactly K steps) but earns ``invalid_penalty`` instead of its reward terms. An action
outside ``[0, n_items)`` raises ``ValueError``. The last step's ``info`` holds the list metrics.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recgym.data.windows import last_items, last_items_of_lists
from recgym.envs.common import check_action, check_actions, check_num_envs, contexts_of, count_box, episode_over, id_box, load_env_split
from recgym.envs.rewards import SlateReward


class SlateContexts:
    """Draws ``(history [n, L], length [n], target [n])`` contexts of one split part, vectorised."""

    def __init__(self, source: str, split: str, state_len: int, data: Any, data_dir: Any, download: bool,
                 seed: int, params: dict[str, Any]) -> None:
        if split not in ("train", "valid", "test"):
            raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
        sp = load_env_split(source, data=data, data_dir=data_dir, download=download, seed=seed, **params)
        self.split, self.L = split, int(state_len)
        train = sp.train
        self.n_items = train.n_items
        self.genres = train.genres
        self.popularity = train.popularity()
        log = getattr(sp, split)
        self.name = log.name
        if split == "train":
            keep = np.flatnonzero(log.lengths >= 2)
            if len(keep) == 0:
                raise ValueError(f"SlateNextK: no training sequence of length >= 2 in {log.name!r}")
            self.items = log.items.astype(np.int64)
            self.starts, self.lens = log.offsets[keep], log.lengths[keep]
            self.n = len(keep)
        else:
            self.hist, self.hlen, self.targets, _ = contexts_of(log, self.L)
            ok = self.hlen >= 1
            self.hist, self.hlen, self.targets = self.hist[ok], self.hlen[ok], self.targets[ok]
            self.n = len(self.targets)
            if self.n == 0:
                raise ValueError(f"SlateNextK: no {split} context in {log.name!r}")

    def draw(self, rng: np.random.Generator, n: int, cursor: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` contexts: random, or the next ``n`` in order from ``cursor`` (valid/test only)."""
        if self.split == "train":
            s = rng.integers(self.n, size=n)
            p = rng.integers(1, self.lens[s])  # prefix length in [1, len-1]
            starts = self.starts[s]
            hist, hlen = last_items(self.items, starts, starts + p, self.L, self.n_items)
            return hist, hlen, self.items[starts + p]
        idx = rng.integers(self.n, size=n) if cursor is None else (cursor + np.arange(n)) % self.n
        return self.hist[idx], self.hlen[idx], self.targets[idx]


def _spaces(n_items: int, L: int, K: int) -> spaces.Dict:
    return spaces.Dict({
        "history": id_box(n_items, (L,)),
        "length": count_box(L),
        "slate": id_box(n_items, (K,)),
        "position": count_box(K),
    })


class SlateNextKEnv(gym.Env):
    """Next-K slate building (see the module docstring).

    Args:
        source: data source (``"synthetic"``, ``"ml-1m"``, ``"ml-100k"``, ``"steam"``, …).
        split: ``"train"`` (random prefixes) or ``"valid"`` / ``"test"`` (leave-one-out contexts).
        slate_size: list length K (10).
        state_len: history window ``L`` of the observation (200, as GPTRec).
        lambda_ild, lambda_pop: weights of the ILD bonus and the PCOUNT cost.
        mask_history: also mask (and penalise) items of the observed history.
        invalid_penalty: reward of a masked action (default -1.0).
        order: ``"random"`` or ``"sequential"`` (valid/test: walk the contexts in order; default
            ``"random"`` for train, ``"sequential"`` otherwise).
        data, data_dir, download, seed, **params: see :func:`recgym.envs.common.load_env_split`.
    """

    metadata = {"render_modes": []}

    def __init__(self, source: str = "synthetic", split: str = "train", slate_size: int = 10, state_len: int = 200,
                 lambda_ild: float = 0.0, lambda_pop: float = 0.0, mask_history: bool = True,
                 invalid_penalty: float = -1.0, order: str | None = None, data: Any = None, data_dir: Any = None,
                 download: bool = False, seed: int = 0, **params: Any) -> None:
        if slate_size < 1 or state_len < 1:
            raise ValueError(f"slate_size and state_len must be >= 1, got {slate_size}, {state_len}")
        order = order or ("random" if split == "train" else "sequential")
        if order not in ("random", "sequential") or (order == "sequential" and split == "train"):
            raise ValueError(f"order must be 'random' (any split) or 'sequential' (valid/test), got {order!r}")
        self.ctx = SlateContexts(source, split, state_len, data, data_dir, download, seed, params)
        self.n_items, self.slate_size, self.L = self.ctx.n_items, int(slate_size), int(state_len)
        self.reward_fn = SlateReward(self.slate_size, lambda_ild, lambda_pop, self.ctx.genres, self.ctx.popularity)
        self.mask_history, self.invalid_penalty, self.order = bool(mask_history), float(invalid_penalty), order
        self.observation_space = _spaces(self.n_items, self.L, self.slate_size)
        self.action_space = spaces.Discrete(self.n_items)
        self._cursor = 0
        self._hist = np.full(self.L, self.n_items, dtype=np.int64)
        self._hlen, self._target, self._pos = 0, -1, 0
        self._slate = np.full(self.slate_size, self.n_items, dtype=np.int64)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"history": self._hist.copy(), "length": np.array([self._hlen]), "slate": self._slate.copy(),
                "position": np.array([self._pos])}

    def action_masks(self) -> np.ndarray:
        """bool ``[n_items]``: True where the action is valid (not in the slate / the history)."""
        m = np.ones(self.n_items + 1, dtype=bool)
        m[self._slate[: self._pos]] = False
        if self.mask_history:
            m[self._hist[: self._hlen]] = False
        return m[: self.n_items]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._cursor = 0
        if options and "history" in options:  # a caller-given context (e.g. sim_eval on one user)
            hist, hlen = last_items_of_lists([options["history"]], self.L, self.n_items)
            self._hist, self._hlen, self._target = hist[0], int(hlen[0]), int(options.get("target", -1))
        else:
            cursor = None if self.order == "random" else self._cursor
            hist, hlen, target = self.ctx.draw(self.np_random, 1, cursor)
            self._cursor = (self._cursor + 1) % self.ctx.n
            self._hist, self._hlen, self._target = hist[0], int(hlen[0]), int(target[0])
        self._slate[:] = self.n_items
        self._pos = 0
        return self._obs(), {"target": self._target}

    def step(self, action: Any):
        a = check_action(action, self.n_items, "SlateNextKEnv")
        if self._pos >= self.slate_size:
            raise episode_over("SlateNextKEnv")
        invalid = not self.action_masks()[a]
        self._slate[self._pos] = a
        self._pos += 1
        if invalid:
            reward = self.invalid_penalty
        else:
            reward = float(self.reward_fn.step(self._slate[None, : self._pos], np.array([self._target]))[0])
        terminated = self._pos == self.slate_size
        info: dict[str, Any] = {"invalid": invalid, "hit": a == self._target}
        if terminated:
            m = self.reward_fn.list_metrics(self._slate[None], np.array([self._target]))
            info.update({k: float(v[0]) for k, v in m.items()})
            info["target"] = self._target
        return self._obs(), reward, terminated, False, info


class SlateNextKVectorEnv(VectorEnv):
    """``num_envs`` slate envs stepped together in numpy (same arguments as :class:`SlateNextKEnv`).

    Autoreset ``NEXT_STEP``: the step after a finished slate resets that sub-env (its action is
    ignored, reward 0). ``action_masks()`` returns bool ``[num_envs, n_items]``.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, source: str = "synthetic", split: str = "train", slate_size: int = 10,
                 state_len: int = 200, lambda_ild: float = 0.0, lambda_pop: float = 0.0, mask_history: bool = True,
                 invalid_penalty: float = -1.0, order: str | None = None, data: Any = None, data_dir: Any = None,
                 download: bool = False, seed: int = 0, **params: Any) -> None:
        num_envs = check_num_envs(num_envs, "SlateNextKVectorEnv")
        single = SlateNextKEnv(source, split, slate_size, state_len, lambda_ild, lambda_pop, mask_history, invalid_penalty,
                               order, data, data_dir, download, seed, **params)
        self.ctx, self.reward_fn = single.ctx, single.reward_fn
        self.n_items, self.slate_size, self.L = single.n_items, single.slate_size, single.L
        self.mask_history, self.invalid_penalty, self.order = single.mask_history, single.invalid_penalty, single.order
        self.num_envs = B = int(num_envs)
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(self.single_observation_space, B)
        self.action_space = batch_space(self.single_action_space, B)
        self._rng = np.random.default_rng()
        self._cursor = 0
        self._hist = np.full((B, self.L), self.n_items, dtype=np.int64)
        self._hlen = np.zeros(B, dtype=np.int64)
        self._target = np.full(B, -1, dtype=np.int64)
        self._slate = np.full((B, self.slate_size), self.n_items, dtype=np.int64)
        self._pos = np.zeros(B, dtype=np.int64)
        self._autoreset = np.zeros(B, dtype=bool)

    def _new(self, idx: np.ndarray) -> None:
        cursor = None if self.order == "random" else self._cursor
        h, l, t = self.ctx.draw(self._rng, len(idx), cursor)
        self._cursor = (self._cursor + len(idx)) % self.ctx.n
        self._hist[idx], self._hlen[idx], self._target[idx] = h, l, t
        self._slate[idx] = self.n_items
        self._pos[idx] = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {"history": self._hist.copy(), "length": self._hlen[:, None].copy(), "slate": self._slate.copy(),
                "position": self._pos[:, None].copy()}

    def _in_state(self, items: np.ndarray) -> np.ndarray:
        """bool ``[B]``: ``items[b]`` is already in sub-env b's slate (or history when masked)."""
        hit = np.any((self._slate == items[:, None]) & (np.arange(self.slate_size) < self._pos[:, None]), axis=1)
        if self.mask_history:
            hit |= np.any((self._hist == items[:, None]) & (np.arange(self.L) < self._hlen[:, None]), axis=1)
        return hit

    def action_masks(self) -> np.ndarray:
        """bool ``[num_envs, n_items]``: True where the action is valid."""
        m = np.ones((self.num_envs, self.n_items + 1), dtype=bool)
        rows = np.arange(self.num_envs)[:, None]
        m[rows, np.where(np.arange(self.slate_size) < self._pos[:, None], self._slate, self.n_items)] = False
        if self.mask_history:
            m[rows, np.where(np.arange(self.L) < self._hlen[:, None], self._hist, self.n_items)] = False
        return m[:, : self.n_items]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self._cursor = 0
        self._new(np.arange(self.num_envs))
        self._autoreset[:] = False
        return self._obs(), {"target": self._target.copy()}

    def step(self, actions: Any):
        a = check_actions(actions, (self.num_envs,), self.n_items, "SlateNextKVectorEnv")
        live = ~self._autoreset
        reward = np.zeros(self.num_envs)
        invalid = self._in_state(a) & live
        li = np.flatnonzero(live)
        self._slate[li, self._pos[li]] = a[li]
        self._pos[li] += 1
        # sub-envs usually move in lockstep; group by position (at most K groups, no per-row loop)
        ok = live & ~invalid
        for p in np.unique(self._pos[ok]):
            rows = np.flatnonzero(ok & (self._pos == p))
            reward[rows] = self.reward_fn.step(self._slate[rows, :p], self._target[rows])
        reward[invalid] = self.invalid_penalty
        terminated = live & (self._pos == self.slate_size)
        info: dict[str, Any] = {"invalid": invalid, "hit": live & (a == self._target)}
        if terminated.any():
            m = self.reward_fn.list_metrics(self._slate, self._target)
            for k, v in m.items():
                info[k] = np.where(terminated, v, 0.0)
            info["_final"] = terminated.copy()
        if (~live).any():
            self._new(np.flatnonzero(~live))
        self._autoreset = terminated
        return self._obs(), reward, terminated, np.zeros(self.num_envs, dtype=bool), info
