"""The MF user simulator (LPI's semi-synthetic Netflix setting): imputed rewards for any item.

A Steck-style weighted MF (:mod:`recgym.sim.mf`) is fitted on the training part of a rating log
(all users' sequences but their last two items). Where an episode starts (``contexts``):

* ``"logged"`` (default): the states of the logged sessions of the validation split, the decision points
  the logged metrics score (:func:`recgym.envs.common.logged_contexts`); the history is the
  session's items so far and the session's user picks the imputer's row. On Synthetic the logged
  sessions are the World's session log (the data the agents train on), the rating log only fits
  the imputer; elsewhere both are the one log;
* ``"ratings"``: one held-out context of the rating log per user (or session): the last
  ``state_len`` (200) ratings before the held-out item (the LPI paper's setting, kept by
  ``recgym/NetflixIAR-v0``).

The action is an item; the reward is the imputed rating ``r̂(user, item)`` mapped with the
source's reward scheme (iAR). ``info`` has ``imputed_reward``, ``observed_reward`` (the logged
reward when the action equals the logged next item, else 0: AR), ``logged_item`` and, on the
Synthetic world, ``true_reward``.

``horizon=1`` is the contextual bandit of the LPI paper; ``horizon>1`` appends each consumed item
to the history (the logged next item only exists at the first step; later ``logged_item = -1``).
On Synthetic, ``reward="true"`` serves the World's true expected reward instead of the imputed one.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recgym.envs.common import (check_action, check_num_envs, contexts_of, count_box, id_box, load_env_split,
                                logged_contexts)
from recgym.data import Split, split_leave_one_out
from recgym.errors import BadInputError
from recgym.sim.mf import MFConfig, WeightedMF, _log_rows, rating_to_reward

_MF_CACHE: dict[tuple, WeightedMF] = {}
CONTEXTS = ("ratings", "logged")
"""Where an episode starts: the rating log's held-out contexts, or the logged validation sessions' states."""
DEFAULT_CONTEXTS = "logged"
"""``MFUserEnv``'s default ``contexts``: on 10 fresh Synthetic worlds it ranked agents closer to their
true values than the rating log's contexts and logged NDCG@10 (``docs/results/simulation.md``)."""


def _world_split(seed: int, params: dict[str, Any]) -> tuple[Split, Any]:
    """The Synthetic rating data: the World's MNAR rating log, split leave-one-out."""
    from recgym.sim.world import World

    ratings_per_user = params.pop("ratings_per_user", None)
    world = World(seed=seed, **params)
    log = world.rating_log(ratings_per_user=ratings_per_user, reward_scheme="rating")
    return split_leave_one_out(log), world


