"""GPU timings of the three workloads that size recgym's studies, printed as one table.

* ``sasrec``: one training epoch of SASRec on ML-100K (the ``ml-100k`` preset: leave-one-out,
  all positions, 50 items, batch 128), validation off. Reads ML-100K from the data folder (``RECGYM_DATA_DIR``);
  without it, a stand-in log of the same shape (943 sessions of ML-100K's lengths, uniform random
  ids over 1,682 items; the table says which).
* ``qstep``: one ``update`` of ``sqn`` and ``ccql`` (batch 256, d 64, SASRec encoder, 70,852 items:
  RetailRocket's catalogue) on a random replay batch already on the GPU.
* ``gen``: GPTRec Next-K lists per second at ML-1M size (3,416 items, history 200, d 256, 3 blocks,
  4 heads, K 10, greedy, KV cache, full histories), in float32 and bfloat16 (with the share of list
  positions bfloat16 gets equal to float32).

Times are medians over repeated runs after a warm-up, with ``torch.cuda.synchronize()`` around
each. Without a CUDA device the script says so and exits with status 2; it never falls back to
the CPU (``benchmarks/train.py`` and ``benchmarks/gen.py`` time the CPU).

    python -m benchmarks.gpu                 # all three on cuda:0
    python -m benchmarks.gpu gen --device cuda:1 --json gpu.json
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from recgym.errors import RecgymError, cli
from recgym.experiments.report import write_json


def _median_seconds(fn: Callable[[], Any], device: torch.device, min_seconds: float, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize(device)
    times: list[float] = []
    t_end = time.perf_counter() + min_seconds
    while time.perf_counter() < t_end or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# ---------------------------------------------------------------------------------------------
def _ml100k_split():
    """ML-100K's leave-one-out split, or a random stand-in of its shape (and which one it is)."""
    from recgym.data import SessionLog, load, split_leave_one_out

    try:
        return split_leave_one_out(load("ml-100k")), "ML-100K"
    except (FileNotFoundError, RecgymError, ValueError):
        rng = np.random.default_rng(0)
        lengths = np.maximum(20, rng.lognormal(np.log(70), 0.9, 943).astype(np.int64))  # mean ~ 106, min 20
        n = int(lengths.sum())
        log = SessionLog(offsets=np.concatenate([[0], np.cumsum(lengths)]), items=rng.integers(0, 1682, n),
                         rewards=np.ones(n, np.float32), kinds=np.zeros(n, np.int8), timestamps=np.zeros(n),
                         n_items=1682, name="ml-100k-shape")
        return split_leave_one_out(log), "stand-in (random ids, ML-100K shape)"


def bench_sasrec(device: torch.device, min_seconds: float) -> list[tuple[str, str]]:
    from recgym.agents.registry import make_agent
    from recgym.agents.training import train_loop

    split, what = _ml100k_split()
    agent = make_agent("sasrec", split.n_items, seed=0, dataset="ml-100k", device=str(device))
    quiet = dict(protocol="loo", progress=False, log=lambda m: None)
    train_loop(agent, split.train, None, steps=5, **quiet)  # warm-up: kernels, allocator
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    steps = train_loop(agent, split.train, None, epochs=1, **quiet).steps
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    return [(f"SASRec epoch, {what}", f"{seconds:.2f} s ({steps} steps of {agent.config.batch_size}, "
                                      f"{steps / seconds:.0f} steps/s)")]


def bench_qstep(device: torch.device, min_seconds: float, n_items: int = 70_852, batch: int = 256,
                dim: int = 64, state_len: int = 10) -> list[tuple[str, str]]:
    from recgym.agents.registry import make_agent

    rng = np.random.default_rng(0)
    cols = np.arange(state_len)[None, :]

    def padded(lens: np.ndarray) -> torch.Tensor:
        ids = rng.integers(0, n_items, (batch, state_len))
        return torch.from_numpy(np.where(cols < lens[:, None], ids, n_items)).to(device)

    lengths = rng.integers(0, state_len + 1, batch)
    next_len = np.minimum(lengths + 1, state_len)
    b = {"state": padded(lengths), "state_len": torch.from_numpy(lengths).to(device),
         "action": torch.from_numpy(rng.integers(0, n_items, batch)).to(device),
         "reward": torch.from_numpy(rng.choice(np.float32([0.2, 1.0]), batch)).to(device),
         "next_state": padded(next_len), "next_len": torch.from_numpy(next_len).to(device),
         "done": torch.from_numpy((rng.random(batch) < 0.1).astype(np.float32)).to(device)}
    rows = []
    for name in ("sqn", "ccql"):
        agent = make_agent(name, n_items, seed=0, hidden=dim, batch_size=batch, state_len=state_len, device=str(device))
        agent.set_training(True)
        step = iter(range(10**9))
        ms = 1e3 * _median_seconds(lambda: agent.update(b, next(step)), device, min_seconds)
        rows.append((f"{name} step, {n_items:,} items, batch {batch}, d {dim}", f"{ms:.2f} ms"))
    return rows


def bench_gen(device: torch.device, min_seconds: float, n_items: int = 3416, history: int = 200, hidden: int = 256,
              n_blocks: int = 3, n_heads: int = 4, k: int = 10, batch: int = 512) -> list[tuple[str, str]]:
    from recgym.agents.nets.gpt import GPTDecoder

    torch.manual_seed(0)
    model = GPTDecoder(n_items, hidden, n_blocks, n_heads, history, k, dropout=0.0).to(device).eval()
    hist = torch.randint(0, n_items, (batch, history), device=device)
    t32 = _median_seconds(lambda: model.generate(hist, k), device, min_seconds)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    t16 = _median_seconds(lambda: bf16.generate(hist, k), device, min_seconds)
    same = float((bf16.generate(hist, k)[0] == model.generate(hist, k)[0]).float().mean())
    shape = f"ML-1M size, batch {batch}"
    return [(f"GPTRec Next-K float32, {shape}", f"{batch / t32:,.0f} lists/s"),
            (f"GPTRec Next-K bfloat16, {shape}", f"{batch / t16:,.0f} lists/s ({100 * same:.1f}% positions = float32)")]


SECTIONS = {"sasrec": bench_sasrec, "qstep": bench_qstep, "gen": bench_gen}


@cli("python -m benchmarks.gpu")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sections", nargs="*", metavar="SECTION", help=f"any of {', '.join(SECTIONS)} (default: all)")
    p.add_argument("--device", default="cuda", help="CUDA device (default cuda = the current one)")
    p.add_argument("--seconds", type=float, default=2.0, help="minimum timing per measurement")
    p.add_argument("--json", type=Path, default=None, help="also write the table to this JSON file")
    args = p.parse_args(argv)
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        raise RecgymError(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    if not torch.cuda.is_available():
        raise RecgymError("no CUDA device (torch.cuda.is_available() is False): this script only times GPUs; "
                          "python -m benchmarks train / gen time the CPU")
    device = torch.device(args.device)
    if device.type != "cuda":
        raise RecgymError(f"--device must be a CUDA device, got {args.device!r}")
    rows = [("device", f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}")]
    for name in args.sections or list(SECTIONS):
        rows += SECTIONS[name](device, args.seconds)
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    if args.json is not None:
        write_json(args.json, dict(rows), indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
