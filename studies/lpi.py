#!/usr/bin/env python
"""The two experiments of the LPI paper (Liang & Vlassis) in recgym, plus its Figures 2 and 3.

    python -m studies.lpi --quick --out runs/lpi_quick          # < 90 s, tiny synthetic data
    python -m studies.lpi --datasets synthetic,ml-100k --seeds 0 1 2 --data-dir ../shared/data \\
        --out docs/results/lpi
    python -m studies.lpi ... --patience 5     # to convergence (CONVERGE; docs/results/convergence-plan.md)

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

``--paper``: the paper's settings on the paper's data: the bandit part on ``netflix`` (its preset:
the last 200 ratings, loss on the last 50, 2 layers, 8 heads, 200 dims, batch 128, 30 epochs), the
MDP part on ``retailrocket`` and ``yoochoose`` (the last 20 events of each session, 20 epochs at
lr 0.01 for every policy, SAC's switch as its own paper); every agent at its defaults and the dataset's presets otherwise
(docs/paper-settings.md).

Every policy of every (part, dataset, seed) is one harness job (:class:`recgym.experiments.JobSpec`,
:func:`recgym.experiments.run_jobs`; ``--jobs`` workers) in ``<runs>/<part>/<dataset>/seed<N>/``
(``--runs``, default ``runs/lpi``), in two waves: μ̂ (``sasrec``, and SQN / SAC), then the policies
whose ``logging_policy`` is μ̂'s ``model.pt``. A finished job is reused, an interrupted one resumes. The Table 1 numbers are the
jobs' MF user simulator evaluations (every held-out context), Table 3 their test metrics. Then the
study writes ``results.json`` (every number, per seed, with the config), ``tables.md`` (mean ± sample
std over seeds; Tables 1 and 3 with a paired test by seed against μ̂, Holm-corrected across policies),
``sweep.png`` and ``by_length.png`` into ``--out`` (atomically, :mod:`recgym.experiments.report`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recgym.errors import BadInputError, cli
from recgym.experiments import JobSpec, finished_results
from recgym.experiments.cli import command_line
from recgym.experiments.report import pyplot, rows_markdown, rows_over_seeds, save_figure
from studies.common import (code_versions_md, converge_agent, convergence_section, paper_defaults, run_study_jobs, study_parser,
                            study_setup, trained, write_study)

QUICK = dict(
    world=dict(n_users=150, n_items=60, n_genres=6),
    ratings_per_user=15, n_sessions=400, agent=dict(hidden=16, batch_size=64, steps=150, eval_every=75),
    betas_cb=(0.001, 0.1, 1.0, 1000.0), betas=(0.1, 1.0, 10.0), lams=(0.1, 1.0, 10.0),
)
FULL = dict(
    # a CPU budget: 600 steps of batch 256 per agent (μ̂ included), so the whole study (2 datasets ×
    # 3 seeds × 23 fits) fits in 45 minutes on 2 cores; the paper trains to convergence
    world=dict(), ratings_per_user=None, n_sessions=5000, agent=dict(steps=600, eval_every=200),
    betas_cb=(0.001, 0.1, 1.0, 1000.0), betas=(0.01, 0.1, 1.0, 10.0, 100.0), lams=(0.1, 0.5, 1.0, 2.0),
)
CONVERGE = dict(eval_every=25, cap=6250, switch=250, bandit_eval_every=5)
"""``--patience``: validation every 25 steps (a fifth of an epoch of the 5,000-session Synthetic log
at batch 256, 0.4 of ml-100k's last-20 sessions: the measured SASRec / SQN runs peak within 2
epochs, a coarser cadence misses the peak), a cap of 6,250 steps (50 Synthetic epochs), SAC's
switch at step 250 (2 epochs) with the validations up to it not counted toward the patience. The
bandit part validates every 5 steps: at 25, 10 of its 35 converged Synthetic runs were best at
their first validation (its rating logs are small, its models peak within a few dozen steps)."""
QUICK_CONVERGE = dict(eval_every=25, cap=500, switch=50, bandit_eval_every=5)
KS = (5, 10, 20)


def converge_params(P: dict[str, Any], patience: int, settings: dict[str, int]) -> dict[str, Any]:
    """The study's parameters ``P`` in convergence mode (``--patience``): every agent early-stops
    under ``settings``' cap and cadence (the bandit part at its own cadence), SAC switches at a fixed step."""
    return {**P, "agent": converge_agent(P["agent"], patience, settings), "switch": settings["switch"],
            "bandit_eval_every": settings["bandit_eval_every"]}
DATASETS = ("synthetic", "ml-100k", "ml-1m", "netflix", "retailrocket", "yoochoose")
PAPER_MDP = {"epochs": 20, "lr": 0.01}
"""``--paper``, MDP part: "all the models are trained with Adam, batch 256, for 20 epochs" with the
SASRec hyper-parameters of Xin et al. (SQN/SAC, SIGIR'20: lr 0.01), every policy alike (LPI paper §4.2)."""