class MFUserEnv(gym.Env):
    """Contextual-bandit (or multi-step) user simulator with MF-imputed rewards.

    Args:
        source: ``"netflix"``, ``"ml-100k"``, ``"ml-1m"`` or ``"synthetic"`` (the World's MNAR rating
            log; extra ``**params`` go to ``World``, plus ``ratings_per_user``, ``world_seed`` (the
            World's and the imputer's seed; default ``seed``) and, for logged contexts, ``n_sessions``
            (5000) of the World's session log, split 80/10/10 with ``seed``, as
            :func:`recgym.data.load_split` names them).
        contexts: ``"logged"`` (default) or ``"ratings"`` (see above); ``report()["logged_contexts"]`` says which.
        split: the part whose contexts are served: ``"valid"`` or ``"test"`` (``"train"`` also works);
            default ``"valid"`` with logged contexts, which refuse ``"test"`` (the test sessions are
            the logged metrics' own), ``"test"`` with rating contexts.
        horizon: steps per episode (1 = contextual bandit).
        state_len: history window (200, as LPI).
        reward: ``"imputed"`` (iAR) or ``"true"`` (Synthetic only: the World's expected reward).
        mf_config: :class:`recgym.sim.mf.MFConfig` of the imputer (its ``baseline`` defaults to
            rating 1, or reward 0 for logs without ratings).
        mf_path: an ``.npz`` of a fitted imputer: loaded when it exists, else written after fitting.
        order: ``"random"`` (drawn contexts) or ``"sequential"`` (in order, cycling).
        protocol: how a log is split (``data=`` a log or a file, or a registered source): ``"loo"``
            (default; each user's last item held out) or ``"session"`` (whole sessions 80/10/10 with
            ``seed``: the imputer never sees a held-out session; a context is a held-out session
            without its last event).
        data, data_dir, download, seed, **params: see :func:`recgym.envs.common.load_env_split`.

    Observation: ``{"history": int64 [L] (pad n_items), "length": int64 [1]}``; action ``Discrete(n_items)``.
    """

    metadata = {"render_modes": []}

    @classmethod
    def job_kwargs(cls, *, dataset: str, seed: int, data_params: dict[str, Any], data_dir: str | None,
                   download: bool, cache_dir: Path | None = None,
                   data_file: dict[str, Any] | None = None) -> dict[str, Any]:
        """Keyword arguments that build this env on a harness job's data (``recgym.experiments``).

        Synthetic: the World of the logged data (``world_seed``, ``n_sessions`` and the ``World``
        fields passed through, ``ratings`` dropped: the imputer is fitted on the World's rating log;
        the job's ``seed`` splits the session log as the job's split). Other sources: the loader parameters and one
        fixed imputer (``seed=0``: the same yardstick for every agent and seed). ``cache_dir``: the
        fitted imputer is kept there (``mf_path``), so every job reuses one fit. ``data_file``: your own
        file (``{"data": path, "columns": ..., "sep": ...}``), fitted on its leave-one-out training part."""
        import hashlib
        import json

        stamp = None
        if data_file is not None:
            from recgym.data.cache import file_stamp

            kw = {**data_file, **data_params}
            # leave-one-out: one imputer for every seed; session: the job's own sessions are held out
            kw["seed"] = seed if kw.get("protocol") == "session" else 0
            stamp = file_stamp(Path(data_file["data"]))  # an edited file is another imputer
        elif dataset == "synthetic":  # the job's World; its session log split with the job's seed
            kw = {"seed": seed, "world_seed": int(data_params.get("world_seed", 0)),
                  **{k: v for k, v in data_params.items() if k not in ("world_seed", "ratings")}}
        else:
            kw = dict(data_params)
            if data_dir is not None:
                kw["data_dir"] = data_dir
            kw.update(download=download, seed=0)
        kw["split"] = None  # the env's own: validation sessions (logged contexts) or the held-out ratings
        if cache_dir is not None:
            env_id = f"recgym/{cls.__name__}-{dataset}"
            tag = hashlib.sha1(json.dumps([env_id, kw] + ([stamp] if stamp else []), sort_keys=True, default=str).encode()).hexdigest()[:12]
            kw["mf_path"] = str(Path(cache_dir) / f"{env_id.replace('/', '_')}-{tag}.npz")
        return kw

    def __init__(self, source: str = "synthetic", split: str | None = None, horizon: int = 1, state_len: int = 200,
                 reward: str = "imputed", mf_config: MFConfig | dict | None = None, mf_path: str | None = None,
                 order: str = "random", data: Any = None, data_dir: Any = None, download: bool = False,
                 seed: int = 0, protocol: str = "loo", contexts: str = DEFAULT_CONTEXTS, **params: Any) -> None:
        if contexts not in CONTEXTS:
            raise BadInputError(f"MFUserEnv: contexts must be one of {CONTEXTS}, got {contexts!r}")
        split = split if split is not None else ("valid" if contexts == "logged" else "test")
        if split not in ("train", "valid", "test"):
            raise BadInputError(f"MFUserEnv: split must be 'train', 'valid' or 'test', got {split!r}")
        if contexts == "logged" and split == "test":
            raise BadInputError("MFUserEnv: contexts='logged' starts episodes from the validation (or training) "
                                "sessions, never the test sessions the logged metrics score; use split='valid'")
        if reward not in ("imputed", "true"):
            raise ValueError(f"reward must be 'imputed' or 'true', got {reward!r}")
        if order not in ("random", "sequential"):
            raise ValueError(f"order must be 'random' or 'sequential', got {order!r}")
        if horizon < 1 or state_len < 1:
            raise ValueError(f"horizon and state_len must be >= 1, got {horizon}, {state_len}")
        self.world = None
        mf_seed = seed
        if source == "synthetic" and data is None:
            params = dict(params)
            mf_seed = int(params.pop("world_seed", seed))
            n_sessions = params.pop("n_sessions", 5000)
            sp, self.world = _world_split(mf_seed, dict(params))
            logged = None
            if contexts == "logged":  # the World's session log, split as load_split splits it
                params.pop("ratings_per_user", None)
                logged = load_env_split("synthetic", seed=seed, world_seed=mf_seed, n_sessions=n_sessions, **params)
        else:
            if protocol not in ("loo", "session"):
                raise ValueError(f"protocol must be 'loo' or 'session', got {protocol!r}")
            sp = load_env_split(source, data=data, data_dir=data_dir, download=download, protocol=protocol, seed=seed,
                                **params)
            logged = sp
            if "world" in sp.train.meta:
                from recgym.sim.world import World

                self.world = World.from_log(sp.train)
        if reward == "true" and self.world is None:
            raise ValueError("reward='true' needs the Synthetic world (its log carries meta['world'])")
        self.split_data, self.reward_kind, self.order = sp, reward, order
        self.contexts, self.split = contexts, split
        self.horizon, self.L = int(horizon), int(state_len)
        train = sp.train
        self.n_items = train.n_items
        self.scheme = "rating" if train.ratings is not None else "identity"
        self.mf = self._imputer(train, sp, mf_config, mf_path, mf_seed)

        if contexts == "logged":
            log = getattr(logged, split)
            if log.users is None:
                raise BadInputError(f"MFUserEnv: contexts='logged' needs the user of every session; {log.name!r} has none")
            if log.n_events == 0:
                raise BadInputError(f"MFUserEnv: {log.name!r} has no {split} session to start episodes from "
                                    "(contexts='logged')")
            if log.n_items != self.n_items:
                raise BadInputError(f"MFUserEnv: the {split} sessions have n_items={log.n_items}, the imputer {self.n_items}")
            self.hist, self.hlen, self.targets, ev = logged_contexts(log, self.L, logged.protocol)
            self.users = log.users[log.session_of_event[ev]]
            self.target_rewards = log.rewards[ev].astype(np.float64)
        else:
            log = getattr(sp, split)
            self.hist, self.hlen, self.targets, sess = contexts_of(log, self.L)
            self.target_rewards = log.rewards[log.offsets[sess + 1] - 1].astype(np.float64)
            self.users = log.users[sess] if log.users is not None else sess
        if len(self.targets) == 0:
            raise ValueError(f"MFUserEnv: no {split} context in {log.name!r}")
        if self.users.max() >= self.mf.n_users:
            raise ValueError(f"MFUserEnv: {split} has users unseen by the imputer (max id {self.users.max()})")
        self.n_contexts = len(self.targets)
        self.cold_share = float(np.mean(~np.isin(self.users, _log_rows(train))))
        if contexts == "logged" and self.cold_share > 0.5:
            warnings.warn(f"MFUserEnv: {self.cold_share:.0%} of the {split} contexts' users have no rating in the "
                          "imputer's training data (their imputed reward ignores who they are); a leave-one-out "
                          "split (protocol='loo') keeps every user's early ratings in training", stacklevel=2)

        self.observation_space = spaces.Dict({"history": id_box(self.n_items, (self.L,)), "length": count_box(self.L)})
        self.action_space = spaces.Discrete(self.n_items)
        self._cursor, self._c, self._t = 0, 0, 0
        self._hist = np.full(self.L, self.n_items, dtype=np.int64)
        self._hlen = 0

    # ------------------------------------------------------------------ imputer
    def _imputer(self, train, sp: Split, cfg: MFConfig | dict | None, mf_path: str | None, seed: int) -> WeightedMF:
        if isinstance(cfg, dict):
            cfg = MFConfig(**cfg)
        if cfg is None:
            cfg = MFConfig(seed=seed, baseline=1.0 if train.ratings is not None else 0.0)
        if mf_path is not None and Path(mf_path).exists():
            vals = train.ratings if train.ratings is not None else train.rewards
            return WeightedMF.load(mf_path).set_observed(_log_rows(train), train.items, vals, self.n_items)
        key = (id(train), dataclasses.astuple(cfg))
        if key not in _MF_CACHE:
            n_users = 1 + max(int(p.users.max()) if p.users is not None and p.n_sessions else p.n_sessions
                              for p in sp)
            rows = _log_rows(train)
            vals = train.ratings if train.ratings is not None else train.rewards
            _MF_CACHE.clear()  # one imputer at a time (they can be large)
            _MF_CACHE[key] = WeightedMF(cfg).fit(rows, train.items, vals, n_users=n_users, n_items=self.n_items)
        mf = _MF_CACHE[key]
        if mf_path is not None:
            mf.save(mf_path)
        return mf

    def imputed_reward(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """iAR reward of ``items`` [B] or [B, k] for ``users`` [B] (the scheme applied)."""
        return rating_to_reward(self.mf.predict(users, items), self.scheme)

    def report(self, k: int = 10, max_users: int = 5000) -> dict[str, float]:
        """How far the simulator leans: held-out RMSE of the imputed rating on the rating log's test
        targets, mean imputed rating of the observed vs the unobserved cells
        (:meth:`WeightedMF.imputation_report`) and the popularity lean of the imputed top-``k`` items
        of up to ``max_users`` test users, evenly spaced (:meth:`WeightedMF.top_item_popularity`,
        popularity = training count). Where the episodes start: ``logged_contexts`` (1 = the logged
        sessions' states, 0 = the rating log's held-out contexts), ``n_contexts`` and
        ``cold_user_share`` (share of contexts whose user has no rating in the imputer's training data)."""
        test = self.split_data.test
        h, l, t, sess = contexts_of(test, 1)
        users = test.users[sess] if test.users is not None else sess
        vals = (test.ratings if test.ratings is not None else test.rewards)[test.offsets[sess + 1] - 1]
        popularity = np.bincount(self.split_data.train.items, minlength=self.n_items)
        uniq = np.unique(users)
        sample = uniq[np.linspace(0, len(uniq) - 1, min(max_users, len(uniq))).astype(np.int64)]
        return {"logged_contexts": float(self.contexts == "logged"), "n_contexts": float(self.n_contexts),
                "cold_user_share": self.cold_share, "rmse_heldout": self.mf.rmse(users, t, vals),
                **self.mf.imputation_report(), **self.mf.top_item_popularity(sample, popularity, k)}

    # ------------------------------------------------------------------ gym API
    def _obs(self) -> dict[str, np.ndarray]:
        return {"history": self._hist.copy(), "length": np.array([self._hlen])}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._cursor = 0
        if options and "context" in options:
            self._c = int(options["context"]) % self.n_contexts
        elif self.order == "random":
            self._c = int(self.np_random.integers(self.n_contexts))
        else:
            self._c, self._cursor = self._cursor, (self._cursor + 1) % self.n_contexts
        self._hist = self.hist[self._c].copy()
        self._hlen, self._t = int(self.hlen[self._c]), 0
        return self._obs(), {"context": self._c, "user": int(self.users[self._c])}

    def step(self, action: Any):
        a = check_action(action, self.n_items, "MFUserEnv")
        u = int(self.users[self._c])
        imputed = float(self.imputed_reward(np.array([u]), np.array([a]))[0])
        info: dict[str, Any] = {"imputed_reward": imputed, "user": u}
        logged = int(self.targets[self._c]) if self._t == 0 else -1
        info["logged_item"] = logged
        info["observed_reward"] = float(self.target_rewards[self._c]) if a == logged else 0.0
        info["hit"] = a == logged
        if self.world is not None:
            info["true_reward"] = float(self.world.expected_reward(
                np.array([u]), self._hist[None], np.array([self._hlen]), np.array([a]))[0])
        reward = info["true_reward"] if self.reward_kind == "true" else imputed
        # the user consumes the item: it joins the history (window of the last L items)
        if self._hlen < self.L:
            self._hist[self._hlen] = a
            self._hlen += 1
        else:
            self._hist = np.r_[self._hist[1:], a]
        self._t += 1
        return self._obs(), reward, self._t >= self.horizon, False, info


class MFUserVectorEnv(gym.vector.SyncVectorEnv):
    """``num_envs`` :class:`MFUserEnv` stepped one after the other (same arguments as the env): the
    ``gym.make_vec`` entry of the MF user ids. There is no batched implementation; the envs share the
    loaded data and the fitted imputer through the per-process caches."""

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        num_envs = check_num_envs(num_envs, "MFUserVectorEnv")
        super().__init__([functools.partial(MFUserEnv, **kwargs) for _ in range(num_envs)])
