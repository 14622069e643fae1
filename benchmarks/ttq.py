"""Time to quality: seconds of training to reach a fixed validation score, and the final test score,
under the current training scheme and the previous one, in one run (so both see the same machine).

For each dataset, agent and seed, the agent is built with its dataset preset and trained by the
shared loop twice: once as configured now (``current``; ``--current key=value`` adds overrides, e.g.
an opt-in scheme) and once with the previous scheme's overrides (``previous``, below;
``--previous key=value`` replaces them). Validation runs every
``--eval-every`` steps; its time is not counted (the loop's ``curve_seconds``). The target
is ``--target`` or, by default, ``--target-frac`` × the lower of the two schemes' mean best
validation score, so both schemes reach it on average. Reported per scheme: mean ± sample std
(ddof=1) over seeds of the seconds to the target (``inf`` if a seed never reaches it), of the best
validation score and of the test score of the restored best weights, and the seconds until the
checkpoint the loop would return (best by validation so far) reaches ``--test-target`` on test;
then the ratios current / previous of the mean seconds.

    RECGYM_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 python benchmarks/ttq.py \\
        --agents sasrec --datasets ml-100k --seeds 0 1 2

Timings on a shared machine are noisy: compare the ratios, which are measured in the same run, and
the steps to the target, which do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np
import torch

# previous scheme: config overrides that restore it on top of the dataset preset, where the preset
# uses the current one (all-positions agents: per-event rows at the SASRec paper's batch 128 and lr
# 1e-3; 3 epochs instead of the former preset's one, so that it can reach the current scheme's scores)
PER_EVENT = {"sampling": "per_event", "epochs": 3, "batch_size": 128, "lr": 1e-3}


def previous_overrides(agent_name: str, dataset: str, protocol: str) -> dict[str, Any]:
    from recgym.agents.registry import agent_preset, get_agent_class

    preset = agent_preset(get_agent_class(agent_name), dataset, protocol)
    out = dict(PER_EVENT) if preset.get("sampling") == "per_user" else {}
    if preset.get("mu_sampling") == "per_user":  # the LPI family's μ̂: one target per row, the agent's epochs
        out.update(mu_sampling="per_event", mu_epochs=None)
    return out


# training length of the current scheme where the preset is too short to show the curve (none yet)
CURRENT: dict[str, dict[str, Any]] = {}
LOOP: dict[str, Any] = {"keep_freed_memory": True}
"""``train_loop`` arguments of every run (both schemes): keeping freed memory saves 16% of a
full-catalogue step at 70,852 items, ~6% of a sasrec step on ML-100K, and costs ~2% peak RSS there."""


def _parse_overrides(pairs: list[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise SystemExit(f"{flag} {p!r}: expected key=value")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def reached(curves: list[dict[str, float]], seconds: list[float], metric: str, target: float,
            on_test: bool = False) -> tuple[float, float]:
    """``(training seconds, step)`` at the first validation where ``metric >= target`` (``inf`` if
    none). ``on_test``: where the checkpoint the loop would return if it stopped there (the best by
    validation so far) has test ``metric >= target``; the test score never chooses the checkpoint."""
    best = -math.inf
    for c, t in zip(curves, seconds):
        if not on_test and c[metric] >= target:
            return float(t), c["step"]
        if on_test and c[metric] > best:
            best = c[metric]
            if c[f"test_{metric}"] >= target:
                return float(t), c["step"]
    return math.inf, math.inf


def run_one(agent_name: str, dataset: str, split, seed: int, overrides: dict[str, Any], eval_every: int,
            loop_kwargs: dict[str, Any]) -> dict[str, Any]:
    from recgym.agents.registry import make_agent
    from recgym.evaluate import evaluate

    agent = make_agent(agent_name, split.n_items, seed=seed, dataset=dataset, protocol=split.protocol,
                       **{"eval_every": eval_every, **overrides})
    diagnostics = agent.diagnostics

    def with_test(valid):  # the test score at every validation (its time is not training time)
        return {**diagnostics(valid), **{f"test_{k}": v for k, v in evaluate(agent, split.test, split.protocol).items()}}

    agent.diagnostics = with_test
    t0 = time.perf_counter()
    agent.fit(split.train, split.valid, protocol=split.protocol, progress=False, log=lambda m: None, **loop_kwargs)
    wall = time.perf_counter() - t0
    test = evaluate(agent, split.test, split.protocol)
    metric = agent.selection_metric
    return {"curves": agent.curves, "curve_seconds": agent.curve_seconds, "metric": metric, "best_valid": agent.best_metric, "test": float(test[metric]),
            "train_seconds": agent.curve_seconds[-1], "wall_seconds": wall,
            "steps": int(agent.curves[-1]["step"])}


def _fit_peak_rss(agent_name: str, dataset: str, data_dir: str | None, overrides: dict[str, Any], steps: int) -> float:
    import resource

    from recgym.agents.registry import make_agent
    from recgym.data import load_split

    torch.set_num_threads(1)
    split = load_split(dataset, data_dir)
    agent = make_agent(agent_name, split.n_items, seed=0, dataset=dataset, protocol=split.protocol, **overrides)
    agent.fit(split.train, split.valid, protocol=split.protocol, steps=steps, progress=False, log=lambda m: None, **LOOP)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def peak_rss_mb(agent_name: str, dataset: str, data_dir: str | None, overrides: dict[str, Any], steps: int = 200) -> float:
    """Peak resident memory (MB) of a fresh process that loads ``dataset`` and trains ``agent_name``
    for ``steps`` steps with validation (the loop arguments of every run here)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_fit_peak_rss, agent_name, dataset, data_dir, overrides, steps).result()