def paper_parts(ds: str) -> tuple[str, ...]:
    """``--paper``: the paper's part on each dataset: the bandit part where a rating log has an MF user
    simulator (Netflix, §4.1), the MDP part on click / purchase session logs (YooChoose, RetailRocket, §4.2)."""
    from recgym.experiments.job import DEFAULT_SIMS

    return ("bandit",) if ds in DEFAULT_SIMS else ("mdp",)


BANDIT = {"L_μ": "lmu", "IPS": "ips"}
"""Table 1 policies trained on μ̂ besides LPI^CB (one per β)."""
MDP_MU = {"L_μ": "lmu", "PG": "pg", "IPS-PG": "ips-pg"}
"""Table 3 policies trained on μ̂ (LPI^RL last)."""


def _spec(agent: str, unit: tuple[str, str, int], data: dict[str, Any], agent_kw: dict[str, Any], runs: Path,
          name: str, ctx: dict[str, Any], **fields: Any) -> JobSpec:
    """One harness job of a unit (part, dataset, seed), in ``<runs>/<part>/<dataset>/seed<N>/<name>``."""
    part, ds, seed = unit
    pinned = {} if ctx.get("paper") else paper_defaults(agent, data["dataset"], data["protocol"])
    overrides = {**pinned, **agent_kw, **fields.pop("overrides", {})}
    ctx = {k: v for k, v in ctx.items() if k != "paper"}
    return JobSpec(agent=agent, seed=seed, out=str(runs / part / ds / f"seed{seed}" / name), overrides=overrides,
                   **data, **ctx, **fields)


def bandit_jobs(ds: str, seed: int, P: dict, runs: Path, ctx: dict[str, Any]) -> dict[str, JobSpec]:
    """Table 1 on a rating log split leave-one-out, evaluated in its MF user simulator: ``{policy: job}``,
    μ̂ first (its dependants read its ``model.pt``)."""
    from recgym.experiments.job import DEFAULT_SIMS

    if ds not in DEFAULT_SIMS:
        raise BadInputError(f"no MF user simulator env for {ds!r} (bandit part: {', '.join(DEFAULT_SIMS)})")
    agent_kw = dict(P["agent"])
    if "patience" in agent_kw:  # convergence mode: the bandit part's own, finer cadence
        agent_kw["eval_every"] = P["bandit_eval_every"]
    if ds == "synthetic":  # the World's MNAR rating log, the data of its MF user env
        params = {**P["world"], "ratings": True, "world_seed": seed}
        if P["ratings_per_user"]:
            params["ratings_per_user"] = P["ratings_per_user"]
        data = dict(dataset=ds, protocol="loo", data_params=params)
    else:
        data = dict(dataset=ds, protocol="loo", reward_scheme="rating")
        if not ctx.get("paper"):  # --paper: the dataset's preset (Netflix: the last 200 ratings)
            agent_kw = {"state_len": 50, **agent_kw}
    unit, sims = ("bandit", ds, seed), list(DEFAULT_SIMS[ds])
    mu = _spec("sasrec", unit, data, agent_kw, runs, "mu", ctx, sims=sims)
    dep = dict(logging_policy=str(mu.job_dir() / "model.pt"), sims=sims)
    jobs = {"μ̂ (logging)": mu, **{name: _spec(a, unit, data, agent_kw, runs, a, ctx, **dep) for name, a in BANDIT.items()}}
    for beta in P["betas_cb"]:
        jobs[f"LPI^CB (β={beta:g})"] = _spec("lpi-cb", unit, data, agent_kw, runs, f"lpi-cb-beta{beta:g}", ctx,
                                             overrides={"beta": beta}, **dep)
    return jobs


