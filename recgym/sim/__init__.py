"""Simulation: the synthetic ground-truth world (`World`) and the matrix-factorisation imputer."""

from recgym.sim.world import CLICK_REWARD, PURCHASE_REWARD, World, WorldConfig, make_synthetic_log

__all__ = ["CLICK_REWARD", "PURCHASE_REWARD", "World", "WorldConfig", "make_synthetic_log"]
