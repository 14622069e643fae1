#!/usr/bin/env python
"""The experiments of the PRL paper (Xin et al., SIGIR'22) in recgym: Tables 2–5, Figures 4–5.

    python -m studies.prl --quick --out runs/prl_quick          # < 90 s, tiny synthetic data
    python -m studies.prl --datasets synthetic,ml-100k,yoochoose-100k --seeds 0 1 2 \\
        --data-dir ../shared/data --out docs/results/prl
    python -m studies.prl ... --patience 5     # to convergence (CONVERGE; docs/results/convergence-plan.md)

(a) Encoder table (Tables 2–3): for each encoder (sasrec, gru, caser, nextitnet) the encoder
    trained by plain cross-entropy (``sasrec`` agent with that encoder), SQN, SAC and PRL; purchase
    and click HR / NDCG @10/@20 and cumulative reward@1 on the test sessions; on Synthetic also the
    World's true expected reward of the greedy policy (``true@1``).
(b) Ablations (Tables 4–5, GRU as in the paper): PRL-mean, PRL-MLP, PRL-w/o, PRL-cumu vs PRL.
(c) Inference prompt sweeps (Figures 4–5): the trained GRU-PRL evaluated with μ ∈ {0.5, 1, 2, 4, 8}
    (ε = 0) and ε ∈ {0, 0.1, 0.5, 1} (μ = 2): cumulative reward@1 on the test sessions (and true@1
    on Synthetic). No retraining: μ and ε only change the inference prompt (Eq. 16).

Datasets: ``synthetic`` (sessions of the recgym World, session split 80/10/10); ``ml-100k`` (the
click-purchase scheme: rating ≥ 4 is a purchase, r = 1.0, else a click, r = 0.2; each user's
last 50 ratings as one session, as PRL drops sessions longer than 50; split 80/10/10 by user);
``yoochoose-100k`` (the session-rec files; clicks only, encoder table only). Every method shares
the encoder settings (hidden 64, batch 256, Adam lr 0.01, state_len 10) and the same number of
training steps (600 by default, `--steps` / `--epochs`); SAC switches to the Q-weighted CE half-way.

``--paper`` (the paper's own datasets ``rc15``, ``retailrocket``; any other works too): every method
at its defaults and the dataset's presets, i.e. the paper's settings (30 epochs validated once each,
the best kept; lr 0.01 on RC15, 0.005 on RetailRocket for CE and PRL; SQN and SAC as their own
paper, SAC's switch at step 30,000; :data:`PAPER_RELEASE`). The paper drops sessions longer than
50 events; the ``rc15`` / ``retailrocket`` sources keep them (docs/paper-settings.md).

Every method x encoder x dataset x seed is one harness job (:class:`recgym.experiments.JobSpec`, run
by :func:`recgym.experiments.run_jobs`; ``--jobs`` workers), kept in ``<runs>/<dataset>/seed<N>/
<encoder>-<agent>/`` (``--runs``, default ``runs/prl``): a finished job is reused, an interrupted one
resumes. Then the study writes
``results.json`` (every number, per seed, with the command), ``tables.md`` (mean ± sample std over
seeds; each method against the cross-entropy model of its encoder, and each ablation against PRL,
by a paired test by seed, Holm-corrected) and ``sweep.png`` into ``--out``.
"""

from __future__ import annotations

import math
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

ENCODERS = ("sasrec", "gru", "caser", "nextitnet")
MUS = (0.5, 1, 2, 4, 8)
EPSS = (0, 0.1, 0.5, 1)
QUICK = dict(world=dict(n_users=150, n_items=60, n_genres=6), n_sessions=400,
             agent=dict(hidden=16, batch_size=64, steps=120, eval_every=60))
FULL = dict(world=dict(), n_sessions=5000, agent=dict(steps=600, eval_every=200))
"""A CPU budget: 600 steps of batch 256 per method (the paper trains to convergence), so the
four-encoder table of every dataset and seed fits the 30-minute budget on 2 cores with ``--jobs 2``."""
CONVERGE = dict(eval_every=25, cap=6250, switch=250)
"""``--patience``: validation every 25 steps (a fifth of an epoch of the 5,000-session Synthetic log
and of ml-100k's last-50 sessions at batch 256, 0.12 of yoochoose-100k's: the measured SASRec / SQN
runs peak within 2 epochs, a coarser cadence misses the peak), a cap of 6,250 steps (50 Synthetic
epochs), SAC's switch at step 250 (2 epochs) with the validations up to it not counted toward the
patience."""
QUICK_CONVERGE = dict(eval_every=20, cap=400, switch=40)
COLS = ("hr@10_purchase", "ndcg@10_purchase", "hr@20_purchase", "ndcg@20_purchase",
        "hr@10_click", "ndcg@10_click", "hr@20_click", "ndcg@20_click", "reward@1")
