"""recgym environments: replay, Next-K slate, MF user simulator, registration, vector versions."""

import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata

import recgym  # noqa: F401  (registers the ids)
from recgym.envs.mf_user import MFUserEnv
from recgym.envs.registration import env_ids
from recgym.envs.replay import ReplayEnv, ReplayVectorEnv
from recgym.envs.slate_nextk import SlateNextKEnv, SlateNextKVectorEnv
from recgym import metrics
from recgym.data import Split, split_by_session
from recgym.data.session_log import SessionLog
from recgym.sim.world import make_synthetic_log

N_ITEMS = 6
GENRES = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 0, 0]], dtype=np.float32)


def tiny_log() -> SessionLog:
    """3 sessions over 6 items: [0 1 2], [3 4], [5 0 1 2]; rewards 0.2 / 1.0 on purchases."""
    items = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2])
    rewards = np.array([0.2, 1.0, 0.2, 0.2, 0.2, 1.0, 0.2, 0.2, 1.0], dtype=np.float32)
    return SessionLog(offsets=np.array([0, 3, 5, 9]), items=items, rewards=rewards, kinds=(rewards == 1.0).astype(np.int8),
                      timestamps=np.arange(9.0), n_items=N_ITEMS, users=np.array([0, 1, 2]), genres=GENRES)


def tiny_split() -> Split:
    log = tiny_log()
    return Split(log, log, log, "session")


@pytest.fixture(scope="module")
def small_synth() -> Split:
    return split_by_session(make_synthetic_log(400, seed=1, n_items=40, n_users=80), seed=0)


# ------------------------------------------------------------------ replay
def test_replay_follows_log_and_rewards_hits():
    env = ReplayEnv(data=tiny_split(), state_len=2, order="sequential")
    obs, info = env.reset(seed=0)
    assert info["session"] == 0
    np.testing.assert_array_equal(obs["history"], [6, 6])
    assert obs["length"][0] == 0
    # wrong item: no reward; the state still follows the log
    obs, r, term, trunc, info = env.step(4)
    assert (r, term, info["logged_item"], info["logged_reward"], info["hit"]) == (0.0, False, 0, pytest.approx(0.2), False)
    np.testing.assert_array_equal(obs["history"], [0, 6])
    obs, r, term, _, info = env.step(1)  # hit on a purchase
    assert r == pytest.approx(1.0) and info["hit"] and not term
    np.testing.assert_array_equal(obs["history"], [0, 1])
    obs, r, term, _, info = env.step(2)
    assert r == pytest.approx(0.2) and term
    np.testing.assert_array_equal(obs["history"], [1, 2])  # window keeps the last 2
    obs, _ = env.reset()
    assert env._s == 1
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(6)


def test_replay_slate_action():
    env = ReplayEnv(data=tiny_split(), slate_size=3, order="sequential")
    assert isinstance(env.action_space, gym.spaces.MultiDiscrete)
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.array([5, 0, 3]))
    assert r == pytest.approx(0.2) and info["hit"]
    with pytest.raises(ValueError):
        env.step(np.array([0, 1]))


def test_replay_vector_matches_single_and_autoresets():
    split = tiny_split()
    venv = ReplayVectorEnv(3, data=split, state_len=2, order="sequential")
    obs, info = venv.reset(seed=0)
    np.testing.assert_array_equal(info["session"], [0, 1, 2])
    singles = [ReplayEnv(data=split, state_len=2) for _ in range(3)]
    for s, e in enumerate(singles):
        e.reset(options={"session": s})
    actions = np.array([[0, 3, 5], [1, 0, 0], [2, 0, 1], [0, 0, 2]])
    for t, a in enumerate(actions):
        obs, r, term, trunc, info = venv.step(a)
        for b, e in enumerate(singles):
            if t >= len(split.train.session(b)):
                continue  # that sub-env autoreset (checked below)
            o, rs, ts, _, _ = e.step(a[b])
            np.testing.assert_array_equal(obs["history"][b], o["history"])
            assert r[b] == pytest.approx(rs) and term[b] == ts
    # session 1 (length 2) ended at t=1, so at t=2 its step was the autoreset step (reward 0) and
    # a new session started: sequential draws continue after 0, 1, 2 with session 0
    # its first step there (t=3, action 0 = the first item of session 0) is a hit worth 0.2
    assert venv._s[1] == 0 and r[1] == pytest.approx(0.2)


