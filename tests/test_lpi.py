"""LPI: the weights, the analytic advantage, IPS clipping, JS/KL to μ̂, every agent's loss term by
term against the equations on a fixed batch, and the six agents end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym.agents import lpi_losses as LL
from recgym.agents.lpi import IPSAgent, LMuAgent, LPIAgent, LPICBAgent
from recgym.agents.registry import get_agent_class, make_agent
from recgym.agents.sasrec import SASRecAgent
from recgym.data import split_by_session
from recgym.divergence import divergence_to_logging_policy, evaluation_states, policy_divergence
from recgym.sim.world import World

LN2 = math.log(2.0)
NAMES = ["lmu", "pg", "ips", "ips-pg", "lpi-cb", "lpi"]


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
    raw = torch.tensor([1.0, math.e, math.exp(-2.0)])
    assert torch.allclose(w, raw / raw.mean(), rtol=1e-6)  # exp(A/β), normalised to mean 1


@pytest.mark.parametrize("beta", [1.0, 0.1, 0.01, 0.001])
def test_lpi_weight_ratios_are_exact_at_any_beta(beta):
    # an offset of 3 would overflow exp(A/β) even in float64 for β = 0.001 (e^3000) if not shifted
    adv = torch.tensor([3.0, 3.01, 3.02, 2.985, 3.0])
    w = LL.lpi_weights(adv, beta)
    assert torch.isfinite(w).all() and (w > 0).all()
    a = adv.double()
    expect = torch.exp((a[:, None] - a[None, :]) / beta)  # w_i / w_j = exp((A_i − A_j)/β)
    torch.testing.assert_close(w.double()[:, None] / w.double()[None, :], expect, rtol=1e-5, atol=0)
    assert float(w.mean()) == pytest.approx(1.0, rel=1e-5)


def test_lpi_weights_limits():
    # a gap of 1 at β = 0.001 (e^1000): the low row underflows to exactly 0, nothing is inf / NaN
    w = LL.lpi_weights(torch.tensor([1.0, 0.0]), beta=0.001)
    assert w.tolist() == [2.0, 0.0]
    # huge beta: all weights -> 1 (plain CE, i.e. mu-hat)
    assert torch.allclose(LL.lpi_weights(torch.tensor([3.0, -2.0]), beta=1e9), torch.ones(2))
    with pytest.raises(ValueError, match="beta"):
        LL.lpi_weights(torch.zeros(2), beta=0.0)


def test_td_loss_is_eq_11_without_a_half():
    q, y = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.5, 2.0])
    assert float(LL.td_loss(q, y)) == pytest.approx((1.0 + 0.25 + 0.0) / 3)


def test_weights_are_constants_in_the_loss():
    logits = torch.randn(4, 6, requires_grad=True)
    adv = torch.randn(4, requires_grad=True)
    a = torch.tensor([0, 1, 2, 3])
    loss = LL.lpi_objective(logits, a, adv, beta=1.0, td=torch.tensor(0.5), lam=0.3)
    expect = LL.weighted_ce(logits, a, LL.lpi_weights(adv, 1.0)) + 0.3 * 0.5
    assert float(loss.detach()) == pytest.approx(float(expect.detach()), rel=1e-6)
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
@pytest.mark.parametrize("name", NAMES)
def test_agent_trains_200_steps(name, tiny, mu_path, tmp_path):
    cls = get_agent_class(name)
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


# ---------------------------------------------------------------------- every loss, by hand
@pytest.fixture(scope="module")
def fresh_mu_path(tiny, tmp_path_factory):
    """An untrained μ̂ (seed 7, so it differs from π): the loss tests need π ≠ μ̂, not a good μ̂."""
    mu = SASRecAgent(tiny.n_items, seed=7, **SMALL)
    return str(mu.save(tmp_path_factory.mktemp("mu0") / "mu.pt"))


def _agent(name, tiny, mu_path, **kw):
    agent = make_agent(name, tiny.n_items, seed=0, logging_policy=mu_path, **SMALL, **kw)
    if agent.needs_mu:
        agent.load_logging_policy(mu_path)
    if hasattr(agent, "target"):  # a target network that differs from the online one
        with torch.no_grad():
            for p in agent.target.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    agent.set_training(False)  # no dropout: the loss is a function of the batch
    return agent


def _batch(tiny, discount):
    batch = tiny.train.transitions(10, discount=discount).batch(np.arange(12))
    assert batch["done"].any() and len(set(batch["reward"].tolist())) > 1  # both kinds of rows
    return batch


def hand_loss(agent, batch):
    """The agent's loss from the equations, term by term (float64)."""
    cfg, rows = agent.config, torch.arange(len(batch["action"]))
    s, sl, a, r, rtg = batch["state"], batch["state_len"], batch["action"], batch["reward"].double(), batch["rtg"].double()
    with torch.no_grad():
        h = agent.encoder(s, sl)
        logp = torch.log_softmax(agent.head(h).double(), dim=1)
        ce = -logp[rows, a]
        pi_a = logp.exp()[rows, a]
        mu = torch.softmax(agent.mu_net["head"](agent.mu_net["encoder"](s, sl)).double(), dim=1)
        clip = math.inf if cfg.ips_clip is None else cfg.ips_clip
        ratio = torch.clamp(pi_a / mu[rows, a], max=clip)  # Eq. 9: π / μ̂
        td = 0.0
        if cfg.weighting in ("lpi-cb", "lpi"):
            q = agent.q_head(h).double()
            v_mu = (mu * q).sum(1)  # E_{a∼μ̂}[Q̂(x, a)]
            adv = (r if cfg.weighting == "lpi-cb" else q[rows, a]) - v_mu
            raw = torch.exp(adv / cfg.beta)
            if cfg.weighting == "lpi":  # y = r + γ Q_target(s', argmax Q(s')) (1 − done)
                s2, l2 = batch["next_state"], batch["next_len"]
                a2 = agent.q_head(agent.encoder(s2, l2)).argmax(1)
                q_t = agent.target["q_head"](agent.target["encoder"](s2, l2)).double()[rows, a2]
                y = r + cfg.discount * (1 - batch["done"].double()) * q_t
            else:
                y = r
            td = ((q[rows, a] - y) ** 2).mean()  # Eq. 11
        w = {"reward": lambda: r, "rtg": lambda: rtg, "ips": lambda: ratio * r, "ips-rtg": lambda: ratio * rtg,
             "lpi-cb": lambda: raw / raw.mean(), "lpi": lambda: raw / raw.mean()}[cfg.weighting]()
        return float((w * ce).mean() + cfg.lam * td)  # −(L̂ − λ L̂_TD), Eq. 10


