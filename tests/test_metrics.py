"""recgym.metrics against hand-computed values and properties."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recgym import metrics as M

LN2 = math.log(2.0)


# ------------------------------------------------------------------ ranks
def test_target_ranks_pessimistic_ties_by_hand():
    s = np.array(
        [
            [1.0, 2.0, 2.0, 0.0],  # target 1 (2.0): one other item ties -> rank 1
            [3.0, 3.0, 3.0, 3.0],  # constant scorer: ranked last -> 3
            [0.1, 0.9, 0.5, 0.7],  # target 3 (0.7): only item 1 is higher -> 1
            [5.0, 1.0, 1.0, 1.0],  # target 0 strictly best -> 0
        ]
    )
    t = np.array([1, 0, 3, 0])
    np.testing.assert_array_equal(M.target_ranks(s, t), [1, 3, 1, 0])
    tr = M.target_ranks(torch.tensor(s), torch.tensor(t))
    assert isinstance(tr, torch.Tensor) and tr.dtype == torch.int64
    np.testing.assert_array_equal(tr.numpy(), [1, 3, 1, 0])


def test_target_ranks_exclude_never_counts_and_never_removes_target():
    s = np.array([[1.0, 2.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0]])
    ex = np.array([[False, True, True, False], [True, True, False, False]])
    # row 0: target 1 is excluded in the mask but is never removed; item 2 (tie) is excluded -> 0
    # row 1: items 0 (the target) and 1 excluded-> only 2 and 3 tie against it -> 2
    np.testing.assert_array_equal(M.target_ranks(s, [1, 0], ex), [0, 2])
    tr = M.target_ranks(torch.tensor(s), torch.tensor([1, 0]), torch.tensor(ex))
    np.testing.assert_array_equal(tr.numpy(), [0, 2])


def test_target_ranks_nan_target_is_worst_and_bad_targets_raise():
    s = np.array([[np.nan, 1.0, 2.0]])
    assert M.target_ranks(s, [0])[0] == 2
    assert M.target_ranks(torch.tensor(s), torch.tensor([0]))[0] == 2
    with pytest.raises(ValueError, match="targets must lie"):
        M.target_ranks(s, [3])


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.int8, st.tuples(st.integers(1, 5), st.integers(1, 8)), elements=st.integers(-2, 2)),
    st.data(),
)
def test_target_ranks_match_sort_with_ties_last(scores, data):
    """The counting rank equals the position in a sort where the target goes after its ties."""
    B, n = scores.shape
    t = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=B, max_size=B)))
    ex = data.draw(hnp.arrays(bool, (B, n)))
    r = M.target_ranks(scores.astype(float), t, ex)
    for b in range(B):
        keep = [i for i in range(n) if i == t[b] or not ex[b, i]]
        others = sorted((-scores[b, i] for i in keep if i != t[b]))
        expected = sum(o <= -scores[b, t[b]] for o in others)
        assert r[b] == expected
    np.testing.assert_array_equal(M.target_ranks(torch.tensor(scores.astype(float)), torch.tensor(t), torch.tensor(ex)).numpy(), r)


def test_hit_ndcg_recall_reward_by_hand():
    r = np.array([0, 1, 4, 9, 10])
    np.testing.assert_array_equal(M.hit_at_k(r, 10), [1, 1, 1, 1, 0])
    np.testing.assert_allclose(M.ndcg_at_k(r, 10), [1.0, 1 / math.log2(3), 1 / math.log2(6), 1 / math.log2(11), 0.0])
    np.testing.assert_allclose(M.ndcg_at_k(torch.tensor(r), 5).numpy(), [1.0, 1 / math.log2(3), 1 / math.log2(6), 0, 0])
    np.testing.assert_array_equal(M.recall_at_k(r, 1), [1, 0, 0, 0, 0])
    # two relevant items per row, the second row has only one real one
    rr = np.array([[0, 5], [2, 0]])
    np.testing.assert_allclose(M.recall_at_k(rr, 3, mask=np.array([[1, 1], [1, 0]], bool)), [0.5, 1.0])
    np.testing.assert_allclose(M.reward_at_k(r, np.array([0.2, 1.0, 0.2, 1.0, 1.0]), 5), [0.2, 1.0, 0.2, 0, 0])


def test_slate_positions():
    sl = np.array([[3, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(M.slate_positions(sl, [2, 5]), [2, 3])


# ------------------------------------------------------------------ policy metrics
def test_ar_and_iar_at_1():
    np.testing.assert_allclose(M.ar_at_1([1, 2, 3], [1, 0, 3], [0.5, 1.0, 0.0]), [0.5, 0.0, 0.0])
    R = np.array([[0.1, 0.9], [0.3, 0.7], [0.5, 0.2]])
    np.testing.assert_allclose(M.iar_at_1([1, 0], R, rows=[2, 1]), [0.2, 0.3])
    np.testing.assert_allclose(M.iar_at_1([1, 0, 0], R), [0.9, 0.3, 0.5])
    np.testing.assert_allclose(M.iar_at_1([1, 0], lambda rows, items: rows * 10 + items), [1, 10])


def test_kl_js_by_hand_and_limits():
    p = np.array([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]])
    q = np.array([[0.5, 0.5], [0.0, 1.0], [0.5, 0.5]])
    kl = M.kl_divergence(p, q)
    assert kl[0] == 0 and np.isinf(kl[1])
    assert kl[2] == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    js = M.js_divergence(p, q)
    assert js[0] == 0 and js[1] == pytest.approx(LN2)
    m = np.array([0.375, 0.625])
    expected = 0.5 * np.sum(p[2] * np.log(p[2] / m)) + 0.5 * np.sum(q[2] * np.log(q[2] / m))
    assert js[2] == pytest.approx(expected)
    np.testing.assert_allclose(M.js_divergence(torch.tensor(p), torch.tensor(q)), js)
    with pytest.raises(ValueError):
        M.kl_divergence([[-0.1, 1.1]], [[0.5, 0.5]])


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float64, (3, 6), elements=st.floats(0, 10)), hnp.arrays(np.float64, (3, 6), elements=st.floats(0, 10)))
def test_js_properties(a, b):
    a[:, 0] += 1e-3
    b[:, 1] += 1e-3
    p, q = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
    js = M.js_divergence(p, q)
    assert np.all(js >= 0) and np.all(js <= LN2 + 1e-12)
    np.testing.assert_allclose(js, M.js_divergence(q, p), atol=1e-12)
    np.testing.assert_allclose(M.js_divergence(p, p), 0, atol=1e-12)
    assert np.all(M.kl_divergence(p, q) >= 0)  # Gibbs
    assert np.all(M.kl_divergence(p, p) == 0)


# ------------------------------------------------------------------ list metrics
GENRES = np.array(
    [
        [1, 0, 0],  # 0
        [1, 0, 0],  # 1 same as 0
        [0, 1, 0],  # 2 orthogonal to 0
        [1, 1, 0],  # 3 cos with 0 = 1/sqrt2
        [0, 0, 0],  # 4 no genre
    ],
    dtype=np.float32,
)


def test_ild_by_hand():
    c = 1 / math.sqrt(2)
    # pairs of [0, 2, 3]: d(0,2)=1, d(0,3)=1-c, d(2,3)=1-c -> mean
    expected = (1 + 2 * (1 - c)) / 3
    np.testing.assert_allclose(M.ild_at_k(np.array([[0, 2, 3], [0, 1, 0]]), GENRES), [expected, 0.0])
    # an all-zero genre vector has cosine 0 with everything: distance 1
    np.testing.assert_allclose(M.ild_at_k(np.array([[4, 0], [4, 4]]), GENRES), [1.0, 1.0])
    np.testing.assert_allclose(M.ild_at_k(np.array([[3]]), GENRES), [0.0])


def test_pcount_npcount_coverage_by_hand():
    pop = np.array([0.5, 0.3, 0.1, 0.1, 0.0])
    sl = np.array([[0, 1], [2, 4]])
    np.testing.assert_allclose(M.pcount_at_k(sl, pop), [0.4, 0.05])
    assert M.popularity_reference(pop, 2) == pytest.approx(0.4)
    np.testing.assert_allclose(M.npcount_at_k(sl, pop), [1.0, 0.125])
    assert M.coverage(sl, 5) == pytest.approx(4 / 5)
    assert M.coverage(np.array([[0, 0], [5, 0]]), 5) == pytest.approx(1 / 5)  # pad id ignored


def test_popularity_reference_is_the_pop_models_own_lists():
    pop = np.array([0.5, 0.3, 0.1, 0.1, 0.0])
    # histories [0], [], [1, 2, 0]: pop lists the 2 most popular items outside each
    items, offsets = np.array([0, 1, 2, 0]), np.array([0, 1, 1, 4])
    lists = M.popularity_lists(pop, 2, items, offsets)
    assert lists[0].tolist() == [1, 2] or lists[0].tolist() == [1, 3]  # 2 and 3 tie
    assert lists[1].tolist() == [0, 1] and lists[2].tolist() == [3, 4]
    assert M.popularity_lists(pop, 2).tolist() == [[0, 1]]
    expected = ((0.3 + 0.1) / 2 + (0.5 + 0.3) / 2 + (0.1 + 0.0) / 2) / 3
    assert M.popularity_reference(pop, 2, items, offsets) == pytest.approx(expected)
    assert M.popularity_reference(pop, 2) == pytest.approx(0.4)  # nothing excluded: the global top-2


def test_pop_agent_has_npcount_exactly_one():
    """GPTRec paper §4.4: nPCOUNT divides by the popularity model's PCOUNT, so ``pop`` evaluated by
    the same protocol (leave-one-out, history excluded) scores 1 exactly."""
    from recgym.agents.baselines import PopularityAgent
    from recgym.data.splits import split_leave_one_out
    from recgym.evaluate import evaluate_loo
    from recgym.sim.world import World

    sp = split_leave_one_out(World(seed=1, n_users=80, n_items=30, n_genres=4).generate(120))
    agent = PopularityAgent(sp.n_items).fit(sp.train)
    pop = sp.train.popularity()
    for exclude in (True, False):
        out = evaluate_loo(agent, sp.test, popularity=pop, exclude_history=exclude)
        assert out["npcount@10"] == 1.0, (exclude, out["npcount@10"])
    # the check has teeth: history exclusion pushes popular items out of pop's lists here
    assert evaluate_loo(agent, sp.test, popularity=pop)["pcount@10"] < M.popularity_reference(pop, 10)


# ------------------------------------------------------------------ slate step rewards
def test_step_rewards_by_hand():
    sl = np.array([[2, 0, 3]])
    np.testing.assert_allclose(M.ndcg_step_rewards(sl, [0]), [[0, 1 / math.log2(3), 0]])
    c = 1 / math.sqrt(2)
    # K=3 -> weight 2/(3*2)=1/3: position 0: 0; position 1: d(0,2)=1; position 2: d(3,2)+d(3,0)=2(1-c)
    np.testing.assert_allclose(M.ild_step_rewards(sl, GENRES, 3), [[0, 1 / 3, 2 * (1 - c) / 3]])
    # prefix: the first two terms do not depend on what comes later
    np.testing.assert_allclose(M.ild_step_rewards(sl[:, :2], GENRES, 3), [[0, 1 / 3]])
    pop = np.array([0.5, 0.3, 0.1, 0.1, 0.0])
    np.testing.assert_allclose(M.pcount_step_rewards(sl, pop, 3), [[0.1 / 3, 0.5 / 3, 0.1 / 3]])
    r = M.slate_step_rewards(sl, [0], GENRES, pop, lambda_ild=0.5, lambda_pop=2.0)
    np.testing.assert_allclose(
        r, M.ndcg_step_rewards(sl, [0]) + 0.5 * M.ild_step_rewards(sl, GENRES, 3) - 2.0 * M.pcount_step_rewards(sl, pop, 3)
    )
    with pytest.raises(ValueError, match="genres"):
        M.slate_step_rewards(sl, [0], lambda_ild=1.0)
    with pytest.raises(ValueError, match="longer than K"):
        M.ild_step_rewards(sl, GENRES, 2)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_step_rewards_sum_to_list_metrics(data):
    n, g = data.draw(st.integers(2, 12)), data.draw(st.integers(1, 4))
    K = data.draw(st.integers(1, n))
    B = data.draw(st.integers(1, 4))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    genres = (rng.random((n, g)) < 0.5).astype(np.float32)
    pop = rng.random(n)
    pop /= pop.sum()
    slates = np.stack([rng.permutation(n)[:K] for _ in range(B)])
    targets = rng.integers(0, n, size=B)
    ranks = M.slate_positions(slates, targets)
    np.testing.assert_allclose(M.ndcg_step_rewards(slates, targets).sum(1), M.ndcg_at_k(ranks, K), atol=1e-12)
    np.testing.assert_allclose(M.ild_step_rewards(slates, genres, K).sum(1), M.ild_at_k(slates, genres), atol=1e-9)
    np.testing.assert_allclose(M.pcount_step_rewards(slates, pop, K).sum(1), M.pcount_at_k(slates, pop), atol=1e-12)
    lam_i, lam_p = 0.3, 4.0
    total = M.slate_step_rewards(slates, targets, genres, pop, lam_i, lam_p).sum(1)
    expected = M.ndcg_at_k(ranks, K) + lam_i * M.ild_at_k(slates, genres) - lam_p * M.pcount_at_k(slates, pop)
    np.testing.assert_allclose(total, expected, atol=1e-9)
    # incremental: terms of a prefix equal the first terms of the full slate
    i = data.draw(st.integers(0, K))
    np.testing.assert_allclose(
        M.slate_step_rewards(slates[:, :i], targets, genres, pop, lam_i, lam_p, K=K),
        M.slate_step_rewards(slates, targets, genres, pop, lam_i, lam_p)[:, :i],
        atol=1e-12,
    )
