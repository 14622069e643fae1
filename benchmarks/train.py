"""``train`` benchmark of the Q-learning family: ms per training step of ``sqn`` and ``ccql`` at
batch 256, hidden 64, 70,852 items (RetailRocket's catalogue), SASRec encoder, next to the
matmul-bound time of the same step: the time of the dense GEMMs against the item heads alone.

Matmul-bound model of one step (``n`` items, ``B`` batch, ``d`` = encoder width), the dense
GEMMs ``B×d×n`` the algorithm cannot avoid: the CE head's forward and its backward (weight and
input gradients: 3 GEMMs) and the main network's full-catalogue Q pass without gradient that the
double-Q argmax needs: on ``s'`` (SQN, SAC, CO: 1), plus on ``s`` for the negatives' bootstrap
(SNQN, SA2C, CCQL: 2). The target network's value is needed at the chosen action only, and Q with
a gradient only at the logged and negative actions (row-wise dot products, not GEMMs). Everything
else (encoder, softmax, Adam over the ``2n·(d+1)`` head weights, sampling) is overhead.

It also reports the end-to-end training throughput (steps/s) of ``sqn`` on ml-100k at the
settings of ``studies/qlearning.py``, the number that sizes that study on a CPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def median_seconds(fn, min_seconds: float = 1.0, warmup: int = 2) -> float:
    """Median seconds per call of ``fn`` over at least ``min_seconds`` (and 3 calls); the timer of
    the ``train`` and ``gen`` benchmarks."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    t_end = time.perf_counter() + min_seconds
    while time.perf_counter() < t_end or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def profile_step(name: str = "ccql", n_items: int = 70_852, batch: int = 256, dim: int = 64, steps: int = 10,
                 rows: int = 15, print_fn: Any = print) -> None:
    """Print the ops that take the most time over ``steps`` updates (``torch.profiler``): where the
    README's "where we still miss" figures come from, e.g.
    ``python -c "from benchmarks.train import profile_step; profile_step('ccql')"``."""
    from torch.profiler import ProfilerActivity, profile

    from recgym.agents.training import keep_freed_memory

    keep_freed_memory(True)  # as train_loop(keep_freed_memory=True)
    agent, b = _agent_and_batch(name, n_items, batch, dim, 10, "sasrec")
    for i in range(3):
        agent.update(b, i)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            agent.update(b, 3 + i)
    print_fn(f"{name}: {steps} steps, batch {batch}, d {dim}, {n_items:,} items (divide by {steps} for per-step times)")
    print_fn(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def _agent_and_batch(name: str, n_items: int, batch: int, dim: int, state_len: int, encoder: str):
    from recgym.agents.qlearning import CCQLAgent, COAgent, SA2CAgent, SACAgent, SNQNAgent, SQNAgent

    classes = {c.name: c for c in (SQNAgent, SACAgent, SNQNAgent, SA2CAgent, COAgent, CCQLAgent)}
    agent = classes[name](n_items, seed=0, hidden=dim, batch_size=batch, state_len=state_len, encoder=encoder)
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, state_len + 1, batch)
    cols = np.arange(state_len)[None, :]

    def padded(lens: np.ndarray) -> torch.Tensor:
        ids = rng.integers(0, n_items, (batch, state_len))
        return torch.from_numpy(np.where(cols < lens[:, None], ids, n_items))

    next_len = np.minimum(lengths + 1, state_len)
    b = {
        "state": padded(lengths), "state_len": torch.from_numpy(lengths),
        "action": torch.from_numpy(rng.integers(0, n_items, batch)),
        "reward": torch.from_numpy(rng.choice(np.float32([0.2, 1.0]), batch)),
        "next_state": padded(next_len), "next_len": torch.from_numpy(next_len),
        "done": torch.from_numpy((rng.random(batch) < 0.1).astype(np.float32)),
    }  # fmt: skip
    agent.set_training(True)
    return agent, b


