"""stable-baselines3 trains on recgym envs; the MF imputer ranks policies like the true world does."""

import gymnasium as gym
import numpy as np
import pytest
from scipy.stats import spearmanr

import recgym  # noqa: F401
from recgym.envs.mf_user import MFUserEnv
from studies.iar_vs_truth import diverse_policies

SLATE_KW = dict(n_items=30, n_users=50, n_sessions=300, state_len=20, lambda_ild=0.2, lambda_pop=1.0)


@pytest.mark.slow
def test_ppo_multiinput_on_slate():
    from stable_baselines3 import PPO

    env = gym.make("recgym/SlateNextK-Synthetic-v0", **SLATE_KW)
    model = PPO("MultiInputPolicy", env, n_steps=512, batch_size=128, n_epochs=2, seed=0, device="cpu")
    model.learn(2048)
    assert model.num_timesteps >= 2048
    obs, _ = env.reset(seed=0)
    a, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(a))


@pytest.mark.slow
def test_maskable_ppo_on_slate_never_repeats():
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks

    env = gym.make("recgym/SlateNextK-Synthetic-v0", **SLATE_KW)
    model = MaskablePPO("MultiInputPolicy", env, n_steps=512, batch_size=128, n_epochs=2, seed=0, device="cpu")
    model.learn(2048)
    assert model.num_timesteps >= 2048
    # with masks, a sampled slate never holds an invalid item
    obs, _ = env.reset(seed=1)
    for _ in range(10):
        a, _ = model.predict(obs, action_masks=get_action_masks(env), deterministic=False)
        obs, r, term, _, info = env.step(int(a))
        assert not info["invalid"]
    assert term and len(set(obs["slate"].tolist())) == 10


@pytest.mark.slow
def test_dqn_on_replay():
    from stable_baselines3 import DQN

    env = gym.make("recgym/Replay-Synthetic-v0", n_items=30, n_users=50, n_sessions=300)
    model = DQN("MultiInputPolicy", env, learning_starts=256, buffer_size=5000, train_freq=8, seed=0, device="cpu")
    model.learn(2048)
    assert model.num_timesteps >= 2048


# ------------------------------------------------------------------ the imputer ranks policies
@pytest.mark.slow
def test_imputer_ranks_policies_like_the_truth():
    # a world whose purchase probabilities spread (offset 0.5) and whose quality tracks popularity,
    # so the five policies' true values differ by more than the sampling noise
    env = MFUserEnv(source="synthetic", n_users=400, n_items=150, ratings_per_user=20, state_len=50,
                    purchase_offset=0.5, quality_pop_corr=0.6)
    pol = diverse_policies(env, np.random.default_rng(0))
    iar, true = [], []
    for name, a in pol.items():
        iar.append(env.imputed_reward(env.users, a).mean())
        true.append(env.world.expected_reward(env.users, env.hist, env.hlen, a).mean())
    rho = spearmanr(iar, true).statistic
    assert rho >= 0.8, dict(zip(pol, zip(np.round(iar, 3), np.round(true, 3))))
    assert np.argmax(true) == list(pol).index("oracle")
