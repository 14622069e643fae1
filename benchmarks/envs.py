"""Env throughput benchmark (``python -m benchmarks envs``): steps/s single and vectorised."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np


def _time(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return time.perf_counter() - t0


def bench_envs(num_envs: int = 256, steps: int = 200, single_steps: int = 2000, print_fn=print) -> dict[str, float]:
    """Steps/s of each Synthetic env, single (random actions, with resets) and vectorised
    (``num_envs`` sub-envs, ``steps`` batched steps). Slate figures count item-steps (one per
    sub-env per step). Returns ``{name: steps_per_s}``."""
    import recgym  # noqa: F401  (registers the ids)

    out: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for env_id in ("recgym/Replay-Synthetic-v0", "recgym/SlateNextK-Synthetic-v0", "recgym/MFUser-Synthetic-v0"):
        env = gym.make(env_id).unwrapped
        env.reset(seed=0)
        n_items = env.action_space.n
        acts = rng.integers(0, n_items, size=single_steps)

        def run_single(n, env=env, acts=acts):
            for a in acts[:n]:
                _, _, term, trunc, _ = env.step(int(a))
                if term or trunc:
                    env.reset()

        out[f"{env_id} single"] = single_steps / _time(run_single, single_steps)
        if gym.spec(env_id).vector_entry_point is None:
            continue
        venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
        venv.reset(seed=0)
        vacts = rng.integers(0, n_items, size=(steps, num_envs))

        def run_vec(n, venv=venv, vacts=vacts):
            for a in vacts[:n]:
                venv.step(a)

        out[f"{env_id} vector x{num_envs}"] = steps * num_envs / _time(run_vec, steps)
    for k, v in out.items():
        print_fn(f"{k:<55s} {v:>12,.0f} steps/s")
    return out


if __name__ == "__main__":
    bench_envs()