def ml100k_steps_per_second(agent: str = "sqn", steps: int = 100, data_dir: str | None = None,
                            print_fn: Any = print) -> dict[str, float] | None:
    """Training steps/s of ``agent`` on ml-100k at the settings of ``studies/qlearning.py``
    (session split of the click-purchase log, seed 0; SQN session setting: batch 256, hidden 64,
    state_len 10) through the shared loop, validation off; ``None`` (and a note) without the data.

    Also times one validation pass (``evaluate`` + the Q diagnostics) on the validation users,
    which the study runs 8 times per run."""
    from recgym.agents.registry import make_agent
    from recgym.data import load_split
    from recgym.evaluate import evaluate

    try:
        sp = load_split("ml-100k", data_dir, reward_scheme="click-purchase", protocol="session", seed=0)
    except FileNotFoundError as e:
        print_fn(f"  ml-100k: skipped, no data ({str(e).splitlines()[0]}); set RECGYM_DATA_DIR")
        return None
    a = make_agent(agent, sp.n_items, seed=0, dataset=None, protocol="session", steps=steps)
    a.fit(sp.train, None, protocol="session", steps=5, progress=False)  # warm-up (allocations, caches)
    t0 = time.perf_counter()
    a.fit(sp.train, None, protocol="session", steps=steps, progress=False)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        evaluate(a, sp.valid, "session")
        a.diagnostics(sp.valid)
    valid_s = time.perf_counter() - t0
    out = {"steps_per_s": steps / train_s, "ms_per_step": 1e3 * train_s / steps, "validation_s": valid_s,
           "n_items": float(sp.n_items), "n_train_transitions": float(sp.train.n_events)}
    print_fn(f"  ml-100k {agent}: {out['steps_per_s']:6.1f} steps/s ({out['ms_per_step']:.1f} ms/step; batch "
             f"{a.config.batch_size}, d {a.config.hidden}, {sp.n_items:,} items, {sp.train.n_events:,} train "
             f"transitions); one validation pass {valid_s:.2f} s")
    return out


def step_and_bound_ratio(name: str, n_items: int = 70_852, batch: int = 256, dim: int = 64, rounds: int = 7,
                         steps: int = 5, autocast_dtype: str | None = None) -> dict[str, float]:
    """ms per ``agent.update`` of ``name`` and the matmul-bound ms of the same step, measured in
    alternating rounds (``steps`` updates, then ``steps`` bound GEMM sets, ``rounds`` times), so that
    both see the same machine. A virtual machine's speed drifts by tens of percent within seconds, and
    noise only ever adds time, so each side is its fastest round (``timeit``'s rule: the minimum is
    what the code costs, the spread is the machine); ``ratio`` = fastest step / fastest bound, with
    the median over rounds of the per-round ratio next to it."""
    passes = {"sqn": 1, "sac": 1, "snqn": 2, "sa2c": 2, "co": 1, "ccql": 2}
    agent, b = _agent_and_batch(name, n_items, batch, dim, 10, "sasrec")
    agent.config.autocast_dtype = autocast_dtype  # the bound stays float32: the option's gain shows as a lower ratio
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(batch, dim, generator=g), torch.randn(n_items, dim, generator=g)
    grad = torch.randn(batch, n_items, generator=g)

    def bound_step() -> None:
        torch.mm(h, w.T)  # CE head forward
        torch.mm(grad.T, h)  # its weight gradient
        torch.mm(grad, w)  # its input gradient
        for _ in range(passes[name]):
            torch.mm(h, w.T)

    def timed(fn) -> float:
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times)) * 1e3

    counter = iter(range(10**9))
    update = lambda: agent.update(b, next(counter))  # noqa: E731
    for _ in range(3):
        update()
        bound_step()
    step_ms, bound_ms = [], []
    for _ in range(rounds):
        step_ms.append(timed(update))
        bound_ms.append(timed(bound_step))
    ratios = np.array(step_ms) / np.array(bound_ms)
    return {"ms_per_step": min(step_ms), "matmul_bound_ms": min(bound_ms), "ratio": min(step_ms) / min(bound_ms),
            "ratio_median": float(np.median(ratios)), "ratio_min": float(ratios.min()), "ratio_max": float(ratios.max())}


