#!/usr/bin/env python
"""The experiments of the PRL paper (Xin et al., SIGIR'22) in recgym: Tables 2–5, Figures 4–5.

    python -m studies.prl --quick --out runs/prl_quick          # < 90 s, tiny synthetic data
    python -m studies.prl --datasets synthetic,ml-100k,yoochoose-100k --seeds 0 1 2 \\
        --data-dir ../shared/data --out docs/results/prl

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

Writes ``results.json`` (every number, per seed, with the command), ``tables.md`` (mean ± sample
std over seeds; each method against the cross-entropy model of its encoder, and each ablation
against PRL, by a paired test by seed, Holm-corrected) and ``sweep.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recgym.errors import BadInputError, cli
from recgym.experiments import map_units
from recgym.experiments.cli import command_line, split_list
from recgym.experiments.report import atomic_write, pyplot, rows_markdown, rows_over_seeds, save_figure, write_json

ENCODERS = ("sasrec", "gru", "caser", "nextitnet")
MUS = (0.5, 1, 2, 4, 8)
EPSS = (0, 0.1, 0.5, 1)
QUICK = dict(world=dict(n_users=150, n_items=60, n_genres=6), n_sessions=400,
             agent=dict(hidden=16, batch_size=64, steps=120, eval_every=60))
FULL = dict(world=dict(), n_sessions=5000, agent=dict(steps=600, eval_every=200))
"""A CPU budget: 600 steps of batch 256 per method (the paper trains to convergence), so the
four-encoder table of every dataset and seed fits the 30-minute budget on 2 cores with ``--jobs 2``."""
COLS = ("hr@10_purchase", "ndcg@10_purchase", "hr@20_purchase", "ndcg@20_purchase",
        "hr@10_click", "ndcg@10_click", "hr@20_click", "ndcg@20_click", "reward@1")
DATASETS = ("synthetic", "ml-100k", "yoochoose-100k")


def _silent(msg: str) -> None:
    pass


def load_data(dataset: str, seed: int, P: dict, data_dir: str | None) -> tuple[Any, Any]:
    """``(split, world or None)``."""
    from recgym.data import split_by_session

    if dataset == "synthetic":
        from recgym.sim.world import World

        world = World(seed=seed, **P["world"])
        return split_by_session(world.generate(P["n_sessions"]), seed=seed), world
    import recgym.data as rd

    if dataset == "ml-100k":
        log = rd.load("ml-100k", data_dir, reward_scheme="click-purchase")
        return split_by_session(log.last_window(50), seed=seed), None
    if dataset == "yoochoose-100k":
        return rd.load_split("yoochoose-100k", data_dir, seed=seed), None
    raise BadInputError(f"studies.prl: unknown dataset {dataset!r}; choose from {DATASETS}")


def train(kind: str, encoder: str, sp: Any, seed: int, P: dict, **extra: Any) -> Any:
    """Build and fit one method: ``CE``, ``SQN``, ``SAC`` or a PRL agent name."""
    from recgym.agents.prl import PRLAgent, PRLCumuAgent, PRLMeanAgent, PRLMLPAgent, PRLWoAgent
    from recgym.agents.qlearning import SACAgent, SQNAgent
    from recgym.agents.sasrec import SASRecAgent

    classes = {"CE": SASRecAgent, "SQN": SQNAgent, "SAC": SACAgent, "PRL": PRLAgent, "PRL-mean": PRLMeanAgent,
               "PRL-MLP": PRLMLPAgent, "PRL-w/o": PRLWoAgent, "PRL-cumu": PRLCumuAgent}
    kw = {**P["agent"], "encoder": encoder, **extra}
    if kind == "SAC":
        tr_rows = sp.train.n_events
        total = kw.get("steps") or max(1, round(kw.get("epochs", 30) * -(-tr_rows // kw.get("batch_size", 256))))
        kw["switch_step"] = total // 2  # Q-weighted CE for the second half
    agent = classes[kind](sp.n_items, seed=seed, **kw)
    agent.fit(sp.train, sp.valid, protocol="session", progress=False, log=_silent)
    return agent


def evaluate_row(agent: Any, sp: Any, world: Any) -> dict[str, Any]:
    from recgym.evaluate import evaluate_sessions

    m = evaluate_sessions(agent, sp.test, ks=(1, 10, 20))
    row: dict[str, Any] = {c: m[c] for c in COLS}
    row["true@1"] = None
    if world is not None:
        _reset_noise(agent)
        row["true@1"] = float(world.true_value(agent, *world.contexts(sp.test)))
    return row


def _reset_noise(agent: Any) -> None:
    import torch

    if hasattr(agent, "_noise"):  # PRL's Eq. 16 noise: the same draws for every evaluation
        agent._noise = torch.Generator().manual_seed(agent.seed)


def encoder_table(sp: Any, world: Any, seed: int, P: dict, methods: tuple[str, ...]) -> tuple[list[dict], dict]:
    rows, prl_by_encoder = [], {}
    for enc in ENCODERS:
        for kind in methods:
            agent = train(kind, enc, sp, seed, P)
            _reset_noise(agent)
            rows.append({"encoder": enc, "method": kind, **evaluate_row(agent, sp, world)})
            if kind == "PRL":
                prl_by_encoder[enc] = agent
    return rows, prl_by_encoder


def ablation_table(sp: Any, world: Any, seed: int, P: dict, prl: Any) -> list[dict]:
    rows = []
    for kind in ("PRL-mean", "PRL-MLP", "PRL-w/o", "PRL-cumu"):
        rows.append({"method": kind, **evaluate_row(train(kind, "gru", sp, seed, P), sp, world)})
    _reset_noise(prl)
    rows.append({"method": "PRL", **evaluate_row(prl, sp, world)})
    return rows


def sweep(sp: Any, world: Any, prl: Any) -> list[dict]:
    """Figures 4–5: reward@1 (and true@1) of one trained PRL over the inference prompt."""
    from recgym.evaluate import evaluate_sessions

    mu0, eps0 = prl.config.mu, prl.config.eps
    out = []
    for param, values in (("mu", MUS), ("eps", EPSS)):
        for v in values:
            prl.config.mu, prl.config.eps = (float(v), 0.0) if param == "mu" else (2.0, float(v))
            _reset_noise(prl)
            point = {"param": param, "value": v, "reward@1": evaluate_sessions(prl, sp.test, ks=(1,))["reward@1"]}
            if world is not None:
                _reset_noise(prl)
                point["true@1"] = float(world.true_value(prl, *world.contexts(sp.test)))
            out.append(point)
    prl.config.mu, prl.config.eps = mu0, eps0
    return out


def _run_unit(P: dict, data_dir: str | None, threads: int, unit: tuple[str, int]) -> dict[str, Any]:
    """Every table of one (dataset, seed); runs in a worker process when ``--jobs > 1``."""
    import torch

    torch.set_num_threads(max(1, threads))
    ds, seed = unit
    t = time.perf_counter()
    try:
        sp, world = load_data(ds, seed, P, data_dir)
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        return {"error": str(e)}
    rows, prl = encoder_table(sp, world, seed, P, ("CE", "SQN", "SAC", "PRL"))
    out: dict[str, Any] = {"encoders": rows}
    if ds != "yoochoose-100k":  # clicks only: the ablations and sweeps are about rewards
        out["ablations"] = ablation_table(sp, world, seed, P, prl["gru"])
        out["sweep"] = sweep(sp, world, prl["gru"])
    out["seconds"] = time.perf_counter() - t
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny synthetic data, one seed (a smoke run, < 90 s)")
    p.add_argument("--datasets", default="synthetic", help=f"comma-separated from {', '.join(DATASETS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 (quick) or 0 1 2")
    p.add_argument("--epochs", type=float, default=None, help="training epochs of every method (replaces the step budget)")
    p.add_argument("--steps", type=int, default=None, help="training steps of every method (full run; default 600)")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes, one (dataset, seed) each")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs/prl_study")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, args.threads))
    P = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (QUICK if args.quick else FULL).items()}
    if args.epochs is not None and not args.quick:
        P["agent"].pop("steps", None)
        P["agent"]["epochs"] = args.epochs
    if args.steps is not None and not args.quick:
        P["agent"]["steps"] = args.steps
    datasets = ["synthetic"] if args.quick else split_list(args.datasets)
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        raise BadInputError(f"--datasets: unknown dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"command": command_line("python -m studies.prl", argv), "quick": args.quick, "seeds": seeds,
                           "params": P, "encoders": {}, "ablations": {}, "sweep": {}, "errors": {},
                           "seconds_by_dataset": {}}
    units = [(ds, seed) for ds in datasets for seed in seeds]
    results = map_units(functools.partial(_run_unit, P, args.data_dir, args.threads), units, args.jobs,
                        log=lambda u, r: print(f"[{time.perf_counter() - t0:7.1f}s] {u[0]} seed {u[1]} "
                                               f"({r.get('seconds', 0):.0f} s)", flush=True))
    for (ds, seed), r in zip(units, results):  # in seed order; a dataset that cannot load is reported once
        if "error" in r:
            if ds not in res["errors"]:
                print(f"studies.prl: {ds} skipped: {r['error']}", file=sys.stderr)
            res["errors"][ds] = r["error"]
            continue
        for key in ("encoders", "ablations", "sweep"):
            if key in r:
                res[key].setdefault(ds, []).append(r[key])
        res["seconds_by_dataset"][ds] = res["seconds_by_dataset"].get(ds, 0.0) + r["seconds"]
    res["seconds"] = time.perf_counter() - t0

    title = "QUICK SMOKE RUN on tiny synthetic data — not results" if args.quick else "full run"
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
    for k, v in res["errors"].items():
        md.append(f"\n**{k} not run:** {v}")
    if res["sweep"]:
        plot_sweep(out / "sweep.png", res["sweep"])
        md.append("\n![μ and ε sweeps](sweep.png)")
    atomic_write(out / "tables.md", "\n".join(md) + "\n")
    write_json(out / "results.json", res, indent=1)
    print("\n".join(md))
    print(f"wrote {out / 'results.json'}, {out / 'tables.md'} in {res['seconds']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
