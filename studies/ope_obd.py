"""Off-policy estimators checked on the Open Bandit Dataset, where the truth is observed.

    RECGYM_DATA_DIR=/work/shared/data python -m studies.ope_obd --campaign all --out docs/results/ope/obd_all.json

OBD logged the same week of ZOZOTOWN traffic under two policies, uniform random and Bernoulli
Thompson sampling (BTS). Each policy's on-policy click rate (the mean click of its own log) is the
truth; IPS, SNIPS, DM and DR (:mod:`recgym.ope`) estimate it from the *other* policy's log, and the
relative error ``|V̂ − V| / V`` is printed (Saito et al., "Open Bandit Dataset and Pipeline",
NeurIPS 2021 Datasets and Benchmarks, §5). Each impression (one slot ``k`` of the 3-item slate) is
a round; the policies are context-free, so ``π(a|x, k) = π(a|k)``.

* π_random(a|k) = 1 / n_items.
* π_BTS(a|k) on a random-log round at time t: BTS was updated in batches during the week, and its
  log records ``propensity_score = π_BTS,t(a_t|k_t)`` (its Monte Carlo action probability) for the
  shown pair only. We read π_BTS,t(a|k) as the latest value logged for (a, k) at or before t (the
  earliest one after t if none before; 0 for a pair BTS never showed) and renormalise over items
  per slot. A second reading ("frequency") uses one context-free distribution, the
  share of item a among BTS's slot-k impressions (an unbiased Monte Carlo estimate of the week's
  average π_BTS(a|k); with stationary click rates the week's BTS value is that policy's value).
  (The obp example instead fixes one distribution: Monte Carlo of BTS with the production
  prior shipped in obp's configuration; that prior is not part of the dataset.)
* q̂(a|k) for DM/DR: the click rate of (item, slot) in the evaluated log, shrunk toward the slot's
  rate with ``--shrink`` pseudo-impressions, cross-fitted over two folds (even / odd rows in time).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from recgym import ope
from recgym.data import resolve_data_dir
from recgym.data.sources.obd import load_obd_frame
from recgym.errors import BadInputError, cli
from recgym.experiments.report import write_json


def as_rounds(df) -> dict[str, np.ndarray]:
    """Time-sorted rounds: action, slot (0-based), reward, logging propensity, timestamp."""
    df = df.sort_values("timestamp", kind="stable")
    return {"a": df["item_id"].to_numpy(np.int64), "k": df["position"].to_numpy(np.int64) - 1,
            "r": df["click"].to_numpy(np.float64), "mu": df["propensity_score"].to_numpy(np.float64),
            "t": df["timestamp"].to_numpy(np.float64)}


def logged_policy_at(log: dict, times: np.ndarray, n_items: int, n_slots: int) -> tuple[np.ndarray, float]:
    """π_t(a|k) ``[len(times), n_items, n_slots]`` from a log's propensities as step functions of time.

    Returns the renormalised table and the mean per-slot sum before renormalising (1 if the
    looked-up values were all current)."""
    out = np.zeros((len(times), n_items, n_slots))
    key = log["a"] * n_slots + log["k"]
    order = np.lexsort((log["t"], key))  # by pair, then time
    key, t, mu = key[order], log["t"][order], log["mu"][order]
    starts = np.searchsorted(key, np.arange(n_items * n_slots + 1))
    for pair in np.flatnonzero(np.diff(starts)):  # one vectorised lookup per (item, slot) pair
        lo, hi = starts[pair], starts[pair + 1]
        idx = np.clip(np.searchsorted(t[lo:hi], times, side="right") - 1, 0, hi - lo - 1)
        out[:, pair // n_slots, pair % n_slots] = mu[lo:hi][idx]
    sums = out.sum(axis=1, keepdims=True)
    return out / np.where(sums > 0, sums, 1.0), float(sums.mean())


def reward_model(log: dict, n_items: int, n_slots: int, shrink: float) -> np.ndarray:
    """Cross-fitted q̂(a|k) for every round, ``[N, n_items, n_slots]`` (2 folds: even / odd rows)."""
    n = len(log["a"])
    fold = np.arange(n) % 2
    q = np.empty((n, n_items, n_slots))
    for f in (0, 1):
        tr = fold != f
        a, k, r = log["a"][tr], log["k"][tr], log["r"][tr]
        shows = np.zeros((n_items, n_slots))
        clicks = np.zeros((n_items, n_slots))
        np.add.at(shows, (a, k), 1.0)
        np.add.at(clicks, (a, k), r)
        slot_rate = clicks.sum(0) / np.maximum(shows.sum(0), 1.0)
        q[fold == f] = (clicks + shrink * slot_rate) / (shows + shrink)
    return q


def frequency_policy(log: dict, n: int, n_items: int, n_slots: int) -> np.ndarray:
    """π̄(a|k) = share of item a among the log's slot-k impressions, tiled to ``[n, n_items, n_slots]``."""
    shows = np.zeros((n_items, n_slots))
    np.add.at(shows, (log["a"], log["k"]), 1.0)
    return np.broadcast_to(shows / shows.sum(0, keepdims=True), (n, n_items, n_slots))


