"""Reports: the one atomic writer, the statistics every results table uses, tables and figures.

* Writing: :func:`atomic_write` (temporary file in the same folder, ``fsync``, ``os.replace``), used
  for every file a job, a comparison or a study writes (:func:`write_json`, :func:`save_figure`).
* Statistics (every results page): :func:`summary` (mean ± **sample** std, ``ddof=1``),
  :func:`paired_tests` (paired t-test by seed against the family's base model, Holm-corrected across
  agents, :func:`holm`).
* The comparison report (``scripts/compare.py``): :func:`aggregate` → ``report.json``,
  :func:`report_markdown` → ``report.md``, :func:`plot_report` → ``curves.png``,
  ``logged_vs_sim.png`` (logged metric vs simulated value per agent, and on Synthetic vs the true
  value, with Spearman's ρ), ``divergence.png`` (JS to μ̂, where available).
* One job: :func:`format_table` (the printed valid / test table), :func:`plot_curves`.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from recgym.experiments.job import finished_results


# ---------------------------------------------------------------------------- writing
def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, ``fsync``, ``os.replace``.
    A crash leaves the old file (or none), never a torn one."""
    from recgym.data.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
    return path


def json_safe(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays as Python values and every non-finite float (NaN, ±inf)
    as ``None``: a metric that could not be computed is ``null`` in a results file, never ``NaN``
    (which is not JSON)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """``obj`` as strict JSON, atomically: non-finite numbers become ``null`` (:func:`json_safe`),
    objects JSON does not know ``null``; a ``NaN`` can never reach the file (``allow_nan=False``)."""
    text = json.dumps(json_safe(obj), indent=indent, allow_nan=False, default=lambda o: None)
    return atomic_write(path, text + "\n")


def code_version() -> str:
    """The code that computes a result: ``git rev-parse --short HEAD`` of the checkout recgym is
    imported from (``+dirty`` when tracked files other than ``docs/`` and Markdown differ from it:
    the studies write their reports there, which must not mark the next study's runs), or
    ``recgym <version>`` for an installed package."""
    import subprocess

    import recgym

    root = Path(recgym.__file__).resolve().parent.parent
    installed = f"recgym {getattr(recgym, '__version__', 'unknown')}"
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        if Path(top).resolve() != root:  # an installed copy inside some other repository (a venv in a project)
            return installed
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)docs", ":(exclude)*.md"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return installed


def code_versions_markdown(versions: dict[str, list[str]]) -> str:
    """One markdown line from ``{code version: [run labels]}``: the version of every run, or a warning
    listing each version with its runs when they differ; ``""`` without runs."""
    if len(versions) == 1:
        v, runs = next(iter(versions.items()))
        return f"Code version of every run: `{v}` ({len(runs)} runs)."
    if not versions:
        return ""
    return ("> **Mixed code versions:** the runs were trained by different code — "
            + "; ".join(f"`{v}`: {len(r)} run(s) ({', '.join(r[:4])}{'…' if len(r) > 4 else ''})"
                        for v, r in sorted(versions.items())) + ". Re-run the older ones before comparing.")


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """A matplotlib figure as a PNG, atomically; closes the figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------- statistics
def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def summary(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"mean", "std", "n"}`` of the finite values: std is the sample std (``ddof=1``; 0 for one
    value); ``mean`` is ``None`` when there is none."""
    v = np.array([x for x in values if _finite(x)], dtype=np.float64)
    if not len(v):
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v))}


def holm(pvalues: dict[str, float | None]) -> dict[str, float | None]:
    """Holm-Bonferroni adjusted p-values (``None`` entries are left out of the family and stay ``None``)."""
    known = sorted(((p, k) for k, p in pvalues.items() if p is not None), key=lambda t: t[0])
    m, out, running = len(known), {k: None for k in pvalues}, 0.0
    for i, (p, k) in enumerate(known):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out


