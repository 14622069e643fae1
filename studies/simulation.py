#!/usr/bin/env python
"""Simulator fidelity: which offline criterion ranks agents like their true value?

    python -m studies.simulation --quick --out runs/simulation_quick             # < 60 s, 3 tiny worlds
    python -m studies.simulation --out runs/simulation --jobs 2 --world-ids 0-19 # 20 worlds, 400 steps each
    python -m studies.simulation --patience 5 --out runs/simulation_converged --jobs 2 --world-ids 0-19

Over the Synthetic worlds ``--world-ids`` whose knobs are drawn at random from the ranges in ``KNOBS``
(popularity bias of the items and of the logger, quality–popularity correlation, the rating
selection bias on utility and on popularity, session length, purchase offset, catalogue size), the
zoo (``AGENTS``: pop, mc, sasrec, sqn, ccql, lpi, prl) is trained once per world through the
harness (:func:`recgym.experiments.run_jobs`: one resumable job per agent, ``true_value=True``).
Each agent's **truth** is the World's expected reward of its greedy item on the logged test
contexts (``World.true_value``). The criteria that try to predict it, all on the same trained
models (``model.pt``):

* logged ``ndcg@10`` / ``hr@10`` on the test sessions (purchases, the reward that counts);
* the MF simulator's ``iar@1`` (mean imputed reward of the greedy item on the held-out contexts of
  the World's MNAR rating log, as :class:`recgym.envs.mf_user.MFUserEnv` with
  ``contexts="ratings"``) and its multi-step ``return@5`` (five greedy steps, each item appended to
  the history), for each imputer in ``IMPUTERS`` (``steck`` = the weighted MF as shipped before this
  study); the same on the logged validation sessions' states (``MFUserEnv(contexts="logged")``, the
  env's own contexts): ``iar@1 [<imputer>, logged]``, ``return@5 [<imputer>, logged]``;
* off-policy estimates of the greedy policy on the test log with the World's true propensities
  (:mod:`recgym.ope`): ``ips``, ``snips`` and, with the imputer as reward model (its imputed reward
  mapped to the log's reward scale by a least-squares line fitted on the training events), ``dm``
  and ``dr``.

Per criterion and world: Spearman's and Kendall's ρ with the truth over the agents, whether its top
agent is the truly best one, and the regret of following it (best true value minus that of its
pick). Worlds 0–4 are *development* (imputer variants were chosen on them), 5–9 *held out*
(reported, never tuned on), 10–19 the *confirmation* set of the logged contexts (their decision rule
was written down before they were evaluated; ``confirmation`` in ``results.json``). Writes ``jobs/``
(the harness jobs), ``eval/world<k>.json`` (every criterion value, cached: a rerun only computes
what is missing), ``results.json``, ``tables.md`` and ``fidelity.png`` into ``--out``. With
``--patience`` every agent trains to convergence (:data:`CONVERGE`) instead of a fixed 400 steps and
``tables.md`` gives each agent's convergence over the worlds.
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

from recgym.errors import cli

AGENTS = ("pop", "mc", "sasrec", "sqn", "ccql", "lpi", "prl")
KNOBS: dict[str, tuple] = {
    "zipf_exponent": (0.6, 1.4),
    "logging_pop_weight": (0.5, 2.0),
    "quality_pop_corr": (-0.3, 0.8),
    "rating_select_utility": (0.0, 3.0),
    "rating_select_pop": (0.0, 1.5),
    "session_len_mean": (4.0, 14.0),
    "purchase_offset": (1.0, 3.0),
    "n_items": (150, 250, 400),
}
"""Ranges the world knobs are drawn from (uniform; a tuple of three ints is a choice)."""
FULL = dict(n_users=400, n_sessions=2000, ratings_per_user=20, steps=400,
            agent=dict(hidden=32, batch_size=128, state_len=10, eval_every=200))
QUICK = dict(n_users=80, n_sessions=150, ratings_per_user=10, steps=20,
             agent=dict(hidden=8, batch_size=32, state_len=5, eval_every=20), quick=True)
CONVERGE = {"eval_every": 25, "cap": 6250, "switch": 250}
"""``--patience``: every agent validates every 25 steps and stops after ``patience`` validations
without a strict improvement, under a cap of 6,250 steps (as the README's converged Synthetic
comparison, whose runs peaked at 75–115 steps); ``ccql`` switches its actor at step 250 (the
Q-learning study's Synthetic setting) and validations before it do not count toward the patience."""
QUICK_CONVERGE = {"eval_every": 5, "cap": 60, "switch": 20}
SWITCHED = ("ccql",)
"""Agents of the zoo whose actor changes at ``switch_step``."""
HORIZON = 5
IMPUTERS: dict[str, dict[str, Any]] = {
    "steck": {},
    "steck-w0.03": {"missing_weight": 0.03},
    "pop-miss": {"missing_weighting": "popularity", "pop_exponent": 1.0},
    "ips-obs": {"observed_weighting": "ips", "ips_exponent": 1.0},
    "ips-obs0.5": {"observed_weighting": "ips", "ips_exponent": 0.5},
    "pop-miss+ips-obs": {"missing_weighting": "popularity", "pop_exponent": 1.0, "observed_weighting": "ips"},
    "pop-miss0.5+ips-obs": {"missing_weighting": "popularity", "pop_exponent": 0.5, "observed_weighting": "ips"},
    "pop-miss2+ips-obs": {"missing_weighting": "popularity", "pop_exponent": 2.0, "observed_weighting": "ips"},
    "pop-miss+ips-obs0.5": {"missing_weighting": "popularity", "pop_exponent": 1.0, "observed_weighting": "ips",
                            "ips_exponent": 0.5},
    "pop-miss+ips-obs-w0.01": {"missing_weighting": "popularity", "pop_exponent": 1.0, "observed_weighting": "ips",
                               "missing_weight": 0.01},
    "steck+no-repeat": {"repeats": "zero"},
    "pop-miss+ips-obs+no-repeat": {"missing_weighting": "popularity", "pop_exponent": 1.0, "observed_weighting": "ips",
                                   "repeats": "zero"},
}
"""Simulator variants: ``MFConfig`` fields over the simulator's defaults, and ``repeats`` (``"zero"``:
an item already in the user's history earns reward 0, as a re-consumption; default ``"imputed"``:
its imputed rating, which for a rated item is fitted to that observed rating). ``steck`` = today's."""
LOGGED = ("ndcg@10_purchase", "hr@10_purchase")
OPE_FIXED = ("ips", "snips")
PER_IMPUTER = ("iar@1", "return@5", "dm", "dr", "iar@1 logged", "return@5 logged")
GROUPS = {"development": range(0, 5), "held-out": range(5, 10), "confirmation": range(10, 20)}
"""World ids of each group (a world outside them counts in "all" only)."""


def criterion(kind: str, imputer: str) -> str:
    """The column name of a per-imputer criterion: ``iar@1 [steck]``, ``iar@1 [steck, logged]``."""
    base, _, ctx = kind.partition(" ")
    return f"{base} [{imputer}{', ' + ctx if ctx else ''}]"


def simulator_criterion(imputer: str = "steck") -> str:
    """The criterion of ``MFUserEnv``'s default simulator: iAR@1 on its default contexts."""
    from recgym.envs.mf_user import DEFAULT_CONTEXTS

    return criterion("iar@1" + (" logged" if DEFAULT_CONTEXTS == "logged" else ""), imputer)


def parse_worlds(spec: str) -> list[int]:
    """``"0-9"``, ``"10-19"``, ``"0,5,10"`` or a mix -> sorted distinct world ids (or ``ValueError``)."""
    out: set[int] = set()
    for part in (x.strip() for x in spec.split(",")):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()) or (dash and int(hi) < int(lo)):
            raise ValueError(f"--world-ids: {part!r} is not a world id or an increasing range like 10-19")
        out.update(range(int(lo), int(hi if dash else lo) + 1))
    return sorted(out)


