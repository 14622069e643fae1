"""The Q-learning family against plain SASRec, N seeds each, on synthetic and ml-100k.

    python -m studies.qlearning --quick --out /tmp/ql_quick                 # smoke run, < 90 s
    RECGYM_DATA_DIR=../shared/data nice python -m studies.qlearning          # the study (docs/results)
    RECGYM_DATA_DIR=../shared/data nice python -m studies.qlearning --patience 5   # to convergence

Runs ``sasrec, sqn, sac, snqn, sa2c, co, ccql`` (SASRec encoder) for every seed on every dataset as
harness jobs (:func:`recgym.experiments.run_job`, fanned out by :func:`recgym.experiments.run_jobs`):
each writes ``<runs>/<dataset>/<agent>/seed<N>/results.json``; a finished job is reused, an
interrupted one resumes from its checkpoint. Then it writes ``<out>/qlearning.md`` (mean ± sample
std over seeds of the test metrics, the Q diagnostics, paired differences to ``sasrec`` with Holm's
correction) and ``<out>/qlearning_<dataset>.png`` (validation curves and Q(s, a) of logged vs random
actions, one column per agent). Session protocol on both datasets: ml-100k is
``load_split("ml-100k", reward_scheme="click-purchase", protocol="session")`` (each user's whole
history one session; the default leave-one-out split has far too few targets), so the agents'
ml-100k presets (leave-one-out ones) do not apply. All agents share the SQN session setting and
the same number of steps; the switch step of ``sac``, ``sa2c``, ``co`` and ``ccql`` is half of the run.

Convergence mode (``--patience N``): every run validates 3-5 times per epoch (:data:`CONVERGE`) and
stops after N validations without a strict improvement of validation NDCG@20, under a cap of 50
epochs (``--steps`` sets another cap); the actor switch is at a fixed step (2 epochs) and, for the
switched agents, validations before it do not count toward the patience (``patience_after``).
Its runs go to ``runs/qlearning_converged`` (fixed-length runs cannot be continued into them:
another validation cadence). The report adds each cell's best and stop step (mean ± sample std)
and flags runs that ended at the cap or were best at their first validation.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recgym.errors import EXIT_JOBS_FAILED, BadInputError, cli
from recgym.experiments import JobSpec, run_jobs
from recgym.experiments.job import finished_results
from recgym.experiments.cli import command_line, split_list
from recgym.experiments.report import atomic_write, code_versions_markdown, fmt_cell, md_table, paired_tests, pyplot, save_figure, summary, write_json

AGENTS = ("sasrec", "sqn", "sac", "snqn", "sa2c", "co", "ccql")
BASE = "sasrec"
DATASETS = ("synthetic", "ml-100k")
SWITCHED = ("sac", "sa2c", "co", "ccql")
"""Agents whose actor changes at ``switch_step``."""
STEPS = {"synthetic": 400, "ml-100k": 400}
"""Default training steps per run (CPU budget, see docs/results/qlearning.md)."""
QUICK_STEPS = 80
CONVERGE = {"synthetic": {"eval_every": 25, "cap": 6250, "switch": 250},
            "ml-100k": {"eval_every": 100, "cap": 15600, "switch": 600}}
"""``--patience``: validation 5 (Synthetic) / 3 (ml-100k) times per epoch (31,898 / 78,454 training
transitions, batch 256: 125 / 307 steps per epoch; measured, SASRec and SQN peak within the first 2
epochs at lr 0.01, so a coarser cadence misses the peak), a cap of 50 epochs no measured run came
near, the actor switch after 2 epochs (where the Q head has trained as long as the peak of SQN)."""
QUICK_CONVERGE = {"eval_every": 10, "cap": 400, "switch": 40}
QUICK_DATA = dict(n_sessions=400, n_users=120, n_items=80, n_genres=6)
"""``--quick``: a tiny synthetic world."""
TABLE = ("hr@20_purchase", "ndcg@20_purchase", "hr@20_click", "ndcg@20_click", "reward@20")
SETTING_MD = """## Setting