def paired_tests(by_seed: dict[str, dict[Any, float]], base: str | None) -> dict[str, dict[str, Any]]:
    """Every agent (but ``base``) against ``base`` over their common seeds: ``diff_vs_baseline`` (mean
    of the per-seed differences), ``wins`` (seeds where the agent is higher, ``"k/n"``),
    ``p_vs_baseline`` (paired t-test, ``scipy.stats.ttest_rel``; ``None`` under 2 seeds or when every
    difference is the same) and ``p_holm`` (Holm-corrected across the agents of ``by_seed``)."""
    from scipy.stats import ttest_rel

    ref = by_seed.get(base, {}) if base is not None else {}
    out: dict[str, dict[str, Any]] = {}
    for a, vals in by_seed.items():
        common = sorted(s for s in vals if a != base and s in ref and _finite(vals[s]) and _finite(ref[s]))
        if not common:
            continue
        x, y = np.array([vals[s] for s in common]), np.array([ref[s] for s in common])
        d = x - y
        p = float(ttest_rel(x, y).pvalue) if len(common) >= 2 and np.ptp(d) > 0 else None
        out[a] = {"diff_vs_baseline": float(d.mean()), "wins": f"{int((d > 0).sum())}/{len(d)}", "p_vs_baseline": p}
    for a, ph in holm({a: c["p_vs_baseline"] for a, c in out.items()}).items():
        out[a]["p_holm"] = ph
    return out


def fmt_cell(cell: dict[str, Any] | None, digits: int = 4) -> str:
    """``mean ± std`` of a :func:`summary` (``-`` when empty; no ± for one value)."""
    if not cell or cell.get("mean") is None:
        return "-"
    s = f"{cell['mean']:.{digits}f}"
    if cell["n"] > 1:
        s += f" ± {cell['std']:.{digits}f}"
    return s


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; cells are written with ``str`` (``None`` as ``–``)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("–" if c is None else str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def rows_over_seeds(rows_by_seed: Sequence[Sequence[dict[str, Any]]], keys: Sequence[str],
                    base: tuple | None = None, metric: str | None = None) -> list[dict[str, Any]]:
    """A study table over seeds. Each seed gives rows identified by their ``keys`` columns (e.g.
    ``("policy",)``); the result has one row per identity (in first-seen order) with every other
    numeric column as a :func:`summary` over seeds. With ``base`` (a key tuple, the family's base
    model) and ``metric``: the row's paired test by seed against the base row on ``metric``
    (:func:`paired_tests`, Holm-corrected across the rows) under ``"vs_base"``."""
    order: list[tuple] = []
    cells: dict[tuple, dict[str, dict[Any, Any]]] = {}
    for seed, rows in enumerate(rows_by_seed):
        for r in rows:
            ident = tuple(r[k] for k in keys)
            if ident not in cells:
                order.append(ident)
                cells[ident] = {}
            for col, v in r.items():
                if col not in keys:
                    cells[ident].setdefault(col, {})[seed] = v
    out = []
    for ident in order:
        row: dict[str, Any] = dict(zip(keys, ident))
        for col, by_seed in cells[ident].items():
            vals = list(by_seed.values())
            row[col] = summary(vals) if all(v is None or _finite(v) for v in vals) else vals[0]
        out.append(row)
    if base is not None and metric is not None and base in cells:
        tests = paired_tests({ident: cells[ident].get(metric, {}) for ident in order}, base)
        for row, ident in zip(out, order):
            if ident in tests:
                row["vs_base"] = tests[ident]
    return out


def rows_markdown(rows: Sequence[dict[str, Any]], keys: Sequence[str], digits: int = 4,
                  base_label: str | None = None) -> str:
    """:func:`rows_over_seeds` as a markdown table: ``mean ± std`` cells (columns without any value
    dropped) and, when the rows carry paired tests, ``Δ vs <base_label> (p, Holm)``."""
    cols = [c for c in rows[0] if c not in keys and c != "vs_base"
            and any(isinstance(r.get(c), dict) and r[c].get("mean") is not None or
                    (r.get(c) is not None and not isinstance(r.get(c), dict)) for r in rows)]
    header = [*keys, *cols]
    tested = any("vs_base" in r for r in rows)
    if tested:
        header.append(f"Δ {base_label or 'vs base'} (p, Holm)")
    body = []
    for r in rows:
        line = [r[k] for k in keys]
        for c in cols:
            v = r.get(c)
            line.append(fmt_cell(v, 1 if c.startswith("reward") or c == "n_sessions" else digits)
                        if isinstance(v, dict) else v)
        if tested:
            t = r.get("vs_base")
            if t is None:
                line.append("")
            else:
                p, ph = t["p_vs_baseline"], t["p_holm"]
                line.append(f"{t['diff_vs_baseline']:+.{digits}f} ({'-' if p is None else f'{p:.3g}'}, "
                            f"{'-' if ph is None else f'{ph:.3g}'}; {t['wins']} seeds better)")
        body.append(line)
    return md_table(header, body)


# ---------------------------------------------------------------------------- one job
def format_table(valid: dict[str, Any], test: dict[str, Any]) -> str:
    """The valid / test metric table printed by ``offline_eval``."""
    keys = [k for k in test if not k.startswith("n_")] + [k for k in test if k.startswith("n_")]
    width = max(len(k) for k in keys) if keys else 6

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.4f}"

    lines = [f"{'metric':<{width}}  {'valid':>10}  {'test':>10}", "-" * (width + 24)]
    lines += [f"{k:<{width}}  {fmt(valid.get(k)):>10}  {fmt(test.get(k)):>10}" for k in keys]
    return "\n".join(lines)