def mdp_jobs(ds: str, seed: int, P: dict, runs: Path, ctx: dict[str, Any]) -> tuple[dict[str, JobSpec], list[tuple]]:
    """Table 3 on session data (synthetic sessions; each user's last 20 ratings on a rating log, the
    paper keeps the last 20 actions): ``({policy: job}, [(param, value, job)])`` with the Figure 2 sweep."""
    if ds == "synthetic":
        data = dict(dataset=ds, protocol="session", data_params={**P["world"], "n_sessions": P["n_sessions"], "world_seed": seed})
    elif ds in ("retailrocket", "yoochoose"):  # click / purchase sessions already
        data = dict(dataset=ds, protocol="session", last_n_events=20)
    else:
        data = dict(dataset=ds, protocol="session", reward_scheme="click-purchase", last_n_events=20)
    unit, kw = ("mdp", ds, seed), P["agent"]
    mu = _spec("sasrec", unit, data, kw, runs, "mu", ctx)
    dep = dict(logging_policy=str(mu.job_dir() / "model.pt"))
    jobs = {"μ̂": mu, **{name: _spec(a, unit, data, kw, runs, a, ctx, **dep) for name, a in MDP_MU.items()}}
    jobs["SQN"] = _spec("sqn", unit, data, kw, runs, "sqn", ctx)
    switch = P.get("switch") or (kw.get("steps") or 1000) // 2  # convergence mode: a fixed step, else half the run
    sac = {"switch_step": switch, **({"patience_after": switch} if "patience" in kw else {})}
    if ctx.get("paper"):  # SAC's own paper setting (its switch at step 30,000)
        sac = {}
    jobs["SAC"] = _spec("sac", unit, data, kw, runs, "sac", ctx, overrides=sac)
    jobs["LPI^RL"] = _spec("lpi", unit, data, kw, runs, "lpi", ctx, **dep)
    settings = [("beta", b, dict(beta=b, lam=1.0)) for b in P["betas"]] + [("lam", l, dict(beta=1.0, lam=l)) for l in P["lams"]]
    sweep = [(param, v, _spec("lpi", unit, data, kw, runs, f"lpi-{param}{v:g}", ctx, overrides=hp, **dep))
             for param, v, hp in settings]
    return jobs, sweep


def bandit_table(jobs: dict[str, JobSpec]) -> list[dict[str, Any]]:
    """Table 1 rows: AR@1 / iAR@1 (and the World's true@1) of the greedy item in the simulator, JS to μ̂."""
    rows = []
    for name, spec in jobs.items():
        res = finished_results(spec)
        if res is None:
            continue
        sim = res["sim"][spec.sims[0]]
        row: dict[str, Any] = {"policy": name, "AR@1": sim["ar@1"], "iAR@1": sim["iar@1"]}
        if "true@1" in sim:
            row["true@1"] = sim["true@1"]
        row["JS"] = res["test"].get("js_mu")
        rows.append(row)
    return rows


def mdp_table(jobs: dict[str, JobSpec]) -> tuple[list[dict[str, Any]], Any, dict[str, Any]]:
    """Table 3 rows (purchase / click HR and NDCG @5/10/20, JS to μ̂), the test log and the trained
    μ̂, SQN and LPI^RL (Figure 3)."""
    from recgym.divergence import divergence_to_logging_policy
    from recgym.experiments.job import load_job_split

    done = {name: res for name, spec in jobs.items() if (res := finished_results(spec)) is not None}
    if "μ̂" not in done:
        return [], None, {}
    test = load_job_split(jobs["μ̂"]).test
    models = {name: trained(jobs[name]) for name in ("μ̂", "SQN", "SAC", "LPI^RL") if name in done}
    rows = []
    for name, res in done.items():
        row: dict[str, Any] = {"policy": name}
        for kind in ("purchase", "click"):
            for k in KS:
                row[f"hr@{k}_{kind}"] = res["test"][f"hr@{k}_{kind}"]
            for k in KS:
                row[f"ndcg@{k}_{kind}"] = res["test"][f"ndcg@{k}_{kind}"]
        row["JS"] = res["test"].get("js_mu")
        if name in ("SQN", "SAC"):  # no μ̂ of their own: JS to the family's μ̂, as the harness for the others
            row["JS"] = divergence_to_logging_policy(models[name], test, "session", mu_agent=models["μ̂"])["js_mu"]
        rows.append(row)
    return rows, test, {n: m for n, m in models.items() if n != "SAC"}


def sweep_points(sweep: list[tuple]) -> list[dict[str, Any]]:
    """Figure 2: validation NDCG@20 (purchase, click) and JS to μ̂ of LPI^RL over β (λ = 1) and λ (β = 1)."""
    out = []
    for param, value, spec in sweep:
        res = finished_results(spec)
        if res is not None:
            v = res["valid"]
            out.append({"param": param, "value": value, "ndcg@20_purchase": v["ndcg@20_purchase"],
                        "ndcg@20_click": v["ndcg@20_click"], "JS": v.get("js_mu")})
    return out


BUCKETS = ((1, 5, "≤5"), (6, 10, "6–10"), (11, 20, "11–20"), (21, 10**9, ">20"))


