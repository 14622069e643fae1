#!/usr/bin/env python
"""GPTRec-PPO (Petrov & Macdonald) in recgym: Table 3 and Figures 3-5.

    python -m studies.gptrec --quick --out runs/gptrec_quick        # < 90 s, tiny synthetic data
    python -m studies.gptrec --dataset ml-100k --data-dir ../shared/data --seeds 0 1 2 --jobs 3 \\
        --out docs/results/gptrec                                          # CPU preset
    python -m studies.gptrec ... --patience 5    # early-stop SASRec, BERT4Rec, the student and PPO

Per seed, on a leave-one-out split (test = last item, history excluded from the lists):

* Top-K baselines ``pop``, ``bpr``, ``sasrec``, ``bert4rec``;
* ``gptrec`` (supervised student of the ``mc`` teacher), then ``gptrec-ppo`` from that student:
  NDCG reward, NDCG + λ·ILD for each ``--lambdas-ild``, NDCG − λ·PCOUNT for each ``--lambdas-pop``;
* ``mmr`` and ``pop-rerank`` sweeps over the best Top-K model (validation NDCG@10);
* Recall@1, Recall@10, NDCG@10, ILD@10, nPCOUNT@10 on the test users; NDCG@K for K = 1..10 under
  Top-K decoding (every model) and Next-K decoding (the GPTRec models).

Writes ``results.json`` (every number per seed, configs, timings), ``tables.md`` (mean ± sample std
over seeds; paired tests by seed, Holm-corrected: the Top-K baselines and every PPO run against the
supervised student, each secondary-goal PPO run against re-ranking at the same ILD / nPCOUNT),
``tradeoff_ild.png`` / ``tradeoff_pcount.png`` (PPO points vs re-ranking curves) and
``topk_vs_nextk.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recgym.errors import BadInputError, cli
from recgym.experiments import map_units
from recgym.experiments.report import (atomic_write, code_version, code_versions_markdown, holm, md_table, paired_tests, pyplot,
                                       save_figure, summary, write_json)

TINY = dict(state_len=20, hidden=32, n_blocks=1, n_heads=2)
QUICK = dict(
    data=dict(n_users=150, n_items=60, n_genres=6, n_sessions=300),
    agents={"sasrec": dict(state_len=20, hidden=32, steps=150, eval_every=75),
            "bert4rec": dict(TINY, steps=150, eval_every=75), "bpr": dict(iterations=30)},
    student=dict(TINY, steps=150, eval_every=75),
    ppo=dict(TINY, ppo_steps=30, ppo_eval_every=15, policy_lr=1e-3, value_lr=1e-3, val_users=128),
    lambdas_ild=(0.25, 1.0), lambdas_pop=(5.0, 20.0), weights=(0.0, 0.3, 0.6, 0.9),
)
FULL = dict(  # CPU preset on ml-100k
    data={},
    agents={"sasrec": dict(), "bert4rec": dict(state_len=50, epochs=100, eval_every=200), "bpr": dict()},
    student=dict(),  # GPTRecAgent.PRESETS["ml-100k"]
    ppo=dict(),  # GPTRecPPOAgent.PRESETS["ml-100k"]
    lambdas_ild=(0.1, 0.25, 0.5), lambdas_pop=(2.0, 5.0, 10.0, 30.0, 60.0), weights=(0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9),
)
PAPER = {
    "ml-1m": dict(lambdas_ild=(0.1, 0.5), lambdas_pop=(30.0, 60.0), rerank_base="bert4rec"),
    "steam": dict(lambdas_ild=(0.5, 1.5), lambdas_pop=(30.0, 60.0), rerank_base="bert4rec"),
}
"""``--paper``: Table 3's λ on our scales (ILD: half the paper's λ, PCOUNT: 10×; docs/results/gptrec.md):
ML-1M λ_ILD 0.2 and 1.0, Steam-2M 1.0 and 3.0; λ_PCOUNT 3 and 6 on both; MMR and popularity
re-ranking over BERT4Rec (§5.4). Every model at the dataset's presets (the paper's: 3 layers, d 256,
history 200, 64,000 PPO steps; Steam: the BERT4Rec teacher)."""
TEACHER_LABEL = {"mc": "MC", "bert4rec": "BERT4Rec"}
TRAINED = ("sasrec", "bert4rec")
"""Top-K baselines trained by the shared loop (with the student: what ``--patience`` early-stops)."""
PARTS = ("baselines", "student", "ppo-ndcg", "ppo-ild", "ppo-pcount", "rerank")
"""What a seed runs (``--parts``); any PPO part trains the student first."""
METRICS = ("recall@1", "recall@10", "ndcg@10", "ild@10", "npcount@10")


def _silent(msg: str) -> None:
    pass


def load_data(args: argparse.Namespace, cfg: dict[str, Any], seed: int):
    """``(leave-one-out split, dataset name)``; ``--quick``: a tiny World of the seed."""
    from recgym.data import load_split

    if args.quick:
        d = dict(cfg["data"])
        return load_split("synthetic", seed=seed, protocol="loo", world_seed=seed, **d), "synthetic"
    return load_split(args.dataset, args.data_dir, seed=seed, protocol="loo"), args.dataset


def run_seed(args: argparse.Namespace, cfg: dict[str, Any], seed: int, log) -> dict[str, Any]:
    import torch

    from recgym.agents.gptrec import GPTRecAgent, GPTRecPPOAgent
    from recgym.agents.registry import make_agent
    from recgym.agents.rerank import NextKDecoder
    from recgym.evaluate import evaluate_loo

    sp, dataset = load_data(args, cfg, seed)
    n, pop = sp.n_items, sp.train.popularity()
    ks = tuple(range(1, 11))
    rows: dict[str, dict[str, Any]] = {}
    ndcg_curves: dict[str, list[float]] = {}

    def record(name: str, agent: Any, t0: float, kind: str, **extra: Any) -> dict[str, float]:
        res = evaluate_loo(agent, sp.test, ks=ks, popularity=pop)
        rows[name] = {**{m: res[m] for m in METRICS}, "kind": kind, "seconds": time.perf_counter() - t0, **extra}
        if getattr(agent, "stop_reason", None) is not None and "best_step" not in extra:  # a train_loop model
            rows[name].update(train_best_step=agent.best_step, train_stopped_at=int(agent.curves[-1]["step"]),
                              train_stop=agent.stop_reason, train_first_eval=int(agent.curves[0]["step"]),
                              train_cap=agent.cap_steps, train_patience=agent.config.patience,
                              train_metric=agent.selection_metric)
        ndcg_curves[f"{name} ({'Next-K' if kind.startswith('gptrec') else 'Top-K'})"] = [res[f"ndcg@{k}"] for k in ks]
        log(f"  seed {seed} {name:<24} NDCG@10 {res['ndcg@10']:.4f}  ILD@10 {res['ild@10']:.4f}  "
            f"nPCOUNT@10 {res['npcount@10']:.4f}  ({rows[name]['seconds']:.0f}s)")
        return res

    fit_kw = dict(progress=False, log=_silent, protocol="loo")  # validation scored as the split is
    torch.manual_seed(seed)
    parts = set(cfg.get("parts", PARTS))
    valid_ndcg = {}
    best_name, best = None, None
    student_kw = {**GPTRecAgent.PRESETS.get(dataset, {}), **cfg["student"]}
    teacher_name = student_kw.get("teacher", GPTRecAgent.Config.teacher)
    topk: dict[str, Any] = {}
    for name in ("pop", "bpr", "sasrec", "bert4rec") if {"baselines", "rerank"} & parts else ():
        t0 = time.perf_counter()
        a = make_agent(name, n, seed=seed, dataset=dataset, protocol="loo", **cfg["agents"].get(name, {}))
        a.fit(sp.train, sp.valid, **(fit_kw if hasattr(a, "optimizers") else {}))
        record(name, a, t0, "baseline")
        valid_ndcg[name] = evaluate_loo(a, sp.valid)["ndcg@10"]
        if name in ("sasrec", "bert4rec"):
            topk[name] = a
            res = evaluate_loo(NextKDecoder(n).fit(sp.train, base=a), sp.test, ks=ks)  # Figure 3: Next-K decoding
            ndcg_curves[f"{name} (Next-K)"] = [res[f"ndcg@{k}"] for k in ks]
    if valid_ndcg:
        best_name = cfg.get("rerank_base") or max(("sasrec", "bert4rec"), key=lambda k: valid_ndcg[k])
        best = topk[best_name]
    if "baselines" not in parts:  # trained only as the re-rankers' base
        rows.clear()
        ndcg_curves.clear()
    runs = [("gptrec-ppo NDCG", {}, "gptrec-ppo-ndcg", 0.0)] if "ppo-ndcg" in parts else []
    if "ppo-ild" in parts:
        runs += [(f"gptrec-ppo ILD λ={lam:g}", {"lambda_ild": lam}, "gptrec-ppo-ild", lam) for lam in cfg["lambdas_ild"]]
    if "ppo-pcount" in parts:
        runs += [(f"gptrec-ppo PCOUNT λ={lam:g}", {"lambda_pop": lam}, "gptrec-ppo-pcount", lam) for lam in cfg["lambdas_pop"]]
    if not runs and "student" not in parts:
        return _seed_result(rows, ndcg_curves, best_name, sp, n, parts, seed, cfg, best, pop)

    t0 = time.perf_counter()
    if teacher_name == "mc":
        teacher = make_agent("mc", n, seed=seed).fit(sp.train)
    else:  # a trained baseline of this seed is reused; otherwise the student fits its teacher
        teacher = topk.get(teacher_name)
    student = GPTRecAgent(n, seed=seed, **student_kw)
    student.fit(sp.train, sp.valid, teacher=teacher, **fit_kw)
    name = f"gptrec ({TEACHER_LABEL.get(teacher_name, teacher_name)} teacher)"
    record(name, student, t0, "gptrec")
    res = evaluate_loo(student.with_score_mode("first"), sp.test, ks=ks, popularity=pop)
    ndcg_curves[f"{name} (Top-K)"] = [res[f"ndcg@{k}"] for k in ks]

    ppo_base = ppo_config(dataset, cfg)
    for name, over, kind, lam in runs:
        t0 = time.perf_counter()
        agent = GPTRecPPOAgent(n, seed=seed, **{**ppo_base, **over})
        agent.fit(sp.train, sp.valid, student=student, log=_silent)
        record(name, agent, t0, kind, lam=lam, best_step=agent.best_step, ppo_stopped_at=agent.ppo_stopped_at,
               ppo_stop=agent.ppo_stop_reason, ppo_cap=agent.ppo_cap, ppo_patience=agent.config.ppo_patience)
        if kind == "gptrec-ppo-ndcg":
            res = evaluate_loo(agent.with_score_mode("first"), sp.test, ks=ks, popularity=pop)
            ndcg_curves[f"{name} (Top-K)"] = [res[f"ndcg@{k}"] for k in ks]

    return _seed_result(rows, ndcg_curves, best_name, sp, n, parts, seed, cfg, best, pop)


def _seed_result(rows, ndcg_curves, best_name, sp, n, parts, seed, cfg, best, pop) -> dict[str, Any]:
    """Adds the re-ranking sweeps over the best Top-K model (when ``rerank`` is a part)."""
    from recgym.agents.rerank import MMRAgent, PopRerankAgent
    from recgym.evaluate import evaluate_loo

    for cls, kind in ((MMRAgent, "mmr"), (PopRerankAgent, "pop-rerank")) if "rerank" in parts else ():
        for w in cfg["weights"]:
            t0 = time.perf_counter()
            r = cls(n, seed=seed, weight=w).fit(sp.train, base=best)
            res = evaluate_loo(r, sp.test, popularity=pop)
            rows[f"{best_name}+{kind} w={w:g}"] = {**{m: res[m] for m in METRICS}, "kind": kind, "weight": w,
                                                   "seconds": time.perf_counter() - t0}
    return {"rows": rows, "ndcg_at_k": ndcg_curves, "best_topk": best_name, "n_items": n,
            "n_test_users": int((sp.test.lengths >= 2).sum()), "code_version": code_version()}


def _common_name(name: str, best_topk: str) -> str:
    """Re-ranker rows are named after the seed's best Top-K model (picked by validation NDCG@10,
    so it can differ between seeds); across seeds they are the same role: ``best Top-K+mmr w=…``."""
    return name.replace(f"{best_topk}+", "best Top-K+", 1) if name.startswith(f"{best_topk}+") else name


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and sample std over seeds of every row (``(mean, std)`` per metric), plus each PPO
    run's best iteration per seed (0 = the student was never beaten on validation)."""
    rows = [{_common_name(k, s["best_topk"]): v for k, v in s["rows"].items()} for s in per_seed]
    out = {}
    for name in rows[0]:
        missing = [i for i, r in enumerate(rows) if name not in r]
        if missing:
            raise KeyError(f"studies.gptrec: row {name!r} is missing from seed result(s) {missing}")
        vals = {m: [r[name][m] for r in rows] for m in METRICS}
        cells = {m: summary(v) for m, v in vals.items()}
        out[name] = {"kind": rows[0][name]["kind"], **{m: (c["mean"], c["std"]) for m, c in cells.items()},
                     **{k: rows[0][name][k] for k in ("lam", "weight") if k in rows[0][name]}}
        if "best_step" in rows[0][name]:
            out[name]["best_step"] = [int(r[name]["best_step"]) for r in rows]
    return out


