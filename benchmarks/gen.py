"""``gen`` benchmark: GPTRec Next-K recommendation lists per second, and the PPO-update choice.

Model of ML-1M size (3,416 items, history 200, d 256, 3 layers, 4 heads), float32 on the CPU
threads torch is given, full 200-item histories (the worst case), ``K = 10``, greedy:

* ``cached``: one pass over ``[history, SEP]`` then 9 single-token steps against the KV cache;
* ``uncached``: the whole sequence recomputed at each of the 10 steps (GPT-2 without a cache).

PPO choice (stable-baselines3 vs the in-house loop): SB3's ``PPO`` stores one transition per
generated item and re-evaluates ``evaluate_actions(obs_i, a_i)`` per transition, i.e. ``K``
forward/backward passes over prefixes ``[h, SEP, g_<i]``, and its rollouts call the policy once
per env step without a cache. The in-house loop gets all ``K`` log-probabilities from one
forward pass over ``[h, SEP, g_1..g_{K-1}]``. ``ppo_update_*`` times both shapes of work on the
same model, a lower bound on SB3's cost (its env, buffer and Python overheads come on top).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from benchmarks.train import median_seconds


def bench_gen(n_items: int = 3416, history: int = 200, hidden: int = 256, n_blocks: int = 3, n_heads: int = 4,
              k: int = 10, batch: int = 128, ppo_batch: int = 32, min_seconds: float = 1.0,
              print_table: bool = True) -> dict[str, Any]:
    """Lists/s with and without the KV cache, and ms per PPO update (one pass vs per-prefix passes)."""
    from recgym.agents.nets.gpt import GPTDecoder

    torch.manual_seed(0)
    model = GPTDecoder(n_items, hidden, n_blocks, n_heads, history, k, dropout=0.0).eval()
    g = torch.Generator().manual_seed(0)
    hist = torch.randint(0, n_items, (batch, history), generator=g)
    out: dict[str, Any] = {"n_items": n_items, "history": history, "hidden": hidden, "n_blocks": n_blocks, "k": k,
                           "batch": batch, "threads": torch.get_num_threads()}
    t_c = median_seconds(lambda: model.generate(hist, k, use_cache=True), min_seconds)
    t_u = median_seconds(lambda: model.generate(hist, k, use_cache=False), min_seconds)
    same = bool(model.generate(hist[:16], k, use_cache=True)[0].equal(model.generate(hist[:16], k, use_cache=False)[0]))
    out.update(lists_per_s_cached=batch / t_c, lists_per_s_uncached=batch / t_u, ms_per_list_cached=1e3 * t_c / batch,
               cache_speedup=t_u / t_c, cached_equals_uncached=same)
    # bfloat16 weights (CPUs with AMX / AVX512-BF16 run these matmuls several times faster); the
    # share of list positions equal to float32's says what the precision costs on this model
    model_bf16 = copy.deepcopy(model).to(torch.bfloat16)
    t_b = median_seconds(lambda: model_bf16.generate(hist, k, use_cache=True), min_seconds)
    agree = float((model_bf16.generate(hist, k)[0] == model.generate(hist, k)[0]).float().mean())
    out.update(lists_per_s_cached_bf16=batch / t_b, bf16_same_items=agree)

    # PPO update: all K log-probs from one pass vs one pass per prefix (SB3's per-transition shape)
    h, slates = hist[:ppo_batch], model.generate(hist[:ppo_batch], k, greedy=False)[0]

    def one_pass() -> None:
        model.zero_grad(set_to_none=True)
        model.slate_log_probs(h, slates).sum().backward()

    def per_prefix() -> None:
        model.zero_grad(set_to_none=True)
        total = 0.0
        for i in range(k):
            total = total + model.slate_log_probs(h, slates[:, : i + 1])[:, i].sum()
        total.backward()

    t1, tk = median_seconds(one_pass, min_seconds), median_seconds(per_prefix, min_seconds)
    out.update(ppo_batch=ppo_batch, ppo_update_ms_one_pass=1e3 * t1, ppo_update_ms_per_prefix=1e3 * tk,
               ppo_update_speedup=tk / t1)
    if print_table:
        rows = [("lists/s, KV cache", f"{out['lists_per_s_cached']:.0f}  ({out['ms_per_list_cached']:.2f} ms/list)"),
                ("lists/s, no cache", f"{out['lists_per_s_uncached']:.0f}"),
                ("lists/s, KV cache, bfloat16 weights", f"{out['lists_per_s_cached_bf16']:.0f}  "
                 f"({100 * out['bf16_same_items']:.0f}% of list positions as float32)"),
                ("cache speed-up", f"{out['cache_speedup']:.1f}x  (same items: {same})"),
                (f"PPO update, one pass (batch {ppo_batch})", f"{out['ppo_update_ms_one_pass']:.0f} ms"),
                ("PPO update, per prefix (SB3 shape)", f"{out['ppo_update_ms_per_prefix']:.0f} ms"),
                ("one-pass speed-up", f"{out['ppo_update_speedup']:.1f}x")]
        w = max(len(a) for a, _ in rows)
        print(f"  ({n_items} items, history {history}, d {hidden}, {n_blocks} layers, batch {batch}, "
              f"{out['threads']} threads)")
        for a, b in rows:
            print(f"  {a:<{w}}  {b}")
    return out


__all__ = ["bench_gen"]
