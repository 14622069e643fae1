#!/usr/bin/env python
"""How well the MF simulator's iAR@1 ranks policies, against the Synthetic world's true value.

    python -m studies.iar_vs_truth --seeds 0 1

On a Synthetic world whose policies' true values are well apart (``purchase_offset=0.5,
quality_pop_corr=0.6``; 400 users, 150 items, 20 ratings each, history 50) it scores five diverse
greedy policies (popularity, random, an item co-occurrence next-item model, the oracle, a
genre-diverse one) plus a small SASRec (hidden 32, 300 all-positions steps) by their mean
imputed reward (iAR@1) and their true expected reward, and prints Spearman's ρ between the two,
over the five (SASRec in place of the co-occurrence model) and over all six. The five-policy set
with the co-occurrence model is what ``tests/test_envs_sb3.py`` checks; docs/envs.md reports
this script's output.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from recgym.envs.mf_user import MFUserEnv
from recgym.errors import cli

WORLD = dict(n_users=400, n_items=150, ratings_per_user=20, state_len=50, purchase_offset=0.5, quality_pop_corr=0.6)


def diverse_policies(env: MFUserEnv, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Greedy item of five diverse policies for every context of ``env``."""
    w, train = env.world, env.split_data.train
    n = env.n_items
    users, hist, hlen = env.users, env.hist, env.hlen
    seen = np.zeros((len(users), n + 1), dtype=bool)
    seen[np.arange(len(users))[:, None], hist] = True
    seen = seen[:, :n]
    pop = train.item_counts().astype(float)
    # SASRec stand-in: item-item co-occurrence in the training sequences (next-item style scores)
    co = np.zeros((n + 1, n))
    for s in range(train.n_sessions):
        seq = train.session(s)
        co[np.repeat(seq, len(seq)), np.tile(seq, len(seq))] += 1
    co[np.arange(n), np.arange(n)] = 0
    co_scores = co[hist].sum(1) + 1e-3 * pop
    # genre-diverse: popular items of the genres least covered by the history
    g = train.genres
    cover = (g[np.minimum(hist, n - 1)] * (hist < n)[..., None]).sum(1)
    div_scores = -(g @ (cover / np.maximum(cover.sum(1, keepdims=True), 1)).T).T + 1e-4 * pop
    oracle = w.expected_reward_all(users, hist, hlen)

    def greedy(scores):
        return np.where(seen, -np.inf, scores).argmax(1)

    return {
        "popularity": greedy(np.broadcast_to(pop, seen.shape)),
        "random": rng.integers(0, n, size=len(users)),
        "cooccurrence": greedy(co_scores),
        "oracle": greedy(oracle),
        "genre-diverse": greedy(div_scores),
    }


def sasrec_policy(env: MFUserEnv, seed: int = 0) -> np.ndarray:
    """Greedy unseen item of a small SASRec trained on the env's training split."""
    import torch

    from recgym.agents.sasrec import SASRecAgent

    sp, n = env.split_data, env.n_items
    agent = SASRecAgent(sp.n_items, seed=seed, hidden=32, state_len=50, steps=300, eval_every=300, all_positions=True)
    agent.fit(sp.train, None, progress=False, log=lambda m: None)
    with torch.no_grad():
        s = agent.scores(torch.from_numpy(env.hist[:, :50]).long(), torch.from_numpy(np.minimum(env.hlen, 50)).long())
    s = s.detach().float().cpu().numpy()
    seen = np.zeros((len(env.users), n + 1), dtype=bool)
    seen[np.arange(len(env.users))[:, None], env.hist] = True
    return np.where(seen[:, :n], -np.inf, s).argmax(1)


@cli("studies.iar_vs_truth")
def main(argv: list[str] | None = None) -> int:
    from scipy.stats import spearmanr

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # reproducible SASRec weights
    for seed in args.seeds:
        env = MFUserEnv(source="synthetic", seed=seed, **WORLD)
        pol = diverse_policies(env, np.random.default_rng(0))
        pol["sasrec"] = sasrec_policy(env)
        iar = {k: float(env.imputed_reward(env.users, a).mean()) for k, a in pol.items()}
        true = {k: float(env.world.expected_reward(env.users, env.hist, env.hlen, a).mean()) for k, a in pol.items()}
        five = [k for k in pol if k != "cooccurrence"]
        print(f"seed {seed}: " + ", ".join(f"{k} iAR {iar[k]:.3f} true {true[k]:.3f}" for k in pol))
        print(f"  Spearman iAR vs true: five with sasrec {spearmanr([iar[k] for k in five], [true[k] for k in five]).statistic:.2f}, "
              f"all six {spearmanr(list(iar.values()), list(true.values())).statistic:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