def plot_curves(path: Path, curves: list[dict[str, float]], metric: str | None, title: str) -> None:
    """Validation ``metric`` (and the train loss) vs training step, as a PNG written atomically."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [c for c in curves if metric and c.get(metric) is not None and math.isfinite(c[metric])]
    if pts:
        ax.plot([c["step"] for c in pts], [c[metric] for c in pts], "o-", label=f"valid {metric}")
        ax.set_xlabel("training step")
        ax.set_ylabel(metric)
        if any("loss" in c for c in curves):
            ax2 = ax.twinx()
            ax2.plot([c["step"] for c in curves], [c["loss"] for c in curves], "--", color="grey", label="train loss")
            ax2.set_ylabel("train loss")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no training curve\n(non-iterative agent: fitted in one pass)", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)


def summary_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or a :class:`BadInputError` saying how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        from recgym.errors import BadInputError

        raise BadInputError("--tensorboard needs the tensorboard package: pip install 'recgym[tensorboard]' "
                            f"(or pip install tensorboard) ({e})") from None
    return SummaryWriter


def write_tensorboard(logdir: Path, curves: list[dict[str, Any]], config: dict[str, Any] | None = None) -> Path:
    """A job's curves as TensorBoard scalars in ``logdir`` (its earlier event files replaced):
    ``train/loss`` and ``valid/<metric>`` at each validation step, the resolved config as text."""
    writer_cls = summary_writer_class()
    logdir = Path(logdir)
    for old in logdir.glob("events.out.tfevents.*"):  # a re-run replaces its curves, never doubles them
        old.unlink()
    w = writer_cls(str(logdir))
    try:
        for c in curves:
            step = int(c["step"])
            for k, v in c.items():
                if k != "step" and _finite(v):
                    w.add_scalar("train/loss" if k == "loss" else f"valid/{k}", float(v), step)
        if config is not None:
            w.add_text("resolved_config", "```\n" + json.dumps(config, indent=2) + "\n```")
    finally:
        w.close()
    return logdir


# ---------------------------------------------------------------------------- aggregation
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
    for name, est in (res.get("ope") or {}).items():
        if _finite(est.get("estimate")):
            flat[f"ope_{name}"] = est["estimate"]
    if _finite(res.get("timing_s", {}).get("train")):
        flat["train_s"] = res["timing_s"]["train"]
    return flat


def _columns(protocol: str, present: set[str]) -> list[tuple[str, str]]:
    """(key, label) of the table's columns, those present only."""
    logged = (["ndcg@20", "hr@20", "ndcg@20_purchase", "hr@20_purchase"] if protocol == "session"
              else ["ndcg@10", "recall@10", "recall@1"])
    cols = [(k, f"test {k}") for k in logged]
    cols += [("sim_iar@1", "sim iAR@1"), ("sim_ar@1", "sim AR@1"), ("sim_mean_return", "sim return"),
             ("true_value", "true value"), ("ope_ips", "OPE IPS"), ("ope_snips", "OPE SNIPS"), ("js_mu", "JS to μ̂"),
             ("kl_mu", "KL to μ̂"), ("train_s", "train s")]
    return [(k, lab) for k, lab in cols if k in present]


