#!/usr/bin/env python
"""Run a recgym agent or a stable-baselines3 checkpoint in a recgym env.

    python scripts/sim_eval.py --agent pop --env recgym/SlateNextK-Synthetic-v0 --episodes 200 --seed 0
    python scripts/sim_eval.py --agent runs/ppo.zip --env recgym/SlateNextK-Synthetic-v0

``--agent NAME`` builds the registry agent and fits it on the env's training split; ``--agent PATH``
loads a saved recgym agent (``.pt``) or an SB3 checkpoint (``.zip``: PPO, MaskablePPO or DQN).
Prints the mean return, the mean of the list metrics of the final ``info`` (slate env) and, on
the Synthetic MF user env, the true expected reward of the chosen items. The episode loop and the
greedy, mask-respecting action of a recgym agent are ``recgym.evaluate.run_episodes`` /
``greedy_action``. Exit status (``recgym.errors``): 0 success, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from recgym.errors import BadInputError, cli
from recgym.evaluate import greedy_action, run_episodes


def load_policy(spec: str, env: gym.Env, seed: int) -> Any:
    """A recgym ``Agent`` or an SB3 model from a name or a path."""
    p = Path(spec)
    if p.suffix == ".zip" and p.exists():
        from recgym.sb3 import load_sb3

        return load_sb3(p, env)  # never unpickles the zip (RECGYM_TRUST_PICKLE=1 to allow)
    from recgym.agents.registry import get_agent_class, make_agent

    if p.exists():
        payload = torch.load(p, weights_only=True, map_location="cpu")
        return get_agent_class(payload["agent"]).load(p)
    from recgym.envs.common import load_env_split

    u = env.unwrapped
    split = getattr(u, "split_data", None)
    if split is None:
        kw = dict(env.spec.kwargs)
        split = load_env_split(kw.pop("source"), data=kw.get("data"), data_dir=kw.get("data_dir"))
    try:
        agent = make_agent(spec, u.n_items, seed=seed)
    except (TypeError, ValueError) as e:
        raise BadInputError(str(e)) from e
    return agent.fit(split.train, split.valid)


def act(policy: Any, obs: dict, env: gym.Env) -> int:
    masks_fn = getattr(env.unwrapped, "action_masks", None)
    if hasattr(policy, "scores"):  # recgym agent: invalid items masked before the argmax
        return greedy_action(policy, obs, None if masks_fn is None else masks_fn())
    if masks_fn is not None and "Maskable" in type(policy).__name__:
        a, _ = policy.predict(obs, action_masks=masks_fn(), deterministic=True)
    else:
        a, _ = policy.predict(obs, deterministic=True)
    return int(np.asarray(a).reshape(-1)[0])


@cli("sim_eval")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", required=True, help="registry name, module:Class, or a checkpoint path")
    ap.add_argument("--env", required=True, help="a recgym env id, e.g. recgym/SlateNextK-Synthetic-v0")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--env-kwargs", default="{}", help="JSON dict of env kwargs")
    args = ap.parse_args(argv)
    import recgym  # noqa: F401  (registers the env ids)

    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as e:
        raise BadInputError(f"--env-kwargs: not JSON ({e})") from e
    if args.env not in gym.registry:
        raise BadInputError(f"--env: unknown env id {args.env!r}")
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    env = gym.make(args.env, **env_kwargs)
    policy = load_policy(args.agent, env, args.seed)
    out = {"env": args.env, "agent": args.agent,
           **run_episodes(env, lambda obs: act(policy, obs, env), args.episodes, args.seed)}
    out["episodes"] = args.episodes
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
