"""recgym: train and compare reinforcement-learning recommendation agents offline."""

__version__ = "0.1.0"

from recgym.envs.registration import register_envs  # noqa: E402  (registers the recgym/* env ids)

register_envs()
