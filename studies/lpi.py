#!/usr/bin/env python
"""The two experiments of the LPI paper (Liang & Vlassis) in recgym, plus its Figures 2 and 3.

    python -m studies.lpi --quick --out runs/lpi_quick          # < 90 s, tiny synthetic data
    python -m studies.lpi --datasets synthetic,ml-100k --seeds 0 1 2 --data-dir ../shared/data \\
        --out docs/results/lpi

(a) Contextual bandit (Table 1) on a rating log split leave-one-out, served by the MF user
    simulator (:class:`recgym.envs.mf_user.MFUserEnv`, Steck-imputed rewards): μ̂, L_μ, IPS and LPI^CB for
    β ∈ {0.001, 0.1, 1, 1000}; AR@1 (logged reward of the greedy item), iAR@1 (imputed reward of the
    greedy item), JS(π̂ ‖ μ̂) on the test contexts; on Synthetic also the World's true reward.
(b) MDP (Table 3) on session data (synthetic sessions; ml-100k with the click-purchase scheme, each
    user's last 20 ratings as one session, split 80/10/10 by user): μ̂, L_μ, PG, IPS-PG, SQN, SAC,
    LPI^RL; purchase / click HR and NDCG @5/10/20 and JS on the test sessions.
(c) Figure 2: validation NDCG@20 (purchase, click) and JS of LPI^RL over β and over λ.
(d) Figure 3: per-session test NDCG@20 of μ̂, SQN and LPI^RL bucketed by the number of clicks /
    purchases in the session, with a paired t-test LPI^RL vs SQN per bucket.

Writes ``results.json`` (every number, per seed, with the config), ``tables.md`` (mean ± sample std
over seeds; Tables 1 and 3 with a paired test by seed against μ̂, Holm-corrected across policies),
``sweep.png`` and ``by_length.png`` into ``--out`` (atomically, :mod:`recgym.experiments.report`).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recgym.errors import BadInputError, cli
from recgym.evaluate import greedy_actions
from recgym.experiments import map_units
from recgym.experiments.cli import command_line, split_list
from recgym.experiments.report import atomic_write, pyplot, rows_markdown, rows_over_seeds, save_figure, write_json

QUICK = dict(
    world=dict(n_users=150, n_items=60, n_genres=6),
    ratings_per_user=15, n_sessions=400, agent=dict(hidden=16, batch_size=64, steps=150, eval_every=75),
    betas_cb=(0.001, 0.1, 1.0, 1000.0), betas=(0.1, 1.0, 10.0), lams=(0.1, 1.0, 10.0), max_states=2000,
)
FULL = dict(
    # a CPU budget: 600 steps of batch 256 per agent (μ̂ included), so the whole study (2 datasets ×
    # 3 seeds × 23 fits) fits in 45 minutes on 2 cores; the paper trains to convergence
    world=dict(), ratings_per_user=None, n_sessions=5000, agent=dict(steps=600, eval_every=200),
    betas_cb=(0.001, 0.1, 1.0, 1000.0), betas=(0.01, 0.1, 1.0, 10.0, 100.0), lams=(0.1, 0.5, 1.0, 2.0),
    max_states=20000,
)
KS = (5, 10, 20)


def _silent(msg: str) -> None:
    pass


def _fit(agent: Any, sp: Any, protocol: str) -> Any:
    agent.fit(sp.train, sp.valid, protocol=protocol, progress=False, log=_silent)
    return agent


# ------------------------------------------------------------------------------ (a) bandit
def bandit_table(dataset: str, seed: int, P: dict, data_dir: str | None, work: Path) -> list[dict[str, Any]]:
    from recgym.agents.lpi import IPSAgent, LMuAgent, LPICBAgent
    from recgym.agents.sasrec import SASRecAgent
    from recgym.envs.mf_user import MFUserEnv
    from recgym import metrics
    from recgym.divergence import policy_divergence

    agent_kw = {**P["agent"]}
    if dataset == "synthetic":
        params = dict(P["world"])
        if P["ratings_per_user"]:
            params["ratings_per_user"] = P["ratings_per_user"]
        env = MFUserEnv("synthetic", split="test", state_len=10, seed=seed, **params)
    else:
        env = MFUserEnv(dataset, split="test", state_len=50, data_dir=data_dir, seed=seed, reward_scheme="rating")
        agent_kw = {"state_len": 50, **agent_kw}
    sp = env.split_data
    state_len = agent_kw.get("state_len", 10)
    hist, hlen = env.hist[:, :state_len], np.minimum(env.hlen, state_len)
    if env.L != state_len:
        raise ValueError(f"state_len {env.L} != state_len {state_len}")

    mu = _fit(SASRecAgent(sp.n_items, seed=seed, **agent_kw), sp, "loo")
    mu_path = str(mu.save(work / f"mu_cb_{dataset}_{seed}.pt"))
    policies: list[tuple[str, Any]] = [("μ̂ (logging)", mu)]
    policies.append(("L_μ", _fit(LMuAgent(sp.n_items, seed=seed, logging_policy=mu_path, **agent_kw), sp, "loo")))
    policies.append(("IPS", _fit(IPSAgent(sp.n_items, seed=seed, logging_policy=mu_path, **agent_kw), sp, "loo")))
    for beta in P["betas_cb"]:
        a = LPICBAgent(sp.n_items, seed=seed, logging_policy=mu_path, beta=beta, **agent_kw)
        policies.append((f"LPI^CB (β={beta:g})", _fit(a, sp, "loo")))

    rows = []
    for name, agent in policies:
        g = greedy_actions(agent, hist, hlen)
        row: dict[str, Any] = {"policy": name, "AR@1": float(metrics.ar_at_1(g, env.targets, env.target_rewards).mean()),
                               "iAR@1": float(env.imputed_reward(env.users, g).mean())}
        if env.world is not None:
            row["true@1"] = float(env.world.expected_reward(env.users, hist, hlen, g[:, None]).mean())
        row["JS"] = None if agent is mu else policy_divergence(agent, mu, sp.test, "loo", P["max_states"])["js"]
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ (b-d) MDP
def mdp_split(dataset: str, seed: int, P: dict, data_dir: str | None) -> Any:
    from recgym.data import split_by_session

    if dataset == "synthetic":
        from recgym.sim.world import World

        return split_by_session(World(seed=seed, **P["world"]).generate(P["n_sessions"]), seed=seed)
    from recgym.data import load

    log = load(dataset, data_dir, reward_scheme="click-purchase")
    return split_by_session(log.last_window(20), seed=seed)  # the paper keeps the last 20 actions


def mdp_agents(sp: Any, seed: int, P: dict, work: Path, tag: str) -> dict[str, Any]:
    from recgym.agents.lpi import IPSPGAgent, LMuAgent, LPIAgent, PGAgent
    from recgym.agents.sasrec import SASRecAgent

    kw = P["agent"]
    mu = _fit(SASRecAgent(sp.n_items, seed=seed, **kw), sp, "session")
    mu_path = str(mu.save(work / f"mu_mdp_{tag}.pt"))
    out: dict[str, Any] = {"μ̂": mu}
    for name, cls in (("L_μ", LMuAgent), ("PG", PGAgent), ("IPS-PG", IPSPGAgent)):
        out[name] = _fit(cls(sp.n_items, seed=seed, logging_policy=mu_path, **kw), sp, "session")
    from recgym.agents.qlearning import SACAgent, SQNAgent

    out["SQN"] = _fit(SQNAgent(sp.n_items, seed=seed, **kw), sp, "session")
    n_steps = kw.get("steps") or 1000
    out["SAC"] = _fit(SACAgent(sp.n_items, seed=seed, switch_step=n_steps // 2, **kw), sp, "session")
    out["LPI^RL"] = _fit(LPIAgent(sp.n_items, seed=seed, logging_policy=mu_path, **kw), sp, "session")
    out["_mu_path"] = mu_path
    return out


def mdp_table(sp: Any, agents: dict[str, Any], P: dict) -> list[dict[str, Any]]:
    from recgym.divergence import policy_divergence
    from recgym.evaluate import evaluate_sessions

    mu = agents["μ̂"]
    rows = []
    for name, agent in agents.items():
        if name.startswith("_"):
            continue
        m = evaluate_sessions(agent, sp.test, ks=KS)
        row: dict[str, Any] = {"policy": name}
        for kind in ("purchase", "click"):
            for k in KS:
                row[f"hr@{k}_{kind}"] = m[f"hr@{k}_{kind}"]
            for k in KS:
                row[f"ndcg@{k}_{kind}"] = m[f"ndcg@{k}_{kind}"]
        row["JS"] = None if agent is mu else policy_divergence(agent, mu, sp.test, "session", P["max_states"])["js"]
        rows.append(row)
    return rows


def sweep(sp: Any, seed: int, P: dict, mu_path: str) -> list[dict[str, Any]]:
    """Figure 2: LPI^RL over β (λ = 1) and over λ (β = 1), on the validation part."""
    from recgym.agents.lpi import LPIAgent
    from recgym.divergence import policy_divergence
    from recgym.evaluate import evaluate_sessions

    settings = [("beta", b, dict(beta=b, lam=1.0)) for b in P["betas"]] + [("lam", l, dict(beta=1.0, lam=l)) for l in P["lams"]]
    out = []
    for which, value, hp in settings:
        a = _fit(LPIAgent(sp.n_items, seed=seed, logging_policy=mu_path, **hp, **P["agent"]), sp, "session")
        m = evaluate_sessions(a, sp.valid, ks=(20,))
        js = policy_divergence(a, a.logging_policy, sp.valid, "session", P["max_states"])["js"]
        out.append({"param": which, "value": value, "ndcg@20_purchase": m["ndcg@20_purchase"],
                    "ndcg@20_click": m["ndcg@20_click"], "JS": js})
    return out


BUCKETS = ((1, 5, "≤5"), (6, 10, "6–10"), (11, 20, "11–20"), (21, 10**9, ">20"))


def by_length(sp: Any, agents: dict[str, Any]) -> dict[str, Any]:
    """Figure 3: per-session NDCG@20 (over its click / purchase events) by the session's count of
    clicks / purchases; paired t-test LPI^RL vs SQN (or vs μ̂ when SQN is absent) per bucket."""
    from scipy import stats

    from recgym import metrics
    from recgym.data import KIND_CLICK, KIND_PURCHASE
    from recgym.evaluate import session_ranks

    log = sp.test
    sess = log.session_of_event
    names = [n for n in ("μ̂", "SQN", "LPI^RL") if n in agents]
    ndcg = {n: metrics.ndcg_at_k(session_ranks(agents[n], log), 20) for n in names}
    rival = "SQN" if "SQN" in agents else "μ̂"
    out: dict[str, Any] = {}
    for kind, code in (("click", KIND_CLICK), ("purchase", KIND_PURCHASE)):
        is_k = log.kinds == code
        count = np.bincount(sess[is_k], minlength=log.n_sessions)
        per = {n: np.bincount(sess[is_k], weights=v[is_k], minlength=log.n_sessions) / np.maximum(count, 1)
               for n, v in ndcg.items()}
        rows = []
        for lo, hi, label in BUCKETS:
            m = (count >= lo) & (count <= hi)
            row: dict[str, Any] = {"bucket": label, "n_sessions": int(m.sum())}
            for n in names:
                row[n] = float(per[n][m].mean()) if m.any() else None
            if m.sum() >= 2 and np.any(per["LPI^RL"][m] != per[rival][m]):
                row["p_value"] = float(stats.ttest_rel(per["LPI^RL"][m], per[rival][m]).pvalue)
            else:
                row["p_value"] = None
            rows.append(row)
        out[kind] = {"rival": rival, "rows": rows}
    return out


def _run_unit(P: dict, data_dir: str | None, work: str, threads: int, unit: tuple[str, str, int]) -> dict[str, Any]:
    """One (part, dataset, seed) of the study; runs in a worker process when ``--jobs > 1``."""
    import torch

    torch.set_num_threads(max(1, threads))
    part, ds, seed = unit
    try:
        if part == "bandit":
            return {"bandit": bandit_table(ds, seed, P, data_dir, Path(work))}
        sp = mdp_split(ds, seed, P, data_dir)
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        return {"error": str(e)}
    agents = mdp_agents(sp, seed, P, Path(work), f"{ds}_{seed}")
    return {"mdp": mdp_table(sp, agents, P), "sweep": sweep(sp, seed, P, agents["_mu_path"]),
            "by_length": by_length(sp, agents)}


# ------------------------------------------------------------------------------ reporting
BASE = "μ̂"
"""The family's base model: the logging policy estimate every LPI agent starts from."""


