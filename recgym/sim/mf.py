"""Steck-style weighted matrix factorisation: the imputer behind the MF user simulator (iAR).

Ratings are missing not at random (users rate what they like), so a plain MF fitted on the
observed cells over-imputes positive ratings. Steck (KDD 2010) fits *all* user×item cells:

    L(P, Q) = Σ_{(u,i) observed} (r_ui − b − p_u·q_i)²
            + w_miss · Σ_{(u,i) missing} (b_miss − b − p_u·q_i)²
            + reg · (‖P‖² + ‖Q‖²)

with prediction ``r̂_ui = b + p_u·q_i``. We set the offset ``b = b_miss`` (the low baseline), so
missing cells have residual target 0 and observed cells ``r_ui − b_miss``. Alternating least
squares solves each user (item) row exactly; the "Gram trick" writes the missing-cell term as
``w_miss · QᵀQ`` minus a correction on the observed cells, so the dense ``n_users × n_items``
matrix is never formed:

    A_u = w_miss · QᵀQ + (1 − w_miss) · Σ_{i∈O(u)} q_i q_iᵀ + reg · I,   A_u p_u = Σ_{i∈O(u)} y_ui q_i.

Every half-step is an exact minimiser of ``L`` in one block, so ``L`` never increases.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.stats import rankdata, spearmanr

from recgym.data.session_log import SessionLog


@dataclass
class MFConfig:
    """Hyper-parameters of the weighted MF imputer."""

    dim: int = 16
    """Latent dimension."""
    reg: float = 5.0
    """L2 weight on the factors (not scaled by the number of ratings)."""
    missing_weight: float = 0.003
    """Weight of every missing cell (observed cells have weight 1)."""
    baseline: float = 1.0
    """Rating that missing cells are pulled toward (a low rating; 0 for reward-valued data)."""
    n_iters: int = 15
    """ALS sweeps (one sweep = users then items)."""
    init_scale: float = 0.1
    seed: int = 0
    chunk: int = 65536
    """Observed cells per chunk when forming the per-row Gram matrices (bounds memory)."""


def _rows_csr(rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Order that sorts cells by row and the CSR offsets ``[n_rows + 1]``."""
    order = np.argsort(rows, kind="stable")
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=offsets[1:])
    return order, offsets