def test_replay_vector_autoreset_step():
    venv = ReplayVectorEnv(1, data=tiny_split(), order="sequential")
    venv.reset(seed=0)
    for a in (0, 1, 2):
        _, r, term, _, _ = venv.step([a])
    assert term[0] and r[0] == pytest.approx(0.2)
    obs, r, term, _, info = venv.step([3])  # autoreset: action ignored, reward 0
    assert r[0] == 0 and not term[0] and obs["length"][0, 0] == 0 and info["logged_item"][0] == -1
    _, r, _, _, _ = venv.step([3])  # session 1 starts with item 3
    assert r[0] == pytest.approx(0.2)


# ------------------------------------------------------------------ slate
def slate_env(**kw):
    kw.setdefault("data", tiny_split())
    kw.setdefault("slate_size", 3)
    return SlateNextKEnv(**kw)


def test_held_out_item_first_gets_ndcg_one():
    env = slate_env(split="test", slate_size=3, state_len=5)
    obs, info = env.reset(seed=0)
    target = info["target"]
    assert target == 2 and obs["length"][0] == 2  # context of session [0 1 2]
    _, r, term, _, info = env.step(target)
    assert r == pytest.approx(1.0) and info["hit"] and not term


def test_slate_masks_penalty_and_final_metrics():
    env = slate_env(split="test", slate_size=3, lambda_ild=0.5, lambda_pop=2.0, invalid_penalty=-0.7)
    m = env.action_masks()  # valid before any reset
    assert m.shape == (N_ITEMS,) and m.all()
    env.reset(seed=0)  # history [0, 1], target 2
    np.testing.assert_array_equal(env.action_masks(), [False, False, True, True, True, True])
    total = 0.0
    _, r, _, _, info = env.step(3)
    total += r
    np.testing.assert_array_equal(env.action_masks(), [False, False, True, False, True, True])
    _, r, _, _, info = env.step(3)  # repeated: penalised, still placed
    assert r == pytest.approx(-0.7) and info["invalid"]
    _, r, term, _, info = env.step(0)  # in the history: penalised too
    assert r == pytest.approx(-0.7) and term
    slate = np.array([[3, 3, 0]])
    assert info["ild@3"] == pytest.approx(metrics.ild_at_k(slate, GENRES)[0])
    assert info["pcount@3"] == pytest.approx(metrics.pcount_at_k(slate, tiny_log().popularity())[0])
    assert info["ndcg@3"] == 0.0
    with pytest.raises(ValueError, match="outside"):
        env.reset(); env.step(N_ITEMS)
    with pytest.raises(ValueError):
        env.step(1.5)
    env2 = slate_env(split="test", mask_history=False)
    env2.reset(seed=0)
    assert env2.action_masks().all()


def fixed_scores_agent(scores):
    """A recgym agent whose scores are the same fixed vector for every state."""
    import torch

    from recgym.agents.base import Agent

    class FixedScores(Agent):
        name = "fixed-scores"

        def fit(self, train, valid=None, **kw):
            return self

        def scores(self, states, lengths):
            return torch.tensor(scores, dtype=torch.float32).expand(len(states), len(scores)).clone()

    return FixedScores(len(scores))