def step_ms(agent_name: str, dataset: str, split, schemes: dict[str, dict[str, Any]], rounds: int = 5,
            steps: int = 4) -> dict[str, float]:
    """ms per training step of each scheme on the dataset's own batches (its sampler's), the fastest
    of ``rounds`` rounds of ``steps`` updates, schemes interleaved within each round."""
    from recgym.agents.registry import make_agent
    from recgym.agents.training import EpochSampler, keep_freed_memory

    keep_freed_memory(True)  # as LOOP
    runs = {}
    for scheme, overrides in schemes.items():
        agent = make_agent(agent_name, split.n_items, seed=0, dataset=dataset, protocol=split.protocol, **overrides)
        tr = agent.make_transitions(split.train)
        rows = agent.epoch_rows(tr)
        sampler = EpochSampler(tr, rows, agent.config.batch_size, 0) if rows is not None else None
        batches = [tr.sample(agent.config.batch_size, agent.rng) if sampler is None else sampler.batch(i)
                   for i in range(steps + 3)]
        agent.set_training(True)
        for b in batches[:3]:
            agent.update(b, 0)
        runs[scheme] = (agent, batches[3:])
    best = {scheme: math.inf for scheme in schemes}
    for _ in range(rounds):
        for scheme, (agent, batches) in runs.items():
            t0 = time.perf_counter()
            for b in batches:
                agent.update(b, 0)
            best[scheme] = min(best[scheme], (time.perf_counter() - t0) / len(batches) * 1e3)
    return best


