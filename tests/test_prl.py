"""PRL: prompt generation (Algorithm 1), the per-step mean returns, the prompt of Eq. 9–10 and the
attentive block of Eqs. 11–13 by hand, every agent's Eq. 15 loss from the equations, prompt
control of the ranking, every agent x encoder trains, the session-wise online mode, save/load, and
the study's --quick run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torch.nn.functional as F

from recgym.agents.prl import PRLAgent, PRLCumuAgent, PRLMeanAgent, PRLMLPAgent, PRLWoAgent, session_rollout
from recgym.agents.registry import get_agent_class
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
    assert agent.net.steps.num_embeddings == 51  # the paper's sessions: up to 50 steps, not the window


def test_prompt_is_eq_9_with_the_raw_return_and_the_true_step():
    # one session of 8 events, window 3: steps 3..7 lie past the window and keep their own h_t
    log = make_log([[1, 2, 3, 4, 1, 2, 3, 4]], [[0.2, 1.0, 0.2, 0.2, 1.0, 0.2, 0.2, 1.0]], n_items=5)
    agent = PRLAgent(5, seed=0, hidden=8, state_len=3)
    batch = agent.make_transitions(log).batch(np.arange(8))
    assert agent.config.normalize_return is False
    R = torch.tensor([4.0, 3.8, 2.8, 2.6, 2.4, 1.4, 1.2, 1.0])  # Σ_{t' ≥ t} r_t' (λ = 1)
    torch.testing.assert_close(batch["rtg"], R)
    captured = {}
    hook = agent.net.register_forward_hook(lambda m, args, out: captured.update(args=args))
    agent.set_training(False)
    agent.loss(batch)
    hook.remove()
    _, _, returns, steps = captured["args"]
    torch.testing.assert_close(returns.float(), R)  # Eq. 9 reads R_t itself ...
    assert steps.tolist() == list(range(8))  # ... and h_t the step t, not min(t, state_len)
    # the release's option: R_t / R̄_t
    norm = PRLAgent(5, seed=0, hidden=8, state_len=3, normalize_return=True)
    norm.make_transitions(log)
    torch.testing.assert_close(norm._net_returns(R, torch.arange(8)), torch.ones(8))  # one session: R̄_t = R_t


def _layer_norm(x: np.ndarray, ln: torch.nn.LayerNorm) -> np.ndarray:
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + ln.eps) * ln.weight.detach().double().numpy() + ln.bias.detach().double().numpy()


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def hand_state_token(net, P: np.ndarray) -> np.ndarray:
    """s̃_t from the equations in numpy: Eq. 11–13 (attention), or the ablations' pooling."""
    W = {k: getattr(net, k).weight.detach().double().numpy() for k in ("w_q", "w_k", "w_v") if hasattr(net, k)}
    if net.block == "mean":
        return _layer_norm(P.mean(1), net.norm)
    if net.block == "mlp":
        l1, l2 = net.mlp[0], net.mlp[3]
        x = P.reshape(len(P), -1) @ l1.weight.detach().double().numpy().T + l1.bias.detach().double().numpy()
        x = np.maximum(x, 0) @ l2.weight.detach().double().numpy().T + l2.bias.detach().double().numpy()
        return _layer_norm(x, net.norm)
    Q, K, V = P @ W["w_q"].T, P @ W["w_k"].T, P @ W["w_v"].T
    att = _softmax(Q @ K.transpose(0, 2, 1) / math.sqrt(P.shape[-1])) @ V  # Eq. 11
    P_tilde = _layer_norm(P + att, net.norm)  # Eq. 12: P_t + Attention(...), with layer norm
    return P_tilde[:, 1]  # Eq. 13: the state token


def test_attentive_block_matches_a_hand_computation():
    agent = PRLAgent(5, seed=0, hidden=4, state_len=3)
    net = agent.net
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in (net.w_q.weight, net.w_k.weight, net.w_v.weight, net.norm.weight, net.norm.bias):
            p.copy_(torch.randn(p.shape, generator=g))
    agent.set_training(False)
    P = torch.randn(2, 3, 4, generator=g)
    got = net.state_token(P).detach().double().numpy()
    np.testing.assert_allclose(got, hand_state_token(net, P.double().numpy()), rtol=1e-5, atol=1e-6)
    # the residual carries P_t: without it the output differs
    Pn = P.double().numpy()
    W = {k: getattr(net, k).weight.detach().double().numpy() for k in ("w_q", "w_k", "w_v")}
    att = _softmax((Pn @ W["w_q"].T) @ (Pn @ W["w_k"].T).transpose(0, 2, 1) / 2.0) @ (Pn @ W["w_v"].T)
    assert not np.allclose(got, _layer_norm(att, net.norm)[:, 1], atol=1e-3)