@pytest.mark.parametrize("name", NAMES)
def test_every_agent_loss_equals_the_equations(name, tiny, fresh_mu_path):
    kw = dict(beta=0.1, lam=0.37) if name.startswith("lpi") else {}
    if name.startswith("ips"):
        kw["ips_clip"] = None  # the ratio itself, not the clip, is under test
    agent = _agent(name, tiny, fresh_mu_path, **kw)
    batch = _batch(tiny, agent.config.discount)
    loss, info = agent.loss(batch)
    assert float(loss.detach()) == pytest.approx(hand_loss(agent, batch), rel=1e-5)
    assert ("td" in info) == name.startswith("lpi")


def test_ips_ratio_is_pi_over_mu_and_clipped(tiny, fresh_mu_path):
    agent = _agent("ips", tiny, fresh_mu_path, ips_clip=1.05)
    batch = _batch(tiny, agent.config.discount)
    with torch.no_grad():
        logits = agent.head(agent.encoder(batch["state"], batch["state_len"]))
        pi_a = torch.softmax(logits, 1).gather(1, batch["action"][:, None]).squeeze(1)
        mu_a = agent.mu_probs(batch["state"], batch["state_len"]).gather(1, batch["action"][:, None]).squeeze(1)
    ratio = pi_a / mu_a
    assert (ratio > 1.05).any() and (ratio < 1.05).any()  # some rows clipped, some not
    torch.testing.assert_close(agent.weights(batch, logits, None), torch.clamp(ratio, max=1.05) * batch["reward"])
    assert float(agent.loss(batch)[0].detach()) == pytest.approx(hand_loss(agent, batch), rel=1e-5)


def test_lpi_rl_weights_come_from_q_not_the_reward(tiny, fresh_mu_path):
    agent = _agent("lpi", tiny, fresh_mu_path, beta=0.5)
    batch = _batch(tiny, agent.config.discount)
    with torch.no_grad():
        h = agent.encoder(batch["state"], batch["state_len"])
        q = agent.q_head(h)
        mu = agent.mu_probs(batch["state"], batch["state_len"])
        w = agent.weights(batch, agent.head(h), q)
        # changing the logged rewards leaves LPI^RL's weights unchanged (they read Q̂(s, a)) ...
        w2 = agent.weights({**batch, "reward": 1.0 - batch["reward"]}, agent.head(h), q)
    torch.testing.assert_close(w, w2)
    adv = q.gather(1, batch["action"][:, None]).squeeze(1) - (mu * q).sum(1)
    raw = torch.exp(adv / 0.5)
    torch.testing.assert_close(w, raw / raw.mean(), rtol=1e-5, atol=1e-6)
    # ... while LPI^CB's do read r (the direct method)
    cb = _agent("lpi-cb", tiny, fresh_mu_path, beta=0.5)
    with torch.no_grad():
        h = cb.encoder(batch["state"], batch["state_len"])
        q = cb.q_head(h)
        adv = batch["reward"] - (cb.mu_probs(batch["state"], batch["state_len"]) * q).sum(1)
        raw = torch.exp(adv / 0.5)
        torch.testing.assert_close(cb.weights(batch, cb.head(h), q), raw / raw.mean(), rtol=1e-5, atol=1e-6)


