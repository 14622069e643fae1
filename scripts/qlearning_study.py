#!/usr/bin/env python
"""The Q-learning family against plain SASRec, N seeds each, on synthetic and ml-100k.

    python scripts/qlearning_study.py --quick --out /tmp/ql_quick          # smoke run, < 90 s
    RECGYM_DATA_DIR=../shared/data nice python scripts/qlearning_study.py   # the study (docs/results)

Runs ``sasrec, sqn, sac, snqn, sa2c, co, ccql`` (SASRec encoder) for every seed on every dataset
through the shared pieces only: ``recgym.agents.registry.make_agent`` → ``fit`` (the shared loop of
``recgym.agents.training``) → ``recgym.evaluate.evaluate``. Each job writes
``<runs>/<dataset>/<agent>/seed<N>/results.json`` (the ``scripts/offline_eval.py`` schema plus a
``study`` block); a job whose ``results.json`` exists with the same study settings is skipped, so
an interrupted study resumes where it stopped (and an interrupted job resumes from its own
checkpoint). Then it writes ``<out>/qlearning.md`` (mean ± std over seeds of the test metrics, the
Q diagnostics, paired differences to ``sasrec``) and ``<out>/qlearning_<dataset>.png`` (validation
curves and Q(s, a) of logged vs random actions, mean ± std over seeds, one column per agent).

Protocol (the session protocol of the SQN/SAC/SNQN/SA2C/CCQL papers, every event a target):

* ``synthetic``: ``load_split("synthetic", seed=seed)`` — 5,000 sessions of one fixed world,
  shuffled with the seed and cut 80/10/10; clicks r = 0.2, purchases r = 1.0.
* ``ml-100k``: NOT ``load_split("ml-100k")``: that is the leave-one-out split (only each user's
  last rating is a test target: 943 targets, ~500 purchases, too noisy to rank six RL agents).
  The registry has no protocol override, so the study builds the session split itself:
  ``split_by_session(load("ml-100k", reward_scheme="click-purchase"), seed=seed)`` — each user's
  whole chronological history is one session, users are cut 80/10/10, every rating of a test
  user is a target (~10,000 targets, ~55% purchases = rating ≥ 4, r = 1.0; others clicks, r = 0.2).

All agents share the SQN session setting (hidden 64, 1 block, 1 head, state_len 10, batch 256,
their papers' learning rates) and the same number of steps; the switch step of ``sac``, ``sa2c``,
``co`` and ``ccql`` is half of the run (the papers' 15k–30k steps lie beyond a CPU-sized run).
The ml-100k dataset presets of the agents are the leave-one-out ones, so they are not applied.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
for p in (_ROOT, _ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

AGENTS = ("sasrec", "sqn", "sac", "snqn", "sa2c", "co", "ccql")
DATASETS = ("synthetic", "ml-100k")
SWITCHED = ("sac", "sa2c", "co", "ccql")
"""Agents whose actor changes at ``switch_step``."""
STEPS = {"synthetic": 400, "ml-100k": 400}
"""Default training steps per run (CPU budget, see docs/results/qlearning.md)."""
QUICK_STEPS = 80
QUICK_DATA = dict(n_sessions=400, n_users=120, n_items=80, n_genres=6)
"""``--quick``: a tiny synthetic world."""
TABLE = ("hr@20_purchase", "ndcg@20_purchase", "hr@20_click", "ndcg@20_click", "reward@20")
CURVES = ("ndcg@20_purchase", "ndcg@20_click")
SETTING_MD = """## Setting

Session protocol of the SQN/SAC/SNQN/SA2C/CCQL papers: every event of every test session is a
target, ranked over the full catalogue from the (up to 10) items before it; purchase metrics
over purchase events, click metrics over click events; reward@20 = sum of the rewards of the
test events hit in the top 20 (clicks 0.2, purchases 1.0).

* **synthetic**: `load_split("synthetic", seed=seed)`: 5,000 sessions of the default world
  (500 items), sessions shuffled with the seed and cut 80/10/10; purchase probability follows
  the world's true utility.
* **ml-100k**: `split_by_session(load("ml-100k", reward_scheme="click-purchase"), seed=seed)`:
  each user's whole chronological history is one session, users are cut 80/10/10 (754 / 94 /
  95), every rating of a test user is a target (~10,000 targets, ~55% purchases = rating ≥ 4).
  *Not* `load_split("ml-100k")`: that is the leave-one-out split (only each user's last rating
  is a test target: 943 targets, ~500 purchases), far too few to rank six RL agents on
  purchases, and not the protocol of these papers; the registry has no protocol override.

