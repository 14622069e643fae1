"""recgym micro-benchmarks: ``python -m benchmarks SECTION [SECTION ...]`` (``make bench``).

Sections (one function each in ``SECTIONS``; add yours there):

* ``data``  — cold load of a synthetic 2.7M-row RetailRocket ``events.csv`` (target < 15 s);
* ``eval``  — full-catalogue session evaluation throughput at 70,852 items, d = 64, next to
  the bare scoring matmul of the same shapes (target >= 50 % of the matmul);
* ``envs`` (benchmarks/envs.py), ``train`` (benchmarks/train.py), ``gen`` (benchmarks/gen.py).

Every section prints a small table and returns a dict of its numbers (``--json PATH`` writes
them all).
"""

from __future__ import annotations

import argparse
import inspect
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from recgym.errors import cli
from recgym.experiments.report import write_json


def _table(title: str, rows: list[tuple[str, str]]) -> None:
    w = max(len(k) for k, _ in rows)
    print(f"\n== {title}")
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")


# ------------------------------------------------------------------------------------------ data
def write_retailrocket_events(path: Path, n_rows: int = 2_700_000, n_visitors: int = 1_400_000,
                              n_items: int = 235_061, seed: int = 0) -> None:
    """A synthetic ``events.csv`` in RetailRocket's raw format (timestamp ms, visitorid, event,
    itemid, transactionid): Zipf-like item popularity, ~96 % view / 3 % addtocart / 1 %
    transaction, most visitors with one or two events, rows in no particular order."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    # events per visitor: heavy-tailed, most visitors one event (RetailRocket: 1.4M visitors,
    # ~195k with more than two events)
    per_visitor = np.minimum(1 + np.floor(rng.pareto(1.3, size=n_visitors) * 0.5).astype(np.int64), 5000)
    visitor = np.repeat(np.arange(n_visitors), per_visitor)
    if len(visitor) >= n_rows:
        visitor = np.sort(rng.choice(visitor, size=n_rows, replace=False))
    else:
        visitor = np.sort(np.concatenate([visitor, rng.integers(0, n_visitors, n_rows - len(visitor))]))
    # each visitor's events fall in a short window after a random start (139 days of data)
    start = rng.integers(0, 139 * 86_400_000, size=n_visitors)
    ts = 1_430_622_000_000 + start[visitor] + rng.integers(0, 3_600_000, size=n_rows)
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    pop = 1.0 / (ranks + 50.0)  # Zipf with a flattened head
    item_perm = rng.permutation(n_items)  # popularity unrelated to the raw id
    item = item_perm[rng.choice(n_items, size=n_rows, p=pop / pop.sum())]
    event = rng.choice(np.array(["view", "addtocart", "transaction"]), size=n_rows, p=[0.96, 0.03, 0.01])
    shuffle = rng.permutation(n_rows)  # the raw file is in no particular order
    visitor, ts = visitor[shuffle], ts[shuffle]
    is_tx = event == "transaction"
    tx = pd.array(np.where(is_tx, rng.integers(0, 20_000, size=n_rows), 0), dtype="Int64")
    tx[~is_tx] = pd.NA
    df = pd.DataFrame({"timestamp": ts, "visitorid": visitor, "event": event, "itemid": item, "transactionid": tx})
    df.to_csv(path, index=False)


def bench_data(args: argparse.Namespace) -> dict:
    import recgym.data as rd

    tmp = Path(tempfile.mkdtemp(prefix="recgym-bench-data-"))
    try:
        raw = tmp / "retailrocket"
        raw.mkdir()
        t0 = time.perf_counter()
        write_retailrocket_events(raw / "events.csv", n_rows=args.rows)
        t_gen = time.perf_counter() - t0
        size_mb = (raw / "events.csv").stat().st_size / 2**20
        rows = [("rows", f"{args.rows:,}"), ("events.csv", f"{size_mb:.0f} MiB, generated in {t_gen:.1f} s")]
        out = {"rows": args.rows, "gen_s": t_gen}
        load = getattr(rd, "load", None)
        if load is not None:
            how = "recgym.data.load('retailrocket', data_dir=tmp)"
            kw = {"cache": False} if "cache" in inspect.signature(load).parameters else {}
            call = lambda: load("retailrocket", data_dir=tmp, **kw)  # noqa: E731
        else:  # the registry has not landed yet: time the source parser itself (no cache either)
            try:
                from recgym.data.sources.retailrocket import load_retailrocket
            except ImportError as e:
                rows.append(("load", f"recgym.data.load does not exist yet and no retailrocket source module ({e})"))
                _table("data: retailrocket cold load", rows)
                return out
            how = "recgym.data.sources.retailrocket.load_retailrocket (recgym.data.load not there yet)"
            call = lambda: load_retailrocket(raw)  # noqa: E731
        rows.append(("timed call", how))
        shutil.rmtree(tmp / "processed", ignore_errors=True)  # cold: no processed cache
        t0 = time.perf_counter()
        try:
            log = call()
        except Exception as e:  # report, do not hide: the loader is written elsewhere
            rows.append(("load", f"FAILED: {type(e).__name__}: {e}"))
            _table("data: retailrocket cold load", rows)
            out["error"] = f"{type(e).__name__}: {e}"
            return out
        t_load = time.perf_counter() - t0
        st = log.stats()
        rows += [
            ("cold load", f"{t_load:.2f} s  (target < 15 s: {'ok' if t_load < 15 else 'SLOW'})"),
            ("sessions / items", f"{st['n_sessions']:,} / {st['n_items']:,}"),
            ("events (click/purch.)", f"{st['n_events']:,} ({st['n_clicks']:,} / {st['n_purchases']:,})"),
        ]
        out.update(load_s=t_load, n_sessions=st["n_sessions"], n_items=st["n_items"], n_events=st["n_events"])
        _table("data: retailrocket cold load", rows)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------ eval
class DotScorer:
    """Evaluable stand-in for a trained model: state = mean embedding of the history items,
    scores = state @ E^T over the catalogue (what a d-dim encoder + tied output layer costs)."""

    def __init__(self, n_items: int, dim: int = 64, state_len: int = 10, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.n_items, self.state_len = n_items, state_len
        self.emb = torch.randn(n_items + 1, dim, generator=g) / dim**0.5
        self.emb[n_items] = 0.0  # pad row
        self.out = self.emb[:n_items].T.contiguous()  # [d, n]
        self.bias = torch.randn(dim, generator=g)  # empty history -> a fixed state

    def state(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        s = self.emb[states].sum(1) / lengths.clamp(min=1)[:, None]
        return s + self.bias

    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.state(states, lengths) @ self.out


def bench_eval(args: argparse.Namespace) -> dict:
    from recgym.data import SessionLog
    from recgym.evaluate import evaluate_sessions

    n_items, dim, B = 70_852, 64, args.batch_size
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 12, size=args.events // 6)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), args.events) + 1]
    n_ev = int(lengths.sum())
    kinds = (rng.random(n_ev) < 0.05).astype(np.int8)
    log = SessionLog(
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        items=rng.integers(0, n_items, size=n_ev),
        rewards=np.where(kinds == 1, 1.0, 0.2),
        kinds=kinds,
        timestamps=np.arange(n_ev, dtype=np.float64),
        n_items=n_items,
    )
    agent = DotScorer(n_items, dim)

    # The machine is shared and noisy: interleave the bare matmul (same shapes, same batch
    # size) with whole evaluation runs and compare medians.
    x = torch.randn(B, dim)
    torch.matmul(x, agent.out)
    evaluate_sessions(agent, log.subset(np.arange(min(50, log.n_sessions))), batch_size=B)  # warm-up
    mm_times: list[float] = []
    ev_times: list[float] = []
    res: dict = {}
    for _ in range(args.repeats):
        t_end = time.perf_counter() + args.seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            torch.matmul(x, agent.out)
            mm_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = evaluate_sessions(agent, log, batch_size=B)
        ev_times.append(time.perf_counter() - t0)
    mm_rate = B / float(np.median(mm_times))
    t_eval = float(np.median(ev_times))
    ev_rate = n_ev / t_eval
    ratio = ev_rate / mm_rate
    gflops = 2 * dim * n_items * mm_rate / 1e9
    _table(
        f"eval: session protocol, {n_items:,} items, d={dim}, batch {B}, torch threads {torch.get_num_threads()}",
        [
            ("matmul [B,64]x[64,n]", f"{mm_rate:12,.0f} rows/s   ({gflops:.1f} GFLOP/s)"),
            ("evaluate_sessions", f"{ev_rate:12,.0f} events/s ({n_ev:,} events in {t_eval:.2f} s, median of {args.repeats})"),
            ("ratio eval / matmul", f"{ratio:12.1%}   (target >= 50%: {'ok' if ratio >= 0.5 else 'LOW'})"),
            ("hr@20 (random model)", f"{res['hr@20']:.5f}  (chance 20/n = {20 / n_items:.5f})"),
        ],
    )
    return {"matmul_rows_per_s": mm_rate, "eval_events_per_s": ev_rate, "ratio": ratio, "n_events": n_ev, "batch_size": B}


# ------------------------------------------------------------------------------------------ others
def bench_envs_section(args: argparse.Namespace) -> dict:
    """Steps/s of every Synthetic env, single and vectorised (implementation in benchmarks/envs.py)."""
    from benchmarks.envs import bench_envs

    print("\n== envs: steps/s on the Synthetic world (single env vs vector env)")
    return bench_envs()


def bench_train_section(args: argparse.Namespace) -> dict:
    """ms per training step of sqn and ccql vs the matmul bound (implementation in benchmarks/train.py)."""
    from benchmarks.train import bench_train

    print("\n== train: ms per training step (batch 256, d 64, 70,852 items)")
    return bench_train()


def bench_gen_section(args: argparse.Namespace) -> dict:
    """GPTRec lists/s with and without the KV cache, and the PPO-update choice (benchmarks/gen.py)."""
    from benchmarks.gen import bench_gen

    print("\n== gen: GPTRec Next-K lists/s (3,416 items, history 200, d 256, 3 layers, K 10)")
    return bench_gen()


SECTIONS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "data": bench_data,
    "eval": bench_eval,
    "envs": bench_envs_section,
    "train": bench_train_section,
    "gen": bench_gen_section,
}


@cli("benchmarks")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sections", nargs="+", choices=sorted(SECTIONS), metavar="SECTION",
                   help=f"one or more of: {', '.join(SECTIONS)}")
    p.add_argument("--rows", type=int, default=2_700_000, help="data: rows of the synthetic events.csv")
    p.add_argument("--events", type=int, default=20_000, help="eval: events in the evaluated log")
    p.add_argument("--repeats", type=int, default=3, help="eval: evaluation runs (median reported)")
    p.add_argument("--batch-size", type=int, default=1024, help="eval: scoring batch size")
    p.add_argument("--seconds", type=float, default=2.0, help="eval: seconds of bare-matmul timing before each evaluation run")
    p.add_argument("--json", type=Path, default=None, help="write all numbers to this JSON file")
    args = p.parse_args(argv)
    results = {name: SECTIONS[name](args) for name in args.sections}
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
