"""`World`: the synthetic ground-truth world, recgym's embedded default dataset.

Users with latent tastes consume items (multi-hot genres, Zipf popularity) recommended by a
popularity-biased noisy logging policy. Each consumed item is a click (reward 0.2); it becomes a
purchase (reward 1.0) with a probability that rises with the user's *true* utility, which is
lowered by satiation on recently consumed genres and items. Because the world is known, it can
answer what no logged dataset can: the true expected reward of any recommendation in any
context (:meth:`World.expected_reward`) and the true value of a policy (:meth:`World.true_value`).

The generative model with all formulas is in ``docs/synthetic.md``. Everything is seeded: the
world's parameters come from ``seed`` alone, and ``log.meta["world"]`` holds the config and seed
so that :meth:`World.from_log` rebuilds the identical world (no pickle).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from recgym.data.session_log import KIND_CLICK, KIND_PURCHASE, SessionLog
from recgym.data.windows import last_items, last_items_of_rows

CLICK_REWARD = 0.2
"""Reward of a consumed item that is not purchased (the click-purchase scheme)."""
PURCHASE_REWARD = 1.0
"""Reward of a purchased item."""

GENRE_NAMES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
    "Western",
)  # fmt: skip
"""The 18 MovieLens genre names, used when ``n_genres <= 18`` (else ``genre_<k>``)."""

_T0 = 1.6e9  # first timestamp (seconds since the epoch, late 2020)
_CHUNK_CELLS = 1 << 22  # sessions x items simulated at once (~16 MB of float32 per matrix)
_BATCH = 1024  # contexts scored at once by true_value


@dataclass
class WorldConfig:
    """Parameters of the synthetic world (see ``docs/synthetic.md`` for the formulas).

    Defaults give a small but non-trivial world: 1,000 users, 500 items, 18 genres, sessions of
    3-30 events (mean 8), about 24% of consumed items purchased.
    """

    # catalogue and population
    n_users: int = 1000
    n_items: int = 500
    n_genres: int = 18
    dim: int = 16
    """Dimension of the latent taste space."""
    max_genres_per_item: int = 3
    """Items have 1..max genres, P(k) proportional to 2^-k."""
    genre_zipf: float = 0.7
    """Genre frequencies follow rank^-genre_zipf (a few genres are common, like Drama/Comedy)."""
    item_noise: float = 0.7
    """Item-specific part of an item's latent vector, relative to its genre part."""
    zipf_exponent: float = 1.0
    """Item popularity ``pop_i`` proportional to rank_i^-zipf_exponent (random ranks)."""

    # true utility x(u, h, i) = taste_scale <u, v_i> + quality_weight q_i - satiation - repeats
    taste_scale: float = 1.5
    quality_weight: float = 0.5
    quality_pop_corr: float = 0.3
    """Correlation of the item quality ``q_i`` with standardised log-popularity."""
    satiation: float = 0.6
    """lambda: utility lost per unit of decayed exposure to the item's genres."""
    satiation_decay: float = 0.7
    """gamma: weight of a history item ``a`` steps before the decision is gamma^a (last item: 1)."""
    repeat_penalty: float = 2.0
    """rho: utility lost per unit of decayed exposure to the same item."""

    # purchase curve: P(purchase | consumed) = sigmoid(purchase_slope * (x - purchase_offset))
    purchase_slope: float = 2.0
    purchase_offset: float = 3.0

    # sessions: length = min + Geometric extra with the given mean, truncated at max
    session_len_min: int = 3
    session_len_mean: float = 8.0
    session_len_max: int = 30

    # logging policy mu(i | u, h) = softmax_i((x + logging_noise * e_ui) / T + logging_pop_weight * log pop_i)
    logging_temperature: float = 1.0
    logging_noise: float = 1.0
    logging_pop_weight: float = 1.0

    # MNAR ratings (rating_log): P(rated) ~ softmax(rating_select_utility * x0 + rating_select_pop * log pop)
    ratings_per_user: int = 20
    rating_select_utility: float = 1.0
    rating_select_pop: float = 0.5
    rating_slope: float = 1.0
    """Mean rating = 1 + 4 sigmoid(rating_slope * (x0 - rating_offset))."""
    rating_offset: float = 1.0
    rating_noise: float = 0.6

    def __post_init__(self) -> None:
        positive_int = ("n_users", "n_items", "n_genres", "dim", "max_genres_per_item", "session_len_min",
                        "session_len_max", "ratings_per_user")  # fmt: skip
        for name in positive_int:
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"WorldConfig.{name} must be a positive integer, got {v!r}")
            setattr(self, name, int(v))
        for f in dataclasses.fields(self):  # plain floats keep meta JSON-able (numpy scalars are not)
            if f.type in ("float", float):
                setattr(self, f.name, float(getattr(self, f.name)))
        for name in ("logging_temperature", "purchase_slope", "taste_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"WorldConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("zipf_exponent", "genre_zipf", "item_noise", "satiation", "repeat_penalty",
                     "logging_noise", "rating_noise"):  # fmt: skip
            if not getattr(self, name) >= 0:
                raise ValueError(f"WorldConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.satiation_decay < 1:
            raise ValueError(f"WorldConfig.satiation_decay must lie in [0, 1), got {self.satiation_decay!r}")
        if not -1 <= self.quality_pop_corr <= 1:
            raise ValueError(f"WorldConfig.quality_pop_corr must lie in [-1, 1], got {self.quality_pop_corr!r}")
        if self.max_genres_per_item > self.n_genres:
            raise ValueError(
                f"WorldConfig.max_genres_per_item={self.max_genres_per_item} exceeds n_genres={self.n_genres}"
            )
        if not self.session_len_min <= self.session_len_mean <= self.session_len_max:
            raise ValueError(
                "WorldConfig: need session_len_min <= session_len_mean <= session_len_max, got "
                f"{self.session_len_min}, {self.session_len_mean}, {self.session_len_max}"
            )
        if self.ratings_per_user > self.n_items:
            raise ValueError(f"WorldConfig.ratings_per_user={self.ratings_per_user} exceeds n_items={self.n_items}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def _np(a: Any, name: str, dtype: type = np.int64) -> np.ndarray:
    """numpy view of a numpy array / torch tensor / sequence."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a).astype(dtype, copy=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"World: argument {name!r} is not a numeric array ({e})") from e


class World:
    """The synthetic ground truth.

    Args:
        config: a :class:`WorldConfig` (default: ``WorldConfig()``).
        seed: seeds every parameter of the world (tastes, items, genres, popularity, logger error).
        **overrides: fields of ``WorldConfig`` to replace.

    Attributes (all numpy, read-only): ``user_factors [n_users, dim]``, ``item_factors
    [n_items, dim]`` (unit rows), ``genres`` float32 multi-hot ``[n_items, n_genres]``,
    ``genre_weights [n_items, n_genres]`` (rows sum to 1), ``popularity [n_items]`` (Zipf shares,
    sum 1), ``quality [n_items]``, ``logger_user [n_users, dim]`` / ``logger_item [n_items, dim]``
    (the low-rank error of the logging policy).
    """

    def __init__(self, config: WorldConfig | None = None, seed: int = 0, **overrides: Any) -> None:
        config = WorldConfig() if config is None else config
        unknown = set(overrides) - {f.name for f in dataclasses.fields(WorldConfig)}
        if unknown:
            raise TypeError(f"World: unknown WorldConfig field(s) {sorted(unknown)}")
        self.config = dataclasses.replace(config, **overrides)
        self.seed = int(seed)
        c = self.config
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0]))

        # genres: 1..max per item, drawn without replacement from Zipf genre frequencies (Gumbel top-k)
        k_probs = 0.5 ** np.arange(1, c.max_genres_per_item + 1)
        n_gen = rng.choice(np.arange(1, c.max_genres_per_item + 1), size=c.n_items, p=k_probs / k_probs.sum())
        genre_logw = -c.genre_zipf * np.log(rng.permutation(c.n_genres) + 1.0)  # random genre ranks
        keys = genre_logw[None, :] + rng.gumbel(size=(c.n_items, c.n_genres))
        order = np.argsort(-keys, axis=1)
        genres = np.zeros((c.n_items, c.n_genres), dtype=np.float32)
        rows, ranks = np.nonzero(np.arange(c.n_genres)[None, :] < n_gen[:, None])
        genres[rows, order[rows, ranks]] = 1.0
        self.genres = genres
        self.genre_weights = genres.astype(np.float64) / genres.sum(axis=1, keepdims=True)
        self.genre_names = tuple(GENRE_NAMES[: c.n_genres]) if c.n_genres <= len(GENRE_NAMES) else tuple(
            f"genre_{g}" for g in range(c.n_genres)
        )

        # latent factors: items = their genres' directions + an item-specific part, unit norm
        genre_vecs = rng.standard_normal((c.n_genres, c.dim))
        item = self.genre_weights @ genre_vecs
        item /= np.linalg.norm(item, axis=1, keepdims=True)
        item += c.item_noise * rng.standard_normal((c.n_items, c.dim)) / np.sqrt(c.dim)
        self.item_factors = item / np.linalg.norm(item, axis=1, keepdims=True)
        self.user_factors = rng.standard_normal((c.n_users, c.dim))

        # Zipf popularity over a random ranking; quality partly follows popularity
        ranks = rng.permutation(c.n_items) + 1.0
        pop = ranks ** -c.zipf_exponent
        self.popularity = pop / pop.sum()
        self.log_popularity = np.log(self.popularity)
        z = self.log_popularity - self.log_popularity.mean()
        z = z / z.std() if z.std() > 0 else z
        self.quality = c.quality_pop_corr * z + np.sqrt(1.0 - c.quality_pop_corr**2) * rng.standard_normal(c.n_items)

        # the logging policy's misestimate of the utility: low rank, unit variance per (u, i)
        self.logger_user = rng.standard_normal((c.n_users, c.dim))
        self.logger_item = rng.standard_normal((c.n_items, c.dim)) / np.sqrt(c.dim)

        for a in (self.genres, self.genre_weights, self.item_factors, self.user_factors, self.popularity,
                  self.log_popularity, self.quality, self.logger_user, self.logger_item):  # fmt: skip
            a.setflags(write=False)

    # ------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        return self.config.n_users

    @property
    def n_items(self) -> int:
        return self.config.n_items

    @property
    def n_genres(self) -> int:
        return self.config.n_genres

    @property
    def pad_id(self) -> int:
        return self.config.n_items

    def meta(self) -> dict[str, Any]:
        """JSON-able description that :meth:`from_log` / :meth:`from_meta` rebuild the world from."""
        return {"world": {"config": asdict(self.config), "seed": self.seed}}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> World:
        """The world described by ``meta["world"] = {"config": {...}, "seed": int}``."""
        try:
            w = meta["world"]
            return cls(WorldConfig(**w["config"]), seed=int(w["seed"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"World.from_meta: meta has no valid 'world' entry ({e!r})") from e

    @classmethod
    def from_log(cls, log: SessionLog) -> World:
        """The world that generated ``log`` (rebuilt from ``log.meta["world"]``)."""
        if "world" not in log.meta:
            raise ValueError(f"World.from_log: log {log.name!r} has no meta['world'] (not made by recgym.sim.World)")
        world = cls.from_meta(log.meta)
        if world.n_items != log.n_items:
            raise ValueError(f"World.from_log: log {log.name!r} has n_items={log.n_items}, its world {world.n_items}")
        return world

    def __repr__(self) -> str:
        return f"World(seed={self.seed}, config={self.config})"

    # ------------------------------------------------------------------ the true model
    def _check_context(self, users, histories, lengths) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        users = _np(users, "users").reshape(-1)
        histories = _np(histories, "histories")
        lengths = _np(lengths, "lengths").reshape(-1)
        B = len(users)
        if histories.ndim != 2 or histories.shape[0] != B or lengths.shape != (B,):
            raise ValueError(
                f"World: users {users.shape}, histories {histories.shape}, lengths {lengths.shape}: "
                "expected [B], [B, L], [B]"
            )
        if B and (users.min() < 0 or users.max() >= self.n_users):
            raise ValueError(f"World: users must lie in [0, {self.n_users}), got [{users.min()}, {users.max()}]")
        if B and (lengths.min() < 0 or lengths.max() > histories.shape[1]):
            raise ValueError(f"World: lengths must lie in [0, {histories.shape[1]}], got [{lengths.min()}, {lengths.max()}]")
        if histories.size and (histories.min() < 0 or histories.max() > self.pad_id):
            raise ValueError(f"World: history ids must lie in [0, {self.pad_id}] (pad = {self.pad_id})")
        return users, histories, lengths

    def _exposure(self, histories: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decayed exposure weights ``w [B, L]`` (gamma^age on real positions, 0 on padding), the
        genre exposure ``s [B, n_genres]`` and the histories with padding mapped to ``pad_id``."""
        L = histories.shape[1]
        age = lengths[:, None] - 1 - np.arange(L)[None, :]
        valid = (age >= 0) & (histories < self.pad_id)
        w = np.where(valid, self.config.satiation_decay ** np.maximum(age, 0).astype(np.float64), 0.0)
        h = np.where(valid, histories, self.pad_id)
        gw = np.vstack([self.genre_weights, np.zeros((1, self.n_genres))])  # pad row = no genres
        s = np.einsum("bl,blg->bg", w, gw[h])
        return w, s, h

    def utility(self, users, histories, lengths, items=None) -> np.ndarray:
        """True utility ``x(u, h, i)`` (float64).

        ``x = taste_scale * <p_u, v_i> + quality_weight * q_i
              - satiation * sum_g c_ig s_g(h) - repeat_penalty * sum_j gamma^{a_j} [h_j = i]``

        with ``c_ig`` the item's genre weights (rows sum to 1), ``a_j = length - 1 - j`` the age of
        history position ``j`` and ``s_g(h) = sum_j gamma^{a_j} c_{h_j g}`` the decayed genre exposure.

        Args:
            users: int ``[B]``; histories: int ``[B, L]`` right-padded with ``n_items``;
            lengths: int ``[B]``; items: int ``[B, k]`` (or ``None`` for the whole catalogue).
        Returns: ``[B, k]`` (``[B, n_items]`` when ``items`` is None).
        """
        users, histories, lengths = self._check_context(users, histories, lengths)
        c = self.config
        w, s, h = self._exposure(histories, lengths)
        B = len(users)
        if items is None:
            x = c.taste_scale * (self.user_factors[users] @ self.item_factors.T) + c.quality_weight * self.quality
            x -= c.satiation * (s @ self.genre_weights.T)
            rep = np.zeros((B, self.n_items + 1))
            np.add.at(rep, (np.repeat(np.arange(B), h.shape[1]), h.reshape(-1)), w.reshape(-1))
            return x - c.repeat_penalty * rep[:, : self.n_items]
        items = _np(items, "items")
        if items.ndim != 2 or items.shape[0] != B:
            raise ValueError(f"World: items has shape {items.shape}, expected [B={B}, k]")
        if items.size and (items.min() < 0 or items.max() >= self.n_items):
            raise ValueError(f"World: items must lie in [0, {self.n_items}), got [{items.min()}, {items.max()}]")
        x = c.taste_scale * np.einsum("bd,bkd->bk", self.user_factors[users], self.item_factors[items])
        x += c.quality_weight * self.quality[items]
        x -= c.satiation * np.einsum("bg,bkg->bk", s, self.genre_weights[items])
        rep = (w[:, None, :] * (h[:, None, :] == items[:, :, None])).sum(-1)
        return x - c.repeat_penalty * rep

    def purchase_prob(self, utility: np.ndarray) -> np.ndarray:
        """``P(purchase | consumed) = sigmoid(purchase_slope * (x - purchase_offset))``."""
        c = self.config
        return _sigmoid(c.purchase_slope * (np.asarray(utility, dtype=np.float64) - c.purchase_offset))

    def expected_reward(self, users, histories, lengths, items) -> np.ndarray:
        """The oracle: true expected reward of recommending each item in each context.

        A recommended item is consumed (a click) and purchased with probability
        ``p = sigmoid(purchase_slope * (x(u, h, i) - purchase_offset))`` (see :meth:`utility`), so

        ``E[r | u, h, i] = 0.2 * P(click only) + 1.0 * P(purchase) = 0.2 * (1 - p) + 1.0 * p = 0.2 + 0.8 p``.

        Exact when ``histories`` holds the whole session so far; a history cut to its last ``L``
        items drops exposures older than ``L`` steps (weight gamma^L, 0.03 for L=10 by default).

        Args:
            users: int ``[B]``; histories: int ``[B, L]`` right-padded with ``n_items``;
            lengths: int ``[B]`` (may be 0); items: int ``[B, k]`` (or ``[B]``, giving ``[B]``).
            numpy arrays or torch tensors.
        Returns: float64 ``[B, k]`` in ``[0.2, 1.0]``.
        """
        items_np = _np(items, "items")
        flat = items_np.ndim == 1
        x = self.utility(users, histories, lengths, items_np[:, None] if flat else items_np)
        r = CLICK_REWARD + (PURCHASE_REWARD - CLICK_REWARD) * self.purchase_prob(x)
        return r[:, 0] if flat else r

    def expected_reward_all(self, users, histories, lengths) -> np.ndarray:
        """:meth:`expected_reward` of every item, float64 ``[B, n_items]``."""
        x = self.utility(users, histories, lengths)
        return CLICK_REWARD + (PURCHASE_REWARD - CLICK_REWARD) * self.purchase_prob(x)

    def logging_probs(self, users, histories, lengths) -> np.ndarray:
        """The logging policy ``mu(i | u, h)``, float64 ``[B, n_items]`` (rows sum to 1):

        ``softmax_i((x(u, h, i) + logging_noise * e_ui) / T + logging_pop_weight * log pop_i)``,
        ``e_ui = <l_u, m_i>`` the logger's fixed low-rank error (unit variance)."""
        users, histories, lengths = self._check_context(users, histories, lengths)
        # the static part holds x0; add the history's (non-positive) satiation and repeat terms
        history_term = self.utility(users, histories, lengths) - self._base_utility(users)
        logits = self._logging_static(users) + history_term / self.config.logging_temperature
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def _base_utility(self, users: np.ndarray) -> np.ndarray:
        """Context-free utility ``x0(u, i)`` (empty history), float64 ``[B, n_items]``."""
        c = self.config
        return c.taste_scale * (self.user_factors[users] @ self.item_factors.T) + c.quality_weight * self.quality

    def _logging_static(self, users: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """The history-free part of the logging logits ``(x0 + noise * e) / T + beta * log pop``,
        ``[B, n_items]``: one matmul of stacked user and item factors."""
        c = self.config
        T = c.logging_temperature
        left = np.hstack([self.user_factors[users], self.logger_user[users]]).astype(dtype)
        right = np.hstack([c.taste_scale * self.item_factors, c.logging_noise * self.logger_item]).T / T
        bias = (c.quality_weight * self.quality / T + c.logging_pop_weight * self.log_popularity).astype(dtype)
        out = left @ right.astype(dtype)
        out += bias
        return out

    # ------------------------------------------------------------------ responses
    def respond(self, users, histories, lengths, items, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sample the user's response to recommended ``items [B]``: returns ``(rewards float32 [B],
        kinds int8 [B])`` (0.2 / ``KIND_CLICK`` or 1.0 / ``KIND_PURCHASE``). For simulators."""
        p = self.purchase_prob(self.utility(users, histories, lengths, _np(items, "items").reshape(-1, 1)))[:, 0]
        bought = rng.random(len(p)) < p
        return (np.where(bought, PURCHASE_REWARD, CLICK_REWARD).astype(np.float32),
                np.where(bought, KIND_PURCHASE, KIND_CLICK).astype(np.int8))  # fmt: skip

    # ------------------------------------------------------------------ logs
    def _session_lengths(self, rng: np.random.Generator, n: int) -> np.ndarray:
        c = self.config
        extra_mean = c.session_len_mean - c.session_len_min
        if extra_mean <= 0:
            return np.full(n, c.session_len_min, dtype=np.int64)
        extra = rng.geometric(1.0 / (1.0 + extra_mean), size=n) - 1  # mean = extra_mean
        return np.minimum(c.session_len_min + extra, c.session_len_max).astype(np.int64)

    def generate(self, n_sessions: int, seed: int | None = None, name: str = "synthetic") -> SessionLog:
        """Simulate ``n_sessions`` sessions of the logging policy.

        Each session: a user drawn uniformly; a length (min + geometric, truncated); at every step
        the logging policy samples an item from :meth:`logging_probs` given the session so far, the
        user consumes it (click, 0.2) and buys it (purchase, 1.0) with :meth:`purchase_prob` of its
        true utility. All sessions of a chunk advance in parallel (numpy), longest first.

        Args:
            n_sessions: number of sessions.
            seed: seed of the sampling (default: derived from the world's seed). Same world, same
                seed -> identical log.
        Returns: a :class:`SessionLog` with ``users``, ``genres``/``genre_names``, ``item_ids``,
            ``propensities`` (``mu`` of each logged item), timestamps increasing over the whole log,
            and ``meta["world"]`` (config + seed) for :meth:`from_log`.
        """
        if int(n_sessions) != n_sessions or n_sessions < 0:
            raise ValueError(f"World.generate: n_sessions must be a non-negative integer, got {n_sessions!r}")
        n_sessions = int(n_sessions)
        seed = self.seed if seed is None else int(seed)
        root = np.random.SeedSequence([self.seed, 1, seed])
        rng = np.random.default_rng(root.spawn(1)[0])
        users = rng.integers(0, self.n_users, size=n_sessions)
        lengths = self._session_lengths(rng, n_sessions)
        offsets = np.zeros(n_sessions + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        n_events = int(offsets[-1])
        items = np.empty(n_events, dtype=np.int32)
        bought = np.empty(n_events, dtype=bool)
        props = np.empty(n_events, dtype=np.float32)

        chunk = max(1, _CHUNK_CELLS // self.n_items)
        # the loop's matmuls are thin (k = n_genres): BLAS threads only spin, badly so on a busy machine
        with threadpool_limits(limits=1, user_api="blas"):
            for ci, start in enumerate(range(0, n_sessions, chunk)):
                stop = min(start + chunk, n_sessions)
                # a fixed chunk size and per-chunk seeds: the log does not depend on the machine
                crng = np.random.default_rng(np.random.SeedSequence([self.seed, 2, seed, ci]))
                it, bo, pr = self._simulate_chunk(users[start:stop], lengths[start:stop], crng)
                ev = slice(offsets[start], offsets[stop])
                items[ev], bought[ev], props[ev] = it, bo, pr

        # timestamps: strictly increasing over the whole log; sessions in order, ~5 min apart
        gaps = 1.0 + rng.exponential(60.0, size=n_events)
        gaps[offsets[:-1][lengths > 0]] += rng.exponential(300.0, size=int((lengths > 0).sum()))
        timestamps = _T0 + np.cumsum(gaps)
        return SessionLog(
            offsets=offsets,
            items=items,
            rewards=np.where(bought, PURCHASE_REWARD, CLICK_REWARD).astype(np.float32),
            kinds=np.where(bought, KIND_PURCHASE, KIND_CLICK).astype(np.int8),
            timestamps=timestamps,
            n_items=self.n_items,
            users=users,
            propensities=props,
            genres=self.genres,
            genre_names=self.genre_names,
            item_ids=np.arange(self.n_items).astype(str),
            name=name,
            meta={**self.meta(), "generate": {"n_sessions": n_sessions, "seed": seed}},
        )

    def _simulate_chunk(
        self, users: np.ndarray, lengths: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Simulate one chunk of sessions step by step; returns the CSR-ordered event columns."""
        c = self.config
        B = len(users)
        order = np.argsort(-lengths, kind="stable")  # longest first: the active sessions are a prefix
        u, lens = users[order], lengths[order]
        static = self._logging_static(u, dtype=np.float32)  # [B, n]
        # row max of the static logits bounds the logits (history terms are <= 0): exp never overflows
        static -= static.max(axis=1, keepdims=True)
        T_log = c.logging_temperature
        sat_w = (c.satiation / T_log * self.genre_weights.T).astype(np.float32)  # [g, n]
        genre_exp = np.zeros((B, self.n_genres), dtype=np.float64)  # s_g(h)
        # decayed same-item exposure sum_j gamma^a_j [h_j = i], kept scaled by rho / T for the logits
        item_pen = np.zeros((B, self.n_items), dtype=np.float32)
        buf = np.empty((B, self.n_items), dtype=np.float32)  # reused: fresh 16 MB arrays page-fault
        T = int(lens.max()) if B else 0
        out_items = np.zeros((B, T), dtype=np.int32)
        out_bought = np.zeros((B, T), dtype=bool)
        out_props = np.zeros((B, T), dtype=np.float32)
        gamma = np.float32(c.satiation_decay)
        for t in range(T):
            na = int((lens > t).sum())
            rows = np.arange(na)
            w = buf[:na]
            np.matmul(genre_exp[:na].astype(np.float32), sat_w, out=w)
            np.subtract(static[:na], w, out=w)
            w -= item_pen[:na]
            low = np.flatnonzero(w.max(axis=1) < -60.0)  # exp would underflow (extreme configs)
            if len(low):
                w[low] -= w[low].max(axis=1, keepdims=True)
            np.exp(w, out=w)
            choice, total = _sample_rows(w, rng)
            out_items[:na, t] = choice
            out_props[:na, t] = w[rows, choice] / total
            # purchase draw from the true utility of the consumed item (same formula as `utility`)
            x = c.taste_scale * np.einsum("bd,bd->b", self.user_factors[u[:na]], self.item_factors[choice])
            x += c.quality_weight * self.quality[choice]
            x -= c.satiation * np.einsum("bg,bg->b", genre_exp[:na], self.genre_weights[choice])
            x -= T_log * item_pen[rows, choice]  # = repeat_penalty * same-item exposure
            out_bought[:na, t] = rng.random(na) < self.purchase_prob(x)
            # the consumed item joins the history: older exposures decay by gamma
            genre_exp[:na] = c.satiation_decay * genre_exp[:na] + self.genre_weights[choice]
            item_pen[:na] *= gamma
            item_pen[rows, choice] += np.float32(c.repeat_penalty / T_log)
        inv = np.empty(B, dtype=np.int64)
        inv[order] = np.arange(B)
        mask = np.arange(T)[None, :] < lengths[:, None]
        return out_items[inv][mask], out_bought[inv][mask], out_props[inv][mask]

    def rating_log(self, ratings_per_user: int | None = None, seed: int | None = None,
                   reward_scheme: str = "click-purchase", name: str = "synthetic-ratings") -> SessionLog:  # fmt: skip
        """Missing-not-at-random explicit ratings: one session per user (``users = arange``).

        User ``u`` rates ``ratings_per_user`` distinct items drawn without replacement with
        ``P ~ exp(rating_select_utility * x0(u, i) + rating_select_pop * log pop_i)`` (liked and
        popular items are rated more often). The rating is
        ``clip(round(1 + 4 sigmoid(rating_slope * (x0 - rating_offset)) + rating_noise * N(0, 1)), 1, 5)``
        with ``x0`` the context-free utility. ``ratings`` holds it; ``kinds`` is purchase where
        rating >= 4; rewards follow ``reward_scheme``: ``"click-purchase"`` (1.0 / 0.2) or
        ``"rating"`` (1-2 -> 0, 3 -> 0.5, 4-5 -> 1), as for the real rating sources.
        """
        c = self.config
        k = c.ratings_per_user if ratings_per_user is None else int(ratings_per_user)
        if not 1 <= k <= self.n_items:
            raise ValueError(f"World.rating_log: ratings_per_user must lie in [1, {self.n_items}], got {k}")
        if reward_scheme not in ("click-purchase", "rating"):
            raise ValueError(f"World.rating_log: reward_scheme must be 'click-purchase' or 'rating', got {reward_scheme!r}")
        seed = self.seed if seed is None else int(seed)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 3, seed]))
        items_l, ratings_l = [], []
        chunk = max(1, _CHUNK_CELLS // self.n_items)
        for start in range(0, self.n_users, chunk):  # loop over chunks of users, not users
            u = np.arange(start, min(start + chunk, self.n_users))
            x0 = self._base_utility(u)
            keys = c.rating_select_utility * x0 + c.rating_select_pop * self.log_popularity + rng.gumbel(size=x0.shape)
            top = np.argpartition(-keys, k - 1, axis=1)[:, :k] if k < self.n_items else np.tile(np.arange(k), (len(u), 1))
            top = np.take_along_axis(top, rng.random(top.shape).argsort(axis=1), axis=1)  # random rating order
            x = np.take_along_axis(x0, top, axis=1)
            mean = 1.0 + 4.0 * _sigmoid(c.rating_slope * (x - c.rating_offset))
            ratings_l.append(np.clip(np.rint(mean + c.rating_noise * rng.standard_normal(x.shape)), 1, 5))
            items_l.append(top)
        items = np.concatenate(items_l).reshape(-1)
        ratings = np.concatenate(ratings_l).reshape(-1).astype(np.float32)
        liked = ratings >= 4
        if reward_scheme == "click-purchase":
            rewards = np.where(liked, PURCHASE_REWARD, CLICK_REWARD)
        else:
            rewards = np.select([ratings <= 2, ratings == 3], [0.0, 0.5], 1.0)
        n = len(items)
        return SessionLog(
            offsets=np.arange(0, n + 1, k, dtype=np.int64),
            items=items,
            rewards=rewards.astype(np.float32),
            kinds=np.where(liked, KIND_PURCHASE, KIND_CLICK).astype(np.int8),
            timestamps=_T0 + np.arange(n, dtype=np.float64),
            n_items=self.n_items,
            users=np.arange(self.n_users),
            ratings=ratings,
            genres=self.genres,
            genre_names=self.genre_names,
            item_ids=np.arange(self.n_items).astype(str),
            name=name,
            meta={**self.meta(), "rating_log": {"ratings_per_user": k, "seed": seed, "reward_scheme": reward_scheme}},
        )

    # ------------------------------------------------------------------ evaluation
    def contexts(self, log: SessionLog, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The decision context of every event of ``log``: the session's items before it.

        Returns ``(users int64 [N], histories int64 [N, L] right-padded with n_items, lengths int64
        [N])`` with ``L = max_len`` (default: the longest session, so the oracle is exact)."""
        if log.users is None:
            raise ValueError(f"World.contexts: log {log.name!r} has no users")
        if log.n_items != self.n_items:
            raise ValueError(f"World.contexts: log {log.name!r} has n_items={log.n_items}, world {self.n_items}")
        if max_len is not None and max_len < 1:
            raise ValueError(f"World.contexts: max_len must be >= 1, got {max_len!r}")
        pos = log.position_of_event
        L = int(max_len) if max_len is not None else max(int(log.lengths.max()) if log.n_sessions else 1, 1)
        event = np.arange(log.n_events)
        hist, lengths = last_items(log.items, event - pos, event, L, self.pad_id)
        return np.repeat(log.users, log.lengths), hist, lengths

    def oracle_slates(self, users, histories, lengths, k: int = 1) -> np.ndarray:
        """The oracle's top-``k`` items by true expected reward, int64 ``[B, k]`` (best first)."""
        users, histories, lengths = self._check_context(users, histories, lengths)
        out = np.empty((len(users), k), dtype=np.int64)
        for s in range(0, len(users), 4 * _BATCH):  # bounded memory: [batch, n_items] at a time
            sl = slice(s, s + 4 * _BATCH)
            r = self.expected_reward_all(users[sl], histories[sl], lengths[sl])
            out[sl] = np.argsort(-r, axis=1, kind="stable")[:, :k]
        return out

    def slate_value(self, users, histories, lengths, slates) -> np.ndarray:
        """Mean true expected reward of each slate, float64 ``[B]`` (``slates`` int ``[B, k]``)."""
        users = _np(users, "users").reshape(-1)
        slates = _np(slates, "slates").reshape(len(users), -1)
        return self.expected_reward(users, histories, lengths, slates).mean(axis=1)

    def true_value(
        self,
        agent: Any,
        users,
        histories,
        lengths,
        k: int = 1,
        batch_size: int = _BATCH,
    ) -> float:
        """True expected reward of a policy's greedy top-1 (``k=1``) or the mean over its top-``k``,
        averaged over the given contexts.

        Args:
            agent: an object with ``scores(states, lengths) -> [B, n_items]`` (an
                :class:`recgym.agents.base.Agent`; its ``state_len`` window is applied), a callable with the
                same signature (torch int64 inputs; torch or numpy output), or an int array of
                recommendations ``[B]`` / ``[B, >= k]``, best first (e.g. :meth:`oracle_slates`).
            users, histories, lengths: contexts as for :meth:`expected_reward`.
        Returns: mean over contexts of the mean true expected reward of the top-``k`` items.
        """
        users, histories, lengths = self._check_context(users, histories, lengths)
        B = len(users)
        if B == 0:
            raise ValueError("World.true_value: no contexts")
        if isinstance(agent, (np.ndarray, torch.Tensor, list)):
            slates = _np(agent, "agent").reshape(B, -1)
            if slates.shape[1] < k:
                raise ValueError(f"World.true_value: {slates.shape[1]} recommendations per context, k={k}")
            return float(self.slate_value(users, histories, lengths, slates[:, :k]).mean())
        score_fn: Callable = agent.scores if hasattr(agent, "scores") else agent
        if not callable(score_fn):
            raise TypeError(f"World.true_value: agent {agent!r} has no scores() and is not callable")
        state_len = getattr(agent, "state_len", None)
        total = 0.0
        for s in range(0, B, batch_size):
            u, h, l = users[s : s + batch_size], histories[s : s + batch_size], lengths[s : s + batch_size]
            hs, ls = last_items_of_rows(h, l, state_len, self.pad_id) if state_len else (h, l)
            with torch.no_grad():
                sc = score_fn(torch.from_numpy(hs), torch.from_numpy(ls))
            sc = torch.as_tensor(sc).float()
            if sc.shape != (len(u), self.n_items):
                raise ValueError(f"World.true_value: agent scores have shape {tuple(sc.shape)}, expected {(len(u), self.n_items)}")
            top = torch.topk(sc, k, dim=1).indices.cpu().numpy()  # scores may live on the agent's device
            total += float(self.expected_reward(u, h, l, top).mean(axis=1).sum())
        return total / B


def _sample_rows(w: np.ndarray, rng: np.random.Generator, block: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """One index per row with probability proportional to the non-negative weights ``w [B, n]``.

    Two-level inverse CDF (block sums, then inside the chosen block): a full-row cumsum costs
    several times more than the block reduction. Returns ``(choice int64 [B], row sums [B])``."""
    B, n = w.shape
    rows = np.arange(B)
    bsum = np.add.reduceat(w, np.arange(0, n, block), axis=1).astype(np.float64)  # [B, nb]
    bcdf = np.cumsum(bsum, axis=1)
    total = bcdf[:, -1]
    r = total * (1.0 - rng.random(B))  # in (0, total]: never lands on a zero-weight prefix
    blk = np.minimum((bcdf < r[:, None]).sum(axis=1), bsum.shape[1] - 1)
    r_in = r - (bcdf[rows, blk] - bsum[rows, blk])
    cols = blk[:, None] * block + np.arange(block)[None, :]
    inside = np.where(cols < n, w[rows[:, None], np.minimum(cols, n - 1)], 0.0)
    pos = (np.cumsum(inside, axis=1) < r_in[:, None]).sum(axis=1)
    last = np.where(inside > 0, np.arange(block)[None, :], 0).max(axis=1)  # guard against rounding
    return blk * block + np.minimum(pos, last), total


def make_synthetic_log(n_sessions: int = 5000, seed: int = 0, **config_overrides: Any) -> SessionLog:
    """The embedded default dataset ``"synthetic"``: ``World(seed=seed, **config_overrides).generate(n_sessions)``.

    Needs no download; ``World.from_log(log)`` gives its ground truth."""
    return World(seed=seed, **config_overrides).generate(n_sessions, name="synthetic")
