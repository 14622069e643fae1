"""MFUserEnv's contexts option: episodes from the logged sessions' states vs the rating log's held-out contexts."""

from __future__ import annotations

import numpy as np
import pytest

from recgym.data import Split
from recgym.data.session_log import SessionLog
from recgym.envs.common import logged_contexts
from recgym.envs.mf_user import MFUserEnv
from recgym.errors import BadInputError
from recgym.sim.mf import rating_to_reward

N = 6  # items; the padding id
MF = {"dim": 2, "n_iters": 3, "baseline": 0.0}


def log_of(sessions: list[list[int]], users: list[int] | None, name: str) -> SessionLog:
    items = np.array([i for s in sessions for i in s], dtype=np.int64)
    rewards = np.where(items % 2 == 0, 1.0, 0.2).astype(np.float32)
    offsets = np.r_[0, np.cumsum([len(s) for s in sessions])]
    return SessionLog(offsets=offsets, items=items, rewards=rewards, kinds=(rewards == 1.0).astype(np.int8),
                      timestamps=np.arange(len(items), dtype=np.float64), n_items=N,
                      users=None if users is None else np.array(users), name=name)


def tiny_split(valid_users: list[int] | None = (2, 0)) -> Split:
    """Users 0..2 in training; two validation sessions [4 1 3] (user 2) and [5] (user 0)."""
    train = log_of([[0, 1, 2], [3, 4], [5, 0, 1, 2]], [0, 1, 2], "t:train")
    valid = log_of([[4, 1, 3], [5]], None if valid_users is None else list(valid_users), "t:valid")
    test = log_of([[2, 2]], [1], "t:test")
    return Split(train, valid, test, "session")


def test_logged_contexts_by_hand():
    log = tiny_split().valid
    h, n, t, ev = logged_contexts(log, 2, "session")  # every event; its session's items before it
    np.testing.assert_array_equal(h, [[N, N], [4, N], [4, 1], [N, N]])
    np.testing.assert_array_equal(n, [0, 1, 2, 0])
    np.testing.assert_array_equal(t, [4, 1, 3, 5])
    np.testing.assert_array_equal(ev, [0, 1, 2, 3])
    h, n, t, ev = logged_contexts(log, 1, "loo")  # the last event of each session; window of 1
    np.testing.assert_array_equal(h, [[1], [N]])
    np.testing.assert_array_equal(n, [1, 0])
    np.testing.assert_array_equal(t, [3, 5])
    np.testing.assert_array_equal(ev, [2, 3])


def test_logged_episode_starts_from_the_session_prefix_and_pays_the_imputed_reward():
    env = MFUserEnv(data=tiny_split(), contexts="logged", state_len=3, horizon=2, mf_config=MF)
    assert env.split == "valid" and env.n_contexts == 4
    obs, info = env.reset(seed=0, options={"context": 2})  # the 3rd event of valid session 0 (user 2)
    np.testing.assert_array_equal(obs["history"], [4, 1, N])
    assert obs["length"][0] == 2 and info["user"] == 2
    _, r, term, _, info = env.step(3)  # the logged item
    assert not term and info["hit"] and info["logged_item"] == 3 and info["observed_reward"] == pytest.approx(0.2)
    assert r == pytest.approx(float(env.mf.predict([2], [3])[0]))  # identity scheme: the imputed value itself
    obs, r, term, _, info = env.step(0)  # step 2: the user consumed item 3; no logged item any more
    assert term and info["logged_item"] == -1 and info["observed_reward"] == 0.0
    assert r == pytest.approx(float(rating_to_reward(env.mf.predict([2], [0]), "identity")[0]))
    obs, info = env.reset(options={"context": 3})  # valid session 1 (user 0) starts empty
    assert obs["length"][0] == 0 and (obs["history"] == N).all() and info["user"] == 0
    rep = env.report()
    assert rep["logged_contexts"] == 1.0 and rep["n_contexts"] == 4.0 and rep["cold_user_share"] == 0.0


