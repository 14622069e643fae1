#!/usr/bin/env python
"""Run a recgym agent or a stable-baselines3 checkpoint in a recgym env, on its held-out contexts.

    python scripts/sim_eval.py --agent pop --env recgym/MFUser-Synthetic-v0
    python scripts/sim_eval.py --agent pop --env recgym/SlateNextK-Synthetic-v0 --episodes 200 --seed 0
    python scripts/sim_eval.py --agent runs/ppo.zip --env recgym/SlateNextK-Synthetic-v0
    python scripts/sim_eval.py --agent pop --data-file ratings.csv --columns user=userId,item=movieId,rating=rating

``--agent NAME`` builds the registry agent (its resolved config is printed and returned) and fits
it on the env's training split; ``--agent PATH`` loads a saved recgym agent (``.pt``) or an SB3
checkpoint (``.zip``: PPO, MaskablePPO or DQN). ``--data-file`` builds the env on your own file
(default env: the MF user simulator ``recgym/MFUser-v0`` fitted on the file's training part).
The env serves ``--split`` contexts (default as ``scripts/compare.py``: the MF user simulator's own,
its validation sessions' states; the test part in the other envs). A recgym agent
is evaluated by ``recgym.evaluate.evaluate_in_env``, the evaluation ``compare.py`` reports: in an
MF user env every held-out context at once (``iar@1``, ``ar@1``, ``hit@1``, on Synthetic
``true@1``), in other envs ``--episodes`` episodes of its greedy, mask-respecting action
(``mean_return`` and the list metrics of the final ``info``). An SB3 policy runs ``--episodes``
episodes (``recgym.evaluate.run_episodes``). Prints one JSON object (non-finite numbers as ``null``). Exit status (``recgym.errors``): 0
success, 2 bad arguments (unknown agent or env id, ``--env-kwargs`` that are not a JSON object of
the env's arguments, ``--episodes`` < 1, a file that is not a model).
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
from recgym.evaluate import evaluate_in_env, run_episodes
from recgym.experiments.cli import add_data_args, add_training_args, data_kwargs, training_kwargs


def load_policy(spec: str, env: gym.Env, seed: int, overrides: dict[str, Any] | None = None,
                log: Any = print) -> tuple[Any, dict[str, Any] | None]:
    """A recgym ``Agent`` or an SB3 model from a name or a path, and the resolved config of a
    registry agent (``None`` for a loaded one)."""
    p = Path(spec)
    if p.suffix == ".zip" and p.is_file():
        from recgym.sb3 import load_sb3

        return load_sb3(p, env), None  # never unpickles the zip (RECGYM_TRUST_PICKLE=1 to allow)
    from recgym.agents.registry import get_agent_class, make_agent, resolved_config
    from recgym.experiments.job import format_resolved_config

    if p.is_file():  # a folder named like an agent is not a checkpoint
        try:
            payload = torch.load(p, weights_only=True, map_location="cpu")
            cls = get_agent_class(payload["agent"])
        except Exception as e:  # not a recgym model file, or one of an agent that is not importable here
            raise BadInputError(f"--agent {spec}: not a loadable recgym model ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''})") from None
        return cls.load(p), None
    from recgym.envs.common import load_env_split

    u = env.unwrapped
    split = getattr(u, "split_data", None)
    if split is None:  # the env's data: its own arguments are named, the rest go to the loader
        import inspect

        kw = dict(env.spec.kwargs)
        own = set(inspect.signature(type(u).__init__).parameters)
        split = load_env_split(kw.get("source"), data=kw.get("data"), data_dir=kw.get("data_dir"),
                               download=kw.get("download", False), seed=kw.get("seed", 0),
                               **{k: v for k, v in kw.items() if k not in own})
    source = (env.spec.kwargs or {}).get("source") if env.spec is not None else None
    try:
        rc = resolved_config(spec, u.n_items, source, split.protocol, overrides)
        agent = make_agent(spec, u.n_items, seed=seed, dataset=source, protocol=split.protocol, **(overrides or {}))
    except (TypeError, ValueError) as e:
        raise BadInputError(str(e)) from e
    rc["config"] = agent.config_dict()
    log(format_resolved_config(rc))
    if hasattr(agent, "optimizers"):  # the shared loop scores validation by the split's protocol
        return agent.fit(split.train, split.valid, protocol=split.protocol), rc
    return agent.fit(split.train, split.valid), rc


def act(policy: Any, obs: dict, env: gym.Env) -> int:
    masks_fn = getattr(env.unwrapped, "action_masks", None)
    if masks_fn is not None and "Maskable" in type(policy).__name__:
        a, _ = policy.predict(obs, action_masks=masks_fn(), deterministic=True)
    else:
        a, _ = policy.predict(obs, deterministic=True)
    return int(np.asarray(a).reshape(-1)[0])


@cli("sim_eval")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", required=True, help="registry name, module:Class, or a checkpoint path")
    ap.add_argument("--env", default=None,
                    help="a recgym env id, e.g. recgym/SlateNextK-Synthetic-v0 (default with --data-file: recgym/MFUser-v0)")
    ap.add_argument("--split", choices=("train", "valid", "test"), default=None,
                    help="contexts served (default: the MF user simulator's own, its validation sessions; else test)")
    ap.add_argument("--episodes", type=int, default=200, help="episodes in envs that are not MF user simulators")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--env-kwargs", default="{}", help="JSON dict of further env kwargs")
    add_data_args(ap, dataset=None)
    add_training_args(ap, tensorboard=False)
    args = ap.parse_args(argv)
    import recgym  # noqa: F401  (registers the env ids)
    from recgym.experiments.job import JobSpec, agent_overrides, data_file_record
    from recgym.experiments.report import json_safe

    if args.episodes < 1:
        raise BadInputError(f"--episodes must be a positive integer, got {args.episodes}")
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as e:
        raise BadInputError(f"--env-kwargs: not JSON ({e})") from e
    if not isinstance(env_kwargs, dict):
        raise BadInputError(f"--env-kwargs: expected a JSON object of env arguments, got {args.env_kwargs!r}")
    data = data_kwargs(args)
    env_id = args.env or ("recgym/MFUser-v0" if data.get("data_file") else None)
    if env_id is None:
        raise BadInputError("--env is required (or --data-file, which defaults to recgym/MFUser-v0)")
    if env_id not in gym.registry:
        raise BadInputError(f"--env: unknown env id {env_id!r}; recgym ids: "
                            + ", ".join(sorted(k for k in gym.registry if k.startswith("recgym/"))))
    if not Path(args.agent).exists():  # a name: check it before the env loads its data
        from recgym.agents.registry import get_agent_class

        if Path(args.agent).suffix in (".zip", ".pt"):
            raise BadInputError(f"--agent {args.agent}: no such file")
        try:
            get_agent_class(args.agent)
        except ValueError as e:
            raise BadInputError(f"--agent: {e}") from None
    from gymnasium.envs.registration import load_env_creator

    from recgym.envs.mf_user import MFUserEnv

    entry = gym.registry[env_id].entry_point
    own = isinstance(entry, str) and issubclass(load_env_creator(entry), MFUserEnv) or entry is MFUserEnv
    split = args.split or (None if own else "test")
    kw: dict[str, Any] = {**({"split": split} if split else {}), **data["data_params"]}
    if data.get("data_file"):
        kw.update(data=data["data_file"], columns=data["columns"], sep=data["sep"])
        if data["reward_scheme"] is not None:
            kw["reward_scheme"] = data["reward_scheme"]
    if data["protocol"] is not None:  # the MF user simulator is leave-one-out by construction
        kw["protocol"] = data["protocol"]
    if data["data_dir"] is not None:
        kw["data_dir"] = data["data_dir"]
    if data["download"]:
        kw["download"] = True
    kw.update(env_kwargs)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    try:
        env = gym.make(env_id, **kw)
    except (TypeError, ValueError, FileNotFoundError) as e:  # Gymnasium appends the kwargs: keep the env's own sentence
        msg = str(e).split(" was raised from the environment creator")[0]
        raise BadInputError(f"--env {env_id} with {sorted(kw)}: {msg}") from None
    overrides = None
    if not Path(args.agent).is_file():
        overrides = agent_overrides(JobSpec(agent=args.agent, **training_kwargs(args)),
                                    warn=lambda m: print(f"sim_eval: {m}", file=sys.stderr))
    policy, rc = load_policy(args.agent, env, args.seed, overrides, log=lambda m: print(m, file=sys.stderr))
    if hasattr(policy, "scores"):
        metrics = evaluate_in_env(policy, env, args.episodes, args.seed)
    else:
        metrics = run_episodes(env, lambda obs: act(policy, obs, env), args.episodes, args.seed)
    out = {"env": env_id, "agent": args.agent, "split": getattr(env.unwrapped, "split", split), **metrics}
    if rc is not None:
        out["resolved_config"] = rc
    if data.get("data_file"):
        out["data_file"] = data_file_record(JobSpec(agent=args.agent, data_file=data["data_file"],
                                                    columns=data["columns"], sep=data["sep"]))
    print(json.dumps(json_safe(out), indent=2, allow_nan=False))
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
