"""Logged replay: an episode is one logged session; the state follows the log whatever the action.

At step ``t`` of a session ``(i_0, …, i_{T-1})`` the observation is the window of the last
``state_len`` logged items before ``t`` (right-padded with ``n_items``; empty at ``t = 0``), the
agent recommends an item (or a top-k slate), and it earns the logged reward ``r_t`` when the logged
item ``i_t`` is among the recommended; then the history advances by ``i_t`` — the *logged* item,
whatever was recommended. ``info`` carries ``logged_item``, ``logged_reward`` and ``hit``. The
episode terminates after the last event of the session. This is the session protocol of
:func:`recgym.evaluate.evaluate_sessions` run as an MDP (every event is one decision).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recgym.data.session_log import SessionLog
from recgym.data.windows import last_items
from recgym.envs.common import check_action, check_actions, check_num_envs, count_box, episode_over, id_box, load_env_split
from recgym.errors import BadInputError


class _ReplayData:
    """The flat arrays of one split part, restricted to non-empty sessions."""

    def __init__(self, source: str, split: str, data: Any, data_dir: Any, download: bool, seed: int,
                 params: dict[str, Any]) -> None:
        sp = load_env_split(source, data=data, data_dir=data_dir, download=download, seed=seed, **params)
        if split not in ("train", "valid", "test"):
            raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
        log: SessionLog = getattr(sp, split)
        keep = np.flatnonzero(log.lengths >= 1)
        if len(keep) == 0:
            raise ValueError(f"replay: split {split!r} of {source!r} has no non-empty session")
        self.log = log
        self.items = log.items.astype(np.int64)
        self.rewards = log.rewards.astype(np.float64)
        self.starts = log.offsets[keep]
        self.ends = log.offsets[keep + 1]
        self.n_items = log.n_items
        self.n_sessions = len(keep)


class ReplayEnv(gym.Env):
    """Logged replay of one split (see the module docstring).

    Args:
        source: recgym data source name (``"synthetic"``, ``"ml-100k"``, ``"yoochoose-100k"``, …).
        split: ``"train"``, ``"valid"`` or ``"test"``: the part whose sessions are replayed.
        state_len: history window ``L`` of the observation.
        slate_size: 1 → action ``Discrete(n_items)``; k > 1 → ``MultiDiscrete([n_items] * k)``
            (a top-k slate; a hit anywhere in it earns the logged reward).
        order: ``"random"`` (a uniformly drawn session per episode, seeded) or ``"sequential"``
            (the sessions in log order, cycling — one pass = the offline protocol).
        data: a ``Split`` or ``SessionLog`` to replay instead of loading ``source``.
        data_dir, download, seed, **params: passed to ``recgym.data.load_split``.

    Observation: ``{"history": int64 [L] in [0, n_items] (pad n_items), "length": int64 [1]}``.
    """

    metadata = {"render_modes": []}

    def __init__(self, source: str = "synthetic", split: str = "train", state_len: int = 10, slate_size: int = 1,
                 order: str = "random", data: Any = None, data_dir: Any = None, download: bool = False,
                 seed: int = 0, **params: Any) -> None:
        if order not in ("random", "sequential"):
            raise ValueError(f"order must be 'random' or 'sequential', got {order!r}")
        if state_len < 1 or slate_size < 1:
            raise ValueError(f"state_len and slate_size must be >= 1, got {state_len}, {slate_size}")
        self.d = _ReplayData(source, split, data, data_dir, download, seed, params)
        self.state_len, self.slate_size, self.order = int(state_len), int(slate_size), order
        n = self.d.n_items
        self.n_items = n
        self.observation_space = spaces.Dict({"history": id_box(n, (self.state_len,)), "length": count_box(self.state_len)})
        self.action_space = spaces.Discrete(n) if slate_size == 1 else spaces.MultiDiscrete([n] * slate_size)
        self._cursor = 0
        self._s = self._t = 0
        self._done = False

    def _obs(self) -> dict[str, np.ndarray]:
        start = self.d.starts[self._s]
        hist, length = last_items(self.d.items, np.array([start]), np.array([start + self._t]), self.state_len, self.n_items)
        return {"history": hist[0], "length": length}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._cursor = 0
        if options and "session" in options:
            self._s = int(options["session"]) % self.d.n_sessions
        elif self.order == "random":
            self._s = int(self.np_random.integers(self.d.n_sessions))
        else:
            self._s = self._cursor
            self._cursor = (self._cursor + 1) % self.d.n_sessions
        self._t = 0
        self._done = False
        return self._obs(), {"session": self._s}

    def _slate(self, action: Any) -> np.ndarray:
        if self.slate_size == 1:
            return np.array([check_action(action, self.n_items, "ReplayEnv")])
        a = np.asarray(action).reshape(-1)
        if a.shape != (self.slate_size,) or not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= self.n_items:
            raise BadInputError(f"ReplayEnv: action must be {self.slate_size} item ids in [0, {self.n_items}), got {action!r}")
        return a

    def step(self, action: Any):
        if self._done:
            raise episode_over("ReplayEnv")
        slate = self._slate(action)
        e = self.d.starts[self._s] + self._t
        logged, r = int(self.d.items[e]), float(self.d.rewards[e])
        hit = bool(np.any(slate == logged))
        self._t += 1
        terminated = bool(self.d.starts[self._s] + self._t >= self.d.ends[self._s])
        self._done = terminated
        info = {"logged_item": logged, "logged_reward": r, "hit": hit}
        return self._obs(), (r if hit else 0.0), terminated, False, info


class ReplayVectorEnv(VectorEnv):
    """``num_envs`` replay envs stepped together in numpy (same arguments as :class:`ReplayEnv`).

    Autoreset: ``NEXT_STEP`` (Gymnasium's default): the step after an episode ends resets that
    sub-env, ignores its action and returns reward 0 with the first observation of a new session.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, source: str = "synthetic", split: str = "train", state_len: int = 10,
                 slate_size: int = 1, order: str = "random", data: Any = None, data_dir: Any = None,
                 download: bool = False, seed: int = 0, **params: Any) -> None:
        num_envs = check_num_envs(num_envs, "ReplayVectorEnv")
        single = ReplayEnv(source, split, state_len, slate_size, order, data, data_dir, download, seed, **params)
        self.d, self.state_len, self.slate_size, self.order = single.d, single.state_len, single.slate_size, order
        self.n_items = single.n_items
        self.num_envs = int(num_envs)
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rng = np.random.default_rng()
        self._cursor = 0
        self._s = np.zeros(self.num_envs, dtype=np.int64)
        self._t = np.zeros(self.num_envs, dtype=np.int64)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)

    def _draw(self, n: int) -> np.ndarray:
        if self.order == "random":
            return self._rng.integers(self.d.n_sessions, size=n)
        s = (self._cursor + np.arange(n)) % self.d.n_sessions
        self._cursor = int((self._cursor + n) % self.d.n_sessions)
        return s

    def _obs(self) -> dict[str, np.ndarray]:
        starts = self.d.starts[self._s]
        hist, length = last_items(self.d.items, starts, starts + self._t, self.state_len, self.n_items)
        return {"history": hist, "length": length[:, None]}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self._cursor = 0
        self._s = self._draw(self.num_envs)
        self._t[:] = 0
        self._autoreset[:] = False
        return self._obs(), {"session": self._s.copy()}

    def step(self, actions: Any):
        a = check_actions(actions, (self.num_envs, self.slate_size), self.n_items, "ReplayVectorEnv")
        live = ~self._autoreset
        e = np.minimum(self.d.starts[self._s] + self._t, len(self.d.items) - 1)  # ended envs: any valid index
        logged = self.d.items[e]
        logged_r = self.d.rewards[e]
        hit = np.any(a == logged[:, None], axis=1) & live
        reward = np.where(hit, logged_r, 0.0)
        self._t += live
        terminated = live & (self.d.starts[self._s] + self._t >= self.d.ends[self._s])
        # sub-envs that ended on the previous step start a new session now
        if (~live).any():
            idx = np.flatnonzero(~live)
            self._s[idx] = self._draw(len(idx))
            self._t[idx] = 0
        self._autoreset = terminated.copy()
        info = {"logged_item": np.where(live, logged, -1), "logged_reward": np.where(live, logged_r, 0.0), "hit": hit}
        return self._obs(), reward, terminated, np.zeros(self.num_envs, dtype=bool), info