def test_ratings_contexts_unchanged_and_reported():
    env = MFUserEnv(data=tiny_split(), contexts="ratings", state_len=3, mf_config=MF)
    assert env.split == "test" and env.n_contexts == 1  # the test session without its last event
    obs, info = env.reset(options={"context": 0})
    np.testing.assert_array_equal(obs["history"], [2, N, N])
    assert info["user"] == 1 and env.report()["logged_contexts"] == 0.0


def test_bad_contexts_input_says_what_is_wrong():
    with pytest.raises(BadInputError, match="no valid session"):
        MFUserEnv(data=Split(tiny_split().train, log_of([], [], "t:valid"), tiny_split().test, "session"),
                  contexts="logged", mf_config=MF)
    with pytest.raises(BadInputError, match="needs the user of every session"):
        MFUserEnv(data=tiny_split(valid_users=None), contexts="logged", mf_config=MF)
    with pytest.raises(BadInputError, match="never the test sessions"):
        MFUserEnv(data=tiny_split(), contexts="logged", split="test", mf_config=MF)
    with pytest.raises(BadInputError, match="contexts must be one of"):
        MFUserEnv(data=tiny_split(), contexts="sessions", mf_config=MF)


def test_cold_users_are_reported_and_warned():
    with pytest.warns(UserWarning, match="no rating in the imputer's training data"):
        env = MFUserEnv(data=tiny_split(valid_users=(7, 7)), contexts="logged", mf_config=MF)
    assert env.report()["cold_user_share"] == 1.0


def test_synthetic_logged_contexts_are_the_job_split_validation_sessions():
    from recgym.data import load_split

    data = {"n_sessions": 60, "world_seed": 3, "n_users": 30, "n_items": 25}
    kw = MFUserEnv.job_kwargs(dataset="synthetic", seed=1, data_params=data, data_dir=None, download=False)
    assert kw["split"] is None and kw["seed"] == 1 and kw["world_seed"] == 3
    env = MFUserEnv(**kw, contexts="logged", ratings_per_user=5, state_len=40, mf_config={"dim": 4, "n_iters": 3})
    valid = load_split("synthetic", seed=1, **data).valid  # the harness job's own split
    h, n, t, ev = logged_contexts(valid, 40, "session")
    np.testing.assert_array_equal(env.hist, h)
    np.testing.assert_array_equal(env.targets, t)
    np.testing.assert_array_equal(env.users, np.repeat(valid.users, valid.lengths))
    # the imputer is the rating-log one of the World, whatever the contexts
    ratings = MFUserEnv(**{**kw, "split": None}, contexts="ratings", ratings_per_user=5, state_len=40,
                        mf_config={"dim": 4, "n_iters": 3})
    assert ratings.split == "test" and ratings.world.seed == env.world.seed == 3
    np.testing.assert_allclose(ratings.mf.predict_all(np.arange(30)), env.mf.predict_all(np.arange(30)))
    _, info = env.reset(options={"context": 5})
    _, r, _, _, info = env.step(int(env.targets[5]))
    assert r == pytest.approx(float(rating_to_reward(env.mf.predict([info["user"]], [env.targets[5]]), "rating")[0]))
    assert 0.2 <= info["true_reward"] <= 1.0


def test_default_contexts_are_logged_and_the_lpi_netflix_id_keeps_its_paper_setting():
    import gymnasium as gym

    import recgym  # noqa: F401  (registers the ids)
    from recgym.envs.mf_user import DEFAULT_CONTEXTS

    assert DEFAULT_CONTEXTS == "logged" and MFUserEnv(data=tiny_split(), mf_config=MF).contexts == "logged"
    assert gym.spec("recgym/NetflixIAR-v0").kwargs["contexts"] == "ratings"
    assert "contexts" not in gym.spec("recgym/MFUser-ML100K-v0").kwargs