def write_tables(summary: dict[str, Any], per_seed: list[dict[str, Any]], seeds: list[int], path: Path,
                 header: str, versions: dict[str, list[str]] | None = None) -> str:
    """``tables.md``: every row's mean ± std, each PPO run's kept / stop step and each trained model's
    best / stop step per seed; ``versions`` (``{code version: [seed files]}``) gives its version line."""
    best = ", ".join(f"seed {s}: {r['best_topk']}" for s, r in zip(seeds, per_seed))
    spread = len(per_seed) > 1  # one seed has no sample std: its cells are the values alone

    def cell(mean_std: tuple[float, float]) -> str:
        return f"{mean_std[0]:.4f} ± {mean_std[1]:.4f}" if spread else f"{mean_std[0]:.4f}"

    what = f"mean ± sample std over seeds {seeds}" if spread else f"seed {seeds[0]} only (no spread)"
    lines = [header, "", *([code_versions_markdown(versions), ""] if versions else []), f"{what}; lists exclude the history; ILD@10 is the full mean "
             "pairwise genre cosine distance (the paper's tables report half of it). Best Top-K model by validation "
             f"NDCG@10 (the re-rankers' base): {best}.", "",
             "| model | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, r in summary.items():
        lines.append(f"| {name} | " + " | ".join(cell(r[m]) for m in METRICS) + " |")
    ppo = [name for name, r in summary.items() if "best_step" in r]
    if ppo:
        lines += ["", "PPO optimisation step kept (best validation list reward; 0 = the supervised student itself) / "
                  "step it stopped at (stop reason; cap), per seed; **first** = the student was never beaten, "
                  "**cap** = early stopping on but the full length trained, **last** = a fixed-length run still "
                  "improving at its end:", "",
                  "| run | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
        for name in ppo:
            cells = []
            for res in per_seed:
                r = res["rows"].get(name)
                if r is None:
                    cells.append("-")
                    continue
                stopped = r.get("ppo_stopped_at")
                if stopped is None:  # a seed file written before PPO recorded its stop
                    cells.append(str(r["best_step"]))
                    continue
                flag = (" **first**" if r["best_step"] == 0 else "") + (
                    " **cap**" if r.get("ppo_stop") == "cap" and r.get("ppo_patience") else "") + (
                    " **last**" if r["best_step"] == stopped and not r.get("ppo_patience") else "")
                cells.append(f"{r['best_step']} / {stopped} ({r.get('ppo_stop')}; {r.get('ppo_cap')}){flag}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    trained = [n for n, r in per_seed[0]["rows"].items() if "train_stop" in r]
    if trained:
        lines += ["", "Shared-loop training per seed: best validation step / step it stopped at (stop reason; cap); "
                  "**first** = best at the first validation, **cap** = early stopping on but the full length trained:", "",
                  "| model | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
        for n in trained:
            cells = []
            for res in per_seed:
                r = res["rows"].get(n, {})
                flag = (" **first**" if r.get("train_best_step") == r.get("train_first_eval") else "") + (
                    " **cap**" if r.get("train_stop") == "cap" and r.get("train_patience") else "")
                cells.append(f"{r.get('train_best_step')} / {r.get('train_stopped_at')} ({r.get('train_stop')}; "
                             f"{r.get('train_cap')}){flag}" if r else "-")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += _decoding_table(per_seed) + _ppo_tests(per_seed, seeds)
    text = "\n".join(lines) + "\n"
    atomic_write(path, text)
    return text


STUDENT = "gptrec (MC teacher)"
"""The family's base model: every PPO run starts from this supervised student (``student_row``)."""


def student_row(rows: dict[str, Any]) -> str:
    """The name of the supervised student's row (its teacher in brackets; :data:`STUDENT` when absent)."""
    return next((n for n, r in rows.items() if r["kind"] == "gptrec"), STUDENT)


TOPK_BASELINES = ("pop", "bpr", "sasrec", "bert4rec")
"""The Top-K models the student is compared with (the paper's RQ1)."""
RERANKER_OF = {"gptrec-ppo-ild": ("mmr", "ild@10", 1), "gptrec-ppo-pcount": ("pop-rerank", "npcount@10", -1)}
"""Each secondary-goal PPO kind: the greedy re-ranker of the same goal, the goal's metric and its
direction (+1: higher is better, −1: lower is better) (RQ4)."""


def _decoding_table(per_seed: list[dict[str, Any]]) -> list[str]:
    """Figure 3 as numbers: NDCG@K under Top-K and Next-K decoding of the same model (mean over seeds)
    and the change at K = 10, relative to Top-K, per seed."""
    curves = per_seed[0]["ndcg_at_k"]
    models = [n[: -len(" (Top-K)")] for n in curves if n.endswith(" (Top-K)")
              and all(f"{n[: -len(' (Top-K)')]} ({mode})" in r["ndcg_at_k"] for r in per_seed for mode in ("Top-K", "Next-K"))]
    if not models:
        return []
    body = []
    for m in models:
        top = np.array([r["ndcg_at_k"][f"{m} (Top-K)"] for r in per_seed])
        nxt = np.array([r["ndcg_at_k"][f"{m} (Next-K)"] for r in per_seed])
        change = nxt[:, 9] / top[:, 9] - 1
        body.append([m, *(f"{top[:, k - 1].mean():.4f} / {nxt[:, k - 1].mean():.4f}" for k in (1, 5, 10)),
                     f"{nxt[:, 9].mean() / top[:, 9].mean() - 1:+.1%}", " / ".join(f"{c:+.1%}" for c in change)])
    return ["", "NDCG@K of the same model under Top-K / Next-K decoding (mean over seeds), and Next-K's change at "
            "K = 10 relative to Top-K (of the means; per seed):", "",
            md_table(["model", "NDCG@1", "NDCG@5", "NDCG@10", "Next-K vs Top-K @10", "per seed"], body)]


def _fmt_test(t: dict[str, Any] | None) -> str:
    if t is None:
        return "–"
    p, ph = t["p_vs_baseline"], t["p_holm"]
    return (f"{t['diff_vs_baseline']:+.4f} ({t['wins']}; p {'-' if p is None else f'{p:.3g}'}, "
            f"Holm {'-' if ph is None else f'{ph:.3g}'})")


def _paired_table(per_seed: list[dict[str, Any]], seeds: list[int], base: str, names: list[str]) -> str:
    """``names`` against ``base``, per metric: mean paired difference by seed, seeds where the row is
    higher, paired t-test p and its Holm correction across ``names`` (per metric)."""
    tests = {m: paired_tests({n: {s: r["rows"][n][m] for s, r in zip(seeds, per_seed) if n in r["rows"]}
                              for n in [base, *names]}, base) for m in METRICS}
    return md_table(["row", *METRICS], [[n, *(_fmt_test(tests[m].get(n)) for m in METRICS)] for n in names])


def _ppo_tests(per_seed: list[dict[str, Any]], seeds: list[int]) -> list[str]:
    """The Top-K baselines and every PPO run against the student (RQ1, RQ3), and the secondary-goal PPO
    runs against re-ranking (RQ4)."""
    rows = per_seed[0]["rows"]
    student = student_row(rows)
    if student not in rows:
        return []
    out = []
    baselines = [n for n in TOPK_BASELINES if n in rows]
    if baselines:
        out += ["", f"Top-K baselines against the supervised student `{student}`: mean paired difference by seed "
                "(baseline − student; seeds where the baseline is higher; paired t-test p, Holm-corrected across "
                "the baselines; `-` under 2 seeds).", "", _paired_table(per_seed, seeds, student, baselines)]
    names = [n for n in rows if rows[n]["kind"].startswith("gptrec-ppo")]
    if names:
        out += ["", f"PPO runs against the supervised student `{student}`: mean paired difference by seed (PPO − "
                "student; seeds where PPO is higher; paired t-test p, Holm-corrected across the PPO runs; `-` "
                "under 2 seeds).", "", _paired_table(per_seed, seeds, student, names)]
    return out + _reranker_tests(per_seed)


def ndcg_at_equal(rows: dict[str, dict[str, Any]], kind: str, metric: str, x: float) -> float | None:
    """NDCG@10 of one seed's re-ranking sweep ``kind`` where its ``metric`` equals ``x``: linear
    interpolation between the sweep's points ordered by ``metric``; ``None`` outside the sweep's range."""
    pts = sorted((r[metric], r["ndcg@10"]) for r in rows.values() if r["kind"] == kind)
    if not pts or not pts[0][0] <= x <= pts[-1][0]:
        return None
    xs, ys = zip(*pts)
    return float(np.interp(x, xs, ys))


def _reranker_tests(per_seed: list[dict[str, Any]]) -> list[str]:
    """RQ4: each secondary-goal PPO run against greedy re-ranking of the seed's best Top-K model at the
    same value of the secondary metric (:func:`ndcg_at_equal`), paired by seed, Holm across the runs.
    Both grids are fixed before the run, so no operating point is picked on test."""
    from scipy.stats import ttest_1samp

    rows0 = per_seed[0]["rows"]
    names = [n for n in rows0 if rows0[n]["kind"] in RERANKER_OF]
    diffs: dict[str, list[float]] = {}
    outside: dict[str, int] = {}
    dominated: dict[str, int] = {}
    for n in names:
        kind, metric, sign = RERANKER_OF[rows0[n]["kind"]]
        d, seen, dom = [], 0, 0
        for r in per_seed:
            if n not in r["rows"]:
                continue
            seen += 1
            ppo = r["rows"][n]
            eq = ndcg_at_equal(r["rows"], kind, metric, ppo[metric])
            if eq is not None:
                d.append(ppo["ndcg@10"] - eq)
            dom += any(x["kind"] == kind and x["ndcg@10"] >= ppo["ndcg@10"] and sign * (x[metric] - ppo[metric]) >= 0
                       for x in r["rows"].values())
        diffs[n], outside[n], dominated[n] = d, seen - len(d), dom
    if not any(diffs.values()) and not any(dominated.values()):
        return []
    p = {n: (float(ttest_1samp(d, 0.0).pvalue) if len(d) >= 2 and np.ptp(d) > 0 else None) for n, d in diffs.items()}
    ph = holm(p)
    body = []
    for n in names:
        d = diffs[n]
        kind, metric, _ = RERANKER_OF[rows0[n]["kind"]]
        body.append([n, f"{kind} at equal {metric}",
                     f"{np.mean(d):+.4f}" if d else "–", f"{sum(x > 0 for x in d)}/{len(d)}", outside[n],
                     "-" if p[n] is None else f"{p[n]:.3g}", "-" if ph[n] is None else f"{ph[n]:.3g}",
                     f"{dominated[n]}/{outside[n] + len(d)}"])
    return ["", "PPO runs for a secondary goal against greedy re-ranking of the seed's best Top-K model at the same "
            "value of that goal's metric (the re-ranker's NDCG@10 interpolated linearly between its two sweep "
            "weights around the PPO run's ILD@10 / nPCOUNT@10): mean paired NDCG@10 difference by seed (PPO − "
            "re-ranking), seeds where PPO is higher, seeds outside the sweep's range (not compared), paired "
            "t-test p, Holm-corrected across the runs; **dominated**: seeds where some re-ranking weight is at "
            "least as good on both NDCG@10 and the goal's metric.", "",
            md_table(["run", "against", "Δ NDCG@10", "PPO higher", "outside sweep", "p", "Holm", "dominated"], body)]


def plots(summary: dict[str, Any], per_seed: list[dict[str, Any]], out: Path) -> None:
    plt = pyplot()
    for metric, fname, rerank, ppo_kind, label in (
        ("ild@10", "tradeoff_ild.png", "mmr", "gptrec-ppo-ild", "ILD@10 (higher = more diverse)"),
        ("npcount@10", "tradeoff_pcount.png", "pop-rerank", "gptrec-ppo-pcount", "nPCOUNT@10 (lower = less popularity bias)"),
    ):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        curve = [(r[metric][0], r["ndcg@10"][0]) for r in summary.values() if r["kind"] == rerank]
        if curve:
            bases = "/".join(sorted({str(r["best_topk"]) for r in per_seed if r["best_topk"]}))
            ax.plot(*zip(*curve), "o-", color="tab:gray", label=f"best Top-K ({bases}) + {rerank} (w sweep)")
        pts = [(r[metric][0], r["ndcg@10"][0], name) for name, r in summary.items() if r["kind"] in (ppo_kind, "gptrec-ppo-ndcg")]
        for x, y, name in pts:
            ax.plot(x, y, "*", ms=12, color="tab:red")
            ax.annotate(name.replace("gptrec-ppo ", ""), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        s = summary.get(student_row(summary))
        if s:
            ax.plot(s[metric][0], s["ndcg@10"][0], "s", color="tab:blue", label="gptrec (student)")
        ax.plot([], [], "*", color="tab:red", label="gptrec-ppo")
        ax.set_xlabel(label)
        ax.set_ylabel("NDCG@10")
        ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, out / fname, dpi=120)
    fig, ax = plt.subplots(figsize=(6, 4))
    shown = (("sasrec", "tab:blue"), ("bert4rec", "tab:orange"), (student_row(summary), "tab:green"),
             ("gptrec-ppo NDCG", "tab:red"))
    for model, color in shown:  # one colour per model: dashed Top-K, solid Next-K decoding of the same model
        for mode, style in (("Top-K", "--"), ("Next-K", "-")):
            name = f"{model} ({mode})"
            if all(name in s["ndcg_at_k"] for s in per_seed):
                mean = np.mean([s["ndcg_at_k"][name] for s in per_seed], axis=0)
                ax.plot(range(1, 11), mean, style, color=color, marker="o", ms=3, label=name)
    ax.set_xlabel("K")
    ax.set_ylabel("NDCG@K")
    ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, out / "topk_vs_nextk.png", dpi=120)


PPO_CAP_FACTOR = 10
"""With ``--patience`` a PPO run may train this many times its configured ``ppo_steps`` (ML-100K: 1,200 →
12,000 steps, 60 validations), so that early stopping and not the cap ends it (at 5×, ILD λ = 0.25 and
0.5 reached the cap in seed 2 of the converged run at 608a9d9)."""


CONVERGE_CAPS = {"bert4rec": {"epochs": 1000}, "student": {"epochs": 100}}
"""Caps raised for early stopping, 10× / 5× the configured length: with its 100 ML-100K epochs as the
cap, BERT4Rec was still improving at the cap (best validation at step 800 of 800, seed 0 of a first
converged run at b976a9a); the student (20 CPU-preset epochs) ended at its cap in seeds 1–3 of the
converged run at 608a9d9 (best validation 592–629 of 740 steps). A run stopped by patience before
the old cap is unchanged: a batch depends on (seed, step) only."""


def ppo_config(dataset: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The PPO runs' shared config: the dataset's preset and ``cfg["ppo"]``; with early stopping
    (``ppo_patience``) the configured length times :data:`PPO_CAP_FACTOR` is the cap."""
    from recgym.agents.gptrec import GPTRecPPOAgent

    out = {**GPTRecPPOAgent.PRESETS.get(dataset, {}), **cfg["ppo"]}
    if out.get("ppo_patience"):
        out["ppo_steps"] = PPO_CAP_FACTOR * out.get("ppo_steps", GPTRecPPOAgent.Config.ppo_steps)
    return out


def with_patience(cfg: dict[str, Any], patience: int) -> dict[str, Any]:
    """``cfg`` with early stopping for the models of the shared loop (:data:`TRAINED` and the
    student) and for the PPO stage (``ppo_patience``); their configured lengths are the caps
    (:data:`CONVERGE_CAPS` where raised), PPO's times :data:`PPO_CAP_FACTOR`."""
    if patience < 1:
        raise BadInputError(f"--patience must be a positive integer, got {patience}")
    agents = {k: ({**v, **CONVERGE_CAPS.get(k, {}), "patience": patience} if k in TRAINED else v)
              for k, v in cfg["agents"].items()}
    return {**cfg, "agents": agents, "student": {**cfg["student"], **CONVERGE_CAPS["student"], "patience": patience},
            "ppo": {**cfg["ppo"], "ppo_patience": patience}}


def on_device(cfg: dict[str, Any], device: str) -> dict[str, Any]:
    """``cfg`` with every trained model (the Top-K transformers, the student, PPO) on ``device``."""
    agents = {**cfg["agents"], **{k: {**cfg["agents"].get(k, {}), "device": device} for k in TRAINED}}
    return {**cfg, "agents": agents, "student": {**cfg["student"], "device": device}, "ppo": {**cfg["ppo"], "device": device}}


def _seed_worker(args: dict[str, Any], cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """:func:`run_seed` in a worker process (``--jobs``), single-threaded like the main process."""
    import torch

    torch.set_num_threads(1)
    return run_seed(argparse.Namespace(**args), cfg, seed, lambda m: print(m, flush=True))


@cli("studies.gptrec")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny synthetic data and models (smoke run, < 90 s)")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--jobs", type=int, default=1, help="seeds run in parallel worker processes (1 torch thread each)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the seed<N>.json files already in --out (same command) instead of re-running those seeds")
    p.add_argument("--lambdas-ild", type=float, nargs="+", default=None, help="PPO-ILD weights (default: the preset's)")
    p.add_argument("--lambdas-pop", type=float, nargs="+", default=None, help="PPO-PCOUNT weights (default: the preset's)")
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"comma list of what each seed runs, from {','.join(PARTS)} (a PPO part trains the student)")
    p.add_argument("--patience", type=int, default=None, metavar="N",
                   help="early-stop sasrec, bert4rec, the GPTRec student and every PPO run after N validations "
                        "without a strict improvement (their configured lengths are the caps)")
    p.add_argument("--paper", action="store_true",
                   help="the paper's Table 3 settings on --dataset ml-1m or steam (every model at the dataset's "
                        "presets, the paper's λ grids; docs/paper-settings.md)")
    p.add_argument("--device", default=None,
                   help="torch device of every trained model (sasrec, bert4rec, the student, PPO), e.g. cuda")
    p.add_argument("--merge", type=Path, action="append", default=[],
                   help="add the rows of another run's seed<N>.json files (same seeds) to this report; repeatable")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    cfg = dict(QUICK if args.quick else FULL)
    if args.paper:
        if args.quick or args.patience is not None or args.dataset not in PAPER:
            raise BadInputError(f"--paper: the paper's datasets are {', '.join(PAPER)} (got --dataset {args.dataset}); "
                                "it takes no --quick or --patience (the paper's lengths and early stopping)")
        cfg.update(agents={}, student={}, ppo={}, **PAPER[args.dataset])
    if args.patience is not None:
        cfg = with_patience(cfg, args.patience)
    if args.device is not None:
        cfg = on_device(cfg, args.device)
    for key in ("lambdas_ild", "lambdas_pop"):
        if getattr(args, key) is not None:
            cfg[key] = tuple(getattr(args, key))
    cfg["parts"] = tuple(x.strip() for x in args.parts.split(",") if x.strip())
    unknown = sorted(set(cfg["parts"]) - set(PARTS))
    if unknown or not cfg["parts"]:
        raise BadInputError(f"--parts: unknown or empty {unknown or args.parts!r}; choose from {', '.join(PARTS)}")
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    done: dict[int, dict[str, Any]] = {}

    def keep(seed: int, result: dict[str, Any]) -> None:  # a finished seed is kept on disk at once
        done[seed] = result
        write_json(args.out / f"seed{seed}.json", result, indent=1)
        print(f"[{time.perf_counter() - t0:6.0f}s] seed {seed} done", flush=True)

    todo = list(seeds)
    if args.resume:
        for s in seeds:
            f = args.out / f"seed{s}.json"
            if f.exists():
                done[s] = json.loads(f.read_text())
                todo.remove(s)
                print(f"seed {s}: reusing {f}", flush=True)
    # one single-threaded worker process per seed (--jobs)
    map_units(functools.partial(_seed_worker, vars(args), cfg), todo, args.jobs, log=keep)
    per_seed = [done[s] for s in seeds]
    versions: dict[str, list[str]] = {}
    for s, res in zip(seeds, per_seed):
        versions.setdefault(res.get("code_version", "unrecorded"), []).append(f"seed{s}.json")
    for extra in args.merge:  # rows of another run (e.g. more PPO weights on the same seeds)
        for s, res in zip(seeds, per_seed):
            f = extra / f"seed{s}.json"
            if not f.exists():
                raise BadInputError(f"--merge {extra}: no {f.name} for seed {s}")
            other = json.loads(f.read_text())
            versions.setdefault(other.get("code_version", "unrecorded"), []).append(f"{extra.name}/{f.name}")
            for key in ("rows", "ndcg_at_k"):
                res[key].update({k: v for k, v in other[key].items() if k not in res[key]})
    summary = summarise(per_seed)
    what = "synthetic (--quick smoke run)" if args.quick else args.dataset
    table = write_tables(summary, per_seed, seeds, args.out / "tables.md", f"# GPTRec-PPO study: {what}", versions)
    plots(summary, per_seed, args.out)
    payload = {"argv": sys.argv[1:] if argv is None else argv, "config": {k: v for k, v in cfg.items()}, "seeds": seeds,
               "per_seed": per_seed, "summary": summary, "seconds": time.perf_counter() - t0,
               "reused_seeds": [s for s in seeds if s not in todo], "merged": [str(m) for m in args.merge],
               "torch": torch.__version__}
    write_json(args.out / "results.json", payload, indent=1)
    print(table)
    print(f"done in {time.perf_counter() - t0:.0f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
