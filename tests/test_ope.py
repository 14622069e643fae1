"""Off-policy estimators against hand-computed values on a tiny batch (recgym.ope).

The batch (4 rounds, 3 actions), worked by hand::

    a = [0, 1, 2, 1], r = [1, 0, 1, 1], μ(a_i|x_i) = [.5, .25, .25, .5]
    π(·|x_i) = [.2 .5 .3], [.1 .8 .1], [.6 .2 .2], [.3 .3 .4]   ->  π(a_i|x_i) = [.2, .8, .2, .3]
    w = π/μ = [.4, 3.2, .8, .6];  Σw = 5;  Σ w r = 1.8
    IPS = 1.8 / 4 = .45            SNIPS = 1.8 / 5 = .36           ESS = 25 / 11.4
    q̂ = [.5 0 1], [0 1 .5], [1 0 0], [.5 .5 .5]:  Σ_a π q̂ = [.4, .85, .6, .5]  ->  DM = 2.35 / 4 = .5875
    w (r − q̂(a_i)) = [.2, −3.2, .8, .3]  ->  DR = .5875 − 1.9 / 4 = .1125
"""

import numpy as np
import pytest
import torch

from recgym import ope
from recgym.data import SessionLog

A = np.array([0, 1, 2, 1])
R = np.array([1.0, 0.0, 1.0, 1.0])
MU = np.array([0.5, 0.25, 0.25, 0.5])
PI = np.array([[0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.6, 0.2, 0.2], [0.3, 0.3, 0.4]])
Q = np.array([[0.5, 0.0, 1.0], [0.0, 1.0, 0.5], [1.0, 0.0, 0.0], [0.5, 0.5, 0.5]])


def test_ips_by_hand():
    out = ope.ips(R, MU, PI, A)
    assert out["estimate"] == pytest.approx(0.45)  # μ/π instead of π/μ gives 5.4167 / 4 = 1.354
    # per-round terms [.4, 0, .8, .6]: squared deviations from .45 sum to .35
    assert out["se"] == pytest.approx(np.sqrt(0.35 / 3 / 4))
    assert out["ess"] == pytest.approx(25 / 11.4)
    assert out["ci_low"] == pytest.approx(0.45 - 1.959964 * out["se"], abs=1e-6)
    assert (out["n"], out["n_clipped"], out["frac_clipped"]) == (4, 0, 0)
    # π(a_i|x_i) given directly [N] is the same estimator
    assert ope.ips(R, MU, np.array([0.2, 0.8, 0.2, 0.3]))["estimate"] == pytest.approx(0.45)


def test_snips_by_hand():
    out = ope.snips(R, MU, PI, A)
    assert out["estimate"] == pytest.approx(0.36)
    # delta method: Σ w² (r − .36)² = .16·.4096 + 10.24·.1296 + .64·.4096 + .36·.4096 = 1.80224
    assert out["se"] == pytest.approx(np.sqrt(1.80224) / 5)
    assert out["ess"] == pytest.approx(25 / 11.4)


def test_dm_by_hand():
    out = ope.dm(PI, Q)
    assert out["estimate"] == pytest.approx(0.5875)
    assert out["se"] == pytest.approx(np.std([0.4, 0.85, 0.6, 0.5], ddof=1) / 2)


def test_dr_by_hand_and_its_correction_matters():
    out = ope.dr(R, MU, PI, Q, A)
    assert out["estimate"] == pytest.approx(0.1125)  # DM alone (.5875) or a flipped correction (1.0625) fail
    assert out["se"] == pytest.approx(np.std([0.6, -2.35, 1.4, 0.8], ddof=1) / 2)
    # a perfect reward model on the logged actions leaves DM unchanged; a zero model gives IPS
    q_exact = Q.copy()
    q_exact[np.arange(4), A] = R
    assert ope.dr(R, MU, PI, q_exact, A)["estimate"] == pytest.approx(ope.dm(PI, q_exact)["estimate"])
    assert ope.dr(R, MU, PI, np.zeros_like(Q), A)["estimate"] == pytest.approx(0.45)


def test_clipping_by_hand():
    # clip at .5: w = [.4, .5, .5, .5], three weights clipped
    out = ope.estimate_all(R, MU, PI, A, q_hat=Q, clip=0.5)
    assert out["ips"]["estimate"] == pytest.approx(1.4 / 4)
    assert out["snips"]["estimate"] == pytest.approx(1.4 / 1.9)
    # correction .4·.5 + .5·(−1) + .5·1 + .5·.5 = .45
    assert out["dr"]["estimate"] == pytest.approx(0.5875 + 0.45 / 4)
    assert out["dm"]["estimate"] == pytest.approx(0.5875)  # no weights in DM
    for k in ("ips", "snips", "dr"):
        assert (out[k]["n_clipped"], out[k]["frac_clipped"]) == (3, 0.75)
    assert out["ips"]["ess"] == pytest.approx(1.9**2 / (0.16 + 0.75))


