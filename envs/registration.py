"""Registration of every recgym environment id under the ``recgym`` namespace.

``import recgym`` calls :func:`register_envs` (and so does ``gym.make("recgym:recgym/...")``, which
imports ``recgym`` first). Entry points are strings, so registering imports no env module and
loads no data; data is loaded (and cached per process) when an env is made.
"""

from __future__ import annotations

import gymnasium as gym

# id suffix -> recgym data source name
REPLAY = {"Synthetic": "synthetic", "ML100K": "ml-100k", "YooChoose100K": "yoochoose-100k",
          "RetailRocket": "retailrocket", "RC15": "rc15"}
SLATE = {"ML1M": "ml-1m", "ML100K": "ml-100k", "Steam": "steam", "Synthetic": "synthetic"}
MF_USER = {"NetflixIAR": "netflix", "MFUser-ML100K": "ml-100k", "MFUser-Synthetic": "synthetic"}
MF_USER_KWARGS = {"NetflixIAR": {"contexts": "ratings"}}  # the LPI paper's held-out rating contexts
# generic ids on your own data: gym.make("recgym/Replay-v0", data=log | split | "file.csv", columns=...)
GENERIC = {"Replay": ("recgym.envs.replay:ReplayEnv", "recgym.envs.replay:ReplayVectorEnv"),
           "MFUser": ("recgym.envs.mf_user:MFUserEnv", "recgym.envs.mf_user:MFUserVectorEnv"),
           "SlateNextK": ("recgym.envs.slate_nextk:SlateNextKEnv", "recgym.envs.slate_nextk:SlateNextKVectorEnv")}


def env_ids() -> dict[str, dict]:
    """Every recgym id with its entry points and default kwargs."""
    out: dict[str, dict] = {}
    for name, src in REPLAY.items():
        out[f"recgym/Replay-{name}-v0"] = dict(entry_point="recgym.envs.replay:ReplayEnv",
                                               vector_entry_point="recgym.envs.replay:ReplayVectorEnv",
                                               kwargs={"source": src})
    for name, src in SLATE.items():
        out[f"recgym/SlateNextK-{name}-v0"] = dict(entry_point="recgym.envs.slate_nextk:SlateNextKEnv",
                                                   vector_entry_point="recgym.envs.slate_nextk:SlateNextKVectorEnv",
                                                   kwargs={"source": src})
    for name, src in MF_USER.items():
        out[f"recgym/{name}-v0"] = dict(entry_point="recgym.envs.mf_user:MFUserEnv",
                                        vector_entry_point="recgym.envs.mf_user:MFUserVectorEnv",
                                        kwargs={"source": src, **MF_USER_KWARGS.get(name, {})})
    for name, (entry, vector) in GENERIC.items():
        out[f"recgym/{name}-v0"] = dict(entry_point=entry, kwargs={"source": None},
                                        **({"vector_entry_point": vector} if vector else {}))
    return out


def register_envs() -> list[str]:
    """Register every recgym id (idempotent: ids already registered are left alone). Returns the ids."""
    ids = env_ids()
    for env_id, spec in ids.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, **spec)
    return list(ids)
