#!/usr/bin/env python
"""The two experiments of the LPI paper (Liang & Vlassis) in recgym, plus its Figures 2 and 3.

    python scripts/lpi_study.py --quick --out runs/lpi_quick          # < 90 s, tiny synthetic data
    python scripts/lpi_study.py --datasets synthetic,ml-100k --seeds 0 1 2 --data-dir ../shared/data \\
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

Writes ``results.json`` (every number, per seed, with the config), ``tables.md`` (mean ± std over
seeds), ``sweep.png`` and ``by_length.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

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


def _greedy(agent: Any, hist: np.ndarray, hlen: np.ndarray, batch: int = 1024) -> np.ndarray:
    import torch

    out = []
    for lo in range(0, len(hist), batch):
        s = agent.scores(torch.from_numpy(hist[lo : lo + batch]), torch.from_numpy(hlen[lo : lo + batch]))
        out.append(s.argmax(1).cpu().numpy())
    return np.concatenate(out)


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
        g = _greedy(agent, hist, hlen)
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
    import recgym.data as rd

    if not hasattr(rd, "load"):
        raise RuntimeError("recgym.data.load is not available yet (source loaders missing)")
    log = rd.load(dataset, data_dir, reward_scheme="click-purchase")
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


def _run_unit(unit: tuple[str, str, int], P: dict, data_dir: str | None, work: str, threads: int) -> dict[str, Any]:
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
def _agg(rows_by_seed: list[list[dict[str, Any]]], key: str = "policy") -> list[dict[str, Any]]:
    """Mean and std over seeds of every numeric column, row by row."""
    out = []
    for i, first in enumerate(rows_by_seed[0]):
        row = {key: first[key]}
        for col, v in first.items():
            if col == key:
                continue
            vals = [r[i][col] for r in rows_by_seed if r[i][col] is not None]
            row[col] = (float(np.mean(vals)), float(np.std(vals))) if vals else None
        out.append(row)
    return out


def _md_table(rows: list[dict[str, Any]], key: str = "policy", std: bool = True) -> str:
    cols = [c for c in rows[0] if c != key]
    lines = ["| " + " | ".join([key] + cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        cells = [str(r[key])]
        for c in cols:
            v = r[c]
            if v is None:
                cells.append("–")
            elif isinstance(v, tuple):
                cells.append(f"{v[0]:.3f} ± {v[1]:.3f}" if std else f"{v[0]:.3f}")
            elif isinstance(v, float):
                cells.append(f"{v:.3f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_sweep(path: Path, sweeps: dict[str, list[list[dict[str, Any]]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_by_length(path: Path, breakdown: dict[str, list[dict[str, Any]]]) -> None:
    import warnings

    import matplotlib

    warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)  # empty buckets plot as gaps

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.savefig(path, dpi=90)
    plt.close(fig)


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
    datasets = ["synthetic"] if args.quick else [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(datasets) - {"synthetic", "ml-100k", "ml-1m", "netflix"})
    if unknown:
        print(f"lpi_study: error: unknown dataset(s) {unknown}", file=sys.stderr)
        return 2
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    out = Path(args.out)
    work = out / "models"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"command": "python scripts/lpi_study.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                           "quick": args.quick, "seeds": seeds,
                           "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in P.items()},
                           "bandit": {}, "mdp": {}, "sweep": {}, "by_length": {}, "errors": {}}
    units = [(part, ds, seed) for ds in datasets for part in ("bandit", "mdp") for seed in seeds]
    done: dict[tuple[str, str, int], dict[str, Any]] = {}
    if args.jobs > 1 and len(units) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            # longest units first (MDP before bandit, bigger data first), so no long unit runs alone at the end
            order = sorted(units, key=lambda u: (u[0] != "mdp", u[1] == "synthetic"))
            futs = {pool.submit(_run_unit, u, P, args.data_dir, str(work), args.threads): u for u in order}
            for f in as_completed(futs):
                done[futs[f]] = f.result()
                print(f"[{time.perf_counter() - t0:6.1f}s] {' '.join(map(str, futs[f]))}", flush=True)
    else:
        for u in units:
            done[u] = _run_unit(u, P, args.data_dir, str(work), args.threads)
            print(f"[{time.perf_counter() - t0:6.1f}s] {' '.join(map(str, u))}", flush=True)
    for part, ds, seed in units:  # assemble in seed order; a dataset that cannot load is reported once
        r = done[(part, ds, seed)]
        if "error" in r:
            if f"{part}/{ds}" not in res["errors"]:
                print(f"lpi_study: {part} on {ds} skipped: {r['error']}", file=sys.stderr)
            res["errors"][f"{part}/{ds}"] = r["error"]
            continue
        for key, value in r.items():
            res[key].setdefault(ds, []).append(value)
    res["seconds"] = time.perf_counter() - t0

    md = [f"# LPI study ({'QUICK SMOKE RUN on tiny synthetic data — not results' if args.quick else 'full'})",
          f"\nCommand: `{res['command']}`; seeds {seeds}; {res['seconds']:.0f} s. Mean ± std over seeds.\n"]
    for ds, per_seed in res["bandit"].items():
        md += [f"\n## Table 1 (contextual bandit) — {ds}\n", _md_table(_agg(per_seed))]
    for ds, per_seed in res["mdp"].items():
        md += [f"\n## Table 3 (MDP) — {ds}\n", _md_table(_agg(per_seed))]
    for ds, per_seed in res["by_length"].items():
        for kind in ("click", "purchase"):
            rows = [[r for r in s[kind]["rows"]] for s in per_seed]
            md += [f"\n## Figure 3 data — {ds}, session {kind} NDCG@20 by #{kind}s "
                   f"(p: paired t-test LPI^RL vs {per_seed[0][kind]['rival']}, seed {seeds[0]})\n",
                   _md_table(_agg(rows, key="bucket"), key="bucket")]
    for k, v in res["errors"].items():
        md.append(f"\n**{k} not run:** {v}")
    if res["sweep"]:
        plot_sweep(out / "sweep.png", res["sweep"])
        md.append("\n![β/λ sweep](sweep.png)")
    if res["by_length"]:
        plot_by_length(out / "by_length.png", res["by_length"])
        md.append("\n![gains by sequence length](by_length.png)")
    (out / "tables.md").write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(json.dumps(res, indent=1, default=lambda o: None) + "\n")
    print("\n".join(md))
    print(f"wrote {out / 'results.json'}, {out / 'tables.md'} in {res['seconds']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