def test_agent_predict_in_the_slate_env_builds_its_top_k_list():
    """Agent.predict never repeats a slate item, so a greedy episode is the agent's Top-K list (no
    invalid steps); action_masks (the env's) excludes the history too; batched observations work."""
    agent = fixed_scores_agent([0.1, 0.9, 0.5, 0.8, 0.2, 0.7])  # ranking 1, 3, 5, 2, 4, 0
    env = slate_env(split="test", slate_size=3, mask_history=False)
    obs, _ = env.reset(seed=0)  # history [0, 1]
    picks = []
    for _ in range(3):
        a, _ = agent.predict(obs)
        picks.append(int(a))
        obs, r, term, _, info = env.step(a)
        assert not info.get("invalid")
    assert picks == [1, 3, 5] and term
    env = slate_env(split="test", slate_size=3)  # mask_history: 0 and 1 are not allowed
    obs, _ = env.reset(seed=0)
    picks = []
    for _ in range(3):
        a, _ = agent.predict(obs, action_masks=env.action_masks())
        picks.append(int(a))
        obs, *_ = env.step(a)
    assert picks == [3, 5, 2]
    # a batch of two slates at positions 2 and 0; a row with every action banned keeps them all
    batch = {"history": np.array([[0, N_ITEMS], [2, N_ITEMS]]), "length": np.array([[1], [1]]),
             "slate": np.array([[1, 3, N_ITEMS], [N_ITEMS] * 3]), "position": np.array([[2], [0]])}
    assert agent.predict(batch)[0].tolist() == [5, 1]
    none_left = np.zeros((2, N_ITEMS), dtype=bool)
    assert agent.predict(batch, action_masks=none_left)[0].tolist() == [1, 1]  # the unrestricted argmax
    padded = dict(batch, slate=np.array([[N_ITEMS, 3, N_ITEMS], [N_ITEMS] * 3]))  # a pad slot bans nothing
    assert agent.predict(padded)[0].tolist() == [1, 1]
    with pytest.raises(ValueError, match="action_masks has shape"):
        agent.predict(batch, action_masks=np.ones(N_ITEMS + 1, dtype=bool))


@settings(max_examples=40, deadline=None)
@given(st.data(), st.floats(0, 2), st.floats(0, 5), st.integers(2, 6))
def test_step_rewards_sum_to_list_metric(data, lam_ild, lam_pop, K):
    env = slate_env(data=tiny_split(), split="test", slate_size=K, lambda_ild=lam_ild, lambda_pop=lam_pop, mask_history=False)
    _, info = env.reset(seed=data.draw(st.integers(0, 100)))
    target = info["target"]
    slate = data.draw(st.permutations(range(N_ITEMS)))[:K]
    total = 0.0
    for a in slate:
        _, r, term, _, info = env.step(a)
        total += r
    assert term
    s = np.array([slate])
    pos = metrics.slate_positions(s, [target])
    expected = (metrics.ndcg_at_k(pos, K) + lam_ild * metrics.ild_at_k(s, GENRES)
                - lam_pop * metrics.pcount_at_k(s, tiny_log().popularity()))[0]
    assert total == pytest.approx(expected, abs=1e-9)
    assert info["reward"] == pytest.approx(expected, abs=1e-9)


def test_slate_train_contexts_are_prefixes(small_synth):
    env = SlateNextKEnv(data=small_synth, split="train", state_len=50)
    train = small_synth.train
    seqs = {tuple(train.session(s)) for s in range(train.n_sessions)}
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        h = tuple(obs["history"][: obs["length"][0]])
        assert any(s[: len(h) + 1] == h + (info["target"],) for s in seqs)


def test_slate_vector_matches_single(small_synth):
    kw = dict(data=small_synth, split="test", lambda_ild=0.3, lambda_pop=1.0, state_len=20)
    venv = SlateNextKVectorEnv(4, **kw)
    venv.reset(seed=0)
    singles = [SlateNextKEnv(**kw) for _ in range(4)]
    for b, e in enumerate(singles):
        e.reset(options={"history": venv._hist[b, : venv._hlen[b]], "target": venv._target[b]})
    rng = np.random.default_rng(0)
    for t in range(10):
        masks = venv.action_masks()
        for b, e in enumerate(singles):
            np.testing.assert_array_equal(masks[b], e.action_masks())
        a = rng.integers(0, venv.n_items, size=4)
        obs, r, term, _, info = venv.step(a)
        for b, e in enumerate(singles):
            o, rs, ts, _, i = e.step(int(a[b]))
            assert r[b] == pytest.approx(rs) and term[b] == ts
            np.testing.assert_array_equal(obs["slate"][b], o["slate"])
    assert term.all() and np.allclose(info["ndcg@10"], [e.reward_fn.list_metrics(e._slate[None], [e._target])["ndcg@10"][0] for e in singles])
    obs, r, term, _, _ = venv.step(np.zeros(4, dtype=np.int64))  # autoreset step
    assert (r == 0).all() and (obs["position"] == 0).all()


