"""Fault cases of the environments: bad actions, steps after the end, bad num_envs and reward
weights are refused in one line naming the argument; nothing is stepped."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded

import recgym  # noqa: F401  (registers the env ids)
from recgym.envs.replay import ReplayEnv, ReplayVectorEnv
from recgym.envs.rewards import SlateReward
from recgym.envs.slate_nextk import SlateNextKEnv, SlateNextKVectorEnv
from recgym.errors import BadInputError

SLATE = dict(slate_size=3, state_len=5)


@pytest.mark.parametrize("make", [lambda: ReplayVectorEnv(2), lambda: SlateNextKVectorEnv(2, **SLATE)],
                         ids=["replay", "slate_nextk"])
def test_vector_envs_refuse_float_actions_like_the_single_env(make):
    venv = make()
    obs, _ = venv.reset(seed=0)
    name = type(venv).__name__
    with pytest.raises(BadInputError, match=rf"{name}: actions must be 2 integer item ids in \[0, \d+\), got \[1\.7, 2\.2\]"):
        venv.step([1.7, 2.2])
    with pytest.raises(BadInputError, match=rf"{name}: actions must be 2 integer item ids"):
        venv.step(np.array([1.0, 2.0]))  # integral floats too: the single env refuses them
    # nothing was stepped: a valid step now sees the reset state
    after, *_ = venv.step(np.array([0, 1]))
    assert after["length"].shape[0] == 2


def test_single_envs_refuse_float_actions():
    for env in (ReplayEnv(), SlateNextKEnv(**SLATE)):
        env.reset(seed=0)
        with pytest.raises(BadInputError, match=rf"{type(env).__name__}: action must be one integer item id"):
            env.step(1.7)


def test_replay_env_refuses_a_step_after_the_episode_ended():
    env = ReplayEnv()
    env.reset(seed=0)
    terminated = False
    while not terminated:
        _, _, terminated, _, _ = env.step(0)
    with pytest.raises(ResetNeeded, match=r"ReplayEnv: the episode has ended; call reset\(\) before step\(\)"):
        env.step(0)
    env.reset(seed=1)
    env.step(0)  # a reset clears it


def test_slate_env_refuses_a_step_after_the_slate_is_full():
    env = SlateNextKEnv(**SLATE)
    env.reset(seed=0)
    for a in range(3):
        env.step(a)
    with pytest.raises(ResetNeeded, match=r"SlateNextKEnv: the episode has ended"):
        env.step(4)


@pytest.mark.parametrize("num_envs", [0, 2.5, -1, "2"])
@pytest.mark.parametrize("env_id", ["recgym/Replay-Synthetic-v0", "recgym/SlateNextK-Synthetic-v0"])
def test_make_vec_refuses_a_bad_num_envs(env_id, num_envs):
    with pytest.raises(BadInputError, match=rf"VectorEnv: num_envs must be a positive integer, got {num_envs!r}"):
        gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")


@pytest.mark.parametrize("value", ["0.1", math.nan, math.inf, None])
def test_lambda_ild_must_be_a_finite_number(value):
    with pytest.raises(BadInputError, match=rf"SlateReward: lambda_ild must be a finite number, got {value!r}"):
        SlateReward(3, lambda_ild=value, genres=np.eye(4))
    with pytest.raises(BadInputError, match=r"SlateReward: lambda_ild must be a finite number"):
        SlateNextKEnv(lambda_ild=value, **SLATE)
    with pytest.raises(BadInputError, match=r"SlateReward: lambda_pop must be a finite number"):
        SlateNextKVectorEnv(2, lambda_pop=value, **SLATE)
