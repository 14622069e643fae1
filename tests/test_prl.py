"""PRL: prompt generation (Algorithm 1), the per-step mean returns, prompt encoding shapes, the
Eq. 15 loss weighting by hand, prompt control of the ranking, every agent x encoder trains, the
session-wise online mode, save/load, and the study's --quick run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym.agents.prl import PRLAgent, PRLCumuAgent, PRLMeanAgent, PRLMLPAgent, PRLWoAgent, session_rollout
from recgym.data import KIND_CLICK, KIND_PURCHASE, SessionLog, Transitions, split_by_session
from recgym.data.transitions import return_to_go
from recgym.prompts import ReturnStats, generate_prompts, return_to_go_quadratic, step_means
from recgym.sim.world import make_synthetic_log

AGENTS = [PRLAgent, PRLMeanAgent, PRLMLPAgent, PRLWoAgent, PRLCumuAgent]
ENCODERS = ["sasrec", "gru", "caser", "nextitnet"]
TINY = dict(hidden=8, batch_size=32, state_len=5)
QUIET = dict(progress=False, log=lambda m: None)


def make_log(sessions: list[list[int]], rewards: list[list[float]], n_items: int) -> SessionLog:
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sessions])]).astype(np.int64)
    r = np.concatenate([np.asarray(x, dtype=np.float32) for x in rewards])
    return SessionLog(offsets=offsets, items=np.concatenate(sessions).astype(np.int32), rewards=r,
                      kinds=np.where(r >= 1.0, KIND_PURCHASE, KIND_CLICK).astype(np.int8),
                      timestamps=np.arange(len(r), dtype=np.int64), n_items=n_items)


@pytest.fixture(scope="module")
def split():
    return split_by_session(make_synthetic_log(120, seed=0, n_items=40, n_users=40), seed=0)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------- Algorithm 1
def test_return_to_go_on_a_hand_made_session():
    log = make_log([[3, 1, 4], [2, 2]], [[0.2, 1.0, 0.2], [1.0, 0.2]], n_items=5)
    p = generate_prompts(log.transitions(state_len=2))
    np.testing.assert_allclose(p.returns, [1.4, 1.2, 0.2, 1.2, 0.2], rtol=1e-6)
    np.testing.assert_array_equal(p.steps, [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(p.actions, [3, 1, 4, 2, 2])
    np.testing.assert_array_equal(p.states, [[5, 5], [3, 5], [3, 1], [5, 5], [2, 5]])  # x_{1:t}, right-padded
    np.testing.assert_allclose(p.rewards, [0.2, 1.0, 0.2, 1.0, 0.2], rtol=1e-6)
    # discount 0.5: R_0 = 0.2 + 0.5·1.0 + 0.25·0.2
    tr = log.transitions(state_len=2, discount=0.5)
    np.testing.assert_allclose(generate_prompts(tr).returns, [0.75, 1.1, 0.2, 1.1, 0.2], rtol=1e-6)
    # steps past max_step share the last index
    np.testing.assert_array_equal(generate_prompts(tr, max_step=1).steps, [0, 1, 1, 0, 1])


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 12), min_size=1, max_size=8), discount=st.sampled_from([1.0, 0.9, 0.5, 0.0]),
       seed=st.integers(0, 10_000))
def test_linear_recursion_equals_quadratic_definition(lengths, discount, seed):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    r = rng.choice([0.0, 0.2, 1.0], size=offsets[-1]).astype(np.float32)
    fast = return_to_go(r, offsets, discount)  # what Transitions carries (O(|τ|))
    np.testing.assert_allclose(fast, return_to_go_quadratic(r, offsets, discount), rtol=1e-5, atol=1e-6)
    # Algorithm 1 as printed: absolute discount λ^{t'}, R_{t+1} = R_t − λ^t r_t; equals λ^t R_t(relative)
    for a, b in zip(offsets[:-1], offsets[1:]):
        if b == a:
            continue
        R = float(np.sum(discount ** np.arange(b - a) * r[a:b]))  # R_1 by Eq. 7
        for t in range(b - a):
            assert R == pytest.approx(discount**t * fast[a + t], abs=1e-5)
            R -= discount**t * r[a + t]


def test_step_means_and_return_stats():
    mean, count = step_means(np.array([0, 0, 1, 3]), np.array([1.0, 3.0, 0.5, 2.0]), 5)
    np.testing.assert_allclose(count, [2, 1, 0, 1, 0])
    np.testing.assert_allclose(mean[[0, 1, 3]], [2.0, 0.5, 2.0])
    assert np.isnan(mean[2]) and np.isnan(mean[4])
    with pytest.raises(ValueError, match="steps must lie"):
        step_means(np.array([5]), np.array([1.0]), 5)

    log = make_log([[3, 1, 4], [2, 2]], [[0.2, 1.0, 0.2], [1.0, 0.2]], n_items=5)
    stats = ReturnStats(max_step=3).fit(generate_prompts(log.transitions(2), max_step=3))
    # R̄_0 = (1.4 + 1.2)/2, R̄_1 = (1.2 + 0.2)/2, R̄_2 = 0.2; step 3 unseen -> overall mean 4.2/5
    torch.testing.assert_close(stats.mean, torch.tensor([1.3, 0.7, 0.2, 0.84]))
    torch.testing.assert_close(stats.count, torch.tensor([2.0, 2.0, 1.0, 0.0]))
    steps = torch.tensor([0, 1, 2])
    torch.testing.assert_close(stats.inference_prompt(steps, mu=2.0, eps=0.0), torch.tensor([2.6, 1.4, 0.4]))
    g = torch.Generator().manual_seed(0)
    noisy = stats.inference_prompt(torch.zeros(20_000, dtype=torch.long), mu=2.0, eps=0.5, generator=g) / 1.3
    assert abs(float(noisy.mean()) - 2.0) < 0.02 and abs(float(noisy.std()) - 0.5) < 0.02  # N(μ, ε²)·R̄
    stats.mean[1] = 0.0
    torch.testing.assert_close(stats.denominator(torch.tensor([1, 2])), torch.tensor([1.0, 0.2]))


def test_prompt_shapes_and_tokens(split):
    agent = PRLAgent(split.n_items, seed=0, encoder="caser", **TINY)  # Caser: out_dim != hidden
    d = agent.net.encoder.out_dim
    states, lengths = agent._as_states([np.array([1, 2, 3]), np.array([], dtype=np.int64), np.arange(9)])
    steps, R = torch.tensor([3, 0, 5]), torch.tensor([0.5, 1.0, 2.0])
    agent.set_training(False)
    P = agent.net.prompt(states, lengths, R, steps)
    assert P.shape == (3, 3, d)
    torch.testing.assert_close(P[:, 0], R[:, None] * agent.net.e_r[None])  # Eq. 9: R·e_r
    torch.testing.assert_close(P[:, 1], agent.net.encoder(states, lengths))  # s_t
    torch.testing.assert_close(P[:, 2], agent.net.steps.weight[steps])  # h_t
    assert agent.net.state_token(P).shape == (3, d)
    assert agent.scores(states, lengths).shape == (3, split.n_items)
    assert agent.net.steps.num_embeddings == TINY["state_len"] + 1


# ---------------------------------------------------------------------- Eq. 15
@pytest.mark.parametrize("cls,weight", [(PRLAgent, "reward"), (PRLWoAgent, "none"), (PRLCumuAgent, "rtg"),
                                        (PRLMeanAgent, "reward"), (PRLMLPAgent, "reward")])
def test_loss_weighting_by_hand(cls, weight, split):
    agent = cls(split.n_items, seed=0, **TINY)
    tr = agent.make_transitions(split.train)
    batch = tr.batch(np.arange(16))
    agent.set_training(False)  # no dropout: the loss is a deterministic function of the batch
    loss, _ = agent.loss(batch)
    steps = batch["t"].clamp(max=TINY["state_len"])
    Rn = batch["rtg"] / agent.stats.mean[steps]  # normalised prompt (the default)
    logp = torch.log_softmax(agent.net(batch["state"], batch["state_len"], Rn, steps), dim=1)
    ce = -logp[torch.arange(16), batch["action"]]
    w = {"reward": batch["reward"], "none": torch.ones(16), "rtg": batch["rtg"]}[weight]
    assert float(loss.detach()) == pytest.approx(float((w * ce).mean().detach()), rel=1e-5)
    assert len(set(batch["reward"].tolist())) > 1  # the weights do differ between rows


def test_a_larger_prompted_return_changes_the_ranking():
    # after item 0, item 1 leads to purchases (high return), item 2 to clicks (low return)
    high = [[0, 1, 3, 3]] * 20
    low = [[0, 2, 4, 4]] * 20
    log = make_log(high + low, [[0.2, 1.0, 1.0, 1.0]] * 20 + [[0.2] * 4] * 20, n_items=5)
    agent = PRLAgent(5, seed=0, encoder="gru", hidden=16, batch_size=32, steps=300, state_len=3, prompt_dropout=0.0,
                     dropout=0.0)
    agent.fit(log, **QUIET)
    states, lengths = agent._as_states([np.array([0]), np.array([0])])
    s = agent.scores(states, lengths, returns=torch.tensor([3.0, 0.6]))  # R_1 of each kind of session
    assert s.argmax(1).tolist() == [1, 2]
    # the default prompt μ·R̄_1 = 2·1.8 lies on the high side: it asks for the purchase path
    assert int(agent.scores(states, lengths).argmax(1)[0]) == 1


# ---------------------------------------------------------------------- training
@pytest.mark.slow
@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("cls", AGENTS, ids=lambda c: c.name)
def test_every_agent_and_encoder_trains(cls, encoder, split):
    agent = cls(split.n_items, seed=0, encoder=encoder, steps=120, eval_every=60, **TINY)
    agent.fit(split.train, split.valid, **QUIET)
    first, last = agent.curves
    assert last["step"] == 120 and math.isfinite(last["loss"])
    assert last["loss"] < first["loss"]  # mean loss of steps 61-120 below steps 1-60
    assert 0.0 <= last["ndcg@20"] <= last["hr@20"] <= 1.0
    s = agent.scores(*agent._as_states([np.array([1, 2, 3]), np.array([], dtype=np.int64)]))
    assert s.shape == (2, split.n_items) and torch.isfinite(s).all()


def test_same_seed_same_run_and_save_load_round_trip(split, tmp_path):
    kw = dict(encoder="gru", steps=30, eval_every=30, eps=0.5, **TINY)
    a = PRLAgent(split.n_items, seed=3, **kw).fit(split.train, split.valid, **QUIET)
    b = PRLAgent(split.n_items, seed=3, **kw).fit(split.train, split.valid, **QUIET)
    assert a.curves == b.curves
    c = PRLAgent.load(a.save(tmp_path / "prl.pt"), eps=0.0)  # weights_only load
    torch.testing.assert_close(c.stats.mean, a.stats.mean)  # R̄_t travels with the weights
    assert float(a.stats.count.sum()) == split.train.n_events
    states, lengths = a._as_states([np.array([4, 5, 6]), np.array([7])])
    a.config.eps = 0.0
    torch.testing.assert_close(a.scores(states, lengths), c.scores(states, lengths))
    m = PRLMLPAgent.load(PRLMLPAgent(split.n_items, **TINY).save(tmp_path / "mlp.pt"))
    assert m.config.block == "mlp" and hasattr(m.net, "mlp")


def test_eps_draws_a_noisy_prompt(split):
    agent = PRLAgent(split.n_items, seed=0, eps=1.0, **TINY)
    agent.make_transitions(split.train)
    states, lengths = agent._as_states([np.array([1, 2])] * 2)
    assert not torch.equal(agent.scores(states, lengths)[0], agent.scores(states, lengths)[0])


def test_bad_configs_are_named(split):
    with pytest.raises(ValueError, match="block must be one of"):
        PRLAgent(split.n_items, block="conv")
    with pytest.raises(ValueError, match="weighting must be one of"):
        PRLAgent(split.n_items, weighting="q")
    with pytest.raises(ValueError, match="eps"):
        PRLAgent(split.n_items, eps=-1.0)
    with pytest.raises(TypeError, match="unknown hyper-parameter"):
        PRLAgent(split.n_items, epsilon=0.1)


def test_session_wise_online_mode_in_the_replay_env(split):
    from recgym.envs.replay import ReplayEnv

    agent = PRLAgent(split.n_items, seed=0, steps=60, **TINY).fit(split.train, **QUIET)
    env = ReplayEnv(data=split, split="test", state_len=TINY["state_len"], order="sequential")
    out = session_rollout(agent, env, n_episodes=5, seed=0)
    R0 = agent.config.mu * float(agent.stats.mean[0])
    assert out["final_prompt"] == pytest.approx(R0 - out["return"], abs=1e-5)  # decreased by what was observed
    assert out["length"] == pytest.approx(np.mean(split.test.lengths[split.test.lengths > 0][:5]))


@pytest.mark.slow
def test_prl_study_quick(tmp_path):
    import json

    from studies import prl as prl_study

    assert prl_study.main(["--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    enc = res["encoders"]["synthetic"][0]
    assert {r["encoder"] for r in enc} == set(ENCODERS)
    assert {r["method"] for r in enc} >= {"CE", "SQN", "SAC", "PRL"}
    assert all(r["true@1"] is not None for r in enc)
    assert [p["value"] for p in res["sweep"]["synthetic"][0] if p["param"] == "mu"] == [0.5, 1, 2, 4, 8]
    assert (tmp_path / "tables.md").exists() and (tmp_path / "sweep.png").exists()
