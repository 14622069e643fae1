"""Compare agents: agent x seed jobs fanned out (local processes or Ray), then one report.

    from recgym.agents.compare import CompareConfig, compare
    report = compare(CompareConfig(agents=["pop", "sasrec", "sqn"], seeds=[0, 1, 2], steps=2000, workers=2))

Each job is :func:`recgym.agents.experiment.run_job` in ``<out>/jobs/<agent>/seed<N>``: finished jobs are
reused, interrupted ones resume from their checkpoint, results are written atomically, so a crashed
worker or a re-run never loses or duplicates a result (the report reads exactly one
``results.json`` per agent x seed). Execution:

* ``workers <= 1``: in this process, one job after the other;
* ``workers = N``: a pool of N spawned processes (``concurrent.futures``); a worker that dies
  (SIGKILL, out of memory) breaks the pool: its job and those killed with it are re-run up to
  ``retries`` times in a fresh pool, then reported as missing (a later re-run finishes them);
* ``ray_address``: Ray tasks (``"local"`` starts ``ray.init(num_cpus=max(2, workers))``, else
  ``ray.init(address=...)``); Ray re-runs a task whose worker died up to ``retries`` times.

The report (:func:`write_report`): ``report.json``, ``report.md``, ``curves.png`` (validation
curves, mean ± std over seeds, one panel per agent, with the Q diagnostics ``q_logged`` /
``q_random`` where an agent records them), ``logged_vs_sim.png`` (the logged metric against the
simulated value per agent, and on Synthetic against the true value, with Spearman's ρ) and
``divergence.png`` (JS to μ̂, where available).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from recgym.agents.experiment import (
    DEFAULT_SIMS,
    ExperimentError,
    JobSpec,
    make_sim_env,
    missing_evaluations,
    read_results,
    run_job_dict,
    safe_name,
)


@dataclass
class CompareConfig:
    """One comparison: every agent x seed on one dataset, evaluated logged and in simulation."""

    agents: list[str]
    dataset: str = "synthetic"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    sims: list[str] | None = None
    """Simulator env ids; ``None`` = ``DEFAULT_SIMS[dataset]`` (none for datasets without one)."""
    out: str | None = None
    """Output folder (default ``runs/compare/<dataset>``)."""
    workers: int = 1
    ray_address: str | None = None
    retries: int = 0
    baseline: str | None = None
    """Agent the paired tests compare against (default ``sasrec`` when compared, else the first)."""
    data_dir: str | None = None
    reward_scheme: str | None = None
    data_params: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    """``--set`` values, applied to every agent whose config has the field."""
    steps: int | None = None
    epochs: float | None = None
    download: bool = False
    sim_episodes: int = 200
    command: str | None = None
    """The command line, recorded in the report."""

    def __post_init__(self) -> None:
        if not self.agents:
            raise ExperimentError("--agents: give at least one agent")
        for name, values in (("--agents", self.agents), ("--seeds", self.seeds)):
            dup = sorted({str(v) for v in values if list(values).count(v) > 1})
            if dup:
                raise ExperimentError(f"{name}: listed more than once: {', '.join(dup)}")
        if self.baseline is not None and self.baseline not in self.agents:
            raise ExperimentError(f"--baseline {self.baseline!r} is not among --agents {self.agents}")
        if self.sims is None:
            self.sims = list(DEFAULT_SIMS.get(self.dataset, []))
        if self.out is None:
            self.out = str(Path("runs") / "compare" / self.dataset)
        if self.baseline is None:
            self.baseline = "sasrec" if "sasrec" in self.agents else self.agents[0]


# ---------------------------------------------------------------------------- jobs
def make_jobs(cfg: CompareConfig) -> list[JobSpec]:
    """One :class:`JobSpec` per agent x seed (agents outer, seeds inner). Checks every agent name
    and that each ``--set`` key belongs to at least one agent's config."""
    import dataclasses

    from recgym.agents.registry import get_agent_class

    fields_of: dict[str, set[str]] = {}
    for a in cfg.agents:
        try:
            fields_of[a] = {f.name for f in dataclasses.fields(get_agent_class(a).Config)}
        except ValueError as e:
            raise ExperimentError(f"--agents: {e}") from e
    unused = sorted(k for k in cfg.overrides if not any(k in f for f in fields_of.values()))
    if unused:
        raise ExperimentError(f"--set: no compared agent has hyper-parameter(s) {unused}")
    root = Path(cfg.out) / "jobs"
    return [JobSpec(agent=a, dataset=cfg.dataset, seed=int(s), out=str(root / safe_name(a) / f"seed{s}"),
                    data_dir=cfg.data_dir, reward_scheme=cfg.reward_scheme, data_params=dict(cfg.data_params),
                    overrides=dict(cfg.overrides), epochs=cfg.epochs, steps=cfg.steps, download=cfg.download,
                    sims=list(cfg.sims or []), sim_episodes=cfg.sim_episodes, true_value=cfg.dataset == "synthetic",
                    ignore_overrides=True)
            for a in cfg.agents for s in cfg.seeds]