Session protocol of the SQN/SAC/SNQN/SA2C/CCQL papers: every event of every test session is a
target, ranked over the full catalogue from the (up to 10) items before it; purchase metrics
over purchase events, click metrics over click events; reward@20 = sum of the rewards of the
test events hit in the top 20 (clicks 0.2, purchases 1.0).

* **synthetic**: `load_split("synthetic", seed=seed)`: 5,000 sessions of the default world
  (500 items), sessions shuffled with the seed and cut 80/10/10; purchase probability follows
  the world's true utility.
* **ml-100k**: `load_split("ml-100k", reward_scheme="click-purchase", protocol="session", seed=seed)`:
  each user's whole chronological history is one session, users are cut 80/10/10 (754 / 94 /
  95), every rating of a test user is a target (~10,000 targets, ~55% purchases = rating ≥ 4).
  *Not* the default `load_split("ml-100k")`: that is the leave-one-out split (only each user's
  last rating is a test target: 943 targets, ~500 purchases), far too few to rank six RL agents
  on purchases, and not the protocol of these papers.

All agents: SASRec encoder, the SQN session setting (hidden 64, 1 block, 1 head, dropout 0.1,
state_len 10, batch 256, γ = 0.5, Adam lr 0.01; co/ccql their release's 0.005 then 0.001),
each paper's other defaults (SNQN/SA2C/CCQL 10 negatives; CCQL negative reward −1, α = 0.01),
{length}, validation (and the Q diagnostics) {eval_every}, the best validation
NDCG@20 checkpoint evaluated on test. The actor switch of sac / sa2c / co / ccql is {switch}. The seed fixes the split and the initial weights: seed N of every agent
sees the same data, so differences to sasrec are paired by seed.{quick}
"""
ANALYSIS_BEGIN, ANALYSIS_END = "<!-- analysis:begin -->", "<!-- analysis:end -->"


def converge_settings(dataset: str, quick: bool) -> dict[str, int]:
    """Validation cadence, cap and switch step of the convergence mode (:data:`CONVERGE`)."""
    return QUICK_CONVERGE if quick else CONVERGE[dataset]


def overrides(agent: str, steps: int, quick: bool, patience: int | None = None, dataset: str = "synthetic") -> dict[str, Any]:
    """Config overrides of one job: the shared length / validation cadence / switch step; with
    ``patience``, ``steps`` is the cap and the cadence and switch come from :data:`CONVERGE`."""
    if patience is None:
        o: dict[str, Any] = {"steps": steps, "eval_every": max(1, steps // 8)}
    else:
        c = converge_settings(dataset, quick)
        o = {"steps": steps, "eval_every": c["eval_every"], "patience": patience}
    if quick:
        o.update(hidden=16, batch_size=64)
    if agent in SWITCHED:
        o["switch_step"] = steps // 2 if patience is None else converge_settings(dataset, quick)["switch"]
        if patience is not None:
            o["patience_after"] = o["switch_step"]
    return o


def job(dataset: str, agent: str, seed: int, steps: int, quick: bool, runs: Path, data_dir: str | None = None,
        threads: int = 1, patience: int | None = None) -> JobSpec:
    """The harness job of one (dataset, agent, seed)."""
    return JobSpec(agent=agent, dataset=dataset, seed=seed, protocol="session", out=str(runs / dataset / agent / f"seed{seed}"),
                   data_dir=data_dir, reward_scheme="click-purchase" if dataset == "ml-100k" else None,
                   data_params=dict(QUICK_DATA) if quick and dataset == "synthetic" else {},
                   overrides=overrides(agent, steps, quick, patience, dataset),
                   test_extras=["studies.qlearning:neg_q_fraction"], keep_diverged=True, threads=threads)


def neg_q_fraction(agent: Any, split: Any, rows: int = 4096) -> dict[str, float | None]:
    """``neg_q_frac``: share of logged (s, a) of the test part with Q(s, a) < 0, the share of negative
    per-sample weights of SAC's Q-weighted CE (which then pushes the logged item *down*)."""
    import torch

    if not hasattr(agent, "q_values"):
        return {"neg_q_frac": None}
    tr = split.test.transitions(agent.state_len)
    idx = np.sort(np.random.default_rng(0).choice(len(tr), size=min(rows, len(tr)), replace=False))
    b = tr.batch(idx, agent.device)
    with torch.no_grad():
        q = agent.q_values(b["state"], b["state_len"]).gather(1, b["action"][:, None])
    return {"neg_q_frac": float((q < 0).float().mean())}


# ------------------------------------------------------------------------------ aggregation
def aggregate(results: dict[tuple[str, str], list[dict[str, Any]]]) -> dict[str, Any]:
    """Per ``"<dataset>/<agent>"``: :func:`~recgym.experiments.report.summary` of the test metrics and
    Q diagnostics; paired test of purchase NDCG@20 against ``sasrec`` by seed, Holm across agents."""
    out: dict[str, Any] = {}
    for (ds, agent), runs in results.items():
        row: dict[str, Any] = {"n_seeds": len(runs)}
        for m in (*TABLE, "neg_q_frac"):
            row[m] = summary([r["test"].get(m) for r in runs])
        last = [r["curves"][-1] for r in runs if r["curves"]]
        for q in ("q_logged", "q_random"):
            row[f"{q}_end"] = summary([c.get(q) for c in last])
            row[f"{q}_max"] = summary([max((abs(c.get(q) or 0.0) for c in r["curves"]), default=None) for r in runs])
        row["best_step"] = summary([r["best_step"] for r in runs])
        row["stopped_at"] = summary([r.get("stopped_at") for r in runs])
        row["train_s"] = summary([r["timing_s"]["train"] for r in runs])
        row["diverged"] = sum(r.get("diverged") is not None for r in runs)
        out[f"{ds}/{agent}"] = row
    for ds in {ds for ds, _ in results}:
        by_seed = {a: {r["seed"]: r["test"].get("ndcg@20_purchase") for r in runs}
                   for (d, a), runs in results.items() if d == ds}
        for a, test in paired_tests(by_seed, BASE).items():
            out[f"{ds}/{a}"]["vs_base"] = test
    return out


def _fmt(cell: Any, digits: int = 4) -> str:
    if cell is None or (isinstance(cell, dict) and cell.get("mean") is None):
        return "–"
    if isinstance(cell, dict):
        return fmt_cell(cell, digits)
    if isinstance(cell, float):
        return f"{cell:.{digits}g}" if abs(cell) < 1e-3 and cell != 0 else f"{cell:.{digits}f}"
    return str(cell)


def tables(agg: dict[str, Any], datasets: list[str], agents: list[str]) -> str:
    md: list[str] = []
    for ds in datasets:
        rows = [(a, agg.get(f"{ds}/{a}")) for a in agents if agg.get(f"{ds}/{a}")]
        if not rows:
            continue
        best = {m: max((r[m]["mean"] for _, r in rows if r[m]["mean"] is not None), default=None) for m in TABLE}
        body = [[a, r["n_seeds"], *[f"**{_fmt(r[m], 1 if m.startswith('reward') else 4)}**"
                                    if r[m]["mean"] is not None and r[m]["mean"] == best[m]
                                    else _fmt(r[m], 1 if m.startswith("reward") else 4) for m in TABLE]]
                for a, r in rows]
        md += [f"\n### {ds}: test metrics (mean ± sample std over seeds)\n", md_table(["agent", "seeds", *TABLE], body)]
        diag = []
        for a, r in rows:
            t = r.get("vs_base", {})
            d = t.get("diff_vs_baseline")
            diag.append([a, "(baseline)" if a == BASE else _fmt(d), t.get("wins", "" if a == BASE else "–"),
                         "" if a == BASE else _fmt(t.get("p_vs_baseline"), 3), "" if a == BASE else _fmt(t.get("p_holm"), 3),
                         _fmt(r["q_logged_end"], 3), _fmt(r["q_random_end"], 3), _fmt(r["q_logged_max"], 3),
                         _fmt(r["neg_q_frac"], 3), _fmt(r["best_step"], 0), _fmt(r["train_s"], 1)])
        md += [f"\n### {ds}: purchase NDCG@20 against {BASE} (paired by seed: same split, same init seed) "
               "and Q diagnostics\n",
               md_table(["agent", f"Δ ndcg@20_purchase vs {BASE}", "seeds better", "p (paired t)", "p (Holm)",
                         "q_logged (end)", "q_random (end)", "max abs q_logged", "share Q(s,a)<0 on test",
                         "best step", "train s/run"], diag)]
        div = [a for a, r in rows if r["diverged"]]
        if div:
            md.append(f"\nNon-finite loss (training stopped, best weights kept) in: {', '.join(div)}.")
    return "\n".join(md)


def plot(path: Path, ds: str, results: dict[tuple[str, str], list[dict[str, Any]]], agents: list[str]) -> None:
    """Row 1: validation NDCG@20 (purchase, click); row 2: mean Q of logged and of random actions;
    mean ± std over seeds; one column per agent; dotted line = switch step."""
    plt = pyplot()
    cols = [a for a in agents if results.get((ds, a))]
    fig, axes = plt.subplots(2, len(cols), figsize=(3.1 * len(cols), 5.6), squeeze=False, sharex=True)
    for j, a in enumerate(cols):
        runs = results[(ds, a)]
        # runs that stopped early end early: each step's band is over the runs that reached it
        steps = np.array(sorted({c["step"] for r in runs for c in r["curves"]}))

        def band(ax: Any, key: str, label: str, color: str) -> None:
            at = [{c["step"]: c.get(key) for c in r["curves"]} for r in runs]
            y = np.array([[np.nan if a.get(t) is None else a[t] for t in steps] for a in at], dtype=float)
            if y.size == 0 or np.all(np.isnan(y)):
                return
            n = (~np.isnan(y)).sum(0)
            m = np.nanmean(np.where(n > 0, y, 0.0), 0)
            s = np.where(n > 1, np.sqrt(np.nansum((y - m) ** 2, 0) / np.maximum(n - 1, 1)), 0.0)
            ax.plot(steps, m, "-", color=color, label=label, lw=1.4)
            ax.fill_between(steps, m - s, m + s, color=color, alpha=0.25, lw=0)

        band(axes[0, j], "ndcg@20_purchase", "purchase", "C3")
        band(axes[0, j], "ndcg@20_click", "click", "C0")
        axes[0, j].set_title(a)
        band(axes[1, j], "q_logged", "Q(s, a logged)", "C2")
        band(axes[1, j], "q_random", "Q(s, a random)", "C7")
        if a == "sasrec":
            axes[1, j].text(0.5, 0.5, "no Q head", ha="center", va="center", transform=axes[1, j].transAxes)
        sw = runs[0]["config"].get("switch_step")
        for ax in axes[:, j]:
            if sw is not None and a in SWITCHED:
                ax.axvline(sw, ls=":", color="k", lw=1)
            ax.grid(alpha=0.3)
        axes[1, j].set_xlabel("training step")
    axes[0, 0].set_ylabel("valid NDCG@20")
    axes[1, 0].set_ylabel("mean Q on valid")
    axes[0, 0].legend(fontsize=8)
    if len(cols) > 1:
        axes[1, 1].legend(fontsize=8)
    fig.suptitle(f"{ds}: validation curves and Q diagnostics, mean ± std over seeds (dotted: switch step)")
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


def length_md(args: argparse.Namespace, datasets: list[str], steps: dict[str, int]) -> str:
    if args.patience is None:
        return ", ".join(f"{ds}: {steps[ds]} steps per run" for ds in datasets)
    return (f"to convergence: early stopping after {args.patience} validations without a strict improvement of "
            "validation NDCG@20, under a cap of " + ", ".join(f"{steps[ds]} steps ({ds})" for ds in datasets))


def _eval_every(args: argparse.Namespace, ds: str, steps: dict[str, int]) -> int:
    return overrides("sqn", steps[ds], args.quick, args.patience, ds)["eval_every"]


def _switch(args: argparse.Namespace, ds: str, steps: dict[str, int]) -> str:
    sw = overrides("sac", steps[ds], args.quick, args.patience, ds)["switch_step"]
    return f"{sw}" + ("" if args.patience is None else ", validations up to it not counted toward the patience")


def _keep_analysis(path: Path) -> str:
    """The hand-written analysis block of an existing report (kept across regenerations)."""
    if not path.exists():
        return ""
    m = re.search(re.escape(ANALYSIS_BEGIN) + r"(.*?)" + re.escape(ANALYSIS_END), path.read_text(), re.S)
    return m.group(1).strip() if m else ""


def convergence_md(results: dict[tuple[str, str], list[dict[str, Any]]], datasets: list[str], agents: list[str]) -> str:
    """Per dataset: each agent's best / stop step (mean ± sample std) and the flagged runs."""
    from recgym.experiments.report import convergence_markdown, run_convergence

    md: list[str] = []
    for ds in datasets:
        conv = {a: {str(r["seed"]): run_convergence(r, r.get("selection_metric")) for r in results[(ds, a)]}
                for a in agents if results.get((ds, a))}
        lines = convergence_markdown(conv, "ndcg@20")
        if lines:
            md += [f"\n### {ds}: convergence", *lines]
    return "\n".join(md)


def _versions_md(results: dict[tuple[str, str], list[dict[str, Any]]]) -> str:
    """The code version line of the report (one version, or the mix per run) from each run's ``results.json``."""
    versions: dict[str, list[str]] = {}
    for (ds, a), runs in sorted(results.items()):
        for r in runs:
            versions.setdefault(r.get("code_version", "unrecorded"), []).append(f"{ds}/{a}/{r['seed']}")
    return code_versions_markdown(versions)


def write_report(out: Path, results: dict[tuple[str, str], list[dict[str, Any]]], args: argparse.Namespace,
                 datasets: list[str], agents: list[str], steps: dict[str, int], wall_s: float,
                 errors: list[str]) -> Path:
    agg = aggregate(results)
    doc = out / "qlearning.md"
    command, prev = args.command, out / "qlearning.json"
    if args.report_only and prev.exists():  # a rebuilt report names the run that made the numbers
        old = json.loads(prev.read_text())
        command, wall_s = old.get("command", command), float(old.get("wall_s", wall_s))
    run_s = sum(r["timing_s"]["train"] + r["timing_s"]["evaluate"] for v in results.values() for r in v)
    analysis = _keep_analysis(doc) or "_(no analysis written yet)_"
    figs = []
    for ds in datasets:
        if any(results.get((ds, a)) for a in agents):
            plot(out / f"qlearning_{ds}.png", ds, results, agents)
            figs.append(f"![{ds}](qlearning_{ds}.png)")
    title = "QUICK SMOKE RUN on tiny synthetic data, not results" if args.quick else "results"
    md = [f"# The Q-learning family vs SASRec ({title})", "",
          f"Produced by `{command}`: {wall_s / 60:.1f} min of wall time (for the runs that invocation made; "
          f"finished runs are reused), {run_s / 60:.1f} min summed over the runs' train + evaluate time. "
          f"Seeds {args.seeds}; " + length_md(args, datasets, steps) + ".", "",
          *([versions, ""] if (versions := _versions_md(results)) else []),
          SETTING_MD.format(eval_every=", ".join(f"{ds}: every {_eval_every(args, ds, steps)} steps" for ds in datasets),
                            switch=("at a fixed step (" if args.patience else "at half of the run (")
                            + ", ".join(f"{ds}: step {_switch(args, ds, steps)}" for ds in datasets) + ")",
                            length="each trained to convergence (the rule above)" if args.patience
                            else "the same number of steps",
                            quick=" **--quick: hidden 16, batch 64, a 400-session world of 80 items.**" if args.quick else ""),
          "## Tables", tables(agg, datasets, agents), convergence_md(results, datasets, agents), "",
          "## Curves", "", *figs, "", "## Analysis", "", ANALYSIS_BEGIN, analysis, ANALYSIS_END, ""]
    if errors:
        md += ["## Failed jobs", "", *[f"- {e}" for e in errors], ""]
    atomic_write(doc, "\n".join(md))
    write_json(out / "qlearning.json", {"command": command, "wall_s": wall_s, "steps": steps, "seeds": args.seeds,
                                        "patience": args.patience, "aggregate": agg}, indent=1)
    return doc


# ------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"tiny synthetic world, 2 seeds, {QUICK_STEPS} steps (< 90 s)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (default 5; 2 with --quick)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps per run (default {STEPS}; {QUICK_STEPS} with --quick); with --patience: the cap")
    p.add_argument("--patience", type=int, default=None, metavar="N",
                   help="train to convergence: stop after N validations (3-5 per epoch) without a strict improvement, "
                        "under a cap of 50 epochs (see CONVERGE); runs in runs/qlearning_converged")
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset of synthetic,ml-100k")
    p.add_argument("--agents", default=",".join(AGENTS), help="comma-separated subset of " + ",".join(AGENTS))
    p.add_argument("--out", default=None, help="report folder (default docs/results; runs/qlearning_quick with --quick)")
    p.add_argument("--runs", default=None, help="per-run folders (default runs/qlearning; <out>/runs with --quick)")
    p.add_argument("--data-dir", default=None, help="data folder (default $RECGYM_DATA_DIR or ~/.cache/recgym)")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (each single-threaded)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    args = p.parse_args(argv)
    args.command = command_line("python -m studies.qlearning", argv)
    return args


@cli("studies.qlearning")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    datasets = ["synthetic"] if args.quick else split_list(args.datasets)
    agents = split_list(args.agents)
    if bad := sorted(set(datasets) - set(DATASETS)):
        raise BadInputError(f"--datasets: unknown {bad}; choose from {list(DATASETS)}")
    if bad := sorted(set(agents) - set(AGENTS)):
        raise BadInputError(f"--agents: unknown {bad}; choose from {list(AGENTS)}")
    n_seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    if n_seeds < 1 or (args.steps is not None and args.steps < 10) or args.jobs < 1 or (args.patience or 1) < 1:
        raise BadInputError("--seeds must be >= 1, --steps >= 10, --jobs >= 1 and --patience >= 1")
    args.seeds = list(range(n_seeds))
    if args.patience is None:
        steps = {ds: args.steps or (QUICK_STEPS if args.quick else STEPS[ds]) for ds in datasets}
    else:
        steps = {ds: args.steps or converge_settings(ds, args.quick)["cap"] for ds in datasets}
    out = Path(args.out or ("runs/qlearning_quick" if args.quick else "docs/results"))
    runs = Path(args.runs or (out / "runs" if args.quick else
                              "runs/qlearning" if args.patience is None else "runs/qlearning_converged"))
    out.mkdir(parents=True, exist_ok=True)

    # seed-major order: an interrupted study still has every agent on every dataset for the first seeds
    jobs = [job(ds, a, s, steps[ds], args.quick, runs, args.data_dir, args.threads, args.patience)
            for s in args.seeds for ds in datasets for a in agents]
    t0 = time.perf_counter()
    errors: list[str] = []
    if not args.report_only:
        for st in run_jobs(jobs, workers=args.jobs, log=lambda m: print(f"[{time.perf_counter() - t0:7.1f}s] {m}", flush=True)):
            if st["status"] in ("failed", "crashed"):
                errors.append(f"{st['dir']}: {st['error']}")
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for j in jobs:
        res = finished_results(j)  # a folder holding a run with other settings does not count
        if res is not None:
            results.setdefault((j.dataset, j.agent), []).append(res)
    wall = time.perf_counter() - t0
    if not results:
        for e in errors:
            print(f"studies.qlearning: {e}", file=sys.stderr)
        if errors:
            return EXIT_JOBS_FAILED
        raise BadInputError("no finished runs to report")
    doc = write_report(out, results, args, datasets, agents, steps, wall, errors)
    print(tables(aggregate(results), datasets, agents))
    print(f"wrote {doc} in {wall:.1f}s")
    return EXIT_JOBS_FAILED if errors else 0


if __name__ == "__main__":
    sys.exit(main())
