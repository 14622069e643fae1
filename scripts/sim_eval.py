"""Run a recgym agent or a stable-baselines3 checkpoint in a recgym env.

    python scripts/sim_eval.py --agent pop --env recgym/SlateNextK-Synthetic-v0 --episodes 200 --seed 0
    python scripts/sim_eval.py --agent runs/ppo.zip --env recgym/SlateNextK-Synthetic-v0

``--agent NAME`` builds the registry agent and fits it on the env's training split; ``--agent PATH``
loads a saved recgym agent (``.pt``) or an SB3 checkpoint (``.zip``: PPO, MaskablePPO or DQN).
Prints the mean return, the mean of the list metrics of the final ``info`` (slate env) and, on
the Synthetic MF user env, the true expected reward of the chosen items.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch


def load_policy(spec: str, env: gym.Env, seed: int):
    """A recgym ``Agent`` or an SB3 model from a name or a path."""
    p = Path(spec)
    if p.suffix == ".zip" and p.exists():
        from sb3_contrib import MaskablePPO
        from stable_baselines3 import DQN, PPO

        errors = []
        for cls in (MaskablePPO, PPO, DQN):
            try:
                return cls.load(p, device="cpu")
            except Exception as e:  # the checkpoint names its class; try the next
                errors.append(f"{cls.__name__}: {e}")
        raise ValueError(f"{p}: not an SB3 PPO/MaskablePPO/DQN checkpoint ({'; '.join(errors)})")
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
    agent = make_agent(spec, u.n_items, seed=seed)
    return agent.fit(split.train, split.valid)


def act(policy, obs: dict, env: gym.Env) -> int:
    masks_fn = getattr(env.unwrapped, "action_masks", None)
    if hasattr(policy, "scores"):  # recgym agent: mask invalid items before the argmax
        n = int(obs["length"][0])
        hist = obs["history"][max(0, n - policy.state_len) : n]
        state = np.full((1, policy.state_len), policy.n_items, dtype=np.int64)
        state[0, : len(hist)] = hist
        with torch.no_grad():
            s = policy.scores(torch.from_numpy(state), torch.tensor([len(hist)]))[0].float().cpu().numpy()
        if masks_fn is not None:
            s = np.where(masks_fn(), s, -np.inf)
        return int(np.argmax(s))
    if masks_fn is not None and "Maskable" in type(policy).__name__:
        a, _ = policy.predict(obs, action_masks=masks_fn(), deterministic=True)
    else:
        a, _ = policy.predict(obs, deterministic=True)
    return int(np.asarray(a).reshape(-1)[0])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", required=True, help="registry name, module:Class, or a checkpoint path")
    ap.add_argument("--env", required=True, help="a recgym env id, e.g. recgym/SlateNextK-Synthetic-v0")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--env-kwargs", default="{}", help="JSON dict of env kwargs")
    args = ap.parse_args(argv)
    import recgym  # noqa: F401

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    env = gym.make(args.env, **json.loads(args.env_kwargs))
    policy = load_policy(args.agent, env, args.seed)
    returns, finals, true_r = [], {}, []
    obs, _ = env.reset(seed=args.seed)
    for _ in range(args.episodes):
        done, ret = False, 0.0
        while not done:
            obs, r, term, trunc, info = env.step(act(policy, obs, env))
            ret += r
            done = term or trunc
            if "true_reward" in info:
                true_r.append(info["true_reward"])
        for k, v in info.items():
            if "@" in k:
                finals.setdefault(k, []).append(v)
        returns.append(ret)
        obs, _ = env.reset()
    out = {"env": args.env, "agent": args.agent, "episodes": args.episodes, "mean_return": float(np.mean(returns))}
    out.update({k: float(np.mean(v)) for k, v in finals.items()})
    if true_r:
        out["true_value"] = float(np.mean(true_r))
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