def bench_train(n_items: int = 70_852, batch: int = 256, dim: int = 64, agents: tuple[str, ...] = ("sqn", "ccql"),
                rounds: int = 7, print_fn: Any = print, ml100k: bool = True,
                autocast_dtype: str | None = None) -> dict[str, dict[str, float]]:
    """Print and return ms/step of each agent next to its matmul-bound time and their ratio
    (:func:`step_and_bound_ratio`; target: ratio ≤ 1.5), then (``ml100k``) sqn's steps/s on ml-100k
    (:func:`ml100k_steps_per_second`)."""
    from recgym.agents.training import keep_freed_memory

    keep_freed_memory(True)  # as train_loop(keep_freed_memory=True); the matmul bound gets the same allocator
    out: dict[str, dict[str, float]] = {}
    print_fn(f"train step, batch {batch}, d {dim}, {n_items:,} items, {torch.get_num_threads()} threads, "
             f"{rounds} alternating rounds" + (f", autocast {autocast_dtype}" if autocast_dtype else ""))
    for name in agents:
        r = out[name] = step_and_bound_ratio(name, n_items, batch, dim, rounds, autocast_dtype=autocast_dtype)
        print_fn(f"  {name:5s} {r['ms_per_step']:8.1f} ms/step   matmul-bound {r['matmul_bound_ms']:8.1f} ms   "
                 f"ratio {r['ratio']:4.2f} (per round: median {r['ratio_median']:.2f}, {r['ratio_min']:.2f}–{r['ratio_max']:.2f})")
    if ml100k:
        res = ml100k_steps_per_second(print_fn=print_fn)
        if res is not None:
            out["ml-100k/sqn"] = res
    return out


def step_ms_per_process(name: str = "ccql", processes: int = 6, steps: int = 20, threads: int = 2,
                        chunk: int | None = None, n_items: int = 70_852, print_fn: Any = print) -> list[float]:
    """Median ms per ``agent.update`` (``n_items``, batch 256, d 64) in each of ``processes`` fresh
    processes: a cost that depends on where a process's buffers land (a cache-set conflict, as chunks
    of 4,096 items had) shows as two groups of processes, which one process's rounds cannot see.
    ``chunk`` replaces :data:`recgym.agents.nets.linear_ce.CPU_CHUNK` (the catalogue chunk of the
    cross-entropy and the greedy argmax)."""
    import subprocess
    import sys

    code = (f"import time, numpy as np, torch; torch.set_num_threads({threads})\n"
            "from benchmarks.train import _agent_and_batch\n"
            "from recgym.agents.training import keep_freed_memory\n"
            "keep_freed_memory(True)\n"
            + ("" if chunk is None else
               f"import recgym.agents.nets.linear_ce as L; L.CPU_CHUNK = {int(chunk)}\n"
               f"from recgym.agents.qlearning import QNetwork; QNetwork.greedy.__defaults__ = ({int(chunk)},)\n")
            + f"agent, b = _agent_and_batch({name!r}, {int(n_items)}, 256, 64, 10, 'sasrec')\n"
            "[agent.update(b, i) for i in range(5)]\n"
            f"ts = [(time.perf_counter(), agent.update(b, 5 + i), time.perf_counter()) for i in range({steps})]\n"
            "print(np.median([t1 - t0 for t0, _, t1 in ts]) * 1e3)\n")
    root = Path(__file__).resolve().parent.parent  # benchmarks/ is imported from the repository root
    out = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=root).stdout) for _ in range(processes)]
    what = f"{name}" + (f", chunks of {chunk}" if chunk else "")
    print_fn(f"{what}: median ms per step in {processes} fresh processes: " + ", ".join(f"{x:.1f}" for x in out))
    return out


if __name__ == "__main__":
    bench_train()
