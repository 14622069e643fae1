"""Each Q-learning-family loss against a value computed by hand on a tiny batch, and the
augmentations' invariants."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym.agents import qlearning_losses as QL
from recgym.agents.augment import augment, crop, mask, reorder


def test_double_q_target_uses_main_argmax_target_value_and_done():
    r = torch.tensor([1.0, 0.2])
    q_main = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0]])  # argmax: item 1, item 0
    q_tgt = torch.tensor([[9.0, 2.0, 7.0], [4.0, 8.0, 0.0]])  # NOT the target's own max
    done = torch.tensor([0.0, 1.0])
    y = QL.double_q_target(r, q_main, q_tgt, done, discount=0.5)
    # row 0: 1 + 0.5 * q_tgt[0, 1] = 1 + 0.5 * 2 = 2 ; row 1: done -> 0.2
    torch.testing.assert_close(y, torch.tensor([2.0, 0.2]))
    assert not y.requires_grad


def test_eq1_td_target_hand_computed():
    # y = r + γ · q_boot · (1 − done): row 0 bootstraps, row 1 ends its session
    y = QL.td_target(torch.tensor([0.2, 1.0]), torch.tensor([3.0, 5.0]), torch.tensor([0.0, 1.0]), discount=0.5)
    torch.testing.assert_close(y, torch.tensor([0.2 + 0.5 * 3.0, 1.0]))


def test_eq1_td_loss_value_and_gradient():
    q = torch.tensor([1.0, 0.0], requires_grad=True)
    y = torch.tensor([2.0, 0.2], requires_grad=True)  # a target with a graph must still be a constant
    loss = QL.td_loss(q, y)
    # mean(0.5 * [1, 0.04]) = 0.26
    assert loss.item() == pytest.approx(0.26)
    loss.backward()
    torch.testing.assert_close(q.grad, torch.tensor([-0.5, -0.1]))  # (q - y) / B
    assert y.grad is None


def test_switch_is_a_fair_coin():
    assert QL.switch_networks(0.1) and not QL.switch_networks(0.9)
    draws = torch.rand(10_000, generator=torch.Generator().manual_seed(0))
    share = sum(QL.switch_networks(float(c)) for c in draws) / len(draws)
    assert abs(share - 0.5) < 0.03


def test_sample_negatives_never_hit_the_target_and_are_uniform():
    g = torch.Generator().manual_seed(0)
    actions = torch.zeros(2000, dtype=torch.long)  # target 0 everywhere
    neg = QL.sample_negatives(actions, n_items=3, n_neg=10, generator=g)
    assert neg.shape == (2000, 10) and (neg != 0).all() and neg.max() == 2
    share_1 = (neg == 1).float().mean().item()
    assert abs(share_1 - 0.5) < 0.02  # uniform over the two other items
    with pytest.raises(ValueError, match="n_items"):
        QL.sample_negatives(actions, 1, 2)


def test_negatives_exclude_the_history_ccql_section_3_3():
    # "items with which the user has never interacted": row 0 saw {1, 2} and logged 0 → only 3, 4
    # remain; row 1 is all padding (id 5 = n_items) and logged 4 → 0..3, uniformly
    g = torch.Generator().manual_seed(0)
    actions = torch.tensor([0, 4]).repeat(1000)
    history = torch.tensor([[1, 2, 5], [5, 5, 5]]).repeat(1000, 1)
    neg = QL.sample_negatives(actions, n_items=5, n_neg=8, generator=g, history=history)
    row0, row1 = neg[0::2], neg[1::2]
    assert set(row0.unique().tolist()) == {3, 4} and set(row1.unique().tolist()) == {0, 1, 2, 3}
    assert abs((row0 == 3).float().mean().item() - 1 / 2) < 0.02
    assert abs((row1 == 0).float().mean().item() - 1 / 4) < 0.02
    with pytest.raises(ValueError, match="excludes all"):  # {0, 1, 2} ∪ {3} covers 4 items
        QL.sample_negatives(torch.tensor([3]), 4, 2, history=torch.tensor([[0, 1, 2, 2]]))


def test_snqn_negative_td_bootstraps_from_current_state_without_done():
    q_cur_main = torch.tensor([[0.0, 2.0, 1.0]])  # argmax 1
    q_cur_tgt = torch.tensor([[5.0, 3.0, 9.0]])
    y = QL.negative_td_target(-1.0, q_cur_main, q_cur_tgt, discount=0.5)
    torch.testing.assert_close(y, torch.tensor([-1.0 + 0.5 * 3.0]))
    q_neg = torch.tensor([[0.5, 1.5]])
    # sum over negatives: 0.5 * (0.5 - 0.5)^2 + 0.5 * (0.5 - 1.5)^2 = 0.5
    assert QL.negative_td_loss(q_neg, y).item() == pytest.approx(0.5)


def test_advantage_mean_over_positive_and_negatives_and_clipping():
    q_pos = torch.tensor([4.0, 0.0, 40.0], requires_grad=True)
    q_neg = torch.tensor([[1.0, 1.0, 2.0], [3.0, 3.0, 2.0], [0.0, 0.0, 0.0]])
    a = QL.advantage(q_pos, q_neg)
    # row 0: 4 - (4+1+1+2)/4 = 2 ; row 1: 0 - 8/4 = -2 -> clip 0 ; row 2: 40 - 10 = 30 -> clip 10
    torch.testing.assert_close(a, torch.tensor([2.0, 0.0, 10.0]))
    assert not a.requires_grad
    torch.testing.assert_close(QL.advantage(q_pos, q_neg, clip=(-5.0, 50.0)), torch.tensor([2.0, -2.0, 30.0]))


def test_advantage_weighted_ce_and_propensity():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], requires_grad=True)
    actions = torch.tensor([0, 0])
    adv = torch.tensor([2.0, 1.0])
    # CE row 0 = log 2, row 1 = -log(3/4)
    expect = (2 * math.log(2) + 1 * -math.log(0.75)) / 2
    assert QL.advantage_weighted_ce(QL.ce_per_sample(logits, actions), adv).item() == pytest.approx(expect, rel=1e-6)
    pi = torch.tensor([0.5, 0.001])
    beta = torch.tensor([0.1, 0.5])
    torch.testing.assert_close(QL.propensity_weight(pi, beta, smooth=0.0), torch.ones(2))
    torch.testing.assert_close(QL.propensity_weight(pi, beta, smooth=1.0), torch.tensor([5.0, 0.1]))  # 0.002 -> 0.1
    torch.testing.assert_close(QL.propensity_weight(pi, beta, smooth=0.5), torch.tensor([5.0**0.5, 0.1**0.5]))


def test_q_weighted_ce_clamps_negative_q_at_zero():
    # Q = [-2, 1]: row 0 would be gradient ascent on its CE; clamped, it drops out
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    ce = QL.ce_per_sample(logits, torch.tensor([0, 1]))
    loss = QL.q_weighted_ce(ce, torch.tensor([-2.0, 1.0]))
    assert loss.item() == pytest.approx((0.0 + 1.0 * math.log(2)) / 2, rel=1e-6)
    loss.backward()
    assert logits.grad[0].abs().sum() == 0


def test_q_weighted_ce_is_per_sample_not_product_of_means():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], requires_grad=True)
    actions = torch.tensor([0, 1])
    q = torch.tensor([3.0, 0.0], requires_grad=True)
    ce = [math.log(2), math.log(4)]  # row 1: p(1) = 1/4
    loss = QL.q_weighted_ce(QL.ce_per_sample(logits, actions), q)
    assert loss.item() == pytest.approx((3 * ce[0] + 0 * ce[1]) / 2, rel=1e-6)
    assert loss.item() != pytest.approx(1.5 * (ce[0] + ce[1]) / 2, rel=1e-3)  # the release's bug
    loss.backward()
    assert q.grad is None  # stop-gradient through the critic
    assert logits.grad[1].abs().sum() == 0  # weight 0 -> no actor signal for row 1


def test_eq2_cql_term_default_temperature_is_one():
    # Eq. 2 (no temperature): log(e^1 + e^0 + e^2) − 1
    q_pos, q_neg = torch.tensor([1.0]), torch.tensor([[0.0, 2.0]])
    expect = math.log(math.e + 1.0 + math.exp(2.0)) - 1.0
    assert QL.cql_loss(q_pos, q_neg).item() == pytest.approx(expect, rel=1e-6)


def test_eq2_cql_term_hand_computed():
    q_pos = torch.tensor([1.0, 0.0])
    q_neg = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    tau = 0.5
    row0 = tau * math.log(math.exp(2.0) + 2.0) - 1.0
    row1 = tau * math.log(1.0 + math.exp(2.0) + math.exp(4.0)) - 0.0
    assert QL.cql_loss(q_pos, q_neg, tau).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # gradient pushes the negatives' Q down and the logged action's Q up
    qp, qn = q_pos.clone().requires_grad_(), q_neg.clone().requires_grad_()
    QL.cql_loss(qp, qn, tau).backward()
    assert (qn.grad > 0).all() and (qp.grad < 0).all()


def test_cql_small_temperature_tends_to_max_minus_logged():
    q_pos = torch.tensor([1.0])
    q_neg = torch.tensor([[3.0, -2.0]])
    assert QL.cql_loss(q_pos, q_neg, 1e-3).item() == pytest.approx(2.0, abs=1e-2)


def test_eq3_info_nce_hand_computed():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    t = 0.5
    # cosines: c11 = 1, c12 = 1/sqrt2, c21 = 0, c22 = 1/sqrt2
    s = 1 / math.sqrt(2)
    row0 = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(s / t)))
    row1 = -math.log(math.exp(s / t) / (math.exp(0.0) + math.exp(s / t)))
    assert QL.info_nce(z1, z2, t).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    col0 = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(0.0)))
    col1 = -math.log(math.exp(s / t) / (math.exp(s / t) + math.exp(s / t)))
    sym = 0.5 * ((row0 + row1) / 2 + (col0 + col1) / 2)
    assert QL.info_nce(z1, z2, t, symmetric=True).item() == pytest.approx(sym, rel=1e-6)
    with pytest.raises(ValueError, match="views"):
        QL.info_nce(z1, z2[:1])


def test_info_nce_scale_invariant_and_minimal_for_aligned_views():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, generator=g)
    aligned = QL.info_nce(z, 3.0 * z)
    shuffled = QL.info_nce(z, z[torch.randperm(16, generator=g)])
    assert aligned.item() < shuffled.item()
    torch.testing.assert_close(QL.info_nce(z, z), aligned)


# ---------------------------------------------------------------------- augmentations
PAD = 50


def _batch(lengths: list[int], L: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths)
    states = torch.randint(0, PAD, (len(lengths), L), generator=g)
    states[torch.arange(L)[None, :] >= lengths_t[:, None]] = PAD
    return states, lengths_t


def _check_padding(states, lengths):
    pad = torch.arange(states.shape[1])[None, :] >= lengths[:, None]
    assert (states[pad] == PAD).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 8), min_size=1, max_size=12), st.integers(0, 10_000))
def test_augmentations_never_move_padding(lengths, seed):
    states, lens = _batch(lengths, seed=seed)
    g = torch.Generator().manual_seed(seed)
    s, l = crop(states, lens, PAD, 0.6, g)
    _check_padding(s, l)
    assert (l <= lens).all() and ((l > 0) == (lens > 0)).all()
    for b in range(len(lengths)):  # a contiguous window of the original
        w = s[b, : l[b]].tolist()
        orig = states[b, : lens[b]].tolist()
        assert any(orig[i : i + len(w)] == w for i in range(len(orig) - len(w) + 1))
    s, l = reorder(states, lens, PAD, 0.5, g)
    _check_padding(s, l)
    assert torch.equal(l, lens)
    assert torch.equal(s.sort(dim=1).values, states.sort(dim=1).values)  # a permutation of the row
    s, l = mask(states, lens, PAD, 0.5, g)
    _check_padding(s, l)
    assert ((s == states) | (s == PAD)).all() and torch.equal(l, lens)
    s, l = augment(states, lens, PAD, generator=g)
    _check_padding(s, l)


def test_reorder_moves_only_inside_one_segment():
    states = torch.arange(10)[None, :].repeat(200, 1)
    lens = torch.full((200,), 10)
    s, _ = reorder(states, lens, PAD, 0.4, torch.Generator().manual_seed(1))
    moved = s != states
    assert moved.any()
    for row in moved:  # moved positions lie within a window of 4
        idx = row.nonzero().flatten()
        if len(idx):
            assert idx.max() - idx.min() < 4


def test_mask_rate_and_augment_mix():
    states, lens = _batch([8] * 500)
    s, _ = mask(states, lens, PAD, 0.3, torch.Generator().manual_seed(2))
    assert abs((s == PAD).float().mean().item() - 0.3) < 0.03
    s, l = augment(states, lens, PAD, methods=("crop",), ratios={"crop": 0.5})
    assert (l == 4).all()
    with pytest.raises(ValueError, match="methods"):
        augment(states, lens, PAD, methods=("flip",))


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 6), n=st.integers(1, 70), block=st.integers(2, 9), seed=st.integers(0, 10**6))
def test_greedy_actions_is_the_first_argmax(rows, n, block, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-3, 3, (rows, n), generator=g).float()  # many ties: the first maximum must win
    torch.testing.assert_close(QL.greedy_actions(q, block=block), q.max(dim=1).indices)


@pytest.mark.parametrize("n", [5, 50])
def test_greedy_actions_refuses_nan(n):
    q = torch.zeros(2, n)
    q[1, 3] = float("nan")
    with pytest.raises(FloatingPointError, match="diverged"):
        QL.greedy_actions(q, block=4)