def _spearman(x: list[float], y: list[float]) -> float | None:
    from scipy.stats import spearmanr

    pts = [(a, b) for a, b in zip(x, y) if _finite(a) and _finite(b)]
    if len(pts) < 3 or len({a for a, _ in pts}) < 2 or len({b for _, b in pts}) < 2:
        return None
    rho = spearmanr([a for a, _ in pts], [b for _, b in pts]).statistic
    return float(rho) if math.isfinite(rho) else None


def _curve_stats(runs: list[list[dict[str, Any]]], key: str) -> dict[str, list[float]] | None:
    """Mean and sample std (ddof=1; 0 for one seed) over seeds of ``key`` at the steps every seed recorded."""
    series = [{c["step"]: c[key] for c in r if _finite(c.get(key))} for r in runs]
    series = [s for s in series if s]
    if not series:
        return None
    steps = sorted(set.intersection(*(set(s) for s in series)))
    if not steps:
        return None
    vals = np.array([[s[t] for t in steps] for s in series])
    std = vals.std(0, ddof=1) if len(series) > 1 else np.zeros(len(steps))
    return {"step": steps, "mean": vals.mean(0).tolist(), "std": std.tolist(), "n": len(series)}


MIN_AGENTS_RHO = 5
"""A Spearman ρ over fewer agents than this is flagged in the report (with 3 or 4 agents a ρ of 1 or
-1 arises by chance in 1/6 or 1/24 of random orders)."""

CRITERIA = (("logged", None), ("simulated", ("sim_iar@1", "sim_mean_return")), ("true", ("true_value",)),
            ("off-policy", ("ope_snips",)))
"""The report's ranking criteria: the logged test metric, the first simulator's value, the true value
(Synthetic) and the SNIPS estimate (logs with propensities); the first key present counts."""

GLOSSARY = [
    ("iAR@1", "imputed average reward of the greedy item: the MF simulator's predicted reward r̂(user, item) of "
              "the agent's top item, mean over the held-out contexts"),
    ("AR@1", "observed average reward: the logged reward when the top item is the logged next item, else 0"),
    ("JS to μ̂", "Jensen-Shannon divergence between the agent's softmax policy and the estimated logging policy μ̂ "
                "on the test states (0 = identical, ln 2 = disjoint)"),
    ("OPE IPS / SNIPS", "off-policy estimates of the agent's softmax policy from the logged propensities "
                        "(inverse propensity scoring, self-normalised)"),
]


def _ranks(means: dict[str, float | None]) -> dict[str, int]:
    """1 = the highest mean; ties share the best rank; agents without a value are left out."""
    known = {a: m for a, m in means.items() if _finite(m)}
    return {a: 1 + sum(v > m for v in known.values()) for a, m in known.items()}


CONVERGENCE_FLAGS = {
    "ended at cap": "early stopping was on but the run trained its full length (a higher cap may still improve it)",
    "best at first evaluation": "nothing after the first validation was better (learning rate, or too late a first check)",
    "best at last evaluation": "a fixed-length run still improving when it ended",
    "diverged": "a non-finite loss stopped it; the best weights so far were kept",
}
"""The flags a run can carry in a report's convergence table, and what each means."""


