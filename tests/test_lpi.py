"""LPI: the weights, the analytic advantage, IPS clipping, JS/KL to μ̂, and the six agents end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym.agents import lpi_losses as LL
from recgym.agents.lpi import REGISTRY, IPSAgent, LMuAgent, LPIAgent, LPICBAgent
from recgym.agents.sasrec import SASRecAgent
from recgym.data import split_by_session
from recgym.divergence import divergence_to_logging_policy, evaluation_states, policy_divergence
from recgym.sim.world import World

LN2 = math.log(2.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one thread is fastest on a shared 2-core machine (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------- weights
def test_lpi_weights_hand_values():
    adv = torch.tensor([0.0, 0.5, -1.0])
    w = LL.lpi_weights(adv, beta=0.5)
    assert torch.allclose(w, torch.tensor([1.0, math.e, math.exp(-2.0)]), rtol=1e-6)


def test_lpi_weights_cap_and_limits():
    # tiny beta: exponent 1000 capped at max_log_weight, finite
    w = LL.lpi_weights(torch.tensor([1.0, -1.0]), beta=0.001, max_log_weight=20.0)
    assert math.isclose(float(w[0]), math.exp(20.0), rel_tol=1e-5) and float(w[1]) < 1e-30
    # huge beta: all weights -> 1 (plain CE, i.e. mu-hat)
    assert torch.allclose(LL.lpi_weights(torch.tensor([3.0, -2.0]), beta=1e9), torch.ones(2))
    with pytest.raises(ValueError, match="beta"):
        LL.lpi_weights(torch.zeros(2), beta=0.0)


def test_weights_are_constants_in_the_loss():
    logits = torch.randn(4, 6, requires_grad=True)
    adv = torch.randn(4, requires_grad=True)
    a = torch.tensor([0, 1, 2, 3])
    loss = LL.lpi_objective(logits, a, adv, beta=1.0)
    loss.backward()
    assert adv.grad is None  # no gradient through exp(A / beta)
    # weight 1 everywhere = plain cross-entropy
    assert torch.allclose(LL.weighted_ce(logits, a, torch.ones(4)), F.cross_entropy(logits, a))
    # hand value: weights [2, 0, 0, 0] -> 2 * CE_0 / 4
    ce0 = F.cross_entropy(logits[:1], a[:1])
    assert torch.allclose(LL.weighted_ce(logits, a, torch.tensor([2.0, 0, 0, 0])), ce0 / 2)


def test_analytic_advantage_hand_value():
    q = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 4.0]])
    mu = torch.tensor([[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]])
    q_a = q.gather(1, torch.tensor([[2], [0]])).squeeze(1)
    adv = LL.analytic_advantage(q_a, q, mu)
    # row 0: 3 - (0.5 + 0.5 + 0.75) = 1.25; row 1: 0 - 4 = -4
    assert torch.allclose(adv, torch.tensor([1.25, -4.0]))
    # direct method (LPI^CB): observed reward minus E_mu[r_hat]
    assert torch.allclose(LL.analytic_advantage(torch.tensor([1.0, 1.0]), q, mu), torch.tensor([-0.75, -3.0]))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(2, 8), st.integers(0, 10_000))
def test_advantage_has_zero_mean_under_mu(b, n, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, n, generator=g, dtype=torch.float64)
    mu = torch.softmax(torch.randn(b, n, generator=g, dtype=torch.float64), dim=1)
    # A(x, a) for every a, averaged under mu, is 0 (the baseline is E_mu[Q])
    adv_all = torch.stack([LL.analytic_advantage(q[:, j], q, mu) for j in range(n)], dim=1)
    assert torch.allclose((mu * adv_all).sum(1), torch.zeros(b, dtype=torch.float64), atol=1e-10)


def test_ips_clipping():
    pi = torch.tensor([0.9, 0.1, 0.3])
    mu = torch.tensor([0.01, 0.2, 0.0])
    assert torch.allclose(LL.importance_ratio(pi, mu, clip=30.0), torch.tensor([30.0, 0.5, 30.0]))
    assert math.isclose(float(LL.importance_ratio(pi, mu, clip=None)[0]), 90.0, rel_tol=1e-5)
    w = LL.ips_weights(pi, mu, torch.tensor([1.0, 2.0, 0.0]), clip=30.0)
    assert torch.allclose(w, torch.tensor([30.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="clip"):
        LL.importance_ratio(pi, mu, clip=0.0)


# ---------------------------------------------------------------------- JS / KL
class FixedPolicy:
    """An evaluable whose scores are the same logits for every state."""

    def __init__(self, logits, state_len: int = 3) -> None:
        self.logits = torch.as_tensor(logits, dtype=torch.float64)
        self.n_items, self.state_len = len(self.logits), state_len

    def scores(self, states, lengths):
        return self.logits.expand(len(states), -1).clone()


@pytest.fixture(scope="module")
def tiny():
    world = World(seed=0, n_users=80, n_items=40, n_genres=5)
    return split_by_session(world.generate(200), seed=0)


def test_js_kl_hand_computed(tiny):
    log = tiny.test
    p = FixedPolicy(np.log([0.25, 0.75] + [1e-300] * (log.n_items - 2)))
    q = FixedPolicy(np.log([0.5, 0.5] + [1e-300] * (log.n_items - 2)))
    d = policy_divergence(p, q, log, "session")
    kl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    m = [0.375, 0.625]
    js = 0.5 * (0.25 * math.log(0.25 / m[0]) + 0.75 * math.log(0.75 / m[1])) + 0.5 * (
        0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1]))
    assert math.isclose(d["kl"], kl, rel_tol=1e-6) and math.isclose(d["js"], js, rel_tol=1e-6)
    assert d["n_states"] == log.n_events


def test_js_zero_for_equal_and_ln2_for_disjoint(tiny):
    log = tiny.test
    logits = np.random.default_rng(0).normal(size=log.n_items)
    same = policy_divergence(FixedPolicy(logits), FixedPolicy(logits), log, "loo")
    assert same["js"] == pytest.approx(0.0, abs=1e-12) and same["kl"] == pytest.approx(0.0, abs=1e-12)
    assert same["n_states"] == (log.lengths > 0).sum()
    a = np.full(log.n_items, -1000.0)
    b = a.copy()
    a[0], b[1] = 0.0, 0.0  # point masses on different items
    d = policy_divergence(FixedPolicy(a), FixedPolicy(b), log, "session")
    assert d["js"] == pytest.approx(LN2, rel=1e-9)
    assert d["kl"] > 100  # KL explodes where JS saturates at ln 2


def test_evaluation_states_and_errors(tiny):
    log = tiny.test
    assert np.array_equal(evaluation_states(log, "session"), np.arange(log.n_events))
    last = evaluation_states(log, "loo")
    assert np.array_equal(last, log.offsets[1:] - 1)
    sub = evaluation_states(log, "session", max_states=10)
    assert len(sub) == 10 and np.all(np.diff(sub) > 0)
    with pytest.raises(ValueError, match="protocol"):
        evaluation_states(log, "bogus")
    with pytest.raises(ValueError, match="n_items"):
        policy_divergence(FixedPolicy(np.zeros(3)), FixedPolicy(np.zeros(3)), log)


# ---------------------------------------------------------------------- agents end to end
SMALL = dict(hidden=16, batch_size=64, eval_every=100)


@pytest.fixture(scope="module")
def mu_path(tiny, tmp_path_factory):
    mu = SASRecAgent(tiny.n_items, seed=0, steps=200, **SMALL)
    mu.fit(tiny.train, tiny.valid, progress=False, log=lambda m: None)
    return str(mu.save(tmp_path_factory.mktemp("mu") / "mu.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_agent_trains_200_steps(name, tiny, mu_path, tmp_path):
    cls = REGISTRY[name]
    agent = cls(tiny.n_items, seed=0, steps=200, logging_policy=mu_path, **SMALL)
    agent.fit(tiny.train, tiny.valid, progress=False, log=lambda m: None)
    assert len(agent.curves) == 2 and all(math.isfinite(c["loss"]) for c in agent.curves)
    states = torch.full((3, agent.state_len), tiny.n_items, dtype=torch.long)
    states[:, 0] = torch.tensor([0, 1, 2])
    s = agent.scores(states, torch.ones(3, dtype=torch.long))
    assert s.shape == (3, tiny.n_items) and torch.isfinite(s).all()
    assert agent.logging_policy is not None
    d = divergence_to_logging_policy(agent, tiny.test, "session")
    assert 0 < d["js_mu"] <= LN2 and d["kl_mu"] > 0
    # save / load round trip keeps the policy and mu-hat
    again = cls.load(agent.save(tmp_path / "a.pt"))
    assert torch.allclose(again.scores(states, torch.ones(3, dtype=torch.long)), s)
    assert divergence_to_logging_policy(again, tiny.test, "session") == pytest.approx(d)


def test_lpi_trains_mu_first_without_checkpoint(tiny):
    agent = LPIAgent(tiny.n_items, seed=0, steps=20, **SMALL)
    assert agent.logging_policy is None
    agent.fit(tiny.train, None, progress=False, log=lambda m: None)
    assert isinstance(agent.logging_policy, SASRecAgent)
    # mu-hat was trained: it differs from a fresh (untrained) one
    fresh = SASRecAgent(tiny.n_items, seed=0, **SMALL, steps=20)
    st = torch.zeros(1, agent.state_len, dtype=torch.long) + tiny.n_items
    assert not torch.allclose(agent.logging_policy.scores(st, torch.zeros(1, dtype=torch.long)),
                              fresh.scores(st, torch.zeros(1, dtype=torch.long)))


def test_lpi_weights_in_agent(tiny, mu_path):
    tr = tiny.train.transitions(10, discount=0.5)
    batch = tr.batch(np.arange(32))
    # beta -> inf: every weight 1, LPI reduces to plain CE
    big = LPICBAgent(tiny.n_items, seed=0, beta=1e9, logging_policy=mu_path, **SMALL)
    big.load_logging_policy(mu_path)
    logits = big.head(big.encoder(batch["state"], batch["state_len"]))
    w = big.weights(batch, logits, big.q_head(big.encoder(batch["state"], batch["state_len"])))
    assert torch.allclose(w, torch.ones(32))
    # LPI^CB at beta=1: exp(r - E_mu[r_hat])
    cb = LPICBAgent(tiny.n_items, seed=0, beta=1.0, **SMALL)
    cb.load_logging_policy(mu_path)
    h = cb.encoder(batch["state"], batch["state_len"])
    q = cb.q_head(h)
    mu = cb.mu_probs(batch["state"], batch["state_len"])
    expect = torch.exp(batch["reward"] - (mu * q.detach()).sum(1))
    assert torch.allclose(cb.weights(batch, cb.head(h), q), expect, rtol=1e-5)
    # IPS weight never exceeds clip * reward
    ips = IPSAgent(tiny.n_items, seed=0, ips_clip=2.0, **SMALL)
    ips.load_logging_policy(mu_path)
    wi = ips.weights(batch, ips.head(ips.encoder(batch["state"], batch["state_len"])), None)
    assert torch.all(wi <= 2.0 * batch["reward"] + 1e-6)


def test_last_m_and_bad_inputs(tiny, tmp_path):
    agent = LMuAgent(tiny.n_items, seed=0, last_m=2, **SMALL)
    tr = agent.make_transitions(tiny.train)
    assert len(tr) == int(np.minimum(tiny.train.lengths, 2).sum())
    assert np.all(tr.t >= tiny.train.lengths[tr.session] - 2)
    with pytest.raises(ValueError, match="beta"):
        LPIAgent(tiny.n_items, beta=0.0)
    with pytest.raises(ValueError, match="all_positions"):  # would silently train on last positions only
        LPIAgent(tiny.n_items, all_positions=True)
    with pytest.raises(FileNotFoundError, match="logging_policy"):
        LPIAgent(tiny.n_items, logging_policy=str(tmp_path / "nope.pt"), **SMALL).fit(tiny.train, progress=False)
    other = SASRecAgent(tiny.n_items, seed=0, hidden=8)
    with pytest.raises(ValueError, match="architecture"):
        LPIAgent(tiny.n_items, **SMALL).load_logging_policy(other.save(tmp_path / "other.pt"))


# ---------------------------------------------------------------------- the study, --quick
@pytest.mark.slow
def test_lpi_study_quick(tmp_path):
    import json
    import time

    from studies import lpi as study

    t0 = time.perf_counter()
    assert study.main(["--quick", "--out", str(tmp_path)]) == 0
    assert time.perf_counter() - t0 < 180  # < 90 s on an idle 2-core machine; slack for a shared one
    res = json.loads((tmp_path / "results.json").read_text())
    cb = res["bandit"]["synthetic"][0]
    assert [r["policy"] for r in cb][:3] == ["μ̂ (logging)", "L_μ", "IPS"] and len(cb) == 7
    for r in cb:
        assert 0 <= r["AR@1"] <= 1 and 0 <= r["iAR@1"] <= 1 and r["true@1"] > 0
        assert r["JS"] is None or 0 <= r["JS"] <= LN2
    mdp = {r["policy"]: r for r in res["mdp"]["synthetic"][0]}
    assert {"μ̂", "L_μ", "PG", "IPS-PG", "LPI^RL"} <= set(mdp)
    assert all(0 <= mdp[p]["ndcg@20_click"] <= 1 for p in mdp)
    assert {p["param"] for p in res["sweep"]["synthetic"][0]} == {"beta", "lam"}
    assert (tmp_path / "sweep.png").stat().st_size > 0 and (tmp_path / "by_length.png").stat().st_size > 0
    assert "SMOKE" in (tmp_path / "tables.md").read_text()