def world_knobs(w: int, P: dict) -> dict[str, Any]:
    """World ``w``'s knobs: drawn from ``KNOBS`` with seed ``[2026, w]`` (plus the fixed sizes)."""
    rng = np.random.default_rng([2026, w])
    out: dict[str, Any] = {"n_users": P["n_users"], "ratings_per_user": P["ratings_per_user"]}
    for k, r in KNOBS.items():
        out[k] = int(rng.choice(r)) if len(r) == 3 else round(float(rng.uniform(*r)), 3)
    if P.get("quick"):
        out["n_items"] = 60
    out["session_len_max"] = max(30, int(np.ceil(out["session_len_mean"])) + 1)
    return out


def jobs_of_world(w: int, P: dict, out: Path) -> list[Any]:
    from recgym.experiments import JobSpec

    data = {"n_sessions": P["n_sessions"], "world_seed": w,
            **{k: v for k, v in world_knobs(w, P).items() if k != "ratings_per_user"}}
    return [JobSpec(agent=a, dataset="synthetic", seed=0, out=str(out / "jobs" / f"world{w}" / a), data_params=data,
                    overrides=agent_overrides(a, P), steps=P["steps"], ignore_overrides=True, true_value=True)
            for a in AGENTS]


def converged(P: dict, patience: int) -> dict:
    """``P`` in convergence mode: the cap of :data:`CONVERGE` as ``steps`` and ``patience``."""
    c = QUICK_CONVERGE if P.get("quick") else CONVERGE
    return {**P, "steps": c["cap"], "patience": patience, "converge": dict(c),
            "agent": {**P["agent"], "eval_every": c["eval_every"]}}