All agents: SASRec encoder, the SQN session setting (hidden 64, 1 block, 1 head, dropout 0.1,
state_len 10, batch 256, γ = 0.5, Adam lr 0.01; co/ccql their release's 0.005 then 0.001),
each paper's other defaults (SNQN/SA2C/CCQL 10 negatives; CCQL negative reward −1, α = 0.01),
the same number of steps, validation (and the Q diagnostics) {eval_every}, the best validation
NDCG@20 checkpoint evaluated on test. The actor switch of sac / sa2c / co / ccql is at half of
the run ({switch}). The seed fixes the split and the initial weights: seed N of every agent
sees the same data, so differences to sasrec are paired by seed.{quick}
"""
ANALYSIS_BEGIN, ANALYSIS_END = "<!-- analysis:begin -->", "<!-- analysis:end -->"


@dataclasses.dataclass(frozen=True)
class Job:
    dataset: str
    agent: str
    seed: int
    steps: int
    quick: bool

    @property
    def settings(self) -> dict[str, Any]:
        """Everything that defines the job's numbers (a stored run with other settings is redone)."""
        return {"dataset": self.dataset, "agent": self.agent, "seed": self.seed, "steps": self.steps,
                "quick": self.quick, "protocol": "session", "overrides": overrides(self)}


def overrides(job: Job) -> dict[str, Any]:
    """Config overrides of one job: the shared length / validation cadence / switch step."""
    o: dict[str, Any] = {"steps": job.steps, "eval_every": max(1, job.steps // 8)}
    if job.quick:
        o.update(hidden=16, batch_size=64)
    if job.agent in SWITCHED:
        o["switch_step"] = job.steps // 2
    return o


# ------------------------------------------------------------------------------ data
_SPLITS: dict[tuple[str, int, bool], Any] = {}


def load_data(dataset: str, seed: int, quick: bool, data_dir: str | None = None) -> Any:
    """The session split of ``dataset`` for ``seed`` (cached in-process; see the module docstring)."""
    key = (dataset, seed, quick)
    if key not in _SPLITS:
        from recgym.data import load, load_split, split_by_session

        if dataset == "synthetic":
            _SPLITS[key] = load_split("synthetic", data_dir, seed=seed, **(QUICK_DATA if quick else {}))
        elif dataset == "ml-100k":
            log = load("ml-100k", data_dir, reward_scheme="click-purchase")
            _SPLITS[key] = split_by_session(log, seed=seed)
        else:
            raise ValueError(f"--datasets: unknown dataset {dataset!r}; the study knows {list(DATASETS)}")
    return _SPLITS[key]


# ------------------------------------------------------------------------------ one job
def run_dir(runs: Path, job: Job) -> Path:
    return runs / job.dataset / job.agent / f"seed{job.seed}"


def load_done(runs: Path, job: Job) -> dict[str, Any] | None:
    """The stored results of ``job`` when they exist and were made with the same settings."""
    path = run_dir(runs, job) / "results.json"
    if not path.exists():
        return None
    try:
        res = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return res if res.get("study") == job.settings else None


@dataclasses.dataclass
class _Silence:
    def __call__(self, msg: str) -> None:
        pass


def neg_q_fraction(agent: Any, log: Any, rows: int = 4096) -> float | None:
    """Share of logged (s, a) of ``log`` with Q(s, a) < 0: the share of negative per-sample weights
    of SAC's Q-weighted CE (which then pushes the logged item *down*)."""
    import torch

    if not hasattr(agent, "q_values"):
        return None
    tr = log.transitions(agent.state_len)
    idx = np.sort(np.random.default_rng(0).choice(len(tr), size=min(rows, len(tr)), replace=False))
    b = tr.batch(idx, agent.device)
    with torch.no_grad():
        q = agent.q_values(b["state"], b["state_len"]).gather(1, b["action"][:, None])
    return float((q < 0).float().mean())


def run_job(job: Job, runs: Path, data_dir: str | None = None) -> dict[str, Any]:
    """Train and evaluate one (dataset, agent, seed); write and return its ``results.json``."""
    from offline_eval import _clean, data_checksum, versions

    from recgym.agents.registry import make_agent
    from recgym.agents.training import NonFiniteLossError
    from recgym.data.io import atomic_path
    from recgym.evaluate import evaluate

    split = load_data(job.dataset, job.seed, job.quick, data_dir)
    out = run_dir(runs, job)
    out.mkdir(parents=True, exist_ok=True)
    # agent presets: synthetic's own; none for ml-100k (its presets are the leave-one-out ones)
    preset = "synthetic" if job.dataset == "synthetic" else None
    agent = make_agent(job.agent, split.n_items, seed=job.seed, dataset=preset, protocol="session", **overrides(job))
    ckpt = out / "checkpoint.pt"
    t0 = time.perf_counter()
    diverged = None
    try:
        agent.fit(split.train, split.valid, protocol="session", checkpoint_path=ckpt, resume=True, progress=False,
                  log=_Silence())
    except NonFiniteLossError as e:  # keep the best weights so far and say so in the results
        diverged = str(e)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    valid, test = _clean(evaluate(agent, split.valid, "session")), _clean(evaluate(agent, split.test, "session"))
    test["neg_q_frac"] = neg_q_fraction(agent, split.test)
    eval_s = time.perf_counter() - t0
    res = {
        "agent": job.agent, "agent_class": f"{type(agent).__module__}:{type(agent).__qualname__}",
        "dataset": job.dataset, "seed": job.seed, "protocol": "session", "valid": valid, "test": test,
        "selection_metric": agent.selection_metric, "best_step": agent.best_step, "diverged": diverged,
        "config": agent.config_dict(), "versions": versions(), "data_checksum": data_checksum(split),
        "timing_s": {"train": round(train_s, 3), "evaluate": round(eval_s, 3)},
        "curves": [_clean(c) for c in agent.curves], "study": job.settings,
    }  # fmt: skip
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(res, indent=1) + "\n")
    ckpt.unlink(missing_ok=True)  # done: the results are the record
    return res


def _worker(args: tuple[Job, str, str | None, int]) -> tuple[Job, dict[str, Any] | None, str | None]:
    job, runs, data_dir, threads = args
    import torch

    torch.set_num_threads(threads)
    try:
        return job, run_job(job, Path(runs), data_dir), None
    except Exception as e:  # one failed job must not lose the others
        return job, None, f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------------------ aggregation
def _mean_std(vals: list[float]) -> tuple[float, float] | None:
    v = [x for x in vals if x is not None and math.isfinite(x)]
    return (float(np.mean(v)), float(np.std(v))) if v else None


def aggregate(results: dict[tuple[str, str], list[dict[str, Any]]]) -> dict[str, Any]:
    """Per (dataset, agent): mean ± std of the test metrics, Q diagnostics, paired diff to sasrec."""
    from scipy import stats

    out: dict[str, Any] = {}
    for (ds, agent), runs in results.items():
        row: dict[str, Any] = {"n_seeds": len(runs)}
        for m in TABLE:
            row[m] = _mean_std([r["test"].get(m) for r in runs])
        row["neg_q_frac"] = _mean_std([r["test"].get("neg_q_frac") for r in runs])
        last = [r["curves"][-1] for r in runs if r["curves"]]
        for q in ("q_logged", "q_random"):
            row[f"{q}_end"] = _mean_std([c.get(q) for c in last])
            row[f"{q}_max"] = _mean_std([max((abs(c.get(q) or 0.0) for c in r["curves"]), default=None) for r in runs])
        row["best_step"] = _mean_std([r["best_step"] for r in runs])
        row["train_s"] = _mean_std([r["timing_s"]["train"] for r in runs])
        row["diverged"] = sum(r.get("diverged") is not None for r in runs)
        base = {r["seed"]: r for r in results.get((ds, "sasrec"), [])}
        pairs = [(r["test"].get("ndcg@20_purchase"), base[r["seed"]]["test"].get("ndcg@20_purchase"))
                 for r in runs if r["seed"] in base]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if agent != "sasrec" and len(pairs) >= 2:
            d = np.array([a - b for a, b in pairs])
            row["d_ndcg_p"] = (float(d.mean()), float(d.std()))
            row["d_wins"] = f"{int((d > 0).sum())}/{len(d)}"
            row["d_pvalue"] = float(stats.ttest_1samp(d, 0.0).pvalue) if np.any(d != d[0]) else None
        out[f"{ds}/{agent}"] = row
    return out


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, tuple):
        return f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
    return str(v)


def tables(agg: dict[str, Any], datasets: list[str], agents: list[str]) -> str:
    md: list[str] = []
    for ds in datasets:
        rows = [(a, agg.get(f"{ds}/{a}")) for a in agents if agg.get(f"{ds}/{a}")]
        if not rows:
            continue
        best = {m: max((r[m][0] for _, r in rows if r[m]), default=None) for m in TABLE}
        md += [f"\n### {ds}: test metrics (mean ± std over seeds)\n",
               "| agent | seeds | " + " | ".join(TABLE) + " |", "|---|---|" + "---|" * len(TABLE)]
        for a, r in rows:
            cells = []
            for m in TABLE:
                s = _fmt(r[m], 1 if m.startswith("reward") else 4)
                cells.append(f"**{s}**" if r[m] and r[m][0] == best[m] else s)
            md.append(f"| {a} | {r['n_seeds']} | " + " | ".join(cells) + " |")
        md += [f"\n### {ds}: purchase NDCG@20 against sasrec (paired by seed: same split, same init seed) "
               "and Q diagnostics\n",
               "| agent | Δ ndcg@20_purchase vs sasrec | seeds better | p (t-test) | q_logged (end) | "
               "q_random (end) | max abs q_logged | share Q(s,a)<0 on test | best step | train s/run |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for a, r in rows:
            if a == "sasrec":
                md.append(f"| sasrec | (baseline) | | | | | | | {_fmt(r['best_step'], 0)} | {_fmt(r['train_s'], 1)} |")
                continue
            md.append(f"| {a} | {_fmt(r.get('d_ndcg_p'))} | {r.get('d_wins', '–')} | {_fmt(r.get('d_pvalue'), 3)} | "
                      f"{_fmt(r['q_logged_end'], 3)} | {_fmt(r['q_random_end'], 3)} | {_fmt(r['q_logged_max'], 3)} | "
                      f"{_fmt(r['neg_q_frac'], 3)} | {_fmt(r['best_step'], 0)} | {_fmt(r['train_s'], 1)} |")
        div = [a for a, r in rows if r["diverged"]]
        if div:
            md.append(f"\nNon-finite loss (training stopped, best weights kept) in: {', '.join(div)}.")
    return "\n".join(md)


def plot(path: Path, ds: str, results: dict[tuple[str, str], list[dict[str, Any]]], agents: list[str]) -> None:
    """Row 1: validation NDCG@20 (purchase, click); row 2: mean Q of logged and of random actions;
    mean ± std over seeds; one column per agent; dotted line = switch step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recgym.data.io import atomic_path

    cols = [a for a in agents if results.get((ds, a))]
    fig, axes = plt.subplots(2, len(cols), figsize=(3.1 * len(cols), 5.6), squeeze=False, sharex=True)
    for j, a in enumerate(cols):
        runs = results[(ds, a)]
        steps = np.array([c["step"] for c in runs[0]["curves"]])

        def band(ax: Any, key: str, label: str, color: str) -> None:
            ys = [[c.get(key) for c in r["curves"]] for r in runs if len(r["curves"]) == len(steps)]
            y = np.array([[np.nan if v is None else v for v in row] for row in ys], dtype=float)
            if y.size == 0 or np.all(np.isnan(y)):
                return
            m, s = np.nanmean(y, 0), np.nanstd(y, 0)
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def _keep_analysis(path: Path) -> str:
    """The hand-written analysis block of an existing report (kept across regenerations)."""
    if not path.exists():
        return ""
    m = re.search(re.escape(ANALYSIS_BEGIN) + r"(.*?)" + re.escape(ANALYSIS_END), path.read_text(), re.S)
    return m.group(1).strip() if m else ""


def write_report(out: Path, results: dict[tuple[str, str], list[dict[str, Any]]], args: argparse.Namespace,
                 datasets: list[str], agents: list[str], steps: dict[str, int], wall_s: float,
                 errors: list[str]) -> Path:
    from recgym.data.io import atomic_path

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
          f"Seeds {args.seeds}; "
          + ", ".join(f"{ds}: {steps[ds]} steps per run" for ds in datasets) + ".", "",
          SETTING_MD.format(eval_every=", ".join(f"{ds}: every {max(1, steps[ds] // 8)} steps" for ds in datasets),
                            switch=", ".join(f"{ds}: step {steps[ds] // 2}" for ds in datasets),
                            quick=" **--quick: hidden 16, batch 64, a 400-session world of 80 items.**" if args.quick else ""),
          "## Tables", tables(agg, datasets, agents), "",
          "## Curves", "", *figs, "", "## Analysis", "", ANALYSIS_BEGIN, analysis, ANALYSIS_END, ""]
    if errors:
        md += ["## Failed jobs", "", *[f"- {e}" for e in errors], ""]
    with atomic_path(doc) as tmp:
        tmp.write_text("\n".join(md))
    with atomic_path(out / "qlearning.json") as tmp:
        tmp.write_text(json.dumps({"command": command, "wall_s": wall_s, "steps": steps, "seeds": args.seeds,
                                   "aggregate": agg}, indent=1, default=str) + "\n")
    return doc


# ------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"tiny synthetic world, 2 seeds, {QUICK_STEPS} steps (< 90 s)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (default 5; 2 with --quick)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps per run (default {STEPS}; {QUICK_STEPS} with --quick)")
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset of synthetic,ml-100k")
    p.add_argument("--agents", default=",".join(AGENTS), help="comma-separated subset of " + ",".join(AGENTS))
    p.add_argument("--out", default=None, help="report folder (default docs/results; a temp-like runs/ folder with --quick)")
    p.add_argument("--runs", default=None, help="per-run folders (default runs/qlearning; <out>/runs with --quick)")
    p.add_argument("--data-dir", default=None, help="data folder (default $RECGYM_DATA_DIR or ~/.cache/recgym)")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (each single-threaded)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    args = p.parse_args(argv)
    args.command = "python scripts/qlearning_study.py " + " ".join(argv if argv is not None else sys.argv[1:])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def fail(msg: str) -> int:
        print(f"qlearning_study: error: {msg}", file=sys.stderr)
        return 2

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    if args.quick:
        datasets = ["synthetic"]
    if bad := sorted(set(datasets) - set(DATASETS)):
        return fail(f"--datasets: unknown {bad}; choose from {list(DATASETS)}")
    if bad := sorted(set(agents) - set(AGENTS)):
        return fail(f"--agents: unknown {bad}; choose from {list(AGENTS)}")
    n_seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    if n_seeds < 1 or (args.steps is not None and args.steps < 10) or args.jobs < 1:
        return fail("--seeds must be >= 1, --steps >= 10 and --jobs >= 1")
    args.seeds = list(range(n_seeds))
    steps = {ds: args.steps or (QUICK_STEPS if args.quick else STEPS[ds]) for ds in datasets}
    out = Path(args.out or ("runs/qlearning_quick" if args.quick else "docs/results"))
    runs = Path(args.runs or (out / "runs" if args.quick else "runs/qlearning"))
    out.mkdir(parents=True, exist_ok=True)

    # seed-major order: an interrupted study still has every agent on every dataset for the first seeds
    jobs = [Job(ds, a, s, steps[ds], args.quick) for s in args.seeds for ds in datasets for a in agents]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    todo = []
    for job in jobs:
        done = load_done(runs, job)
        if done is not None:
            results.setdefault((job.dataset, job.agent), []).append(done)
        else:
            todo.append(job)
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} finished before, {0 if args.report_only else len(todo)} to run",
          flush=True)
    t0 = time.perf_counter()
    errors: list[str] = []
    if not args.report_only and todo:
        work = [(j, str(runs), args.data_dir, args.threads) for j in todo]
        if args.jobs == 1:
            import torch

            torch.set_num_threads(args.threads)
            stream = (_worker(w) for w in work)
        else:
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(max_workers=args.jobs)
            stream = pool.map(_worker, work)
        for i, (job, res, err) in enumerate(stream, 1):
            tag = f"{job.dataset}/{job.agent}/seed{job.seed}"
            if err is not None:
                errors.append(f"{tag}: {err}")
                print(f"[{time.perf_counter() - t0:7.1f}s] {i}/{len(todo)} {tag} FAILED: {err}", file=sys.stderr, flush=True)
                continue
            results.setdefault((job.dataset, job.agent), []).append(res)
            print(f"[{time.perf_counter() - t0:7.1f}s] {i}/{len(todo)} {tag}: test ndcg@20 purchase "
                  f"{res['test']['ndcg@20_purchase']:.4f} click {res['test']['ndcg@20_click']:.4f} "
                  f"(train {res['timing_s']['train']:.0f}s)", flush=True)
        if args.jobs > 1:
            pool.shutdown()
    for v in results.values():
        v.sort(key=lambda r: r["seed"])
    wall = time.perf_counter() - t0
    if not results:
        return fail("no finished runs to report")
    doc = write_report(out, results, args, datasets, agents, steps, wall, errors)
    print(tables(aggregate(results), datasets, agents))
    print(f"wrote {doc} in {wall:.1f}s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