DATASETS = ("synthetic", "ml-100k", "yoochoose-100k", "rc15", "retailrocket")
PAPER_RELEASE = {("retailrocket", "gru", "SAC"): {"switch_step": 15_000, "lr": 0.005}}
"""``--paper``: the one run whose setting differs from its agent's presets in the SQN/SAC authors'
release (Xin et al., SIGIR'20), whose SQN and SAC numbers the PRL paper copies: GRU-SAC on
RetailRocket weights the CE by Q from step 15,000 at lr 0.005 (every other SAC: step 30,000)."""


METHODS = {"CE": "sasrec", "SQN": "sqn", "SAC": "sac", "PRL": "prl", "PRL-mean": "prl-mean", "PRL-MLP": "prl-mlp",
           "PRL-w/o": "prl-wo", "PRL-cumu": "prl-cumu"}
"""Method of the tables -> registered agent (CE: the encoder trained by plain cross-entropy)."""
ABLATIONS = ("PRL-mean", "PRL-MLP", "PRL-w/o", "PRL-cumu")


def data_fields(dataset: str, seed: int, P: dict) -> dict[str, Any]:
    """The :class:`JobSpec` fields of one dataset's data: the World of the seed on Synthetic; each
    user's last 50 ratings as one session on ml-100k (click-purchase scheme, split by user)."""
    if dataset == "synthetic":
        return dict(dataset="synthetic", protocol="session",
                    data_params={**P["world"], "n_sessions": P["n_sessions"], "world_seed": seed})
    if dataset == "ml-100k":
        return dict(dataset="ml-100k", protocol="session", reward_scheme="click-purchase", last_n_events=50)
    if dataset in ("yoochoose-100k", "rc15", "retailrocket"):
        return dict(dataset=dataset)
    raise BadInputError(f"studies.prl: unknown dataset {dataset!r}; choose from {DATASETS}")