# ---------------------------------------------------------------------- Eq. 15
NAMES = ["prl", "prl-mean", "prl-mlp", "prl-wo", "prl-cumu"]


@pytest.mark.parametrize("name", NAMES)
def test_every_agent_loss_equals_the_equations(name, split):
    agent = get_agent_class(name)(split.n_items, seed=0, **TINY)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # non-trivial layer norm, so a wrong wiring cannot hide behind it
        agent.net.norm.weight.copy_(1 + 0.3 * torch.randn(agent.net.norm.weight.shape, generator=g))
        agent.net.norm.bias.copy_(0.3 * torch.randn(agent.net.norm.bias.shape, generator=g))
    tr = agent.make_transitions(split.train)
    rows = np.flatnonzero(tr.t > TINY["state_len"])[:4].tolist() + list(range(12))  # some rows past the window
    batch = tr.batch(np.asarray(rows))
    agent.set_training(False)  # no dropout: the loss is a deterministic function of the batch
    loss, _ = agent.loss(batch)
    net, n = agent.net, len(rows)
    with torch.no_grad():
        s_t = net.encoder(batch["state"], batch["state_len"]).double().numpy()
        e_r = net.e_r.detach().double().numpy()
        H = net.steps.weight.detach().double().numpy()
    R = batch["rtg"].double().numpy()
    P = np.stack([R[:, None] * e_r[None], s_t, H[batch["t"].numpy()]], axis=1)  # Eq. 9–10
    y = hand_state_token(net, P) @ net.head.weight.detach().double().numpy().T + net.head.bias.detach().double().numpy()
    logp = y - np.log(np.exp(y - y.max(1, keepdims=True)).sum(1, keepdims=True)) - y.max(1, keepdims=True)
    ce = -logp[np.arange(n), batch["action"].numpy()]
    w = {"prl": batch["reward"], "prl-mean": batch["reward"], "prl-mlp": batch["reward"], "prl-wo": torch.ones(n),
         "prl-cumu": batch["rtg"]}[name].double().numpy()
    assert float(loss.detach()) == pytest.approx(float((w * ce).mean()), rel=1e-5)  # Eq. 15, batch mean
    assert len(set(batch["reward"].tolist())) > 1  # the weights do differ between rows


def test_variants_are_config_fields(split, tmp_path):
    cfgs = {n: get_agent_class(n).Config() for n in NAMES}
    assert {n: (c.block, c.weighting) for n, c in cfgs.items()} == {
        "prl": ("attention", "reward"), "prl-mean": ("mean", "reward"), "prl-mlp": ("mlp", "reward"),
        "prl-wo": ("attention", "none"), "prl-cumu": ("attention", "return")}
    assert all(c.normalize_return is False and c.max_step == 50 for c in cfgs.values())
    a = PRLAgent(split.n_items, block="mean", **TINY)  # --set block=mean on prl is prl-mean
    assert a.config_dict() == PRLMeanAgent(split.n_items, **TINY).config_dict()
    b = PRLAgent.load(PRLWoAgent(split.n_items, **TINY).save(tmp_path / "wo.pt"))
    assert b.config.weighting == "none"


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
    from recgym.experiments.report import code_version

    # the page names the code that trained its runs (read from each job's results.json)
    assert f"Code version of every run: `{code_version()}`" in (tmp_path / "tables.md").read_text()


def test_prl_study_jobs_are_one_per_method_and_encoder(tmp_path):
    from studies import prl as study

    jobs = study.jobs_of("ml-100k", 2, study.FULL, tmp_path, None, 1)
    assert len(jobs) == 4 * 4 + 4 and len({str(j.job_dir()) for j in jobs.values()}) == len(jobs)
    sac = jobs[("caser", "SAC")]
    assert sac.agent == "sac" and sac.overrides["encoder"] == "caser" and sac.overrides["switch_step"] == 300
    # each user's last 50 ratings as one session, click-purchase, split by user with the seed
    assert (sac.last_n_events, sac.protocol, sac.reward_scheme, sac.seed) == (50, "session", "click-purchase", 2)
    assert jobs[("gru", "PRL-w/o")].agent == "prl-wo" and "studies.prl:reward_at_1" in sac.test_extras
    synth = study.jobs_of("synthetic", 4, study.QUICK, tmp_path, None, 1)[("gru", "PRL")]
    assert synth.true_value and synth.data_params["world_seed"] == 4 and synth.data_params["n_sessions"] == 400
    assert not any(m in study.ABLATIONS for _, m in study.jobs_of("yoochoose-100k", 0, study.FULL, tmp_path, None, 1))