def evaluate(logs: dict, target: str, behaviour: str, n_items: int, shrink: float, clip: float | None,
             bts_policy: str = "stepwise") -> dict:
    """Estimate ``target``'s click rate from ``behaviour``'s log; compare with ``target``'s own."""
    log, n_slots = logs[behaviour], 3
    n = len(log["a"])
    if target == "random":
        pi, staleness = np.full((n, n_items, n_slots), 1.0 / n_items), 1.0
    elif bts_policy == "frequency":
        pi, staleness = frequency_policy(logs[target], n, n_items, n_slots), 1.0
    else:
        pi, staleness = logged_policy_at(logs[target], log["t"], n_items, n_slots)
    q = reward_model(log, n_items, n_slots, shrink)
    est = ope.estimate_all(log["r"], log["mu"], pi, log["a"], q_hat=q, positions=log["k"], clip=clip)
    r_true = logs[target]["r"]
    truth = {"value": float(r_true.mean()), "se": float(r_true.std(ddof=1) / np.sqrt(len(r_true))), "n": len(r_true)}
    for v in est.values():
        v["rel_error"] = abs(v["estimate"] - truth["value"]) / truth["value"]
    return {"target": target, "behaviour": behaviour, "pi": bts_policy if target == "bts" else "uniform", "truth": truth, "estimates": est,
            "mean_slot_sum_before_renorm": staleness}


def study(data_dir: str | Path, campaign: str = "all", shrink: float = 50.0, clip: float | None = None) -> dict[str, Any]:
    """Every estimate of one campaign: BTS (stepwise and frequency readings) from the random log and
    random from the BTS log, each with its truth."""
    root = Path(data_dir) / "obd"
    try:
        logs = {b: as_rounds(load_obd_frame(root, b, campaign)) for b in ("random", "bts")}
    except FileNotFoundError as e:
        raise BadInputError(f"--data-dir: {e}") from e
    n_items = int(max(lg["a"].max() for lg in logs.values())) + 1
    return {"campaign": campaign, "n_items": n_items, "shrink": shrink, "clip": clip,
            "runs": [evaluate(logs, "bts", "random", n_items, shrink, clip, "stepwise"),
                     evaluate(logs, "bts", "random", n_items, shrink, clip, "frequency"),
                     evaluate(logs, "random", "bts", n_items, shrink, clip)]}


@cli("studies.ope_obd")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--campaign", default="all", choices=("all", "men", "women"))
    p.add_argument("--data-dir", default=None, help="folder holding obd/ (default: $RECGYM_DATA_DIR or ~/.cache/recgym)")
    p.add_argument("--shrink", type=float, default=50.0, help="pseudo-impressions of the slot rate in q̂")
    p.add_argument("--clip", type=float, default=None, help="clip importance weights at this value")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    res = study(resolve_data_dir(args.data_dir), args.campaign, args.shrink, args.clip)
    for run in res["runs"]:
        tr = run["truth"]
        print(f"\n{run['target']} ({run['pi']}) from {run['behaviour']} logs  (campaign {args.campaign}); "
              f"truth {tr['value']:.5f} ± {tr['se']:.5f} (n={tr['n']})")
        for name, v in run["estimates"].items():
            print(f"  {name:6s} {v['estimate']:.5f} ± {v['se']:.5f}  ESS {v['ess']:8.1f}  "
                  f"clipped {int(v['n_clipped'])}  rel.err {v['rel_error']:.3f}")
    if args.out:
        write_json(args.out, res, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