# ------------------------------------------------------------------ MF user
@pytest.fixture(scope="module")
def mf_env():
    return MFUserEnv(source="synthetic", n_users=120, n_items=60, ratings_per_user=15, horizon=2, state_len=30,
                     mf_config={"dim": 8, "n_iters": 8, "baseline": 1.0})


def test_mf_user_rewards_and_horizon(mf_env):
    env = mf_env
    obs, info = env.reset(seed=3)
    c, u = info["context"], info["user"]
    logged = env.targets[c]
    n0 = obs["length"][0]
    obs, r, term, _, info = env.step(int(logged))
    assert not term and info["hit"] and info["observed_reward"] == pytest.approx(env.target_rewards[c])
    assert r == pytest.approx(info["imputed_reward"])
    assert r == pytest.approx(float(np.interp(env.mf.predict([u], [logged])[0], [1, 2, 3, 4, 5], [0, 0, .5, 1, 1])))
    assert 0.2 <= info["true_reward"] <= 1.0
    assert obs["length"][0] == min(n0 + 1, 30) and obs["history"][obs["length"][0] - 1] == logged
    _, _, term, _, info = env.step(int(logged))
    assert term and info["logged_item"] == -1 and info["observed_reward"] == 0.0
    rep = env.report()
    assert rep["mean_unobserved"] < rep["mean_observed"] and np.isfinite(rep["rmse_heldout"])
    # popularity lean of the imputed top-10, recomputed from the imputer over every test user
    test = env.split_data.test
    users = np.unique(test.users)
    top = np.argsort(-env.mf.predict_all(users), axis=1, kind="stable")[:, :10]
    counts = np.bincount(top.ravel(), minlength=env.n_items)
    pop = np.bincount(env.split_data.train.items, minlength=env.n_items)
    assert rep["top10_pop_corr"] == pytest.approx(np.corrcoef(rankdata(pop), rankdata(counts))[0, 1])
    assert rep["top10_pop_corr"] > 0.3  # the MNAR world's imputer favours what users rated often
    assert env.report(max_users=10)["top10_pop_corr"] != rep["top10_pop_corr"]


def test_mf_user_true_reward_mode(mf_env, tmp_path):
    p = tmp_path / "mf.npz"
    env = MFUserEnv(source="synthetic", n_users=120, n_items=60, ratings_per_user=15, reward="true", state_len=30,
                    mf_config={"dim": 8, "n_iters": 8, "baseline": 1.0}, mf_path=str(p))
    assert p.exists()
    env.reset(seed=0)
    _, r, term, _, info = env.step(0)
    assert term and r == pytest.approx(info["true_reward"])
    with pytest.raises(ValueError, match="Synthetic world"):
        MFUserEnv(data=tiny_log(), reward="true")


# ------------------------------------------------------------------ registration and checker
def test_every_id_registered_with_vector_entry():
    ids = env_ids()
    assert len(ids) == 15  # 12 dataset ids + 3 generic ones (data=)
    for env_id in ids:
        assert env_id in gym.registry
    assert gym.spec("recgym/Replay-RC15-v0").vector_entry_point is not None


SYNTH_KW = {
    "recgym/Replay-Synthetic-v0": dict(n_items=40, n_users=60),
    "recgym/SlateNextK-Synthetic-v0": dict(n_items=40, n_users=60, state_len=30, lambda_ild=0.2, lambda_pop=1.0),
    "recgym/MFUser-Synthetic-v0": dict(n_items=40, n_users=60, ratings_per_user=10, mf_config={"dim": 4, "n_iters": 3}),
}


@pytest.mark.parametrize("env_id", sorted(SYNTH_KW))
def test_check_env_synthetic(env_id):
    env = gym.make(env_id, **SYNTH_KW[env_id])
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    for v in obs.values():
        assert v.dtype == np.int64  # integer Box ids, never MultiDiscrete
    assert not any(isinstance(s, gym.spaces.MultiDiscrete) for s in env.observation_space.spaces.values())