def by_length(log: Any, agents: dict[str, Any]) -> dict[str, Any]:
    """Figure 3: per-session NDCG@20 (over its click / purchase events) by the session's count of
    clicks / purchases; paired t-test LPI^RL vs SQN (or vs μ̂ when SQN is absent) per bucket."""
    from scipy import stats

    from recgym import metrics
    from recgym.data import KIND_CLICK, KIND_PURCHASE
    from recgym.evaluate import session_ranks

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
    p = study_parser(__doc__, "lpi", DATASETS, "policy x part x dataset x seed")
    args = p.parse_args(argv)
    P = dict(QUICK if args.quick else FULL)
    if args.paper:
        P["agent"] = {}
    if args.patience is not None:
        P = converge_params(P, args.patience, QUICK_CONVERGE if args.quick else CONVERGE)
    datasets, seeds, runs = study_setup(args, "lpi", DATASETS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"command": command_line("python -m studies.lpi", argv), "quick": args.quick, "seeds": seeds,
                           "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in P.items()},
                           "bandit": {}, "mdp": {}, "sweep": {}, "by_length": {}, "errors": {}}
    ctx = dict(data_dir=args.data_dir, threads=args.threads, **({"paper": True} if args.paper else {}))
    bandit: dict[tuple[str, int], dict[str, JobSpec]] = {}
    mdp: dict[tuple[str, int], tuple[dict[str, JobSpec], list[tuple]]] = {}
    for ds in datasets:
        parts = paper_parts(ds) if args.paper else ("bandit", "mdp")
        for seed in seeds:
            if "bandit" in parts:
                try:
                    bandit[(ds, seed)] = bandit_jobs(ds, seed, P, runs, ctx)
                except BadInputError as e:
                    res["errors"][f"bandit/{ds}"] = str(e)
            if "mdp" in parts:
                mdp_P = {**P, "agent": dict(PAPER_MDP)} if args.paper else P
                mdp[(ds, seed)] = mdp_jobs(ds, seed, mdp_P, runs, ctx)
    # MDP before bandit and bigger data first, so no long job runs alone at the end
    jobs = [j for (ds, _), (js, sw) in sorted(mdp.items(), key=lambda kv: kv[0][0] == "synthetic")
            for j in [*js.values(), *(spec for _, _, spec in sw)]]
    jobs += [j for (ds, _), js in sorted(bandit.items(), key=lambda kv: kv[0][0] == "synthetic") for j in js.values()]
    # two waves: μ̂ (and the policies without one), then the policies that load μ̂'s model.pt
    failed = run_study_jobs([j for j in jobs if j.logging_policy is None], args.jobs, t0, runs / "mf")
    failed.update(run_study_jobs([j for j in jobs if j.logging_policy is not None and Path(j.logging_policy).exists()],
                                 args.jobs, t0, runs / "mf"))
    for ds in datasets:
        for part, units in (("bandit", bandit), ("mdp", mdp)):
            for seed in seeds:
                if (ds, seed) not in units:
                    continue
                js = units[(ds, seed)] if part == "bandit" else units[(ds, seed)][0]
                errors = [failed[str(j.job_dir())] for j in js.values() if str(j.job_dir()) in failed]
                if errors and f"{part}/{ds}" not in res["errors"]:
                    print(f"studies.lpi: {part} on {ds}: {len(errors)} job(s) failed, first: {errors[0]}", file=sys.stderr)
                    res["errors"][f"{part}/{ds}"] = errors[0]
                if part == "bandit":
                    if rows := bandit_table(js):
                        res["bandit"].setdefault(ds, []).append(rows)
                    continue
                rows, test, models = mdp_table(js)
                if not rows:
                    continue
                res["mdp"].setdefault(ds, []).append(rows)
                res["sweep"].setdefault(ds, []).append(sweep_points(units[(ds, seed)][1]))
                if "LPI^RL" in models:
                    res["by_length"].setdefault(ds, []).append(by_length(test, models))
    res["seconds"] = time.perf_counter() - t0

    kind = "QUICK SMOKE RUN on tiny synthetic data — not results" if args.quick else "the paper's settings (--paper)" if args.paper else "full"
    md = [f"# LPI study ({kind})",
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
    cells: dict[str, list[JobSpec]] = {}
    for (ds, _), js in sorted(bandit.items()):
        for name, j in js.items():
            cells.setdefault(f"bandit {ds} {name}", []).append(j)
    for (ds, _), (js, sw) in sorted(mdp.items()):
        for name, j in [*js.items(), *((f"LPI^RL {param}={v:g}", j) for param, v, j in sw)]:
            cells.setdefault(f"mdp {ds} {name}", []).append(j)
    if versions := code_versions_md([j for js in cells.values() for j in js]):
        md.insert(2, versions + "\n")
    if conv := convergence_section(cells, "validation ndcg@10 (bandit) / ndcg@20 (MDP)"):
        md += ["\n## Convergence", *conv]
    if res["sweep"]:
        plot_sweep(out / "sweep.png", res["sweep"])
        md.append("\n![β/λ sweep](sweep.png)")
    if res["by_length"]:
        plot_by_length(out / "by_length.png", res["by_length"])
        md.append("\n![gains by sequence length](by_length.png)")
    return write_study(out, md, res, failed)


if __name__ == "__main__":
    sys.exit(main())
