"""recgym: train and compare reinforcement-learning recommendation agents offline."""

__version__ = "0.1.0"