def _ms(x: list[float]) -> str:
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)):
        return f"inf ({int(np.sum(~np.isfinite(a)))}/{len(a)} never)"
    return f"{a.mean():.4g} ± {a.std(ddof=1):.2g}" if len(a) > 1 else f"{a.mean():.4g}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", nargs="+", default=["sasrec", "sqn", "lpi"])
    ap.add_argument("--datasets", nargs="+", default=["ml-100k", "synthetic"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--schemes", nargs="+", default=["current", "previous"], choices=["current", "previous"])
    ap.add_argument("--previous", nargs="*", default=None, help="key=value overrides of the previous scheme")
    ap.add_argument("--current", nargs="*", default=[],
                    help="key=value overrides of the current scheme (an opt-in one, e.g. bert4rec sampling=per_user)")
    ap.add_argument("--set", nargs="*", default=[], help="key=value overrides of both schemes")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--target", type=float, default=None)
    ap.add_argument("--target-frac", type=float, default=0.98)
    ap.add_argument("--test-target", type=float, default=0.105,
                    help="also report seconds until the best-by-validation checkpoint's test score reaches this")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=None, help="write all curves and results here")
    ap.add_argument("--step-ms", action="store_true",
                    help="only time a training step of each scheme (fastest of 5 rounds of 4 steps), no training runs")
    ap.add_argument("--peak-rss", type=int, default=0, metavar="STEPS",
                    help="also measure each scheme's peak RSS: a fresh process training STEPS steps")
    args = ap.parse_args(argv)

    from recgym.data import load_split

    torch.set_num_threads(1)
    both = _parse_overrides(args.set, "--set")
    results: dict[str, Any] = {}
    for dataset in args.datasets:
        try:
            split = load_split(dataset, args.data_dir)
        except FileNotFoundError as e:
            print(f"{dataset}: skipped, no data ({str(e).splitlines()[0]}); set RECGYM_DATA_DIR", flush=True)
            continue
        for name in args.agents:
            prev = (_parse_overrides(args.previous, "--previous") if args.previous is not None
                    else previous_overrides(name, dataset, split.protocol))
            schemes = {"current": {**CURRENT.get(name, {}), **_parse_overrides(args.current, "--current"), **both},
                       "previous": {**prev, **both}}
            if args.step_ms:
                ms = step_ms(name, dataset, split, {sch: schemes[sch] for sch in args.schemes})
                print(f"{dataset} {name} ms per step: " + ", ".join(f"{k} {v:.1f}" for k, v in ms.items()), flush=True)
                results[f"{dataset}/{name}"] = {"step_ms": ms, "schemes": schemes}
                continue
            runs: dict[str, list[dict[str, Any]]] = {scheme: [] for scheme in args.schemes}
            for seed in args.seeds:  # schemes interleaved, so a change in machine load hits both
                for scheme in args.schemes:
                    r = run_one(name, dataset, split, seed, schemes[scheme], args.eval_every, LOOP)
                    runs[scheme].append(r)
                    print(f"{dataset} {name} {scheme} seed {seed}: {r['steps']} steps, {r['train_seconds']:.1f} s "
                          f"training ({r['wall_seconds']:.1f} s wall), best valid {r['metric']} {r['best_valid']:.4f}, "
                          f"test {r['test']:.4f}", flush=True)
            metric = runs[args.schemes[0]][0]["metric"]
            target = args.target if args.target is not None else args.target_frac * min(
                float(np.mean([r["best_valid"] for r in rs])) for rs in runs.values())
            summary: dict[str, Any] = {"target": target, "metric": metric, "schemes": schemes}
            print(f"\n{dataset} {name}: target validation {metric} {target:.4f}; seeds {args.seeds}; "
                  "mean ± sample std (ddof=1)")
            for scheme, rs in runs.items():
                secs, steps = zip(*(reached(r["curves"], r["curve_seconds"], metric, target) for r in rs))
                secs_test, steps_test = zip(*(reached(r["curves"], r["curve_seconds"], metric, args.test_target, True)
                                              for r in rs))
                summary[scheme] = {"seconds_to_target": secs, "seconds_to_test_target": secs_test,
                                   "steps_to_target": steps, "steps_to_test_target": steps_test, "best_valid": [r["best_valid"] for r in rs],
                                   "test": [r["test"] for r in rs], "train_seconds": [r["train_seconds"] for r in rs]}
                print(f"  {scheme:8s} seconds to target {_ms(secs):>22s}   total training s {_ms(summary[scheme]['train_seconds']):>14s}"
                      f"   best valid {_ms(summary[scheme]['best_valid'])}   test {metric} {_ms(summary[scheme]['test'])}"
                      f"   seconds to test {args.test_target} {_ms(secs_test)}   steps to target {_ms(steps)}"
                      f"   steps to test {args.test_target} {_ms(steps_test)}")
            if len(runs) == 2:
                c, p = (np.mean(summary[s]["seconds_to_target"]) for s in ("current", "previous"))
                ratio = c / p if math.isfinite(c) and math.isfinite(p) else float("nan")
                tc, tp = (np.mean(summary[s]["test"]) for s in ("current", "previous"))
                ct, pt = (np.mean(summary[s]["seconds_to_test_target"]) for s in ("current", "previous"))
                ratio_t = ct / pt if math.isfinite(ct) and math.isfinite(pt) else float("nan")
                sc, sp_ = (np.mean(summary[s]["steps_to_target"]) for s in ("current", "previous"))
                ratio_s = sc / sp_ if math.isfinite(sc) and math.isfinite(sp_) else float("nan")
                summary.update(ratio_seconds=ratio, ratio_seconds_test=ratio_t, ratio_steps=ratio_s, ratio_test=tc / tp)
                print(f"  ratio current/previous: seconds to validation target {ratio:.3f}   seconds to test "
                      f"{args.test_target} {ratio_t:.3f}   steps to validation target {ratio_s:.3f} (load-independent)"
                      f"   final test {metric} {tc / tp:.3f}")
            if args.peak_rss:
                for scheme in args.schemes:
                    summary[scheme]["peak_rss_mb"] = peak_rss_mb(name, dataset, args.data_dir, schemes[scheme], args.peak_rss)
                print("  peak RSS, a fresh process training " + str(args.peak_rss) + " steps: " + ", ".join(
                    f"{scheme} {summary[scheme]['peak_rss_mb']:.0f} MB" for scheme in args.schemes))
            summary["runs"] = runs
            results[f"{dataset}/{name}"] = summary
            print(flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, default=float)
    return results


if __name__ == "__main__":
    main()