def agent_overrides(agent: str, P: dict) -> dict[str, Any]:
    """One agent's config overrides: ``P["agent"]``; in convergence mode also ``patience`` and, for a
    switched agent, ``switch_step`` with ``patience_after`` at it."""
    o = dict(P["agent"])
    if "patience" in P:
        o["patience"] = P["patience"]
        if agent in SWITCHED:
            o["switch_step"] = o["patience_after"] = P["converge"]["switch"]
    return o


def training_markdown(worlds: list[int], P: dict, out: Path) -> str:
    """How the zoo was trained: the code version of every job, and in convergence mode the
    convergence table (per agent over worlds: best and stop step, stop reasons, flagged runs)."""
    from recgym.experiments.job import read_results
    from recgym.experiments.report import code_versions_markdown, convergence_markdown, run_convergence

    versions: dict[str, list[str]] = {}
    conv: dict[str, dict[str, dict[str, Any]]] = {}
    metric = "the selection metric"
    for w in worlds:
        for j in jobs_of_world(w, P, out):
            if (r := read_results(j.job_dir())) is not None:
                versions.setdefault(r.get("code_version", "unrecorded"), []).append(f"{j.agent}/world{w}")
                conv.setdefault(j.agent, {})[str(w)] = run_convergence(r, r.get("selection_metric"))
                metric = r.get("selection_metric") or metric
    if "patience" in P:
        mode = (f"Every agent trained to convergence: patience {P['patience']} validations, every "
                f"{P['converge']['eval_every']} steps, cap {P['steps']} steps; `ccql` switches at step "
                f"{P['converge']['switch']}.")
    else:
        mode = f"Every agent trained for a fixed {P['steps']} steps (validation every {P['agent']['eval_every']})."
    lines = [mode, "", code_versions_markdown(versions)]
    if "patience" in P:
        lines += convergence_markdown(conv, metric, unit="world")
    return "\n".join(lines) + "\n\n"


# ---------------------------------------------------------------------------- evaluating one world
def rollout(agent: Any, hist: np.ndarray, hlen: np.ndarray, n_items: int, horizon: int) -> np.ndarray:
    """Greedy items of ``horizon`` steps from each context, each item appended to the history:
    int64 ``[B, horizon]``. ``hist`` right-padded ``[B, L]`` with ``lengths`` [B]."""
    from recgym.evaluate import greedy_actions

    h = np.concatenate([hist, np.full((len(hist), horizon), n_items, dtype=np.int64)], axis=1)
    n = hlen.astype(np.int64).copy()
    acts = np.empty((len(h), horizon), dtype=np.int64)
    rows = np.arange(len(h))
    for t in range(horizon):
        acts[:, t] = greedy_actions(agent, h, n)
        h[rows, n] = acts[:, t]
        n += 1
    return acts