def _table(per_seed: list[list[dict[str, Any]]], metric: str | None) -> str:
    base = next((r["policy"] for r in per_seed[0] if r["policy"].startswith(BASE)), None)
    rows = rows_over_seeds(per_seed, ("policy",), base=(base,) if metric else None, metric=metric)
    return rows_markdown(rows, ("policy",), digits=3, base_label=f"{metric} vs {base}" if metric else None)


def plot_sweep(path: Path, sweeps: dict[str, list[list[dict[str, Any]]]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ds, per_seed in sweeps.items():
        for r, param in enumerate(("beta", "lam")):
            pts = [[p for p in seed_rows if p["param"] == param] for seed_rows in per_seed]
            x = [p["value"] for p in pts[0]]
            for c, metric in enumerate(("ndcg@20_purchase", "ndcg@20_click", "JS")):
                y = np.nanmean([[np.nan if p[metric] is None else p[metric] for p in s] for s in pts], axis=0)
                ax = axes[r, c]
                ax.plot(x, y, "o-", label=ds)
                ax.set_xscale("log")
                ax.set_xlabel("β" if param == "beta" else "λ")
                ax.set_title(f"valid {metric}")
    axes[0, 0].legend()
    fig.suptitle("LPI^RL: β sweep (λ=1, top) and λ sweep (β=1, bottom)")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def plot_by_length(path: Path, breakdown: dict[str, list[dict[str, Any]]]) -> None:
    import warnings

    warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)  # empty buckets plot as gaps
    plt = pyplot()
    fig, axes = plt.subplots(len(breakdown), 2, figsize=(11, 3.5 * len(breakdown)), squeeze=False)
    for i, (ds, per_seed) in enumerate(breakdown.items()):
        for j, kind in enumerate(("click", "purchase")):
            rows0 = per_seed[0][kind]["rows"]
            names = [n for n in ("μ̂", "SQN", "LPI^RL") if n in rows0[0]]
            x = np.arange(len(rows0))
            for k, n in enumerate(names):
                y = [np.nanmean([np.nan if s[kind]["rows"][b][n] is None else s[kind]["rows"][b][n] for s in per_seed])
                     for b in range(len(rows0))]
                axes[i, j].bar(x + (k - 1) * 0.27, y, width=0.27, label=n)
            axes[i, j].set_xticks(x, [f"{r['bucket']}\n(n={r['n_sessions']})" for r in rows0])
            axes[i, j].set_title(f"{ds}: session {kind} NDCG@20 by #{kind}s")
            axes[i, j].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


@cli("studies.lpi")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny synthetic data, one seed (a smoke run, < 90 s)")
    p.add_argument("--datasets", default="synthetic", help="comma-separated: synthetic, ml-100k")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 (quick) or 0 1 2")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs/lpi_study")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes, one (dataset, seed, part) each")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, args.threads))
    P = QUICK if args.quick else FULL
    datasets = ["synthetic"] if args.quick else split_list(args.datasets)
    unknown = sorted(set(datasets) - {"synthetic", "ml-100k", "ml-1m", "netflix"})
    if unknown:
        raise BadInputError(f"--datasets: unknown dataset(s) {unknown}")
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    out = Path(args.out)
    work = out / "models"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"command": command_line("python -m studies.lpi", argv), "quick": args.quick, "seeds": seeds,
                           "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in P.items()},
                           "bandit": {}, "mdp": {}, "sweep": {}, "by_length": {}, "errors": {}}
    # longest units first (MDP before bandit, bigger data first), so no long unit runs alone at the end
    units = sorted([(part, ds, seed) for ds in datasets for part in ("bandit", "mdp") for seed in seeds],
                   key=lambda u: (u[0] != "mdp", u[1] == "synthetic"))
    results = map_units(functools.partial(_run_unit, P, args.data_dir, str(work), args.threads), units, args.jobs,
                        log=lambda u, r: print(f"[{time.perf_counter() - t0:6.1f}s] {' '.join(map(str, u))}", flush=True))
    done = dict(zip(units, results))
    for part, ds, seed in sorted(units, key=lambda u: (u[1], u[0], u[2])):  # assemble in seed order
        r = done[(part, ds, seed)]
        if "error" in r:
            if f"{part}/{ds}" not in res["errors"]:
                print(f"studies.lpi: {part} on {ds} skipped: {r['error']}", file=sys.stderr)
            res["errors"][f"{part}/{ds}"] = r["error"]
            continue
        for key, value in r.items():
            res[key].setdefault(ds, []).append(value)
    res["seconds"] = time.perf_counter() - t0

    md = [f"# LPI study ({'QUICK SMOKE RUN on tiny synthetic data — not results' if args.quick else 'full'})",
          f"\nCommand: `{res['command']}`; seeds {seeds}; {res['seconds']:.0f} s. Mean ± sample std (ddof=1) over "
          "seeds; Δ: paired t-test by seed against μ̂, Holm-corrected across the policies of the table.\n"]
    for ds, per_seed in res["bandit"].items():
        md += [f"\n## Table 1 (contextual bandit) — {ds}\n", _table(per_seed, "iAR@1")]
    for ds, per_seed in res["mdp"].items():
        md += [f"\n## Table 3 (MDP) — {ds}\n", _table(per_seed, "ndcg@20_purchase")]
    for ds, per_seed in res["by_length"].items():
        for kind in ("click", "purchase"):
            rows = [s[kind]["rows"] for s in per_seed]
            md += [f"\n## Figure 3 data — {ds}, session {kind} NDCG@20 by #{kind}s "
                   f"(p: paired t-test over sessions LPI^RL vs {per_seed[0][kind]['rival']}, mean over seeds)\n",
                   rows_markdown(rows_over_seeds(rows, ("bucket",)), ("bucket",), digits=3)]
    for k, v in res["errors"].items():
        md.append(f"\n**{k} not run:** {v}")
    if res["sweep"]:
        plot_sweep(out / "sweep.png", res["sweep"])
        md.append("\n![β/λ sweep](sweep.png)")
    if res["by_length"]:
        plot_by_length(out / "by_length.png", res["by_length"])
        md.append("\n![gains by sequence length](by_length.png)")
    atomic_write(out / "tables.md", "\n".join(md) + "\n")
    write_json(out / "results.json", res, indent=1)
    print("\n".join(md))
    print(f"wrote {out / 'results.json'}, {out / 'tables.md'} in {res['seconds']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