def _solve_rows(
    fixed: np.ndarray, cols: np.ndarray, y: np.ndarray, offsets: np.ndarray, cfg: MFConfig
) -> np.ndarray:
    """Exact least-squares update of every row given the other side's factors.

    ``fixed`` [n_cols, d]; ``cols``/``y`` [n_obs] sorted by row with CSR ``offsets`` [n_rows+1].
    Returns the new row factors ``[n_rows, d]``.
    """
    n_rows, d = len(offsets) - 1, fixed.shape[1]
    gram = cfg.missing_weight * (fixed.T @ fixed) + cfg.reg * np.eye(d)
    a = np.broadcast_to(gram, (n_rows, d, d)).copy()
    b = np.zeros((n_rows, d))
    counts = np.diff(offsets)
    rows_of = np.repeat(np.arange(n_rows), counts)
    # observed cells in chunks of ~4M floats: per-cell outer products, summed per row by a sparse
    # indicator product (a segmented sum without a Python loop over rows)
    chunk = max(1, min(cfg.chunk, (1 << 22) // (d * d)))
    for s in range(0, len(cols), chunk):
        e = min(s + chunk, len(cols))
        q = fixed[cols[s:e]]  # [c, d]
        r = rows_of[s:e]
        ind = sparse.csr_matrix((np.ones(e - s), (r, np.arange(e - s))), shape=(n_rows, e - s))
        outer = (q[:, :, None] * q[:, None, :]).reshape(e - s, d * d)  # [c, d*d]
        a += (1.0 - cfg.missing_weight) * (ind @ outer).reshape(n_rows, d, d)
        b += ind @ (y[s:e, None] * q)
    return np.linalg.solve(a, b[:, :, None])[:, :, 0]


class WeightedMF:
    """Weighted (missing-not-at-random) matrix factorisation fitted by ALS.

    Example::

        mf = WeightedMF(MFConfig(baseline=1.0)).fit(users, items, ratings, n_users, n_items)
        r_hat = mf.predict(users, items)      # float64 [B]
    """

    def __init__(self, config: MFConfig | None = None, **overrides) -> None:
        self.config = dataclasses.replace(config or MFConfig(), **overrides)
        self.user_factors: np.ndarray | None = None  # [n_users, d]
        self.item_factors: np.ndarray | None = None  # [n_items, d]
        self.history: list[float] = []  # objective after each sweep

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray,
        n_users: int | None = None,
        n_items: int | None = None,
        init: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> "WeightedMF":
        """Fit on observed cells ``(users[k], items[k]) -> ratings[k]`` (duplicates: the last wins).

        ``init``: optional starting factors ``(P [n_users, d], Q [n_items, d])``.
        """
        cfg = self.config
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        ratings = np.asarray(ratings, dtype=np.float64)
        if not (len(users) == len(items) == len(ratings)):
            raise ValueError(
                f"WeightedMF.fit: users/items/ratings lengths differ ({len(users)}, {len(items)}, {len(ratings)})"
            )
        if not np.all(np.isfinite(ratings)):
            raise ValueError("WeightedMF.fit: ratings contain NaN/inf")
        if not 0.0 <= cfg.missing_weight <= 1.0:
            raise ValueError(f"missing_weight must lie in [0, 1], got {cfg.missing_weight}")
        n_users = int(users.max()) + 1 if n_users is None else int(n_users)
        n_items = int(items.max()) + 1 if n_items is None else int(n_items)
        if len(users) and (users.min() < 0 or users.max() >= n_users or items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"WeightedMF.fit: ids out of range for n_users={n_users}, n_items={n_items}")
        # keep the last rating of duplicated cells
        key = users * n_items + items
        _, last = np.unique(key[::-1], return_index=True)
        keep = np.sort(len(key) - 1 - last)
        users, items, y = users[keep], items[keep], ratings[keep] - cfg.baseline
        self._obs = (users, items, y)

        rng = np.random.default_rng(cfg.seed)
        if init is None:
            p = cfg.init_scale * rng.standard_normal((n_users, cfg.dim))
            q = cfg.init_scale * rng.standard_normal((n_items, cfg.dim))
        else:
            p, q = (np.array(x, dtype=np.float64) for x in init)
        u_order, u_off = _rows_csr(users, n_users)
        i_order, i_off = _rows_csr(items, n_items)
        self.history = []
        for _ in range(cfg.n_iters):
            p = _solve_rows(q, items[u_order], y[u_order], u_off, cfg)
            q = _solve_rows(p, users[i_order], y[i_order], i_off, cfg)
            self.user_factors, self.item_factors = p, q
            self.history.append(self.objective())
        return self

    def objective(self) -> float:
        """The weighted loss ``L`` on the training cells (Gram trick: no dense matrix)."""
        cfg = self.config
        p, q = self.user_factors, self.item_factors
        users, items, y = self._obs
        pred = np.einsum("nd,nd->n", p[users], q[items])
        obs = np.sum((y - pred) ** 2) - cfg.missing_weight * np.sum(pred**2)
        all_cells = cfg.missing_weight * np.sum((p.T @ p) * (q.T @ q))
        return float(obs + all_cells + cfg.reg * (np.sum(p**2) + np.sum(q**2)))

    @classmethod
    def from_log(cls, log: SessionLog, config: MFConfig | None = None, value: str = "auto", **overrides) -> "WeightedMF":
        """Fit on a log: rows are ``log.users`` (or sessions when absent), values are the raw
        ``ratings`` when the log has them (``value="auto"``/``"ratings"``) else the ``rewards``."""
        rows = _log_rows(log)
        vals = _log_values(log, value)
        return cls(config, **overrides).fit(rows, log.items, vals, n_users=int(rows.max()) + 1 if len(rows) else 0,
                                            n_items=log.n_items)

    # ------------------------------------------------------------------ use
    @property
    def n_users(self) -> int:
        return len(self.user_factors)

    @property
    def n_items(self) -> int:
        return len(self.item_factors)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Imputed ratings ``r̂`` of the pairs (broadcast): ``users`` [B] or [B, 1] with ``items`` [B, k]."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if items.ndim == users.ndim + 1:
            return self.config.baseline + np.einsum("bd,bkd->bk", self.user_factors[users], self.item_factors[items])
        return self.config.baseline + np.sum(self.user_factors[users] * self.item_factors[items], axis=-1)

    def predict_all(self, users: np.ndarray) -> np.ndarray:
        """Imputed ratings of every item for the given users, ``[B, n_items]``."""
        self._check_fitted()
        return self.config.baseline + self.user_factors[np.asarray(users, dtype=np.int64)] @ self.item_factors.T

    def rmse(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> float:
        """Root mean squared error of ``predict`` on held-out cells."""
        err = self.predict(users, items) - np.asarray(ratings, dtype=np.float64)
        return float(np.sqrt(np.mean(err**2))) if len(err) else float("nan")

    def imputation_report(self) -> dict[str, float]:
        """Mean imputed rating of the observed cells vs the unobserved cells (exact, by Gram sums).

        With the MNAR treatment the unobserved mean sits well below the observed one."""
        self._check_fitted()
        users, items, _ = self._obs
        b = self.config.baseline
        obs_sum = float(np.sum(self.predict(users, items)))
        total = self.n_users * self.n_items * b + float(self.user_factors.sum(0) @ self.item_factors.sum(0))
        n_obs, n_all = len(users), self.n_users * self.n_items
        return {
            "mean_observed": obs_sum / max(n_obs, 1),
            "mean_unobserved": (total - obs_sum) / max(n_all - n_obs, 1),
            "n_observed": float(n_obs),
            "density": n_obs / max(n_all, 1),
        }

    def top_item_popularity(self, users: np.ndarray, popularity: np.ndarray, k: int = 10,
                            batch_size: int = 1024) -> dict[str, float]:
        """How far the imputer's top-``k`` items lean toward popular items, over ``users`` [B].

        ``popularity`` [n_items] is each item's logged count. ``top{k}_pop_corr``: Spearman's ρ
        between an item's popularity and the number of users whose imputed top-``k`` holds it (near 1:
        the simulator rewards what is already popular). ``top{k}_pop_pct``: mean popularity percentile
        of the top-``k`` items (average ranks, 0 = least, 1 = most popular; 0.5 = no lean)."""
        self._check_fitted()
        popularity = np.asarray(popularity, dtype=np.float64)
        if popularity.shape != (self.n_items,):
            raise ValueError(f"top_item_popularity: popularity must have shape ({self.n_items},), got {popularity.shape}")
        k = min(int(k), self.n_items)
        users = np.asarray(users, dtype=np.int64)
        counts = np.zeros(self.n_items)
        for lo in range(0, len(users), batch_size):
            top = np.argpartition(-self.predict_all(users[lo : lo + batch_size]), k - 1, axis=1)[:, :k]
            counts += np.bincount(top.ravel(), minlength=self.n_items)
        pct = (rankdata(popularity) - 1) / max(self.n_items - 1, 1)
        rho = spearmanr(popularity, counts).statistic if np.ptp(counts) > 0 and np.ptp(popularity) > 0 else float("nan")
        return {f"top{k}_pop_corr": float(rho), f"top{k}_pop_pct": float(counts @ pct / max(counts.sum(), 1))}

    # ------------------------------------------------------------------ io
    def save(self, path: str | Path) -> Path:
        """Write factors and config to an ``.npz`` atomically (no pickle)."""
        from recgym.data.io import atomic_path

        self._check_fitted()
        path = Path(path)
        header = json.dumps({"config": dataclasses.asdict(self.config), "history": self.history, "format": 1})
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, user_factors=self.user_factors, item_factors=self.item_factors,
                         __header__=np.frombuffer(header.encode(), dtype=np.uint8))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "WeightedMF":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["__header__"]).decode())
                p, q = z["user_factors"], z["item_factors"]
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{path}: not a recgym WeightedMF file ({e})") from e
        mf = cls(MFConfig(**header["config"]))
        mf.user_factors, mf.item_factors, mf.history = p, q, list(header["history"])
        return mf

    def _check_fitted(self) -> None:
        if self.user_factors is None:
            raise RuntimeError("WeightedMF: call fit() or load() first")