def run_convergence(res: dict[str, Any], metric: str | None) -> dict[str, Any]:
    """How one run ended: its best validation step, the step it stopped at, why (``stop_reason``:
    ``"patience"``, ``"cap"``, ``"diverged"``), its cap, and the flags of :data:`CONVERGENCE_FLAGS`.
    ``converged``: stopped by patience (fixed-length runs: the best step is neither the first nor the
    last evaluation) and not best at its first evaluation; ``None`` for runs fitted in one pass."""
    steps = [c["step"] for c in res.get("curves", []) if metric and _finite(c.get(metric))]
    best, reason, patience = res.get("best_step"), res.get("stop_reason"), res.get("patience")
    after = (res.get("config") or {}).get("patience_after") or 0
    out = {"best_step": best, "n_evals": len(steps), "stopped_at": res.get("stopped_at"), "stop_reason": reason,
           "cap_steps": res.get("cap_steps"), "patience": patience,
           # a two-phase agent whose best checkpoint is from its first phase: the second never beat it
           "best_in_first_phase": bool(after and best is not None and best <= after)}
    if len(steps) < 2 or best is None:
        return {**out, "converged": None, "edge": None, "flags": []}  # one pass: nothing to judge
    edge = "first" if best <= min(steps) else "last" if best >= max(steps) else None
    flags = []
    if reason == "diverged":
        flags.append("diverged")
    if patience is not None and reason == "cap":
        flags.append("ended at cap")
    if edge == "first":
        flags.append("best at first evaluation")
    if patience is None and edge == "last" and reason != "diverged":
        flags.append("best at last evaluation")
    converged = not flags and (reason == "patience" if patience is not None else edge is None)
    return {**out, "converged": converged, "edge": edge, "flags": flags}