@pytest.mark.parametrize("env_id", ["recgym/Replay-Synthetic-v0", "recgym/SlateNextK-Synthetic-v0"])
def test_make_vec(env_id):
    venv = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", **SYNTH_KW[env_id])
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, _ = venv.reset(seed=0)
    assert venv.observation_space.contains(obs)
    for _ in range(12):
        obs, r, term, trunc, info = venv.step(venv.action_space.sample())
        assert venv.observation_space.contains(obs) and r.shape == (3,)
    o1, _ = venv.reset(seed=5)
    o2, _ = venv.reset(seed=5)
    np.testing.assert_array_equal(o1["history"], o2["history"])


DATA = os.environ.get("RECGYM_DATA_DIR")
needs_loaders = pytest.mark.skipif(not hasattr(__import__("recgym.data").data, "load_split"),
                                   reason="recgym.data.load_split not available")


@pytest.mark.realdata
@needs_loaders
@pytest.mark.skipif(not DATA, reason="RECGYM_DATA_DIR not set")
@pytest.mark.parametrize("env_id,kw", [
    ("recgym/Replay-ML100K-v0", {}),
    ("recgym/Replay-YooChoose100K-v0", {}),
    ("recgym/SlateNextK-ML100K-v0", {"lambda_ild": 0.2}),
    ("recgym/MFUser-ML100K-v0", {"mf_config": {"dim": 8, "n_iters": 3}}),
])
def test_check_env_real_data(env_id, kw):
    env = gym.make(env_id, **kw)
    check_env(env.unwrapped, skip_render_check=True)


def write_ml1m(root: Path, n_users=30, n_items=25, seed=0):
    """A tiny ML-1M in its raw format: ratings.dat (UserID::MovieID::Rating::Timestamp), movies.dat."""
    rng = np.random.default_rng(seed)
    d = root / "ml-1m"
    d.mkdir(parents=True)
    genres = ["Action", "Comedy", "Drama", "Horror"]
    with open(d / "movies.dat", "w", encoding="latin-1") as f:
        for i in range(1, n_items + 1):
            g = "|".join(sorted(set(rng.choice(genres, size=rng.integers(1, 3)))))
            f.write(f"{i}::Movie {i} (1999)::{g}\n")
    with open(d / "ratings.dat", "w") as f:
        for u in range(1, n_users + 1):
            for t, i in enumerate(rng.choice(np.arange(1, n_items + 1), size=8, replace=False)):
                f.write(f"{u}::{i}::{rng.integers(1, 6)}::{978300000 + 10 * t}\n")
    return root


def write_netflix(root: Path, n_users=30, n_items=12, seed=0):
    """A tiny Netflix Prize training_set: mv_XXXXXXX.txt files ("MovieID:" then CustomerID,Rating,Date)."""
    rng = np.random.default_rng(seed)
    d = root / "netflix" / "training_set"
    d.mkdir(parents=True)
    for m in range(1, n_items + 1):
        users = rng.choice(np.arange(1, n_users + 1), size=n_users * 2 // 3, replace=False)
        lines = [f"{m}:"] + [f"{u},{rng.integers(1, 6)},2005-0{1 + (u + m) % 9}-1{u % 10}" for u in users]
        (d / f"mv_{m:07d}.txt").write_text("\n".join(lines) + "\n")
    return root


@needs_loaders
def test_slate_ml1m_from_raw_files(tmp_path, monkeypatch):
    monkeypatch.setenv("RECGYM_DATA_DIR", str(write_ml1m(tmp_path)))
    env = gym.make("recgym/SlateNextK-ML1M-v0", lambda_ild=0.2)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.ctx.genres is not None


@needs_loaders
def test_netflix_iar_from_raw_files(tmp_path, monkeypatch):
    monkeypatch.setenv("RECGYM_DATA_DIR", str(write_netflix(tmp_path)))
    env = gym.make("recgym/NetflixIAR-v0", mf_config={"dim": 4, "n_iters": 3})
    check_env(env.unwrapped, skip_render_check=True)


@needs_loaders
def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="RECGYM_DATA_DIR|download"):
        gym.make("recgym/Replay-RetailRocket-v0", data_dir=str(tmp_path))
