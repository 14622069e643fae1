"""recgym.sim.World: determinism, the oracle's formulas, statistical behaviour, round trips."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym.data import KIND_CLICK, KIND_PURCHASE, SessionLog
from recgym.sim import World, WorldConfig, make_synthetic_log
from recgym.data.windows import last_items_of_rows
from recgym.sim.world import _sample_rows


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=3)


@pytest.fixture(scope="module")
def log(world: World) -> SessionLog:
    return world.generate(3000, seed=1)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------- log format
def test_log_shapes_dtypes_and_invariants(world: World, log: SessionLog) -> None:
    c = world.config
    log.validate()
    assert log.name == "synthetic" and log.n_items == c.n_items == 500
    assert log.items.dtype == np.int32 and log.rewards.dtype == np.float32 and log.kinds.dtype == np.int8
    assert log.users.dtype == np.int64 and log.users.shape == (3000,)
    assert 0 <= log.users.min() and log.users.max() < c.n_users
    assert c.session_len_min <= log.lengths.min() and log.lengths.max() <= c.session_len_max
    assert abs(log.lengths.mean() - c.session_len_mean) < 0.4
    # click-purchase scheme, kinds and rewards agree
    np.testing.assert_array_equal(log.rewards, np.where(log.kinds == KIND_PURCHASE, 1.0, 0.2).astype(np.float32))
    assert set(np.unique(log.kinds)) == {KIND_CLICK, KIND_PURCHASE}
    assert 0.1 < (log.kinds == KIND_PURCHASE).mean() < 0.35
    assert np.all(np.diff(log.timestamps) > 0)
    # genres: 1..3 per item, 18 named genres, item_ids present
    assert log.genres.shape == (500, 18) and log.genres.dtype == np.float32
    per_item = log.genres.sum(1)
    assert per_item.min() == 1 and per_item.max() == 3 and set(np.unique(log.genres)) == {0.0, 1.0}
    assert len(log.genre_names) == 18 and log.genre_names[7] == "Drama"
    assert log.item_ids.shape == (500,)
    json.dumps(log.meta)  # JSON-able
    assert log.meta["world"] == {"config": world.meta()["world"]["config"], "seed": 3}


def test_propensities_are_the_logging_policy(world: World, log: SessionLog) -> None:
    # the step-by-step simulation and the batch formula of mu must agree
    sub = log.subset(np.arange(400))
    users, hist, lengths = world.contexts(sub)
    mu = world.logging_probs(users, hist, lengths)
    np.testing.assert_allclose(mu.sum(1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(sub.propensities, mu[np.arange(len(users)), sub.items], rtol=1e-4, atol=1e-7)


def test_contexts_are_session_prefixes(world: World, log: SessionLog) -> None:
    users, hist, lengths = world.contexts(log)
    s = 7
    start, stop = log.offsets[s], log.offsets[s + 1]
    for t in range(stop - start):
        e = start + t
        assert lengths[e] == t and users[e] == log.users[s]
        np.testing.assert_array_equal(hist[e, :t], log.items[start:e])
        assert np.all(hist[e, t:] == world.pad_id)
    _, hist3, len3 = world.contexts(log, max_len=3)
    e = start + 5
    assert len3[e] == 3
    np.testing.assert_array_equal(hist3[e], log.items[e - 3 : e])


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_log_different_seed_different() -> None:
    a = World(seed=0).generate(500, seed=5)
    b = World(seed=0).generate(500, seed=5)
    for key in ("offsets", "items", "rewards", "kinds", "timestamps", "users", "propensities"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    c = World(seed=0).generate(500, seed=6)
    assert not np.array_equal(a.items[:100], c.items[:100])
    d = World(seed=1).generate(500, seed=5)
    assert not np.array_equal(World(seed=0).item_factors, World(seed=1).item_factors)
    assert not np.array_equal(a.items[:100], d.items[:100])


@pytest.mark.slow
def test_speed_50k_sessions() -> None:
    w = World()
    t0 = time.perf_counter()
    big = w.generate(50_000)
    elapsed = time.perf_counter() - t0
    assert big.n_sessions == 50_000 and big.n_events > 300_000
    assert elapsed < 10.0, f"World.generate(50_000) took {elapsed:.1f} s"


# ----------------------------------------------------------------------------- the oracle
def test_utility_matches_hand_computation(world: World) -> None:
    c = world.config
    u, a, b, i = 11, 4, 9, 4  # history [a, b]; the candidate repeats a (two steps old)
    hist = np.array([[a, b, world.pad_id, world.pad_id]])
    x = world.utility([u], hist, [2], [[i, b]])
    g = world.genre_weights
    gamma = c.satiation_decay
    s = gamma * g[a] + g[b]  # decayed genre exposure, last item weight 1
    for col, item, rep in ((0, i, gamma), (1, b, 1.0)):
        want = (
            c.taste_scale * world.user_factors[u] @ world.item_factors[item]
            + c.quality_weight * world.quality[item]
            - c.satiation * s @ g[item]
            - c.repeat_penalty * rep
        )
        assert x[0, col] == pytest.approx(want, rel=1e-12)
    r = world.expected_reward([u], hist, [2], [[i, b]])
    np.testing.assert_allclose(r, 0.2 + 0.8 * _sigmoid(c.purchase_slope * (x - c.purchase_offset)), rtol=1e-12)
    # empty history: no satiation, no repeats
    x0 = world.utility([u], np.full((1, 3), world.pad_id), [0], [[i]])
    assert x0[0, 0] == pytest.approx(c.taste_scale * world.user_factors[u] @ world.item_factors[i] + c.quality_weight * world.quality[i])


def test_satiation_lowers_expected_reward_after_repeated_genres(world: World) -> None:
    genres = world.genres.astype(bool)
    single = np.flatnonzero(genres.sum(1) == 1)
    g = int(np.argmax(genres[single].sum(0)))  # the commonest single-genre genre
    same = single[genres[single, g]]
    target, history_same = same[0], same[1:6]
    other = np.flatnonzero(~genres[:, g])[:5]  # five items sharing no genre with the target
    users = np.arange(20)
    h_same = np.tile(history_same, (20, 1))
    h_other = np.tile(other, (20, 1))
    lengths = np.full(20, 5)
    items = np.full((20, 1), target)
    r_same = world.expected_reward(users, h_same, lengths, items)[:, 0]
    r_other = world.expected_reward(users, h_other, lengths, items)[:, 0]
    r_empty = world.expected_reward(users, np.full((20, 5), world.pad_id), np.zeros(20, int), items)[:, 0]
    assert np.all(r_same < r_other)
    np.testing.assert_allclose(r_other, r_empty)  # disjoint genres: no satiation at all
    # satiation fades: the same genre items long ago hurt less than just now
    h_old = np.concatenate([h_same, h_other], axis=1)
    h_new = np.concatenate([h_other, h_same], axis=1)
    r_old = world.expected_reward(users, h_old, np.full(20, 10), items)[:, 0]
    r_new = world.expected_reward(users, h_new, np.full(20, 10), items)[:, 0]
    assert np.all(r_new < r_old) and np.all(r_old < r_empty)
    # recommending an item just consumed is worth less than a fresh one
    h_rep = np.tile([target], (20, 1))
    assert np.all(world.expected_reward(users, h_rep, np.ones(20, int), items)[:, 0] < r_empty)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    B=st.integers(1, 6),
    L=st.integers(1, 8),
    k=st.integers(1, 4),
    extra_pad=st.integers(0, 3),
)
def test_expected_reward_properties(seed: int, B: int, L: int, k: int, extra_pad: int) -> None:
    w = World(seed=0, n_users=30, n_items=40)
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 30, B)
    lengths = rng.integers(0, L + 1, B)
    hist = np.where(np.arange(L)[None, :] < lengths[:, None], rng.integers(0, 40, (B, L)), w.pad_id)
    items = rng.integers(0, 40, (B, k))
    r = w.expected_reward(users, hist, lengths, items)
    assert r.shape == (B, k) and np.all((r >= 0.2) & (r <= 1.0))
    # extra padding columns change nothing; the whole-catalogue path agrees; torch input works
    padded = np.concatenate([hist, np.full((B, extra_pad), w.pad_id)], axis=1)
    np.testing.assert_allclose(w.expected_reward(users, padded, lengths, items), r, rtol=1e-12)
    full = w.expected_reward_all(users, hist, lengths)
    np.testing.assert_allclose(np.take_along_axis(full, items, axis=1), r, rtol=1e-10)
    np.testing.assert_allclose(w.expected_reward(users, hist, lengths, items[:, 0]), r[:, 0])  # items [B] -> [B]
    rt = w.expected_reward(torch.from_numpy(users), torch.from_numpy(hist), torch.from_numpy(lengths), torch.from_numpy(items))
    np.testing.assert_allclose(rt, r)


def test_respond_samples_the_purchase_curve(world: World) -> None:
    n = 20_000
    users = np.full(n, 5)
    hist = np.tile([1, 2, world.pad_id], (n, 1))
    p_all = world.purchase_prob(world.utility(users[:1], hist[:1], [2]))[0]
    item = int(np.argmin(np.abs(p_all - 0.4)))  # an item bought about 40% of the time
    p = p_all[item]
    assert 0.2 < p < 0.6
    rewards, kinds = world.respond(users, hist, np.full(n, 2), np.full(n, item), np.random.default_rng(0))
    assert set(np.unique(rewards)) <= {np.float32(0.2), np.float32(1.0)}
    np.testing.assert_array_equal(kinds == KIND_PURCHASE, rewards == np.float32(1.0))
    assert abs((kinds == KIND_PURCHASE).mean() - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_oracle_input_errors(world: World) -> None:
    h = np.full((2, 3), world.pad_id)
    with pytest.raises(ValueError, match="users"):
        world.expected_reward([0, world.n_users], h, [0, 0], [[1], [2]])
    with pytest.raises(ValueError, match="items"):
        world.expected_reward([0, 1], h, [0, 0], [[1], [world.n_items]])
    with pytest.raises(ValueError, match="lengths"):
        world.expected_reward([0, 1], h, [0, 4], [[1], [2]])
    with pytest.raises(ValueError, match="expected"):
        world.expected_reward([0, 1, 2], h, [0, 0], [[1], [2]])


# ----------------------------------------------------------------------------- statistics
def test_purchase_rate_rises_with_true_utility(world: World, log: SessionLog) -> None:
    users, hist, lengths = world.contexts(log)
    p = world.purchase_prob(world.utility(users, hist, lengths, log.items[:, None].astype(np.int64))[:, 0])
    bought = (log.kinds == KIND_PURCHASE).astype(float)
    edges = np.quantile(p, [0, 0.25, 0.5, 0.75, 1.0])
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 3)
    rates = np.array([bought[bins == b].mean() for b in range(4)])
    assert np.all(np.diff(rates) > 0.02), rates
    # calibrated: observed purchases within 4 sigma of the sum of the true probabilities
    sd = np.sqrt((p * (1 - p)).sum())
    assert abs(bought.sum() - p.sum()) < 4 * sd


def test_logging_policy_is_popularity_biased(world: World, log: SessionLog) -> None:
    counts = log.item_counts()

    def spearman(a, b):
        ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
        return np.corrcoef(ra, rb)[0, 1]

    biased = spearman(counts, world.popularity)
    assert biased > 0.7
    unbiased = World(seed=3, logging_pop_weight=0.0).generate(3000, seed=1)
    assert spearman(unbiased.item_counts(), world.popularity) < biased - 0.3
    top10 = np.argsort(-world.popularity)[:10]
    assert counts[top10].sum() / counts.sum() > 0.2  # 10 of 500 items take a fifth of the events


def test_oracle_beats_popularity_and_random(world: World, log: SessionLog) -> None:
    users, hist, lengths = world.contexts(log.subset(np.arange(600)))
    oracle1 = world.true_value(world.oracle_slates(users, hist, lengths, 1), users, hist, lengths)
    slates10 = world.oracle_slates(users, hist, lengths, 10)
    oracle10 = world.true_value(slates10, users, hist, lengths, k=10)
    assert world.true_value(slates10, users, hist, lengths) == pytest.approx(oracle1)  # k=1: the first column
    with pytest.raises(ValueError, match="k=11"):
        world.true_value(slates10, users, hist, lengths, k=11)
    pop = world.true_value(lambda s, l: np.tile(world.popularity, (len(s), 1)), users, hist, lengths)
    gen = torch.Generator().manual_seed(0)
    rand = world.true_value(lambda s, l: torch.rand(len(s), world.n_items, generator=gen), users, hist, lengths)
    logged = world.expected_reward(users, hist, lengths, log.subset(np.arange(600)).items[:, None])[:, 0].mean()
    assert oracle1 >= oracle10 > logged + 0.1
    assert logged > pop + 0.05 and logged > rand + 0.05
    assert oracle1 > 0.6 and 0.2 <= rand < 0.35


def test_true_value_agent_api_and_window(world: World) -> None:
    # the agent sees the last state_len items, right-padded
    h = np.array([[1, 2, 3, 4, 9], [5, 6, 9, 9, 9], [9, 9, 9, 9, 9]])
    hw, lw = last_items_of_rows(h, np.array([4, 2, 0]), 3, pad_id=9)
    np.testing.assert_array_equal(hw, [[2, 3, 4], [5, 6, 9], [9, 9, 9]])
    np.testing.assert_array_equal(lw, [3, 2, 0])

    class LastItemAgent:  # recommends the item after the last one it sees (through a window of 2)
        state_len = 2
        n_items = world.n_items
        seen: list = []

        def scores(self, states, lengths):
            self.seen.append((states.clone(), lengths.clone()))
            last = states[torch.arange(len(states)), (lengths - 1).clamp(min=0)]
            return torch.nn.functional.one_hot((last + 1) % world.n_items, world.n_items).float()

    users = np.array([0, 1])
    hist = np.array([[3, 7, 8, world.pad_id], [5, world.pad_id, world.pad_id, world.pad_id]])
    lengths = np.array([3, 1])
    agent = LastItemAgent()
    v = world.true_value(agent, users, hist, lengths)
    states, lens = agent.seen[0]
    np.testing.assert_array_equal(states.numpy(), [[7, 8], [5, world.pad_id]])
    want = world.expected_reward(users, hist, lengths, np.array([[9], [6]])).mean()
    assert v == pytest.approx(want)
    with pytest.raises(ValueError, match="scores have shape"):
        world.true_value(lambda s, l: torch.zeros(len(s), 3), users, hist, lengths)


def test_sample_rows_distribution() -> None:
    rng = np.random.default_rng(0)
    w = rng.random(70) ** 3
    w[5:40] = 0.0  # whole zero blocks and zeros inside blocks
    choice, total = _sample_rows(np.tile(w, (100_000, 1)).astype(np.float32), rng)
    freq = np.bincount(choice, minlength=70) / 100_000
    assert freq[5:40].sum() == 0
    np.testing.assert_allclose(total, w.sum(), rtol=1e-5)
    assert np.abs(freq - w / w.sum()).max() < 0.005


# ----------------------------------------------------------------------------- round trips
def test_from_log_round_trip(tmp_path, world: World, log: SessionLog) -> None:
    path = log.save(tmp_path / "syn.npz")
    loaded = SessionLog.load(path)
    rebuilt = World.from_log(loaded)
    assert rebuilt.config == world.config and rebuilt.seed == world.seed
    users, hist, lengths = world.contexts(log.subset(np.arange(50)))
    items = np.tile(np.arange(0, 500, 50), (len(users), 1))
    np.testing.assert_array_equal(rebuilt.expected_reward(users, hist, lengths, items), world.expected_reward(users, hist, lengths, items))
    regen = rebuilt.generate(3000, seed=loaded.meta["generate"]["seed"])
    np.testing.assert_array_equal(regen.items, log.items)
    np.testing.assert_array_equal(regen.kinds, log.kinds)
    with pytest.raises(ValueError, match="meta"):
        World.from_log(SessionLog(offsets=[0, 1], items=[0], rewards=[1.0], kinds=[0], timestamps=[0.0], n_items=500))


def test_make_synthetic_log_and_overrides() -> None:
    log = make_synthetic_log(n_sessions=200, seed=4, n_items=80, n_genres=5)
    assert log.name == "synthetic" and log.n_sessions == 200 and log.n_items == 80
    assert log.genres.shape == (80, 5) and log.genre_names == ("Action", "Adventure", "Animation", "Children's", "Comedy")
    w = World.from_log(log)
    assert w.config.n_items == 80 and w.seed == 4
    np.testing.assert_array_equal(make_synthetic_log(n_sessions=200, seed=4, n_items=80, n_genres=5).items, log.items)
    assert World(n_genres=20).genre_names[-1] == "genre_19"


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="satiation_decay"):
        WorldConfig(satiation_decay=1.0)
    with pytest.raises(ValueError, match="n_items"):
        WorldConfig(n_items=0)
    with pytest.raises(ValueError, match="session_len"):
        WorldConfig(session_len_min=5, session_len_mean=4.0)
    with pytest.raises(ValueError, match="max_genres_per_item"):
        WorldConfig(n_genres=2)
    with pytest.raises(TypeError, match="unknown"):
        World(n_itemz=3)
    with pytest.raises(ValueError, match="n_sessions"):
        World().generate(-1)
    assert World().generate(0).n_events == 0


# ----------------------------------------------------------------------------- MNAR ratings
def test_rating_log_is_missing_not_at_random(world: World) -> None:
    r = world.rating_log(ratings_per_user=15)
    assert r.n_sessions == world.n_users and np.all(r.lengths == 15)
    np.testing.assert_array_equal(r.users, np.arange(world.n_users))
    assert set(np.unique(r.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0} and len(np.unique(r.ratings)) == 5
    for s in (0, 17):  # distinct items per user
        assert len(np.unique(r.session(s))) == 15
    np.testing.assert_array_equal(r.kinds == KIND_PURCHASE, r.ratings >= 4)
    np.testing.assert_array_equal(r.rewards, np.where(r.ratings >= 4, 1.0, 0.2).astype(np.float32))
    # MNAR: observed ratings are higher than the expected rating of an average (user, item) cell
    c = world.config
    x0 = world.utility(np.arange(world.n_users), np.full((world.n_users, 1), world.pad_id), np.zeros(world.n_users, int))
    mean_all = (1 + 4 * _sigmoid(c.rating_slope * (x0 - c.rating_offset))).mean()
    assert r.ratings.mean() > mean_all + 0.5
    # and the observed rating follows the true utility
    obs_x = x0[np.repeat(np.arange(world.n_users), 15), r.items]
    assert np.corrcoef(obs_x, r.ratings)[0, 1] > 0.5
    rr = world.rating_log(ratings_per_user=15, reward_scheme="rating")
    np.testing.assert_array_equal(rr.ratings, r.ratings)
    np.testing.assert_array_equal(rr.rewards, np.select([r.ratings <= 2, r.ratings == 3], [0.0, 0.5], 1.0).astype(np.float32))
    assert World.from_log(rr).config == world.config
    with pytest.raises(ValueError, match="reward_scheme"):
        world.rating_log(reward_scheme="stars")