def convergence_summary(conv: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Over the seeds of one cell (``{seed: run_convergence(...)}``): best step and stop step as
    :func:`summary` (mean ± sample std, ``ddof=1``), the stop reasons counted, the flagged runs."""
    runs = list(conv.values())
    reasons: dict[str, int] = {}
    for r in runs:
        if r.get("stop_reason"):
            reasons[r["stop_reason"]] = reasons.get(r["stop_reason"], 0) + 1
    return {"best_step": summary([r.get("best_step") for r in runs]),
            "stopped_at": summary([r.get("stopped_at") for r in runs]),
            "stop_reasons": reasons,
            "flagged": {s: r["flags"] for s, r in conv.items() if r.get("flags")}}


def aggregate(cfg: Any, jobs: list[Any], statuses: list[dict[str, Any]] | None = None,
              simulators: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """The report as a dict (what ``report.json`` holds): per agent mean ± std over seeds of every
    column (sample std), paired t-tests against the baseline by seed with Holm's correction across
    agents (:func:`paired_tests`), Spearman correlations between the logged metric,
    the simulated value and (Synthetic) the true value, each agent's rank under each criterion,
    the best validation step of each run, mean validation curves, the resolved configs, missing
    jobs and ``simulators`` (each simulator env's ``report()``)."""
    per: dict[str, dict[int, dict[str, float]]] = {a: {} for a in cfg.agents}
    curves: dict[str, list[list[dict[str, Any]]]] = {a: [] for a in cfg.agents}
    runs: dict[str, dict[int, dict[str, Any]]] = {a: {} for a in cfg.agents}
    resolved: dict[str, Any] = {}
    protocol, metric, missing, data_file = "session", None, [], None
    versions: dict[str, list[str]] = {}
    for j in jobs:
        res = finished_results(j)
        if res is None:
            missing.append({"agent": j.agent, "seed": j.seed, "dir": str(j.job_dir())})
            continue
        per[j.agent][j.seed] = flatten_results(res, cfg.sims or [])
        curves[j.agent].append(res.get("curves", []))
        runs[j.agent][j.seed] = res
        versions.setdefault(res.get("code_version", "unrecorded"), []).append(f"{j.agent}/{j.seed}")
        if res.get("resolved_config") is not None:
            resolved.setdefault(j.agent, res["resolved_config"])
        data_file = data_file or res.get("data_file")
        protocol, metric = res.get("protocol", protocol), metric or res.get("selection_metric")
    metric = metric or ("ndcg@10" if protocol == "loo" else "ndcg@20")
    present = {k for runs in per.values() for r in runs.values() for k in r}
    cols = _columns(protocol, present)
    for env_id in (cfg.sims or [])[1:]:  # further simulators: their headline numbers too
        short = env_id.split("/")[-1]
        cols += [(f"{env_id}/{k}", f"{short} {k}") for k in ("iar@1", "mean_return") if f"{env_id}/{k}" in present]
    keys = [k for k, _ in cols] + sorted(k for k in present if "/" in k)  # every sim env's numbers too

    table: dict[str, dict[str, Any]] = {a: {"n_seeds": len(per[a]), "seeds": sorted(per[a])} for a in cfg.agents}
    for k in keys:
        by_seed = {a: {s: r[k] for s, r in per[a].items() if k in r} for a in cfg.agents}
        tests = paired_tests(by_seed, cfg.baseline)
        for a, vals in by_seed.items():
            if vals:
                table[a][k] = {**summary(list(vals.values())), "values": {str(s): x for s, x in sorted(vals.items())},
                               **tests.get(a, {})}

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
    ranks = {}
    for name, keys in CRITERIA:
        key = metric if keys is None else next((k for k in keys if k in present), None)
        if key is not None and key in present:
            ranks[name] = {"key": key, "rank": _ranks(dict(zip(cfg.agents, means(key))))}
    convergence = {a: {str(s): run_convergence(r, metric) for s, r in sorted(runs[a].items())} for a in cfg.agents}
    conv_summary = {a: convergence_summary(c) for a, c in convergence.items() if c}
    return {
        "dataset": cfg.dataset, "protocol": protocol, "metric": metric, "agents": cfg.agents, "seeds": cfg.seeds,
        "baseline": cfg.baseline, "sims": cfg.sims, "command": cfg.command, "data_file": data_file,
        "columns": [{"key": k, "label": lab} for k, lab in cols], "table": table, "rank_correlations": corr,
        "ranks": ranks, "convergence": convergence, "convergence_summary": conv_summary,
        "resolved_configs": resolved, "simulators": simulators or {}, "code_versions": versions,
        "curves": mean_curves, "missing": missing, "jobs": statuses or [],
        "config": {k: v for k, v in cfg.__dict__.items() if k != "command"},
    }


# ---------------------------------------------------------------------------- writing
def _fmt_p(cell: dict[str, Any] | None) -> str:
    if not cell or "diff_vs_baseline" not in cell:
        return ""
    p, ph = cell.get("p_vs_baseline"), cell.get("p_holm")
    if p is None:
        return f"{cell['diff_vs_baseline']:+.4f} (p=-)"
    return f"{cell['diff_vs_baseline']:+.4f} (p={p:.3g}, Holm {ph:.3g})"


def report_markdown(rep: dict[str, Any]) -> str:
    """``report.md``: the table, the paired tests, the rank correlations, the figures."""
    cols = [(c["key"], c["label"]) for c in rep["columns"]]
    lines = [f"# Agent comparison on `{rep['dataset']}`", ""]
    if rep.get("command"):
        lines += ["Produced by:", "", "```", rep["command"], "```", ""]
    df = rep.get("data_file")
    if df:
        cols_txt = ",".join(f"{r}={c}" for r, c in df["columns"].items())
        lines += [f"Data: `{df['path']}` (sha256 `{df['sha256']}`; columns `{cols_txt}`"
                  + (f"; sep `{df['sep']}`" if df.get("sep") else "") + ").", ""]
    if versions_md := code_versions_markdown(rep.get("code_versions") or {}):
        lines += [versions_md, ""]
    lines += [f"Seeds {', '.join(map(str, rep['seeds']))}; protocol `{rep['protocol']}`; logged metrics on the test "
              f"split; simulator(s): {', '.join(f'`{s}`' for s in rep['sims']) or 'none'}. Cells: mean ± std over "
              "seeds (sample std).", ""]
    lines += ["| agent | seeds | " + " | ".join(lab for _, lab in cols) + " |",
              "|---|---:|" + "---:|" * len(cols)]
    for a in rep["agents"]:
        row = rep["table"][a]
        digits = {"train_s": 1}
        lines.append(f"| {a} | {row['n_seeds']} | " + " | ".join(fmt_cell(row.get(k), digits.get(k, 4)) for k, _ in cols) + " |")
    tested = [(k, lab) for k, lab in cols if k != "train_s"]
    if len(rep["agents"]) > 1 and tested:
        lines += ["", f"Paired t-tests against `{rep['baseline']}` over the common seeds (scipy `ttest_rel`): "
                  "mean difference (p-value, and Holm-corrected across the compared agents; `-` when fewer than 2 seeds "
                  "or identical differences).", "",
                  "| agent | " + " | ".join(lab for _, lab in tested) + " |", "|---|" + "---:|" * len(tested)]
        for a in rep["agents"]:
            if a != rep["baseline"]:
                lines.append(f"| {a} | " + " | ".join(_fmt_p(rep["table"][a].get(k)) for k, _ in tested) + " |")
    ranks = rep.get("ranks") or {}
    if ranks and len(rep["agents"]) > 1:
        labels = dict(cols)
        lines += ["", "Rank of each agent under each criterion (1 = best mean; ties share a rank):", "",
                  "| agent | " + " | ".join(f"{name} ({labels.get(r['key'], r['key'])})" for name, r in ranks.items())
                  + " |", "|---|" + "---:|" * len(ranks)]
        for a in rep["agents"]:
            lines.append(f"| {a} | " + " | ".join(str(r["rank"].get(a, "-")) for r in ranks.values()) + " |")
    if rep["rank_correlations"]:
        lines += ["", "Spearman rank correlation across agents (of the per-agent means):", "",
                  "| pair | ρ | agents |", "|---|---:|---:|"]
        few = False
        for name, c in rep["rank_correlations"].items():
            rho = "-" if c["spearman"] is None else f"{c['spearman']:.3f}"
            flag = " ⚠" if c["n_agents"] < MIN_AGENTS_RHO else ""
            few |= bool(flag)
            lines.append(f"| {name} | {rho} | {c['n_agents']}{flag} |")
        if few:
            lines += ["", f"⚠ A ρ over fewer than {MIN_AGENTS_RHO} agents says little: with 3 agents a perfect ρ = ±1 "
                      "arises by chance in one random order of 6; compare more agents before trusting it."]
    lines += convergence_markdown(rep.get("convergence") or {}, rep["metric"])
    sims = rep.get("simulators") or {}
    if sims:
        keys = sorted({k for d in sims.values() for k in d})
        lines += ["", "Simulator diagnostics (`env.report()`: held-out RMSE of the imputed rating, mean imputed "
                  "rating of observed vs unobserved cells, popularity lean of the imputed top items):", "",
                  "| simulator | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        for env_id, d in sims.items():
            lines.append(f"| `{env_id}` | " + " | ".join("-" if d.get(k) is None else f"{d[k]:.4f}" for k in keys) + " |")
    rcs = rep.get("resolved_configs") or {}
    if rcs:
        lines += ["", "Resolved configurations (`recgym.agents.resolved_config`; every field in `report.json`):", ""]
        for a, rc in rcs.items():
            set_by = rc.get("set_by", {})
            fields = ", ".join(f"`{k}={rc['config'].get(k)!r}` ({set_by[k]})" for k in sorted(set_by)) or "all defaults"
            lines.append(f"* {a}: layers {' < '.join(['defaults', *rc.get('layers', [])])}; {fields}")
    if rep["missing"]:
        lines += ["", f"**Missing ({len(rep['missing'])} job(s), not in the table; re-run the same command to finish "
                  "them):** " + ", ".join(f"{m['agent']} seed {m['seed']}" for m in rep["missing"])]
    glossary = [(t, d) for t, d in GLOSSARY if any(t.split(" /")[0] in lab for _, lab in cols)]
    if glossary:
        lines += ["", "Glossary:", ""] + [f"* **{t}**: {d}." for t, d in glossary]
    if _has_curves(rep):
        lines += ["", "![validation curves](curves.png)"]
    if rep["rank_correlations"]:
        lines += ["", "![logged vs simulated](logged_vs_sim.png)"]
    if any("js_mu" in rep["table"][a] for a in rep["agents"]):
        lines += ["", "![JS to the logging policy](divergence.png)"]
    return "\n".join(lines) + "\n"


def convergence_markdown(conv: dict[str, dict[str, dict[str, Any]]], metric: str, label: str = "agent",
                         unit: str = "seed") -> list[str]:
    """The convergence table of a report (lines, empty when no run has a curve to judge): per cell the
    best validation step and the step training stopped at (mean ± sample std over seeds, ``ddof=1``),
    the stop reasons, and every flagged run (:data:`CONVERGENCE_FLAGS`). ``conv``: ``{cell: {seed:
    run_convergence(...)}}``; ``unit``: what a key of the inner dict is (a ``seed``, or a ``world``)."""
    judged = {a: runs for a, runs in conv.items() if any(r["converged"] is not None for r in runs.values())}
    if not judged:
        return []
    lines = ["", f"Convergence: best validation step (`{metric}`) and the step training stopped at, mean ± sample "
             f"std over {unit}s (ddof=1); stop = why each run ended (patience: early stopping; cap: the full "
             "length); **flagged** runs did not converge by the rule:", "",
             f"| {label} | best step | stopped at | evaluations | stop | flagged |", "|---|---:|---:|---:|---|---|"]
    used: set[str] = set()
    for a, runs in judged.items():
        cs = convergence_summary(runs)
        n = max(r["n_evals"] for r in runs.values())
        stop = ", ".join(f"{k} {v}" for k, v in sorted(cs["stop_reasons"].items())) or "-"
        bad = [f"{unit} {s} ({', '.join(f)})" for s, f in cs["flagged"].items()]
        used |= {f for fl in cs["flagged"].values() for f in fl}
        lines.append(f"| {a} | {fmt_cell(cs['best_step'], 0)} | {fmt_cell(cs['stopped_at'], 0)} | {n} | {stop} | "
                     f"{'**' + '; '.join(bad) + '**' if bad else 'none'} |")
    if used:
        lines += [""] + [f"* *{f}*: {CONVERGENCE_FLAGS[f]}." for f in CONVERGENCE_FLAGS if f in used]
    first_phase = [f"{a} ({unit}{'s' if len(ss) > 1 else ''} {', '.join(ss)})" for a, runs in judged.items()
                   if (ss := [s for s, r in runs.items() if r.get("best_in_first_phase")])]
    if first_phase:
        lines += ["", "Best checkpoint from the first phase (at or before `patience_after`, the switch step): the "
                  "second phase never improved on it, so these runs report the first phase's model: "
                  + "; ".join(first_phase) + "."]
    return lines


def _has_curves(rep: dict[str, Any]) -> bool:
    return any(rep["curves"].get(a, {}).get(rep["metric"]) for a in rep["agents"])


def _save(fig: Any, path: Path, dpi: int = 100) -> None:
    fig.tight_layout()
    save_figure(fig, path, dpi)


def plot_report(rep: dict[str, Any], out: Path) -> list[Path]:
    """``curves.png`` (when some agent has a validation curve), ``logged_vs_sim.png`` (when some pair of
    criteria has values) and ``divergence.png`` (when some agent has JS to μ̂); no empty figure."""
    plt = pyplot()
    written: list[Path] = []
    agents = rep["agents"]
    if _has_curves(rep):
        written.append(_plot_curves(plt, rep, out))
    if rep["rank_correlations"]:
        written.append(_plot_pairs(plt, rep, out))
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


def _plot_curves(plt: Any, rep: dict[str, Any], out: Path) -> Path:
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
    return out / "curves.png"


def _plot_pairs(plt: Any, rep: dict[str, Any], out: Path) -> Path:
    agents, metric = rep["agents"], rep["metric"]
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
        n_ag = rep["rank_correlations"][name]["n_agents"]
        ax.set_title(f"Spearman ρ = {'-' if rho is None else f'{rho:.2f}'} ({n_ag} agents"
                     + (", too few to trust" if n_ag < MIN_AGENTS_RHO else "") + ")", fontsize=9)
    _save(fig, out / "logged_vs_sim.png")
    return out / "logged_vs_sim.png"


def write_report(rep: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``report.json``, ``report.md`` and the figures atomically into ``out``."""
    out = Path(out)
    for stale in ("curves.png", "logged_vs_sim.png", "divergence.png"):  # a figure this report does not draw
        (out / stale).unlink(missing_ok=True)
    files = plot_report(rep, out)
    write_json(out / "report.json", rep)
    atomic_write(out / "report.md", report_markdown(rep))
    return [out / "report.json", out / "report.md", *files]


__all__ = ["CONVERGENCE_FLAGS", "aggregate", "atomic_write", "convergence_markdown", "convergence_summary",
           "flatten_results", "fmt_cell", "format_table", "holm", "md_table", "paired_tests", "plot_curves",
           "plot_report", "pyplot", "report_markdown", "rows_markdown", "rows_over_seeds", "run_convergence",
           "save_figure", "summary", "summary_writer_class", "write_json", "write_report", "write_tensorboard"]