def test_position_axis_picks_each_rounds_position():
    # [N, A, P]: position 1 holds the batch's π and q̂, position 0 something else
    pi3 = np.stack([np.full_like(PI, 1 / 3), PI], axis=2)
    q3 = np.stack([np.ones_like(Q), Q], axis=2)
    pos = np.ones(4, dtype=int)
    out = ope.estimate_all(R, MU, pi3, A, q_hat=q3, positions=pos)
    assert [out[k]["estimate"] for k in ("ips", "snips", "dm", "dr")] == pytest.approx([0.45, 0.36, 0.5875, 0.1125])
    with pytest.raises(ValueError, match="positions"):
        ope.ips(R, MU, pi3, A)


def test_estimators_are_unbiased_on_a_simulated_bandit():
    # context-free bandit, 5 actions: μ uniform-ish, π skewed; V(π) = Σ π θ
    rng = np.random.default_rng(0)
    n, theta = 40_000, np.array([0.1, 0.3, 0.5, 0.2, 0.7])
    mu = np.array([0.3, 0.3, 0.2, 0.1, 0.1])
    pi = np.array([0.05, 0.05, 0.2, 0.1, 0.6])
    a = rng.choice(5, size=n, p=mu)
    r = (rng.random(n) < theta[a]).astype(float)
    truth = float(pi @ theta)
    pi_n, q = np.tile(pi, (n, 1)), np.tile(theta * 0.5, (n, 1))  # a biased reward model
    out = ope.estimate_all(r, mu[a], pi_n, a, q_hat=q)
    for k in ("ips", "snips", "dr"):
        assert abs(out[k]["estimate"] - truth) < 4 * out[k]["se"], (k, out[k], truth)
    assert abs(out["dm"]["estimate"] - truth) > 0.1  # DM inherits the model's bias


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="pscore must be > 0"):
        ope.ips(R, np.array([0.5, 0.0, 0.25, 0.5]), PI, A)
    with pytest.raises(ValueError, match="pass actions"):
        ope.ips(R, MU, PI)
    with pytest.raises(ValueError, match="clip"):
        ope.ips(R, MU, PI, A, clip=0.0)
    with pytest.raises(ValueError, match="all weights are 0"):
        ope.snips(R, MU, np.zeros(4))


def test_equals_open_bandit_pipeline_on_identical_inputs():
    """obp does not install next to our pins (it pins old numpy/pandas/scikit-learn); where it is
    importable, every estimate must equal its estimator's on the same slate-position rounds."""
    obp_ope = pytest.importorskip("obp.ope")
    rng = np.random.default_rng(1)
    n, n_act, n_pos = 500, 6, 3
    a, k = rng.integers(n_act, size=n), rng.integers(n_pos, size=n)
    r = (rng.random(n) < 0.3).astype(float)
    mu = rng.uniform(0.05, 0.5, size=n)
    pi = rng.dirichlet(np.ones(n_act), size=(n, n_pos)).transpose(0, 2, 1)  # [n, A, P], sums to 1 over A
    q = rng.random((n, n_act, n_pos))
    ours = ope.estimate_all(r, mu, pi, a, q_hat=q, positions=k)
    theirs = {
        "ips": obp_ope.InverseProbabilityWeighting().estimate_policy_value(reward=r, action=a, pscore=mu, action_dist=pi, position=k),
        "snips": obp_ope.SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(
            reward=r, action=a, pscore=mu, action_dist=pi, position=k),
        "dm": obp_ope.DirectMethod().estimate_policy_value(action_dist=pi, estimated_rewards_by_reg_model=q, position=k),
        "dr": obp_ope.DoublyRobust().estimate_policy_value(
            reward=r, action=a, pscore=mu, action_dist=pi, estimated_rewards_by_reg_model=q, position=k),
    }
    for name, value in theirs.items():
        assert ours[name]["estimate"] == pytest.approx(float(value), abs=1e-6), name


class _Constant:
    """An agent whose policy is the same distribution in every state."""

    state_len = 2

    def __init__(self, p):
        self.p = torch.tensor(p, dtype=torch.float64)
        self.n_items = len(p)

    def scores(self, states, lengths):
        return self.p.log().expand(len(states), -1).clone()

    def probs(self, states, lengths):
        return self.p.expand(len(states), -1).clone()


def _log(propensities=None):
    return SessionLog(offsets=[0, 2, 3], items=[0, 1, 1], rewards=[1.0, 0.0, 1.0], kinds=[1, 0, 1],
                      timestamps=[0.0, 1.0, 2.0], n_items=3, propensities=propensities)


