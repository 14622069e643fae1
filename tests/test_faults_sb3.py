"""Fault cases of SB3 checkpoints: a crafted zip never runs code on load (recgym.sb3.load_sb3)."""

from __future__ import annotations

import base64
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch

from recgym.data import SessionLog
from recgym.envs.replay import ReplayEnv
from recgym.envs.slate_nextk import SlateNextKEnv
from recgym.errors import BadInputError
from recgym.sb3 import load_sb3, pickled_entries

pytest.importorskip("sb3_contrib")
from stable_baselines3 import PPO  # noqa: E402


class _Touch:
    """Unpickling this creates ``path`` (``open(path, "w")``): the stand-in for arbitrary code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _log() -> SessionLog:
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 6, 60)
    items = rng.integers(0, 20, lengths.sum())
    n = len(items)
    return SessionLog(offsets=np.r_[0, np.cumsum(lengths)], items=items, rewards=np.ones(n), kinds=np.zeros(n),
                      timestamps=np.zeros(n), n_items=20, name="tiny")


@pytest.fixture(scope="module")
def env():
    return SlateNextKEnv(data=_log(), slate_size=3, state_len=5)


@pytest.fixture(scope="module")
def ppo_zip(env, tmp_path_factory):
    path = tmp_path_factory.mktemp("sb3") / "ppo.zip"
    PPO("MultiInputPolicy", env, n_steps=8, batch_size=8, device="cpu", seed=0).save(path)
    return path


def _poison(src, dst, key, marker):
    """Copy the zip ``src`` to ``dst`` with ``data[key]`` replaced by a pickle that creates ``marker``."""
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    data = json.loads(members["data"])
    entry = data.get(key, {":type:": "<class 'object'>"})  # keep the recorded type: the attacker can
    data[key] = {**entry, ":serialized:": base64.b64encode(pickle.dumps(_Touch(marker))).decode()}
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return dst


def test_a_safe_load_predicts_as_the_saved_model(env, ppo_zip):
    obs, _ = env.reset(seed=0)
    model = load_sb3(ppo_zip, env)
    ref = PPO.load(ppo_zip, device="cpu")  # trusted: the file was made here
    assert model.predict(obs, deterministic=True)[0] == ref.predict(obs, deterministic=True)[0]
    for a, b in zip(model.policy.state_dict().values(), ref.policy.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_poisoned_space_is_replaced_not_unpickled(env, ppo_zip, tmp_path):
    marker = tmp_path / "pwned"
    bad = _poison(ppo_zip, tmp_path / "bad.zip", "observation_space", marker)
    assert "observation_space" in pickled_entries(bad)
    model = load_sb3(bad, env)
    assert not marker.exists()
    assert model.observation_space is env.observation_space


def test_a_poisoned_unknown_entry_is_refused_naming_the_zip(env, ppo_zip, tmp_path):
    marker = tmp_path / "pwned"
    bad = _poison(ppo_zip, tmp_path / "bad.zip", "my_extra", marker)
    with pytest.raises(BadInputError, match=r"bad\.zip: entry 'my_extra' .* is a pickled object and would run code "
                                            r"when loaded; pass trust_pickle=True") as e:
        load_sb3(bad, env)
    assert not marker.exists() and "\n" not in str(e.value)


def test_trust_pickle_is_what_runs_the_code(env, ppo_zip, tmp_path):
    """The crafted zip really is harmful under SB3's plain load: the test above is meaningful."""
    marker = tmp_path / "pwned"
    bad = _poison(ppo_zip, tmp_path / "bad.zip", "my_extra", marker)
    load_sb3(bad, env, trust_pickle=True)
    assert marker.exists()


def test_not_a_zip_and_a_space_mismatch_are_one_line(env, ppo_zip, tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"nope")
    with pytest.raises(BadInputError, match=r"junk\.zip: not a stable-baselines3 checkpoint"):
        load_sb3(junk, env)
    other = ReplayEnv(data=_log(), slate_size=2)  # MultiDiscrete actions
    with pytest.raises(BadInputError, match=r"ppo\.zip: the model's action_space is .*Discrete'>, the env's is .*MultiDiscrete"):
        load_sb3(ppo_zip, other)