def prepare_sims(cfg: CompareConfig, jobs: list[JobSpec], log: Callable[[str], None]) -> Path:
    """Fit each simulator's MF imputer once, here, into ``<out>/sim`` (the jobs load it)."""
    mf_dir = Path(cfg.out) / "sim"
    need: set[str] = set()
    for j in jobs:
        todo = missing_evaluations(read_results(j.job_dir()), j)
        need |= set(cfg.sims or []) if "train" in todo else {s for s in todo if s in (cfg.sims or [])}
    for env_id in sorted(need):
        t0 = time.perf_counter()
        make_sim_env(jobs[0], env_id, mf_dir).close()
        log(f"simulator {env_id} ready ({time.perf_counter() - t0:.1f}s)")
    return mf_dir


def run_jobs(jobs: list[JobSpec], *, workers: int = 1, ray_address: str | None = None, retries: int = 0,
             mf_dir: str | Path | None = None, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run the jobs that are not finished; returns one status dict per job (same order):
    ``{"agent", "seed", "dir", "status": "reused" | "done" | "failed" | "crashed", "error"}``."""
    mf = str(mf_dir) if mf_dir is not None else None
    statuses: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for i, j in enumerate(jobs):
        if missing_evaluations(read_results(j.job_dir()), j):
            todo.append(i)
        else:
            statuses[i] = {"agent": j.agent, "seed": j.seed, "dir": str(j.job_dir()), "status": "reused", "error": None}
    log(f"{len(jobs)} jobs: {len(jobs) - len(todo)} finished before, {len(todo)} to run"
        + (f" on Ray ({ray_address})" if ray_address else f" with {max(1, workers)} worker(s)"))
    if todo:
        specs = {i: jobs[i].to_dict() for i in todo}
        if ray_address:
            statuses.update(_run_ray(specs, ray_address, workers, retries, mf, log))
        elif workers <= 1:
            for i, spec in specs.items():
                statuses[i] = run_job_dict(spec, mf)
                log(_status_line(statuses[i]))
        else:
            statuses.update(_run_pool(specs, workers, retries, mf, log))
    return [statuses[i] for i in range(len(jobs))]


def _status_line(st: dict[str, Any]) -> str:
    return f"  {st['agent']} seed {st['seed']}: {st['status']}" + (f" ({st['error']})" if st.get("error") else "")


def _crashed(spec: dict[str, Any], err: str) -> dict[str, Any]:
    j = JobSpec.from_dict(spec)
    return {"agent": j.agent, "seed": j.seed, "dir": str(j.job_dir()), "status": "crashed", "error": err}


def _run_pool(specs: dict[int, dict[str, Any]], workers: int, retries: int, mf: str | None,
              log: Callable[[str], None]) -> dict[int, dict[str, Any]]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    out: dict[int, dict[str, Any]] = {}
    pending = dict(specs)
    ctx = mp.get_context("spawn")  # no fork of a process that holds torch / OpenMP threads
    for attempt in range(retries + 1):
        if attempt:
            log(f"retry {attempt}/{retries}: {len(pending)} job(s) whose worker died")
        with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx) as pool:
            futs = {pool.submit(run_job_dict, spec, mf, True, list(sys.path)): i for i, spec in pending.items()}
            for fut in as_completed(futs):
                i = futs[fut]
                try:
                    out[i] = fut.result()
                except BrokenProcessPool as e:
                    out[i] = _crashed(pending[i], f"worker process died ({e})")
                log(_status_line(out[i]))
        pending = {i: specs[i] for i in pending if out[i]["status"] == "crashed"}
        if not pending:
            break
    return out


def _run_ray(specs: dict[int, dict[str, Any]], address: str, workers: int, retries: int, mf: str | None,
             log: Callable[[str], None]) -> dict[int, dict[str, Any]]:
    try:
        import ray
    except ImportError as e:
        raise ExperimentError("--ray-address needs Ray: pip install 'recgym[ray]' (or \"ray[default]\")") from e
    started = not ray.is_initialized()
    if started:
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
        if address == "local":
            ray.init(num_cpus=max(2, workers), include_dashboard=False, log_to_driver=False, runtime_env=env)
        else:
            ray.init(address=address, log_to_driver=False, runtime_env=env)
    try:
        task = ray.remote(num_cpus=1, max_retries=retries)(run_job_dict)
        refs = {task.remote(spec, mf, True, list(sys.path)): i for i, spec in specs.items()}
        out: dict[int, dict[str, Any]] = {}
        remaining = list(refs)
        while remaining:
            ready, remaining = ray.wait(remaining, num_returns=1)
            i = refs[ready[0]]
            try:
                out[i] = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the worker died more often than retries allow
                out[i] = _crashed(specs[i], f"{type(e).__name__}: {str(e).splitlines()[0]}")
            log(_status_line(out[i]))
        return out
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------- aggregation
def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def flatten_results(res: dict[str, Any], sims: list[str]) -> dict[str, float]:
    """The comparable numbers of one job: test metrics by name, ``<metric>`` of the first sim (and
    ``<env>/<metric>`` of every sim), ``true_value``, ``train_s``."""
    flat: dict[str, float] = {k: v for k, v in res.get("test", {}).items() if _finite(v)}
    for n, env_id in enumerate(sims):
        for k, v in res.get("sim", {}).get(env_id, {}).items():
            if _finite(v) and k not in ("n_contexts", "episodes"):
                flat[f"{env_id}/{k}"] = v
                if n == 0:
                    flat[f"sim_{k}"] = v
    if _finite(res.get("true_value")):
        flat["true_value"] = res["true_value"]
    if _finite(res.get("timing_s", {}).get("train")):
        flat["train_s"] = res["timing_s"]["train"]
    return flat


def _columns(protocol: str, present: set[str]) -> list[tuple[str, str]]:
    """(key, label) of the table's columns, those present only."""
    logged = (["ndcg@20", "hr@20", "ndcg@20_purchase", "hr@20_purchase"] if protocol == "session"
              else ["ndcg@10", "recall@10", "recall@1"])
    cols = [(k, f"test {k}") for k in logged]
    cols += [("sim_iar@1", "sim iAR@1"), ("sim_ar@1", "sim AR@1"), ("sim_mean_return", "sim return"),
             ("true_value", "true value"), ("js_mu", "JS to μ̂"), ("kl_mu", "KL to μ̂"), ("train_s", "train s")]
    return [(k, lab) for k, lab in cols if k in present]


def _spearman(x: list[float], y: list[float]) -> float | None:
    from scipy.stats import spearmanr

    pts = [(a, b) for a, b in zip(x, y) if _finite(a) and _finite(b)]
    if len(pts) < 3 or len({a for a, _ in pts}) < 2 or len({b for _, b in pts}) < 2:
        return None
    rho = spearmanr([a for a, _ in pts], [b for _, b in pts]).statistic
    return float(rho) if math.isfinite(rho) else None


def _curve_stats(runs: list[list[dict[str, Any]]], key: str) -> dict[str, list[float]] | None:
    """Mean and std over seeds of ``key`` at the steps every seed recorded."""
    series = [{c["step"]: c[key] for c in r if _finite(c.get(key))} for r in runs]
    series = [s for s in series if s]
    if not series:
        return None
    steps = sorted(set.intersection(*(set(s) for s in series)))
    if not steps:
        return None
    vals = np.array([[s[t] for t in steps] for s in series])
    return {"step": steps, "mean": vals.mean(0).tolist(), "std": vals.std(0).tolist(), "n": len(series)}


def aggregate(cfg: CompareConfig, jobs: list[JobSpec], statuses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The report as a dict (what ``report.json`` holds): per agent mean ± std over seeds of every
    column, paired t-tests against the baseline, Spearman correlations between the logged metric,
    the simulated value and (Synthetic) the true value, mean validation curves, missing jobs."""
    from scipy.stats import ttest_rel

    per: dict[str, dict[int, dict[str, float]]] = {a: {} for a in cfg.agents}
    curves: dict[str, list[list[dict[str, Any]]]] = {a: [] for a in cfg.agents}
    protocol, metric, missing = "session", None, []
    for j in jobs:
        res = read_results(j.job_dir())
        if res is None or missing_evaluations(res, j):
            missing.append({"agent": j.agent, "seed": j.seed, "dir": str(j.job_dir())})
            continue
        per[j.agent][j.seed] = flatten_results(res, cfg.sims or [])
        curves[j.agent].append(res.get("curves", []))
        protocol, metric = res.get("protocol", protocol), metric or res.get("selection_metric")
    metric = metric or ("ndcg@10" if protocol == "loo" else "ndcg@20")
    present = {k for runs in per.values() for r in runs.values() for k in r}
    cols = _columns(protocol, present)
    for env_id in (cfg.sims or [])[1:]:  # further simulators: their headline numbers too
        short = env_id.split("/")[-1]
        cols += [(f"{env_id}/{k}", f"{short} {k}") for k in ("iar@1", "mean_return") if f"{env_id}/{k}" in present]
    keys = [k for k, _ in cols] + sorted(k for k in present if "/" in k)  # every sim env's numbers too

    table: dict[str, dict[str, Any]] = {}
    base_runs = per.get(cfg.baseline, {})
    for a in cfg.agents:
        row: dict[str, Any] = {"n_seeds": len(per[a]), "seeds": sorted(per[a])}
        for k in keys:
            vals = {s: r[k] for s, r in per[a].items() if k in r}
            if not vals:
                continue
            v = np.array(list(vals.values()), dtype=np.float64)
            cell: dict[str, Any] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                                    "n": len(v), "values": {str(s): x for s, x in sorted(vals.items())}}
            if a != cfg.baseline:
                common = sorted(s for s in vals if k in base_runs.get(s, {}))
                if common:
                    d = np.array([vals[s] - base_runs[s][k] for s in common])
                    cell["diff_vs_baseline"] = float(d.mean())
                    p = None
                    if len(common) >= 2 and np.ptp(d) > 0:
                        p = float(ttest_rel([vals[s] for s in common], [base_runs[s][k] for s in common]).pvalue)
                    cell["p_vs_baseline"] = p
            row[k] = cell
        table[a] = row

    def means(k: str) -> list[float | None]:
        return [table[a][k]["mean"] if k in table[a] else None for a in cfg.agents]

    pairs = [(metric, "sim_iar@1"), (metric, "sim_mean_return"), (metric, "true_value"), ("sim_iar@1", "true_value"),
             ("sim_mean_return", "true_value")]
    corr = {f"{x} vs {y}": {"x": x, "y": y, "spearman": _spearman(means(x), means(y)),
                            "n_agents": sum(_finite(a) and _finite(b) for a, b in zip(means(x), means(y)))}
            for x, y in pairs if x in present and y in present}
    curve_keys = [metric, "q_logged", "q_random"]
    mean_curves = {a: {k: c for k in curve_keys if (c := _curve_stats(curves[a], k)) is not None}
                   for a in cfg.agents}
    return {
        "dataset": cfg.dataset, "protocol": protocol, "metric": metric, "agents": cfg.agents, "seeds": cfg.seeds,
        "baseline": cfg.baseline, "sims": cfg.sims, "command": cfg.command,
        "columns": [{"key": k, "label": lab} for k, lab in cols], "table": table, "rank_correlations": corr,
        "curves": mean_curves, "missing": missing, "jobs": statuses or [],
        "config": {k: v for k, v in cfg.__dict__.items() if k != "command"},
    }


# ---------------------------------------------------------------------------- writing
def _fmt(cell: dict[str, Any] | None, digits: int = 4) -> str:
    if not cell:
        return "-"
    s = f"{cell['mean']:.{digits}f}"
    if cell["n"] > 1:
        s += f" ± {cell['std']:.{digits}f}"
    return s


def _fmt_p(cell: dict[str, Any] | None) -> str:
    if not cell or "diff_vs_baseline" not in cell:
        return ""
    p = cell.get("p_vs_baseline")
    return f"{cell['diff_vs_baseline']:+.4f} (p={p:.3g})" if p is not None else f"{cell['diff_vs_baseline']:+.4f} (p=-)"


def report_markdown(rep: dict[str, Any]) -> str:
    """``report.md``: the table, the paired tests, the rank correlations, the figures."""
    cols = [(c["key"], c["label"]) for c in rep["columns"]]
    lines = [f"# Agent comparison on `{rep['dataset']}`", ""]
    if rep.get("command"):
        lines += ["Produced by:", "", "```", rep["command"], "```", ""]
    lines += [f"Seeds {', '.join(map(str, rep['seeds']))}; protocol `{rep['protocol']}`; logged metrics on the test "
              f"split; simulator(s): {', '.join(f'`{s}`' for s in rep['sims']) or 'none'}. Cells: mean ± std over "
              "seeds (sample std).", ""]
    lines += ["| agent | seeds | " + " | ".join(lab for _, lab in cols) + " |",
              "|---|---:|" + "---:|" * len(cols)]
    for a in rep["agents"]:
        row = rep["table"][a]
        digits = {"train_s": 1}
        lines.append(f"| {a} | {row['n_seeds']} | " + " | ".join(_fmt(row.get(k), digits.get(k, 4)) for k, _ in cols) + " |")
    tested = [(k, lab) for k, lab in cols if k != "train_s"]
    if len(rep["agents"]) > 1 and tested:
        lines += ["", f"Paired t-tests against `{rep['baseline']}` over the common seeds (scipy `ttest_rel`): "
                  "mean difference (p-value; `-` when fewer than 2 seeds or identical differences).", "",
                  "| agent | " + " | ".join(lab for _, lab in tested) + " |", "|---|" + "---:|" * len(tested)]
        for a in rep["agents"]:
            if a != rep["baseline"]:
                lines.append(f"| {a} | " + " | ".join(_fmt_p(rep["table"][a].get(k)) for k, _ in tested) + " |")
    if rep["rank_correlations"]:
        lines += ["", "Spearman rank correlation across agents (of the per-agent means):", "",
                  "| pair | ρ | agents |", "|---|---:|---:|"]
        for name, c in rep["rank_correlations"].items():
            rho = "-" if c["spearman"] is None else f"{c['spearman']:.3f}"
            lines.append(f"| {name} | {rho} | {c['n_agents']} |")
    if rep["missing"]:
        lines += ["", f"**Missing ({len(rep['missing'])} job(s), not in the table; re-run the same command to finish "
                  "them):** " + ", ".join(f"{m['agent']} seed {m['seed']}" for m in rep["missing"])]
    lines += ["", "![validation curves](curves.png)", "", "![logged vs simulated](logged_vs_sim.png)"]
    if any("js_mu" in rep["table"][a] for a in rep["agents"]):
        lines += ["", "![JS to the logging policy](divergence.png)"]
    return "\n".join(lines) + "\n"


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    from recgym.data.io import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_report(rep: dict[str, Any], out: Path) -> list[Path]:
    """``curves.png``, ``logged_vs_sim.png`` and (when some agent has JS to μ̂) ``divergence.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    agents, metric = rep["agents"], rep["metric"]
    n = len(agents)
    ncol = min(n, 3)
    fig, axes = plt.subplots(math.ceil(n / ncol), ncol, figsize=(4.2 * ncol, 3.2 * math.ceil(n / ncol)), squeeze=False)
    for ax, a in zip(axes.flat, agents):
        c = rep["curves"].get(a, {})
        m = c.get(metric)
        if m and len(m["step"]) > 1:
            mu, sd = np.array(m["mean"]), np.array(m["std"])
            ax.plot(m["step"], mu, "o-", ms=3, label=f"valid {metric}")
            ax.fill_between(m["step"], mu - sd, mu + sd, alpha=0.25)
            ax.set_xlabel("training step")
            ax.set_ylabel(metric)
            if "q_logged" in c or "q_random" in c:  # Q of logged vs random actions: divergence shows as a gap
                ax2 = ax.twinx()
                for k, style in (("q_logged", "--"), ("q_random", ":")):
                    if k in c:
                        q, qs = np.array(c[k]["mean"]), np.array(c[k]["std"])
                        ax2.plot(c[k]["step"], q, style, color="grey" if k == "q_logged" else "red", label=k)
                        ax2.fill_between(c[k]["step"], q - qs, q + qs, color="grey", alpha=0.1)
                ax2.set_ylabel("mean Q")
                ax2.legend(loc="upper right", fontsize=7)
        elif m:
            ax.errorbar([0], m["mean"], yerr=m["std"], fmt="o")
            ax.set_xticks([])
            ax.set_ylabel(metric)
            ax.text(0.5, 0.1, "fitted in one pass", ha="center", transform=ax.transAxes, fontsize=8)
        else:
            ax.text(0.5, 0.5, "no result", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{a} (n={m['n'] if m else 0})", fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    fig.suptitle(f"validation curves on {rep['dataset']} (mean ± std over seeds)", fontsize=10)
    _save(fig, out / "curves.png")
    written.append(out / "curves.png")

    pairs = [(c["x"], c["y"], name) for name, c in rep["rank_correlations"].items()]
    labels = {metric: f"logged test {metric}", "sim_iar@1": "simulated iAR@1", "sim_mean_return": "simulated return",
              "true_value": "true value (oracle)"}
    fig, axes = plt.subplots(1, max(1, len(pairs)), figsize=(4.5 * max(1, len(pairs)), 3.8), squeeze=False)
    for ax, (x, y, name) in zip(axes.flat, pairs):
        for a in agents:
            cx, cy = rep["table"][a].get(x), rep["table"][a].get(y)
            if cx and cy:
                ax.errorbar(cx["mean"], cy["mean"], xerr=cx["std"], yerr=cy["std"], fmt="o", capsize=2)
                ax.annotate(a, (cx["mean"], cy["mean"]), fontsize=8, xytext=(3, 3), textcoords="offset points")
        rho = rep["rank_correlations"][name]["spearman"]
        ax.set_xlabel(labels.get(x, x))
        ax.set_ylabel(labels.get(y, y))
        ax.set_title(f"Spearman ρ = {'-' if rho is None else f'{rho:.2f}'}", fontsize=9)
    if not pairs:
        axes[0, 0].text(0.5, 0.5, "no simulator value to compare with", ha="center", va="center",
                        transform=axes[0, 0].transAxes)
        axes[0, 0].set_axis_off()
    _save(fig, out / "logged_vs_sim.png")
    written.append(out / "logged_vs_sim.png")

    js = [(a, rep["table"][a]["js_mu"]) for a in agents if "js_mu" in rep["table"][a]]
    if js:
        fig, ax = plt.subplots(figsize=(1.2 * len(js) + 2, 3.2))
        ax.bar([a for a, _ in js], [c["mean"] for _, c in js], yerr=[c["std"] for _, c in js], capsize=3)
        ax.axhline(math.log(2), ls=":", color="grey", label="ln 2 (max)")
        ax.set_ylabel("JS(π̂ ‖ μ̂), test states")
        ax.legend(fontsize=8)
        _save(fig, out / "divergence.png")
        written.append(out / "divergence.png")
    return written


def write_report(rep: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``report.json``, ``report.md`` and the figures atomically into ``out``."""
    from recgym.data.io import atomic_path

    out = Path(out)
    files = plot_report(rep, out)
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(rep, indent=2) + "\n")
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(report_markdown(rep))
    return [out / "report.json", out / "report.md", *files]


def compare(cfg: CompareConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or reuse) every job of ``cfg``, then aggregate and write the report. Returns the report."""
    jobs = make_jobs(cfg)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    mf_dir = prepare_sims(cfg, jobs, log) if cfg.sims else None
    statuses = run_jobs(jobs, workers=cfg.workers, ray_address=cfg.ray_address, retries=cfg.retries,
                        mf_dir=mf_dir, log=log)
    rep = aggregate(cfg, jobs, statuses)
    files = write_report(rep, cfg.out)
    log(f"wrote {', '.join(str(f) for f in files)}")
    return rep


__all__ = ["CompareConfig", "aggregate", "compare", "flatten_results", "make_jobs", "plot_report", "prepare_sims",
           "report_markdown", "run_jobs", "write_report"]