def test_td_term_sign_and_weight(tiny, fresh_mu_path):
    """loss(λ) − loss(0) = λ · L̂_TD with L̂_TD > 0: the TD loss is added (Eq. 10 maximises −λ L̂_TD)."""
    batch = _batch(tiny, 0.5)
    losses = {lam: agent.loss(batch) for lam in (0.0, 0.37, 2.0)
              for agent in [_agent("lpi", tiny, fresh_mu_path, lam=lam)]}
    td = losses[0.37][1]["td"]
    assert td > 0
    for lam in (0.37, 2.0):
        assert float((losses[lam][0] - losses[0.0][0]).detach()) == pytest.approx(lam * td, rel=1e-4)


def test_variants_are_config_fields(tiny, fresh_mu_path, tmp_path):
    defaults = {n: (get_agent_class(n).Config().weighting, get_agent_class(n).Config().discount) for n in NAMES}
    assert defaults == {"lmu": ("reward", 0.5), "pg": ("rtg", 0.5), "ips": ("ips", 0.5), "ips-pg": ("ips-rtg", 0.5),
                        "lpi-cb": ("lpi-cb", 0.0), "lpi": ("lpi", 0.5)}
    # --set weighting=reward turns lpi into lmu: same loss on the same batch
    batch = _batch(tiny, 0.5)
    a = _agent("lpi", tiny, fresh_mu_path, weighting="reward")
    b = _agent("lmu", tiny, fresh_mu_path)
    assert float(a.loss(batch)[0].detach()) == pytest.approx(float(b.loss(batch)[0].detach()), rel=1e-6)
    assert not hasattr(a, "q_head")
    # the saved config carries the variant
    c = LPIAgent.load(b.save(tmp_path / "lmu.pt"))
    assert c.config.weighting == "reward" and not c.aux_head
    with pytest.raises(ValueError, match="weighting must be one of"):
        LPIAgent(tiny.n_items, weighting="q")
    with pytest.raises(ValueError, match="discount=0"):
        LPIAgent(tiny.n_items, weighting="lpi-cb")


def test_netflix_preset_is_the_papers():
    from recgym.agents.registry import agent_preset

    p = agent_preset(LPICBAgent, "netflix")
    assert {k: p[k] for k in ("last_m", "epochs", "mu_epochs", "batch_size", "state_len", "hidden", "n_blocks", "n_heads")} == dict(
        last_m=50, epochs=30, mu_epochs=30, batch_size=128, state_len=200, hidden=200, n_blocks=2, n_heads=8)


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
    from recgym.experiments.report import code_version

    assert f"Code version of every run: `{code_version()}`" in (tmp_path / "tables.md").read_text()


def test_lpi_study_jobs_wire_mu_hat_data_and_paper_defaults(tmp_path):
    from recgym.agents.registry import get_agent_class, make_agent
    from recgym.experiments.job import build_agent
    from studies import lpi as study

    ctx = dict(data_dir=None, threads=1)
    cb = study.bandit_jobs("synthetic", 3, study.QUICK, tmp_path, ctx)
    mu = cb["μ̂ (logging)"]
    assert mu.agent == "sasrec" and mu.logging_policy is None and mu.protocol == "loo"
    # the MF user env's data: the World's rating log of the seed's World, served by that env
    assert mu.data_params["ratings"] is True and mu.data_params["world_seed"] == 3
    assert mu.sims == ["recgym/MFUser-Synthetic-v0"]
    for name, spec in cb.items():  # the second wave reads μ̂'s model.pt
        assert spec.logging_policy == (None if spec is mu else str(mu.job_dir() / "model.pt")), name
    assert cb["LPI^CB (β=1000)"].overrides["beta"] == 1000
    # the loo presets would change the encoder: the study pins the paper's defaults instead
    agent = build_agent(cb["L_μ"], 20, "loo", warn=lambda m: None)
    plain = make_agent("lmu", 20, seed=3, **{k: cb["L_μ"].overrides[k] for k in ("hidden", "batch_size", "steps", "eval_every")},
                       logging_policy=cb["L_μ"].logging_policy)
    assert agent.config == plain.config and agent.config.n_blocks == get_agent_class("lmu").Config().n_blocks
    jobs, sweep = study.mdp_jobs("ml-100k", 1, study.FULL, tmp_path, ctx)
    assert {j.last_n_events for j in jobs.values()} == {20}  # each user's last 20 ratings
    assert {(j.protocol, j.reward_scheme) for j in jobs.values()} == {("session", "click-purchase")}
    assert jobs["SAC"].overrides["switch_step"] == 300 and jobs["SQN"].logging_policy is None
    assert [(p, v) for p, v, _ in sweep][:2] == [("beta", 0.01), ("beta", 0.1)]
    assert len({str(j.job_dir()) for j in [*jobs.values(), *(s for _, _, s in sweep)]}) == len(jobs) + len(sweep)