def seen_mask(hist: np.ndarray, lengths: np.ndarray, n_items: int) -> np.ndarray:
    """bool ``[B, n_items]``: the item is in the context's history (``hist`` right-padded ``[B, L]``)."""
    seen = np.zeros((len(hist), n_items + 1), dtype=bool)
    valid = np.arange(hist.shape[1])[None, :] < lengths[:, None]
    seen[np.arange(len(hist))[:, None], np.where(valid, hist, n_items)] = True
    return seen[:, :n_items]


def repeated(hist: np.ndarray, lengths: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """bool ``[B, H]``: step ``t``'s item of a rollout is in the history or among the steps before it."""
    seen = seen_mask(hist, lengths, int(max(hist.max(), acts.max())) + 1)
    rows = np.arange(len(acts))
    out = np.zeros(acts.shape, dtype=bool)
    for t in range(acts.shape[1]):
        out[:, t] = seen[rows, acts[:, t]]
        seen[rows, acts[:, t]] = True
    return out


def estimates(log: Any, pi: np.ndarray, q_hat: np.ndarray | None = None) -> dict[str, float]:
    """IPS and SNIPS (plus DM and DR with ``q_hat``) of the target ``pi [n_events, n_items]`` on ``log``
    with its true propensities; SNIPS is NaN when π puts no mass on any logged item (tiny worlds)."""
    from recgym import ope

    r, mu, a = log.rewards.astype(np.float64), log.propensities.astype(np.float64), log.items.astype(np.int64)
    w = pi[np.arange(len(a)), a] / mu
    out = {"ips": ope.ips(r, mu, pi, a)["estimate"],
           "snips": ope.snips(r, mu, pi, a)["estimate"] if w.sum() > 0 else float("nan")}
    if q_hat is not None:
        out.update(dm=ope.dm(pi, q_hat)["estimate"], dr=ope.dr(r, mu, pi, q_hat, a)["estimate"])
    return out


def fit_imputer(rsp: Any, n_users: int, overrides: dict[str, Any], seed: int) -> Any:
    """The simulator's imputer (``MFUserEnv``'s default config for a rating log, plus ``overrides``)."""
    from recgym.sim.mf import MFConfig, WeightedMF, _log_rows

    tr = rsp.train
    cfg = MFConfig(seed=seed, baseline=1.0, **overrides)
    return WeightedMF(cfg).fit(_log_rows(tr), tr.items, tr.ratings, n_users=n_users, n_items=tr.n_items)


def evaluate_world(w: int, P: dict, out: Path, imputers: tuple[str, ...]) -> dict[str, Any]:
    """Every criterion of every agent on world ``w`` (cached in ``eval/world<w>.json``)."""
    import torch

    from recgym import ope
    from recgym.envs.common import contexts_of
    from recgym.envs.mf_user import MFUserEnv, _world_split
    from recgym.experiments.job import load_job_split, load_trained_agent, read_results
    from recgym.experiments.report import write_json
    from recgym.sim.mf import rating_to_reward
    from recgym.sim.world import World

    torch.set_num_threads(1)
    path = out / "eval" / f"world{w}.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    jobs = [j for j in jobs_of_world(w, P, out) if read_results(j.job_dir()) is not None]  # failed jobs: left out
    trained = {j.agent for j in jobs}
    todo = [v for v in imputers if set(cache.get("imputers", {}).get(v, {}).get("agents", {})) != trained
            or any(set(PER_IMPUTER) - set(r) for r in cache["imputers"][v]["agents"].values())]
    if set(cache.get("agents", {})) == trained and not todo:
        return cache
    split = load_job_split(jobs[0])
    world = World.from_log(split.test)
    knobs = world_knobs(w, P)
    rsp, _ = _world_split(w, {k: v for k, v in knobs.items()})
    hist, hlen, _, sess = contexts_of(rsp.test, 200)
    r_users = rsp.test.users[sess]
    s_users = np.repeat(split.test.users, split.test.lengths)  # the user of every test event
    tr_users = np.repeat(split.train.users, split.train.lengths)
    n_items = split.n_items
    # the simulator's logged contexts: the env's own (validation sessions of the job's split)
    env = MFUserEnv(**MFUserEnv.job_kwargs(dataset="synthetic", seed=jobs[0].seed, data_params=jobs[0].data_params,
                                           data_dir=None, download=False),
                    contexts="logged", ratings_per_user=knobs["ratings_per_user"])
    l_hist, l_hlen, l_users = env.hist, env.hlen, env.users

    acts, l_acts, pis = {}, {}, {}
    if "agents" not in cache:
        cache = {"world": w, "knobs": knobs, "agents": {}, "imputers": {}}
    for j in jobs:
        res = read_results(j.job_dir())
        agent = load_trained_agent(j.job_dir(), j.agent)
        acts[j.agent] = rollout(agent, hist, hlen, n_items, HORIZON)
        l_acts[j.agent] = rollout(agent, l_hist, l_hlen, n_items, HORIZON)
        pis[j.agent] = ope.target_probs(agent, split.test, "greedy")
        if j.agent not in cache["agents"]:
            est = estimates(split.test, pis[j.agent])
            h = np.concatenate([hist, np.full((len(hist), HORIZON), n_items, dtype=np.int64)], axis=1)
            n = hlen.copy()
            true_ret = np.zeros(len(hist))
            for t in range(HORIZON):  # the World's value of the simulator's trajectory (a reference)
                true_ret += world.expected_reward(r_users, h, n, acts[j.agent][:, t:t + 1])[:, 0]
                h[np.arange(len(h)), n] = acts[j.agent][:, t]
                n = n + 1
            cache["agents"][j.agent] = {
                "truth": res["true_value"], **{k: res["test"].get(k) for k in LOGGED},
                **{k: est[k] for k in OPE_FIXED}, "true_return@5": float(true_ret.mean()),
                "train_s": res["timing_s"]["train"]}
    for v in todo:
        opts = dict(IMPUTERS[v])
        no_repeat = opts.pop("repeats", "imputed") == "zero"
        mf = fit_imputer(rsp, world.n_users, opts, w)
        q_test = rating_to_reward(mf.predict_all(s_users), "rating")  # [n_events, n_items]
        if no_repeat:
            q_test[seen_mask(*world.contexts(split.test)[1:], n_items)] = 0.0
        # reward model for DM/DR: the imputed reward mapped to the log's reward scale (least squares
        # on the training events' logged items)
        x = rating_to_reward(mf.predict(tr_users, split.train.items), "rating")
        slope, icpt = np.polyfit(x, split.train.rewards.astype(np.float64), 1)
        q_hat = icpt + slope * q_test
        row = {}
        for a, act in acts.items():
            r = rating_to_reward(mf.predict(r_users[:, None], act), "rating")  # [B, H]
            rl = rating_to_reward(mf.predict(l_users[:, None], l_acts[a]), "rating")
            if no_repeat:
                r[repeated(hist, hlen, act)] = 0.0
                rl[repeated(l_hist, l_hlen, l_acts[a])] = 0.0
            est = estimates(split.test, pis[a], q_hat)
            row[a] = {"iar@1": float(r[:, 0].mean()), "return@5": float(r.sum(1).mean()),
                      "dm": est["dm"], "dr": est["dr"],
                      "iar@1 logged": float(rl[:, 0].mean()), "return@5 logged": float(rl.sum(1).mean())}
        cache["imputers"][v] = {"agents": row, "report": {k: float(x) for k, x in mf.imputation_report().items()}}
    write_json(path, cache)
    return cache


# ---------------------------------------------------------------------------- fidelity
def criteria_values(ev: dict[str, Any], imputers: tuple[str, ...]) -> tuple[list[str], dict[str, np.ndarray], np.ndarray]:
    """``(agents, {criterion: values [A]}, truth [A])`` of one world's evaluation."""
    names = sorted(ev["agents"])
    truth = np.array([ev["agents"][a]["truth"] for a in names], dtype=float)
    crit = {k: np.array([ev["agents"][a][k] for a in names], dtype=float) for k in (*LOGGED, *OPE_FIXED)}
    for v in imputers:
        for k in PER_IMPUTER:
            crit[criterion(k, v)] = np.array([ev["imputers"][v]["agents"][a][k] for a in names], dtype=float)
    crit["true_return@5 (reference)"] = np.array([ev["agents"][a]["true_return@5"] for a in names], dtype=float)
    return names, crit, truth


def fidelity(values: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Spearman / Kendall ρ with the truth, whether the top pick is the truly best, and its regret."""
    from scipy.stats import kendalltau, spearmanr

    ok = np.isfinite(values)
    v, t = values[ok], truth[ok]
    flat = np.ptp(v) == 0 or np.ptp(t) == 0
    pick = int(np.argmax(np.where(ok, values, -np.inf)))
    return {"spearman": float("nan") if flat else float(spearmanr(v, t).statistic),
            "kendall": float("nan") if flat else float(kendalltau(v, t).statistic),
            "best": float(truth[pick] >= truth.max() - 1e-12), "regret": float(truth.max() - truth[pick])}


def group_of(w: int) -> str | None:
    return next((g for g, ids in GROUPS.items() if w in ids), None)


def aggregate(evals: list[dict[str, Any]], imputers: tuple[str, ...]) -> dict[str, Any]:
    from recgym.experiments.report import summary

    per_world: dict[str, dict[int, dict[str, float]]] = {}
    for ev in evals:
        _, crit, truth = criteria_values(ev, imputers)
        for k, v in crit.items():
            per_world.setdefault(k, {})[ev["world"]] = fidelity(v, truth)
    worlds = [ev["world"] for ev in evals]
    groups = {g: [w for w in worlds if group_of(w) == g] for g in GROUPS}
    groups = {"all": worlds, **{g: ws for g, ws in groups.items() if ws}}
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for g, ws in groups.items():
        table[g] = {k: {m: summary([rows[w][m] for w in ws]) for m in ("spearman", "kendall", "best", "regret")}
                    for k, rows in per_world.items()}
    return {"per_world": per_world, "groups": groups, "table": table}


def paired_vs(per_world: dict, a: str, b: str, worlds: list[int]) -> dict[str, Any]:
    """Paired comparison of the per-world Spearman ρ of criteria ``a`` and ``b`` (Wilcoxon signed rank)
    over the ``worlds`` where both are defined."""
    from scipy.stats import wilcoxon

    x = np.array([per_world[a][w]["spearman"] for w in worlds])
    y = np.array([per_world[b][w]["spearman"] for w in worlds])
    ok = np.isfinite(x) & np.isfinite(y)
    d = x[ok] - y[ok]
    p = float(wilcoxon(d).pvalue) if np.any(d != 0) and ok.sum() > 1 else None
    return {"mean_diff": float(d.mean()) if len(d) else float("nan"), "wins": int(np.sum(d > 0)),
            "losses": int(np.sum(d < 0)), "p_wilcoxon": p, "n": int(ok.sum())}


def paired_family(per_world: dict, pairs: list[tuple[str, str]], worlds: list[int]) -> dict[str, dict[str, Any]]:
    """:func:`paired_vs` of each ``(a, b)`` over ``worlds``, Holm-adjusted across the family (``p_holm``)."""
    from recgym.experiments.report import holm

    tests = {f"{a} vs {b}": paired_vs(per_world, a, b, worlds) for a, b in pairs}
    adjusted = holm({k: t["p_wilcoxon"] for k, t in tests.items()})
    for k, t in tests.items():
        t["p_holm"] = adjusted[k]
    return tests


def confirmation(per_world: dict, worlds: list[int], candidate: str, rivals: tuple[str, ...]) -> dict[str, Any]:
    """The pre-registered rule of ``docs/results/simulation.md``: ``candidate`` wins when its mean
    Spearman ρ is higher than each rival's, means over the ``worlds`` where every one of them is defined."""
    keys = (candidate, *rivals)
    ok = [w for w in worlds if all(np.isfinite(per_world[k][w]["spearman"]) for k in keys)]
    means = {k: float(np.mean([per_world[k][w]["spearman"] for w in ok])) if ok else float("nan") for k in keys}
    holds = bool(ok) and all(means[candidate] > means[r] for r in rivals)
    return {"worlds": ok, "candidate": candidate, "means": means, "holds": holds,
            "tests": paired_family(per_world, [(candidate, r) for r in rivals], ok)}


def _p(p: float | None) -> str:
    return "–" if p is None or not np.isfinite(p) else f"{p:.3g}"


def _cell(c: dict[str, Any], digits: int = 2) -> str:
    if c["mean"] is None:
        return "–"
    sd = c.get("std")
    return f"{c['mean']:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def tests_markdown(title: str, tests: dict[str, dict[str, Any]]) -> list[str]:
    return [f"### {title}", ""] + [
        f"- {k}: mean difference {t['mean_diff']:+.3f}, {t['wins']} wins / {t['losses']} losses of {t['n']}, "
        f"p = {_p(t['p_wilcoxon'])} (Holm {_p(t['p_holm'])})" for k, t in tests.items()] + [""]


def tables_markdown(agg: dict[str, Any], evals: list[dict[str, Any]]) -> str:
    lines = []
    for g in ("confirmation", "held-out", "development", "all"):
        if g not in agg["table"]:
            continue
        t = agg["table"][g]
        ws = agg["groups"][g]
        lines += [f"### {g} worlds (n = {len(ws)}: {ws[0]}–{ws[-1]})", "",
                  "| criterion | Spearman ρ | Kendall τ | picks the best | regret |", "|---|---|---|---|---|"]
        for k, c in t.items():
            lines.append(f"| {k} | {_cell(c['spearman'])} | {_cell(c['kendall'])} | {_cell(c['best'])} | "
                         f"{_cell(c['regret'], 3)} |")
        lines.append("")
    lines += ["### Worlds", "", "| world | " + " | ".join(evals[0]["knobs"]) + " | truth range |",
              "|" + "---|" * (len(evals[0]["knobs"]) + 2)]
    for ev in evals:
        tr = [a["truth"] for a in ev["agents"].values()]
        g = group_of(ev["world"])
        lines.append(f"| {ev['world']}{f' ({g})' if g else ''} | "
                     + " | ".join(str(v) for v in ev["knobs"].values()) + f" | {min(tr):.3f}–{max(tr):.3f} |")
    lines += ["", "### True values per world (rows) and agent", "", "| world | " + " | ".join(AGENTS) + " |",
              "|" + "---|" * (len(AGENTS) + 1)]
    for ev in evals:
        lines.append(f"| {ev['world']} | " + " | ".join(
            f"{ev['agents'][a]['truth']:.3f}" if a in ev["agents"] else "–" for a in AGENTS) + " |")
    return "\n".join(lines) + "\n"


def plot(agg: dict[str, Any], out: Path, imputers: tuple[str, ...], default: str) -> Path:
    from recgym.experiments.report import pyplot, save_figure

    plt = pyplot()
    keys = [*LOGGED, *OPE_FIXED, *(criterion(k, v) for v in dict.fromkeys(("steck", default)) for k in PER_IMPUTER)]
    keys = [k for k in keys if k in agg["per_world"]]
    colors = {"development": "tab:blue", "held-out": "tab:orange", "confirmation": "tab:green", None: "tab:grey"}
    offset = {"development": -0.2, "held-out": 0.0, "confirmation": 0.2, None: 0.0}
    fig, ax = plt.subplots(figsize=(10, 4.4))
    for j, k in enumerate(keys):
        rows = agg["per_world"][k]
        for w, r in rows.items():
            ax.scatter(j + offset[group_of(w)], r["spearman"], s=12, color=colors[group_of(w)], alpha=0.7)
        m = np.nanmean([r["spearman"] for r in rows.values()])
        ax.hlines(m, j - 0.3, j + 0.3, color="k")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("Spearman ρ with the true value")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title("Ranking fidelity per world (blue: development, orange: held out, green: confirmation; "
                 "bar: mean)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out / "fidelity.png")


CANDIDATE = "iar@1 [steck, logged]"
"""The pre-registered candidate default simulator: Steck's imputer on the logged validation sessions."""
RIVALS = ("iar@1 [steck]", "ndcg@10_purchase")
"""What it must beat on the confirmation worlds: the simulator before it, and logged NDCG@10."""


@cli("studies.simulation")
def main(argv: list[str] | None = None) -> int:
    from recgym.experiments import map_units, run_jobs
    from recgym.experiments.cli import command_line
    from recgym.experiments.report import atomic_write, write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/simulation")
    p.add_argument("--world-ids", default=None,
                   help="worlds to run, e.g. 0-9 (default; --quick: 0,5,10), 10-19 or 0-19 (ranges and commas)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (each single-threaded)")
    p.add_argument("--quick", action="store_true", help="3 tiny worlds, a few steps (a smoke test)")
    p.add_argument("--imputers", default=",".join(IMPUTERS), help="imputer variants to evaluate")
    p.add_argument("--default", default="steck", help="the imputer reported as the simulator's default")
    p.add_argument("--patience", type=int, default=None,
                   help="train every agent to convergence: stop after this many validations without improvement "
                        "(cadence, cap and ccql's switch: CONVERGE); default: the fixed 400 steps")
    args = p.parse_args(argv)
    P = QUICK if args.quick else FULL
    if args.patience is not None:
        if args.patience < 1:
            p.error(f"--patience must be a positive integer, got {args.patience}")
        P = converged(P, args.patience)
    try:
        worlds = parse_worlds(args.world_ids or ("0,5,10" if args.quick else "0-9"))
    except ValueError as e:
        p.error(str(e))
    imputers = tuple(v for v in args.imputers.split(",") if v)
    unknown = [v for v in (*imputers, args.default) if v not in IMPUTERS]
    if unknown:
        p.error(f"unknown imputer(s) {unknown}; choose from {list(IMPUTERS)}")
    imputers = tuple(dict.fromkeys(("steck", *imputers, args.default)))  # steck: the rule's rival
    out = Path(args.out)
    t0 = time.perf_counter()
    jobs = [j for w in worlds for j in jobs_of_world(w, P, out)]
    statuses = run_jobs(jobs, workers=args.jobs, log=print)
    failed = [s for s in statuses if s["status"] not in ("done", "reused")]
    for s in failed:
        print(f"failed: {s['dir']}: {s['error']}", file=sys.stderr)
    t_train = time.perf_counter() - t0
    evals = map_units(functools.partial(evaluate_world, P=P, out=out, imputers=imputers), worlds,
                      workers=args.jobs, log=lambda w, r: print(f"world {w}: evaluated", flush=True))
    agg = aggregate(evals, imputers)
    pw, groups = agg["per_world"], agg["groups"]
    held = groups.get("held-out", [])
    held_pairs = [(criterion("iar@1", v), "iar@1 [steck]") for v in imputers if v != "steck"]
    held_pairs += [(criterion("iar@1", v), LOGGED[0]) for v in dict.fromkeys(("steck", args.default))]
    tests = {"held-out": paired_family(pw, held_pairs, held)}
    confirm = {g: confirmation(pw, groups[g], CANDIDATE, RIVALS) for g in ("confirmation", "all") if g in groups}
    wall = time.perf_counter() - t0
    res = {"command": command_line("studies.simulation", argv), "settings": {k: v for k, v in P.items()},
           "knob_ranges": {k: list(v) for k, v in KNOBS.items()}, "imputers": {v: IMPUTERS[v] for v in imputers},
           "default": args.default, "simulator": simulator_criterion(args.default), "world_groups": {
               g: [r.start, r.stop - 1] for g, r in GROUPS.items()}, "agents": list(AGENTS), "horizon": HORIZON,
           "failed_jobs": failed, "wall_s": {"train": round(t_train, 1), "total": round(wall, 1)},
           "held_out_tests": tests["held-out"], "confirmation": confirm, **agg}
    write_json(out / "results.json", res)
    md = tables_markdown(agg, evals)
    for g, c in confirm.items():
        verdict = "holds" if c["holds"] else "does not hold"
        md += (f"\n### Pre-registered rule on the {g} worlds ({len(c['worlds'])} with every ρ defined): "
               f"{verdict}\n\n" + "".join(f"- mean Spearman ρ of {k}: {m:.3f}\n" for k, m in c["means"].items()) + "\n")
        md += "\n".join(tests_markdown(f"{g} worlds: paired tests of the per-world Spearman ρ (Wilcoxon signed rank, "
                                        "Holm over the two)", c["tests"]))
    if held:
        md += "\n" + "\n".join(tests_markdown("Held-out paired tests of the per-world Spearman ρ (Wilcoxon signed "
                                               "rank, Holm over the family)", tests["held-out"]))
    md = training_markdown(worlds, P, out) + md
    atomic_write(out / "tables.md", md)
    plot(agg, out, imputers, args.default)
    print(md)
    print(f"wrote {out / 'results.json'}, {out / 'tables.md'}, {out / 'fidelity.png'} ({wall:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
