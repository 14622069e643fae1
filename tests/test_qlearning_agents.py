"""The Q-learning agents on tiny synthetic data: every agent x encoder pair trains and
evaluates; the two-network switch, the phase switch and the diagnostics behave."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recgym.agents.qlearning import CCQLAgent, COAgent, SA2CAgent, SACAgent, SNQNAgent, SQNAgent
from recgym.data import split_by_session
from recgym.sim.world import make_synthetic_log

AGENTS = [SQNAgent, SACAgent, SNQNAgent, SA2CAgent, COAgent, CCQLAgent]
ENCODERS = ["sasrec", "gru", "caser", "nextitnet"]
TINY = dict(hidden=8, batch_size=32, state_len=5, diag_rows=128)


@pytest.fixture(scope="module")
def split():
    log = make_synthetic_log(120, seed=0, n_items=40, n_users=40)
    return split_by_session(log, seed=0)


@pytest.fixture(autouse=True)
def one_thread():
    # the tests are tiny; extra threads only add contention on shared CI machines
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("cls", AGENTS, ids=lambda c: c.name)
def test_every_agent_and_encoder_trains_200_steps_and_evaluates(cls, encoder, split):
    agent = cls(split.n_items, seed=0, encoder=encoder, steps=200, eval_every=200, switch_step=100, **TINY)
    agent.fit(split.train, split.valid, progress=False, log=lambda m: None)
    last = agent.curves[-1]
    assert last["step"] == 200
    for key in ("loss", "hr@20", "ndcg@20_purchase", "q_logged", "q_random"):
        assert math.isfinite(last[key]), key
    assert 0.0 <= last["ndcg@20"] <= last["hr@20"] <= 1.0
    s = agent.scores(*agent._as_states([np.array([1, 2, 3]), np.array([], dtype=np.int64)]))
    assert s.shape == (2, split.n_items) and torch.isfinite(s).all()


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_one_step_trains_exactly_one_network_and_both_get_trained(split):
    agent = SQNAgent(split.n_items, seed=0, encoder="gru", **TINY)
    tr = agent.make_transitions(split.train)
    agent.set_training(True)
    trained = []
    for step in range(12):
        before = (_flat(agent.q1).clone(), _flat(agent.q2).clone())
        agent.update(tr.sample(32, agent.rng), step)
        changed = [not torch.equal(b, _flat(m)) for b, m in zip(before, (agent.q1, agent.q2))]
        assert sum(changed) == 1
        trained.append(changed[0])
    assert any(trained) and not all(trained)  # the coin picked each network at least once


def test_sa2c_switches_to_a_fresh_optimizer(split):
    agent = SA2CAgent(split.n_items, seed=0, encoder="gru", steps=20, switch_step=10, **TINY)
    agent.fit(split.train, None, progress=False, log=lambda m: None)
    opts = agent.optimizers()
    assert set(opts) == {"opt_q1", "opt_q2", "opt2_q1", "opt2_q2"}
    assert opts["opt2_q1"].param_groups[0]["lr"] == 0.001
    steps1 = sum(int(s["step"]) for o in ("opt_q1", "opt_q2") for s in [next(iter(opts[o].state.values()))])
    steps2 = sum(int(s["step"]) for o in ("opt2_q1", "opt2_q2") for s in [next(iter(opts[o].state.values()))])
    assert (steps1, steps2) == (10, 10)


def test_same_seed_same_run_and_save_load_round_trip(split, tmp_path):
    kw = dict(encoder="gru", steps=30, eval_every=30, switch_step=15, **TINY)
    a = CCQLAgent(split.n_items, seed=3, **kw).fit(split.train, split.valid, progress=False, log=lambda m: None)
    b = CCQLAgent(split.n_items, seed=3, **kw).fit(split.train, split.valid, progress=False, log=lambda m: None)
    assert a.curves == b.curves
    states, lengths = a._as_states([np.array([4, 5, 6])])
    path = a.save(tmp_path / "ccql.pt")
    c = CCQLAgent.load(path)
    torch.testing.assert_close(a.scores(states, lengths), c.scores(states, lengths))


def test_loss_terms_are_logged_per_agent(split):
    tr = split.train.transitions(5)
    batch = tr.batch(np.arange(32))
    expect = {
        SQNAgent: {"td", "actor"}, SNQNAgent: {"td", "td_neg", "actor"},
        COAgent: {"td", "actor", "co"}, CCQLAgent: {"td", "td_neg", "actor", "co", "cql"},
    }  # fmt: skip
    for cls, keys in expect.items():
        agent = cls(split.n_items, seed=0, encoder="gru", **TINY)
        _, info = agent.loss(batch)
        assert keys <= set(info) and ("cql" in info) == (cls is CCQLAgent), cls.name
        assert ("co" in info) == (cls in (COAgent, CCQLAgent))


def test_diagnostics_reflect_the_q_head(split):
    agent = SQNAgent(split.n_items, seed=0, encoder="gru", **{**TINY, "diag_rows": 10**6})
    with torch.no_grad():  # Q = bias only: logged-action mean vs random-action mean are computable
        agent.q1.q_head.weight.zero_()
        agent.q1.q_head.bias.copy_(torch.arange(split.n_items, dtype=torch.float32))
    d = agent.diagnostics(split.valid)
    tr = split.valid.transitions(5)
    assert d["q_logged"] == pytest.approx(tr.action.mean(), rel=1e-4)  # Q(s, a) = a, all rows used
    n = split.n_items  # uniform random items: mean (n-1)/2 within 4 standard errors
    assert d["q_random"] == pytest.approx((n - 1) / 2, abs=4 * math.sqrt((n * n - 1) / 12 / len(tr)))
    assert d == agent.diagnostics(split.valid)  # a fixed sample: comparable across validations


def test_bad_configs_are_named(split):
    with pytest.raises(ValueError, match="n_negatives"):
        CCQLAgent(split.n_items, n_negatives=0, **TINY)
    with pytest.raises(ValueError, match="n_negatives"):
        SA2CAgent(split.n_items, n_negatives=0, **TINY)
    with pytest.raises(ValueError, match="augmentations"):
        COAgent(split.n_items, augmentations="flip", **TINY)
    with pytest.raises(TypeError, match="unknown"):
        SQNAgent(split.n_items, no_such_field=1)


def test_q_at_matches_the_full_q_matrix_and_its_gradient(split):
    agent = SQNAgent(split.n_items, seed=0, encoder="gru", **TINY)
    net = agent.q1
    states, lengths = agent._as_states([np.array([1, 2]), np.array([3, 4, 5])])
    items = torch.tensor([[0, 7, 7], [39, 1, 2]])
    h = net(states, lengths)
    full = net.q_head(h).gather(1, items)
    torch.testing.assert_close(net.q_at(h, items), full)
    g_full = torch.autograd.grad(full.square().sum(), net.q_head.weight, retain_graph=True)[0]
    g_at = torch.autograd.grad(net.q_at(h, items).square().sum(), net.q_head.weight)[0]
    torch.testing.assert_close(g_at, g_full)


@pytest.mark.parametrize("encoder", ["sasrec", "gru"])
def test_double_q_bootstrap_equals_the_full_matrix_double_q_target(split, encoder):
    from recgym.agents import qlearning_losses as QL
    from recgym.agents.qlearning import double_q

    agent = CCQLAgent(split.n_items, seed=0, encoder=encoder, **TINY)
    agent.set_training(False)  # no dropout: both routes see the same state vectors
    states, lengths = agent._as_states([np.array([1, 2]), np.array([3, 4, 5]), np.array([], dtype=np.int64)])
    zeros = torch.zeros(3)
    full = QL.double_q_target(zeros, agent.q1.q_values(states, lengths), agent.q2.q_values(states, lengths), zeros, 1.0)
    h1, h2 = agent.q1(states, lengths), agent.q2(states, lengths)
    torch.testing.assert_close(double_q(agent.q1, agent.q2, h1, h2), full)


@pytest.mark.parametrize("chunk", [1, 3, 8, 40, 4096])
def test_chunked_greedy_is_the_first_argmax_of_the_full_q_matrix(split, chunk):
    from recgym.agents import qlearning_losses as QL

    net = SQNAgent(split.n_items, seed=0, encoder="gru", **TINY).q1
    with torch.no_grad():  # ties across chunk borders: items 2, 5 and 9 share the largest Q of row 0
        top_w, top_b = net.q_head.weight[2] + 5.0, net.q_head.bias[2].clone()
        for i in (2, 5, 9):
            net.q_head.weight[i], net.q_head.bias[i] = top_w, top_b
    h = torch.randn(6, net.encoder.out_dim, generator=torch.Generator().manual_seed(chunk)).abs()
    with torch.no_grad():
        full = net.q_head(h)
        assert net.greedy(h, chunk=chunk)[0] == 2 and full.max(dim=1).indices[0] == 2
        torch.testing.assert_close(net.greedy(h, chunk=chunk), QL.greedy_actions(full))
        net.q_head.bias[7] = float("nan")
        with pytest.raises(FloatingPointError, match="NaN"):
            net.greedy(h, chunk=chunk)


def test_one_pass_over_groups_equals_one_pass_per_group(split):
    from recgym.agents.qlearning import encode_groups

    for encoder in ("sasrec", "gru", "caser", "nextitnet"):
        agent = SQNAgent(split.n_items, seed=0, encoder=encoder, **TINY)
        agent.set_training(False)
        g1 = agent._as_states([np.array([1, 2]), np.array([3, 4, 5, 6, 7])])
        g2 = agent._as_states([np.array([], dtype=np.int64), np.array([9]), np.array([5, 4, 3])])
        got = encode_groups(agent.q1, [g1, g2])
        for g, h in zip((g1, g2), got):
            torch.testing.assert_close(h, agent.q1(*g), rtol=1e-5, atol=1e-6)