def test_evaluate_agent_uses_log_propensities_or_behaviour_model():
    agent = _Constant([0.2, 0.5, 0.3])
    # w = [.2/.5, .5/.25, .5/.5] = [.4, 2, 1]; Σ w r = 1.4
    out = ope.evaluate_agent(agent, _log([0.5, 0.25, 0.5]))
    assert out["ips"]["estimate"] == pytest.approx(1.4 / 3)
    assert out["snips"]["estimate"] == pytest.approx(1.4 / 3.4)
    # greedy π puts all mass on item 1: w = [0, 4, 2]
    assert ope.evaluate_agent(agent, _log([0.5, 0.25, 0.5]), policy="greedy")["ips"]["estimate"] == pytest.approx(2 / 3)
    # no propensities: μ̂ from the behaviour model, μ̂(a_t) = [.5, .25, .25] -> w = [.4, 2, 2]
    out = ope.evaluate_agent(agent, _log(), behaviour=_Constant([0.5, 0.25, 0.25]))
    assert out["ips"]["estimate"] == pytest.approx(2.4 / 3)
    with pytest.raises(ValueError, match="behaviour model"):
        ope.evaluate_agent(agent, _log())
    # an agent that carries its own μ̂ (the LPI family) uses it by default
    agent.logging_policy = _Constant([0.5, 0.25, 0.25])
    assert ope.evaluate_agent(agent, _log())["ips"]["estimate"] == pytest.approx(2.4 / 3)


# ---------------------------------------------------------------------- scripts/ope_obd.py
def _obd_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "ope_obd.py"
    spec = importlib.util.spec_from_file_location("ope_obd", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_obd_policy_tables_and_cross_fitted_reward_model_by_hand():
    m = _obd_script()
    # item 0 logged at t=1 (.6) and t=3 (.2); item 1 at t=2 (.4); one slot
    log = {"a": np.array([0, 1, 0]), "k": np.zeros(3, int), "mu": np.array([0.6, 0.4, 0.2]), "t": np.array([1.0, 2.0, 3.0])}
    pi, mean_sum = m.logged_policy_at(log, np.array([0.0, 1.0, 2.5, 4.0]), n_items=2, n_slots=1)
    # before the first log: the earliest value; after t=3 item 0 is .2 -> [.2, .4] renormalised
    np.testing.assert_allclose(pi[:, :, 0], [[0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [1 / 3, 2 / 3]])
    assert mean_sum == pytest.approx(3.6 / 4)
    np.testing.assert_allclose(m.frequency_policy(log, 2, 2, 1)[:, :, 0], [[2 / 3, 1 / 3]] * 2)
    # cross-fitting: even rows get q̂ from odd rows (no clicks -> 0), odd rows from even rows
    log = {"a": np.array([0, 0, 1, 1]), "k": np.zeros(4, int), "r": np.array([1.0, 0.0, 0.0, 0.0])}
    q = m.reward_model(log, n_items=2, n_slots=1, shrink=1.0)[:, :, 0]
    # odd rows: item 0 one show one click, item 1 one show no click, slot rate .5: (c + .5) / (n + 1)
    np.testing.assert_allclose(q, [[0, 0], [0.75, 0.25], [0, 0], [0.75, 0.25]])


def test_evaluate_agent_on_a_generated_world_recovers_the_true_value():
    # the World logs its logging propensities and knows E[r | u, h, a]: the target's true value on
    # the logged contexts is the mean over events of Σ_a π(a) E[r | u, h, a]
    from recgym.data import Transitions
    from recgym.sim.world import World

    world = World(seed=0, n_users=60, n_items=40)
    log = world.generate(600, seed=1)
    agent = _Constant(np.random.default_rng(0).dirichlet(np.ones(40)))
    agent.state_len = 30  # the longest session: every state is the whole session so far
    tr = Transitions.from_log(log, state_len=30)
    q = world.expected_reward_all(np.repeat(log.users, log.lengths), tr.state, tr.state_len)
    truth = float(np.mean(q @ agent.p.numpy()))
    out = ope.evaluate_agent(agent, log, q_hat=q)
    assert out["dm"]["estimate"] == pytest.approx(truth, abs=1e-9)  # the oracle model makes DM exact
    for k in ("ips", "snips", "dr"):
        assert abs(out[k]["estimate"] - truth) < 4 * out[k]["se"], (k, out[k], truth)
    assert out["dr"]["se"] < out["ips"]["se"]  # the oracle baseline removes most of the variance


@pytest.mark.realdata
def test_obd_script_reproduces_the_results_page():
    import json
    import os
    from pathlib import Path

    data = os.environ.get("RECGYM_DATA_DIR")
    if not data or not (Path(data) / "obd" / "bts" / "all" / "all.csv").exists():
        pytest.skip("RECGYM_DATA_DIR does not hold obd/{random,bts}/all")
    res = _obd_script().main(["--campaign", "all", "--data-dir", data])
    page = json.loads((Path(__file__).resolve().parents[1] / "docs/results/ope/obd_all.json").read_text())
    for run, ref in zip(res["runs"], page["runs"]):
        assert run["truth"]["value"] == pytest.approx(ref["truth"]["value"])
        for k, v in ref["estimates"].items():
            assert run["estimates"][k]["estimate"] == pytest.approx(v["estimate"], rel=1e-9), (run["target"], k)
