"""The Steck-style weighted MF imputer (recgym.sim.mf)."""

import numpy as np
import pytest

from recgym.sim.mf import MFConfig, WeightedMF, rating_to_reward


def planted(n_users=60, n_items=50, rank=3, density=0.3, seed=0):
    """A rank-``rank`` rating matrix in [1, 5] observed on a random ``density`` of the cells."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_users, rank))
    v = rng.standard_normal((n_items, rank))
    full = 3.0 + 0.6 * (u @ v.T)
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    return full, mask, users, items, full[users, items]


def dense_weighted_als(r, w, p, q, reg, baseline, n_iters):
    """Brute force: per-row weighted least squares on the dense weight and target matrices."""
    y = r - baseline
    d = p.shape[1]
    for _ in range(n_iters):
        p = np.stack([np.linalg.solve((q * w[u, :, None]).T @ q + reg * np.eye(d), (q * w[u, :, None]).T @ y[u])
                      for u in range(len(p))])
        q = np.stack([np.linalg.solve((p * w[:, i, None]).T @ p + reg * np.eye(d), (p * w[:, i, None]).T @ y[:, i])
                      for i in range(len(q))])
    return p, q


def test_recovers_observed_cells():
    full, mask, users, items, r = planted()
    mf = WeightedMF(MFConfig(dim=5, reg=0.01, missing_weight=0.001, baseline=1.0, n_iters=30)).fit(
        users, items, r, 60, 50)
    assert mf.rmse(users, items, r) < 0.1


def test_unobserved_pulled_to_baseline():
    full, mask, users, items, r = planted()

    def fit(w):
        return WeightedMF(dim=4, reg=0.1, missing_weight=w, baseline=1.0, n_iters=20).fit(users, items, r, 60, 50)

    # without the missing-cell term, plain MF generalises the low-rank truth (mean ~3 everywhere)
    plain = fit(0.0).imputation_report()
    assert abs(plain["mean_unobserved"] - full[~mask].mean()) < 0.1
    # the MNAR term pulls unobserved cells toward the baseline 1, harder as its weight grows
    reps = [fit(w).imputation_report() for w in (0.01, 0.05, 0.3)]
    unobs = [plain["mean_unobserved"]] + [x["mean_unobserved"] for x in reps]
    assert np.all(np.diff(unobs) < -0.05)
    assert all(x["mean_unobserved"] < x["mean_observed"] - 0.05 for x in reps)
    assert 1.0 < reps[-1]["mean_unobserved"] < 2.2
    # exact Gram-sum report agrees with the dense computation
    mf = fit(0.05)
    rep = mf.imputation_report()
    dense = mf.predict_all(np.arange(60))
    assert np.isclose(rep["mean_unobserved"], dense[~mask].mean())
    assert np.isclose(rep["mean_observed"], dense[mask].mean())


def test_objective_decreases_monotonically():
    _, _, users, items, r = planted(seed=1)
    mf = WeightedMF(dim=5, reg=0.05, missing_weight=0.02, n_iters=12, chunk=97).fit(users, items, r, 60, 50)
    h = np.array(mf.history)
    assert len(h) == 12
    assert np.all(np.diff(h) <= 1e-9 * np.abs(h[:-1]))
    assert h[-1] < h[0]


def test_matches_dense_bruteforce():
    rng = np.random.default_rng(3)
    n_u, n_i, d = 7, 6, 2
    mask = rng.random((n_u, n_i)) < 0.5
    r = rng.integers(1, 6, size=(n_u, n_i)).astype(float)
    users, items = np.nonzero(mask)
    p0, q0 = rng.standard_normal((n_u, d)), rng.standard_normal((n_i, d))
    cfg = MFConfig(dim=d, reg=0.3, missing_weight=0.1, baseline=1.5, n_iters=4, chunk=3)
    mf = WeightedMF(cfg).fit(users, items, r[users, items], n_u, n_i, init=(p0, q0))
    w = np.where(mask, 1.0, 0.1)
    target = np.where(mask, r, 1.5)
    p, q = dense_weighted_als(target, w, p0, q0, 0.3, 1.5, 4)
    np.testing.assert_allclose(mf.user_factors, p, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(mf.item_factors, q, rtol=1e-8, atol=1e-10)
    # the Gram-trick objective equals the dense weighted loss
    dense_loss = np.sum(w * (target - 1.5 - p @ q.T) ** 2) + 0.3 * (np.sum(p**2) + np.sum(q**2))
    assert np.isclose(mf.history[-1], dense_loss)


def test_save_load_roundtrip(tmp_path):
    _, _, users, items, r = planted(seed=2)
    mf = WeightedMF(dim=4, n_iters=3).fit(users, items, r, 60, 50)
    path = mf.save(tmp_path / "mf.npz")
    mf2 = WeightedMF.load(path)
    np.testing.assert_array_equal(mf2.predict(users, items), mf.predict(users, items))
    assert mf2.config == mf.config and mf2.history == mf.history
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="bad.npz"):
        WeightedMF.load(tmp_path / "bad.npz")


def test_bad_input_and_duplicates():
    with pytest.raises(ValueError, match="lengths differ"):
        WeightedMF().fit([0, 1], [0], [1.0])
    with pytest.raises(ValueError, match="out of range"):
        WeightedMF().fit([0, 5], [0, 1], [1.0, 2.0], n_users=3, n_items=3)
    # duplicated cell: the last rating wins
    mf = WeightedMF(dim=2, reg=1e-6, missing_weight=0.0, n_iters=30, baseline=0.0).fit(
        [0, 0, 1, 1], [0, 0, 0, 1], [5.0, 2.0, 2.0, 3.0], 2, 2)
    assert abs(mf.predict([0], [0])[0] - 2.0) < 1e-3


def test_rating_to_reward():
    np.testing.assert_allclose(rating_to_reward([1, 2, 3, 4, 5, 3.5, 0.2, 7]), [0, 0, 0.5, 1, 1, 0.75, 0, 1])
    np.testing.assert_allclose(rating_to_reward([3.4, 3.6], "click-purchase"), [0.2, 1.0])
    with pytest.raises(ValueError, match="scheme"):
        rating_to_reward([1], "nope")


def test_top_item_popularity_by_hand():
    # one latent dim, baseline 0: every user's imputed ranking is items 0 > 1 > 2 > 3
    mf = WeightedMF(MFConfig(dim=1, baseline=0.0))
    mf.user_factors, mf.item_factors = np.ones((3, 1)), np.array([[4.0], [3.0], [2.0], [1.0]])
    # top-2 counts [3, 3, 0, 0]; ranks [3.5, 3.5, 1.5, 1.5] against popularity ranks [4, 3, 2, 1]:
    # centred [1, 1, −1, −1]·[1.5, .5, −.5, −1.5] = 4, norms 2 and √5 -> ρ = 2/√5
    rep = mf.top_item_popularity(np.arange(3), np.array([10, 5, 1, 0]), k=2)
    assert rep["top2_pop_corr"] == pytest.approx(2 / np.sqrt(5))
    # popularity percentiles [1, 2/3, 1/3, 0]: the top-2 average (1 + 2/3) / 2
    assert rep["top2_pop_pct"] == pytest.approx(5 / 6)
    # the reverse popularity leans the other way
    rep = mf.top_item_popularity(np.arange(3), np.array([0, 1, 5, 10]), k=2, batch_size=2)
    assert rep["top2_pop_corr"] == pytest.approx(-2 / np.sqrt(5)) and rep["top2_pop_pct"] == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="popularity must have shape"):
        mf.top_item_popularity(np.arange(3), np.ones(5))