def switch_step(dataset: str, seed: int, P: dict, data_dir: str | None) -> int:
    """SAC's switch to the Q-weighted CE: half of the run (the run's length in steps); in convergence
    mode the fixed step of :data:`CONVERGE`."""
    kw = P["agent"]
    if P.get("switch"):
        return P["switch"]
    if kw.get("steps"):
        return kw["steps"] // 2
    from recgym.experiments.job import load_job_split

    rows = load_job_split(JobSpec(agent="sac", seed=seed, data_dir=data_dir, **data_fields(dataset, seed, P))).train.n_events
    return max(1, round(kw.get("epochs", 30) * -(-rows // kw.get("batch_size", 256)))) // 2


def job(dataset: str, seed: int, encoder: str, method: str, P: dict, runs: Path, data_dir: str | None,
        threads: int, switch: int) -> JobSpec:
    """The harness job of one method with one encoder on one (dataset, seed)."""
    agent = METHODS[method]
    data = data_fields(dataset, seed, P)
    if P.get("paper"):  # the agent's defaults and the dataset's presets are the papers' settings
        overrides = {"encoder": encoder, **PAPER_RELEASE.get((dataset, encoder, method), {})}
    else:
        overrides = {**paper_defaults(agent, data["dataset"], data.get("protocol")), **P["agent"], "encoder": encoder}
    if method == "SAC" and not P.get("paper"):
        overrides["switch_step"] = switch
        if "patience" in overrides:
            overrides["patience_after"] = switch
    return JobSpec(agent=agent, seed=seed, out=str(runs / dataset / f"seed{seed}" / f"{encoder}-{agent}"),
                   data_dir=data_dir, overrides=overrides, test_extras=["studies.prl:reward_at_1"],
                   true_value=dataset == "synthetic", threads=threads, **data)


def jobs_of(dataset: str, seed: int, P: dict, runs: Path, data_dir: str | None, threads: int) -> dict[tuple[str, str], JobSpec]:
    """``{(encoder, method): job}`` of one (dataset, seed): the encoder table, then the GRU ablations
    (not on the clicks-only yoochoose-100k: they are about rewards)."""
    try:
        switch = 0 if P.get("paper") else switch_step(dataset, seed, P, data_dir)
    except BadInputError:
        switch = 1  # the data cannot load: every job fails and reports why
    keys = [(enc, m) for enc in ENCODERS for m in ("CE", "SQN", "SAC", "PRL")]
    if dataset != "yoochoose-100k":
        keys += [("gru", m) for m in ABLATIONS]
    return {k: job(dataset, seed, *k, P, runs, data_dir, threads, switch) for k in keys}


def _reset_noise(agent: Any) -> None:
    import torch

    if hasattr(agent, "_noise"):  # PRL's Eq. 16 noise: the same draws for every evaluation
        agent._noise = torch.Generator().manual_seed(agent.seed)


def reward_at_1(agent: Any, split: Any) -> dict[str, float]:
    """``reward@1`` on the test sessions (the tables' cumulative reward of the top item)."""
    from recgym.evaluate import evaluate_sessions

    _reset_noise(agent)
    return {"reward@1": evaluate_sessions(agent, split.test, ks=(1,))["reward@1"]}


def row(results: dict[str, Any]) -> dict[str, Any]:
    """One table row of a finished job: the test columns and, on Synthetic, the true value."""
    return {**{c: results["test"].get(c) for c in COLS}, "true@1": results.get("true_value")}


def sweep(spec: JobSpec) -> list[dict]:
    """Figures 4–5: reward@1 (and true@1) of one trained PRL over the inference prompt."""
    from recgym.evaluate import evaluate_sessions, true_value_on_log
    from recgym.experiments.job import load_job_split

    prl, test = trained(spec), load_job_split(spec).test
    out = []
    for param, values in (("mu", MUS), ("eps", EPSS)):
        for v in values:
            prl.config.mu, prl.config.eps = (float(v), 0.0) if param == "mu" else (2.0, float(v))
            _reset_noise(prl)
            point = {"param": param, "value": v, "reward@1": evaluate_sessions(prl, test, ks=(1,))["reward@1"]}
            if spec.dataset == "synthetic":
                _reset_noise(prl)
                point["true@1"] = true_value_on_log(prl, test)
            out.append(point)
    return out


def tables_of(dataset: str, jobs: dict[tuple[str, str], JobSpec]) -> dict[str, Any] | None:
    """The encoder table, the ablations and the sweep of one (dataset, seed) from its finished jobs;
    ``None`` when none finished."""
    done = {k: r for k, spec in jobs.items() if (r := finished_results(spec)) is not None}
    if not done:
        return None
    out: dict[str, Any] = {"encoders": [{"encoder": enc, "method": m, **row(done[(enc, m)])}
                                        for enc in ENCODERS for m in ("CE", "SQN", "SAC", "PRL") if (enc, m) in done]}
    if dataset != "yoochoose-100k":
        out["ablations"] = [{"method": m, **row(done[("gru", m)])} for m in (*ABLATIONS, "PRL") if ("gru", m) in done]
        if ("gru", "PRL") in done:
            out["sweep"] = sweep(jobs[("gru", "PRL")])
    out["seconds"] = sum(r["timing_s"]["train"] + r["timing_s"]["evaluate"] for r in done.values())
    return out


# ------------------------------------------------------------------------------ reporting
def _metric(rows: list[dict[str, Any]]) -> str:
    """The tested column: purchase NDCG@20, or click NDCG@20 on a clicks-only log."""
    v = rows[0].get("ndcg@20_purchase")
    return "ndcg@20_purchase" if v is not None and math.isfinite(v) else "ndcg@20_click"


def encoder_markdown(per_seed: list[list[dict[str, Any]]]) -> str:
    """Tables 2–3: one block per encoder, each method against that encoder's CE model."""
    metric, parts = _metric(per_seed[0]), []
    for enc in dict.fromkeys(r["encoder"] for r in per_seed[0]):
        rows = rows_over_seeds([[r for r in s if r["encoder"] == enc] for s in per_seed], ("encoder", "method"),
                               base=(enc, "CE"), metric=metric)
        parts.append(rows_markdown(rows, ("encoder", "method"), base_label=f"{metric} vs CE"))
    return "\n\n".join(parts)


def plot_sweep(path: Path, sweeps: dict[str, list[list[dict[str, Any]]]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ds, per_seed in sweeps.items():
        for ax, param, label in ((axes[0], "mu", "μ (ε = 0)"), (axes[1], "eps", "ε (μ = 2)")):
            pts = [[p for p in s if p["param"] == param] for s in per_seed]
            x = [p["value"] for p in pts[0]]
            y = np.array([[p["reward@1"] for p in s] for s in pts])
            base = y[:, 2 if param == "mu" else 0][:, None]  # relative to the default μ = 2, ε = 0
            rel = (y / np.where(base > 0, base, 1.0)).mean(axis=0)
            ax.plot(x, rel, "o-", label=ds)
            ax.set_xlabel(label)
            if param == "mu":
                ax.set_xscale("log", base=2)
            ax.set_ylabel("test reward@1 / reward@1 at μ=2, ε=0")
    axes[0].set_title("Figure 4: inference reward expectation μ")
    axes[1].set_title("Figure 5: inference reward deviation ε")
    axes[0].legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


@cli("studies.prl")
def main(argv: list[str] | None = None) -> int:
    p = study_parser(__doc__, "prl", DATASETS, "method x encoder x dataset x seed")
    p.add_argument("--epochs", type=float, default=None, help="training epochs of every method (replaces the step budget)")
    p.add_argument("--steps", type=int, default=None, help="training steps of every method (full run; default 600); with --patience: the cap")
    args = p.parse_args(argv)
    P = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (QUICK if args.quick else FULL).items()}
    if args.paper:
        P.update(agent={}, paper=True)
    if args.epochs is not None and not args.quick:
        P["agent"].pop("steps", None)
        P["agent"]["epochs"] = args.epochs
    if args.steps is not None and not args.quick:
        P["agent"]["steps"] = args.steps
    if args.patience is not None:  # --steps is then the cap
        settings = QUICK_CONVERGE if args.quick else CONVERGE
        P["agent"] = converge_agent(P["agent"], args.patience, settings, None if args.quick else args.steps)
        P["switch"] = settings["switch"]
    datasets, seeds, runs = study_setup(args, "prl", DATASETS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"command": command_line("python -m studies.prl", argv), "quick": args.quick, "seeds": seeds,
                           "params": P, "encoders": {}, "ablations": {}, "sweep": {}, "errors": {},
                           "seconds_by_dataset": {}}
    units = {(ds, seed): jobs_of(ds, seed, P, runs, args.data_dir, args.threads) for ds in datasets for seed in seeds}
    failed = run_study_jobs([j for jobs in units.values() for j in jobs.values()], args.jobs, t0)
    for (ds, seed), jobs in units.items():  # in seed order; a dataset's failure is reported once
        errors = [failed[str(j.job_dir())] for j in jobs.values() if str(j.job_dir()) in failed]
        if errors and ds not in res["errors"]:
            print(f"studies.prl: {ds}: {len(errors)} job(s) failed, first: {errors[0]}", file=sys.stderr)
            res["errors"][ds] = errors[0]
        r = tables_of(ds, jobs)
        if r is None:
            continue
        for key in ("encoders", "ablations", "sweep"):
            if key in r:
                res[key].setdefault(ds, []).append(r[key])
        res["seconds_by_dataset"][ds] = res["seconds_by_dataset"].get(ds, 0.0) + r["seconds"]
    res["seconds"] = time.perf_counter() - t0

    title = ("QUICK SMOKE RUN on tiny synthetic data — not results" if args.quick
             else "the papers' settings (--paper)" if args.paper else "full run")
    md = [f"# PRL study ({title})",
          f"\nCommand: `{res['command']}`; seeds {seeds}; {res['seconds']:.0f} s. Mean ± sample std (ddof=1) over "
          "seeds; test split. Δ: paired t-test by seed, Holm-corrected across the rows of a block.\n"]
    for ds, per_seed in res["encoders"].items():
        md += [f"\n## Encoder table (Tables 2–3) — {ds} ({res['seconds_by_dataset'][ds]:.0f} s of worker time over "
               "the seeds, with ablations/sweeps)\n", encoder_markdown(per_seed)]
    for ds, per_seed in res["ablations"].items():
        metric = _metric(per_seed[0])
        rows = rows_over_seeds(per_seed, ("method",), base=("PRL",), metric=metric)
        md += [f"\n## Ablations, GRU (Tables 4–5) — {ds}\n", rows_markdown(rows, ("method",), base_label=f"{metric} vs PRL")]
    for ds, per_seed in res["sweep"].items():
        md += [f"\n## Inference prompt sweep, GRU-PRL (Figures 4–5) — {ds}\n",
               rows_markdown(rows_over_seeds(per_seed, ("param", "value")), ("param", "value"))]
    cells: dict[str, list[JobSpec]] = {}
    for (ds, _), jobs in units.items():
        for (enc, m), j in jobs.items():
            cells.setdefault(f"{ds} {enc} {m}", []).append(j)
    if versions := code_versions_md([j for js in cells.values() for j in js]):
        md.insert(2, versions + "\n")
    if conv := convergence_section(cells, "validation ndcg@20"):
        md += ["\n## Convergence", *conv]
    if res["sweep"]:
        plot_sweep(out / "sweep.png", res["sweep"])
        md.append("\n![μ and ε sweeps](sweep.png)")
    return write_study(out, md, res, failed)


if __name__ == "__main__":
    sys.exit(main())
