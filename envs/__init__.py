"""recgym's Gymnasium environments: logged replay, the MF user simulator and the Next-K slate env.

Ids (registered by ``import recgym``): ``recgym/Replay-{Synthetic,ML100K,YooChoose100K,RetailRocket,RC15}-v0``,
``recgym/NetflixIAR-v0``, ``recgym/MFUser-{ML100K,Synthetic}-v0``,
``recgym/SlateNextK-{ML1M,ML100K,Steam,Synthetic}-v0``; on your own data (``data=`` a ``Split``,
a ``SessionLog`` or a file with ``columns=``): ``recgym/{Replay,MFUser,SlateNextK}-v0``. See ``docs/envs.md``.
"""

from recgym.envs.registration import env_ids, register_envs

__all__ = ["env_ids", "register_envs"]


def __getattr__(name: str):
    # the env classes load lazily, so `import recgym` (which registers the ids) stays light
    lazy = {"ReplayEnv": "recgym.envs.replay", "ReplayVectorEnv": "recgym.envs.replay", "SlateNextKEnv": "recgym.envs.slate_nextk",
            "SlateNextKVectorEnv": "recgym.envs.slate_nextk", "MFUserEnv": "recgym.envs.mf_user", "SlateReward": "recgym.envs.rewards"}
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