def _log_rows(log: SessionLog) -> np.ndarray:
    """Row id of every event: the dense user when the log has users, else the session."""
    if log.users is not None:
        return np.repeat(log.users, log.lengths)
    return log.session_of_event


def _log_values(log: SessionLog, value: str) -> np.ndarray:
    if value not in ("auto", "ratings", "rewards"):
        raise ValueError(f"value must be 'auto', 'ratings' or 'rewards', got {value!r}")
    if value == "ratings" and log.ratings is None:
        raise ValueError(f"log {log.name!r} has no ratings column")
    if value != "rewards" and log.ratings is not None:
        return log.ratings.astype(np.float64)
    return log.rewards.astype(np.float64)


RATING_REWARD_POINTS = (np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([0.0, 0.0, 0.5, 1.0, 1.0]))
"""The ``"rating"`` scheme (1–2 → 0, 3 → 0.5, 4–5 → 1) as interpolation knots."""


def rating_to_reward(r: np.ndarray, scheme: str = "rating") -> np.ndarray:
    """Map (imputed, real-valued) ratings to rewards with a source's scheme.

    Imputed ratings are continuous, so the integer scheme is extended piecewise-linearly and
    clipped to [1, 5] (it agrees with the scheme on integer ratings). ``"click-purchase"``:
    0.2 below 3.5, 1.0 from 3.5 (a rounded rating >= 4 is a purchase). ``"identity"``: unchanged.
    """
    r = np.asarray(r, dtype=np.float64)
    if scheme == "rating":
        return np.interp(r, *RATING_REWARD_POINTS)
    if scheme == "click-purchase":
        return np.where(r >= 3.5, 1.0, 0.2)
    if scheme == "identity":
        return r
    raise ValueError(f"unknown reward scheme {scheme!r} (use 'rating', 'click-purchase' or 'identity')")
