"""GPTRec decoder, PPO pieces, gptrec / gptrec-ppo / bert4rec / re-rankers."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.agents.nets.gpt import (GPTDecoder, ValueModel, attention_mask, generation_mask, history_exclusion,
                             sequence_inputs)
from recgym.data import last_items_of_rows
from recgym.agents.ppo import clipped_surrogate_loss, discounted_returns, gae, masked_entropy, normalize, value_loss
from recgym import metrics

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS = 40


def tiny_decoder(seed: int = 0, **kw) -> GPTDecoder:
    torch.manual_seed(seed)
    args = dict(hidden=32, n_blocks=2, n_heads=4, max_history=8, max_generate=5, dropout=0.0)
    args.update(kw)
    return GPTDecoder(N_ITEMS, **args).double().eval()


# ------------------------------------------------------------------------------ input structure
def test_position_ids_and_masks_on_a_hand_made_sequence():
    P, S = N_ITEMS, N_ITEMS + 1  # pad, separator
    history = torch.tensor([[P, P, 7, 8, 9], [1, 2, 3, 4, 5]])
    generated = torch.tensor([[11, 12], [13, 14]])
    tokens, pos, valid = sequence_inputs(history, generated, N_ITEMS, max_history=8)
    assert tokens.tolist() == [[P, P, 7, 8, 9, S, 11, 12], [1, 2, 3, 4, 5, S, 13, 14]]
    # separator 0, history counting back from it, generated items N+1, N+2 with N = max_history = 8
    assert pos[0, 2:].tolist() == [3, 2, 1, 0, 9, 10]
    assert pos[1].tolist() == [5, 4, 3, 2, 1, 0, 9, 10]
    assert valid.tolist() == [[False, False] + [True] * 6, [True] * 8]
    m = attention_mask(valid)[:, 0]
    assert m.shape == (2, 8, 8)
    # row 0, query at the separator (col 5): attends to items 7, 8, 9 and itself, not padding, not the future
    assert m[0, 5].tolist() == [False, False, True, True, True, True, False, False]
    # a padding query attends to itself only (never an empty row)
    assert m[0, 0].tolist() == [True] + [False] * 7
    assert m[1].equal(torch.ones(8, 8, dtype=torch.bool).tril())
    bidir = attention_mask(valid, causal=False)[0, 0]
    assert bidir[2].tolist() == [False, False] + [True] * 6


def test_left_padded_window_keeps_the_last_items_and_trims_common_padding():
    P = N_ITEMS
    states = torch.tensor([[1, 2, 3, P, P], [4, 5, 6, 7, 8], [P, P, P, P, P]])
    out, _ = last_items_of_rows(states, torch.tensor([3, 5, 0]), 4, P, "left", trim=True)
    assert out.tolist() == [[P, 1, 2, 3], [5, 6, 7, 8], [P, P, P, P]]


def test_generation_mask_adds_earlier_items():
    ex = torch.zeros(1, 6, dtype=torch.bool)
    ex[0, 5] = True
    m = generation_mask(ex, torch.tensor([[2, 0, 4]]))
    assert m[0].int().tolist() == [[0, 0, 0, 0, 0, 1], [0, 0, 1, 0, 0, 1], [1, 0, 1, 0, 0, 1]]


def test_trimming_left_padding_does_not_change_the_output():
    model = tiny_decoder()
    P = N_ITEMS
    h_wide = torch.tensor([[P, P, P, 3, 4, 5]])
    h_narrow = torch.tensor([[3, 4, 5]])
    a = model.slate_log_probs(h_wide, torch.tensor([[1, 2, 6]]))
    b = model.slate_log_probs(h_narrow, torch.tensor([[1, 2, 6]]))
    assert torch.allclose(a, b, atol=1e-10)


# ------------------------------------------------------------------------------ generation
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kv_cached_generation_equals_uncached_greedy(seed):
    model = tiny_decoder(seed)
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(0, N_ITEMS, (6, 7), generator=g)
    hist[0, :5] = N_ITEMS  # a short history
    hist[1, :] = N_ITEMS  # an empty history
    a, la = model.generate(hist, 5, use_cache=True)
    b, lb = model.generate(hist, 5, use_cache=False)
    assert a.equal(b)
    assert torch.allclose(la, lb, atol=1e-9)
    # the one-pass log-probabilities of the full sequence are those of generation
    assert torch.allclose(model.slate_log_probs(hist, a), la, atol=1e-9)


def test_generation_masks_history_repeats_and_special_tokens():
    model = tiny_decoder(0).float()
    hist = torch.randint(0, N_ITEMS, (32, 8), generator=torch.Generator().manual_seed(0))
    for greedy in (True, False):
        items, logp = model.generate(hist, 5, greedy=greedy)
        assert items.max() < N_ITEMS and items.min() >= 0
        for r in range(len(hist)):
            assert len(set(items[r].tolist())) == 5
            assert not set(items[r].tolist()) & set(hist[r].tolist())
        assert (logp <= 0).all() and torch.isfinite(logp).all()


def test_value_model_starts_from_the_backbone():
    model = tiny_decoder()
    v = ValueModel.from_backbone(model)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), v.backbone.parameters()))
    assert v.backbone is not model
    out = v(torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5, 6, 7]]))
    assert out.shape == (1, 4)


# ------------------------------------------------------------------------------ PPO pieces
def test_gae_matches_a_hand_computation():
    r = torch.tensor([[1.0, 0.0, 2.0]])
    v = torch.tensor([[0.5, 1.0, 1.5]])
    g, l = 0.9, 0.8
    d0 = 1.0 + g * 1.0 - 0.5  # 1.4
    d1 = 0.0 + g * 1.5 - 1.0  # 0.35
    d2 = 2.0 + g * 0.0 - 1.5  # 0.5 (episode ends after K)
    a2 = d2
    a1 = d1 + g * l * a2
    a0 = d0 + g * l * a1
    adv, ret = gae(r, v, g, l)
    assert torch.allclose(adv, torch.tensor([[a0, a1, a2]]))
    assert torch.allclose(ret, adv + v)
    assert torch.allclose(discounted_returns(r, g), torch.tensor([[1.0 + g * g * 2.0, g * 2.0, 2.0]]))
    # λ = 1: advantages are Monte-Carlo returns minus V
    assert torch.allclose(gae(r, v, g, 1.0)[0], discounted_returns(r, g) - v)


def test_clipped_objective_gradient_is_zero_outside_the_clip_range():
    logp_old = torch.zeros(4)
    # ratios 1.5 (A>0: clipped), 0.5 (A<0: clipped), 1.1 (inside), 0.5 (A>0: not clipped, min picks ρA)
    logp = torch.log(torch.tensor([1.5, 0.5, 1.1, 0.5])).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, 2.0, 3.0])
    loss, info = clipped_surrogate_loss(logp, logp_old, adv, clip=0.2)
    loss.backward()
    grad = logp.grad
    assert grad[0] == 0 and grad[1] == 0
    # inside the range: d(−ρA/4)/dlogp = −ρA/4
    assert math.isclose(float(grad[2]), -1.1 * 2.0 / 4, rel_tol=1e-6)
    assert math.isclose(float(grad[3]), -0.5 * 3.0 / 4, rel_tol=1e-6)
    assert math.isclose(float(loss.detach()), -(1.2 * 1 + 0.8 * -1 + 1.1 * 2 + 0.5 * 3) / 4, rel_tol=1e-6)
    assert info["clip_frac"] == 0.75


def test_slate_rewards_sum_to_the_list_metric():
    from recgym.agents.gptrec import GPTRecPPOAgent

    rng = np.random.default_rng(0)
    genres = (rng.random((N_ITEMS, 5)) < 0.4).astype(np.float32)
    pop = rng.random(N_ITEMS)
    pop /= pop.sum()
    slates = np.stack([rng.permutation(N_ITEMS)[:10] for _ in range(16)])
    targets = np.where(rng.random(16) < 0.5, slates[np.arange(16), rng.integers(0, 10, 16)], rng.integers(0, N_ITEMS, 16))
    agent = GPTRecPPOAgent(N_ITEMS, hidden=8, n_blocks=1, n_heads=1, state_len=5, lambda_ild=0.3, lambda_pop=2.0)
    agent._genres, agent._popularity = genres, pop
    r = agent.slate_rewards(slates, targets)
    ndcg = metrics.ndcg_at_k(metrics.slate_positions(slates, targets), 10)
    expected = ndcg + 0.3 * metrics.ild_at_k(slates, genres) - 2.0 * metrics.pcount_at_k(slates, pop)
    assert r.shape == (16, 10)
    np.testing.assert_allclose(r.sum(1), expected, atol=1e-12)


# ------------------------------------------------------------------------------ agents end to end
@pytest.fixture(scope="module")
def split():
    from recgym.data.splits import split_leave_one_out
    from recgym.sim.world import World

    log = World(seed=0, n_users=100, n_items=N_ITEMS, n_genres=6).generate(160)
    return split_leave_one_out(log)


TINY = dict(state_len=16, hidden=32, n_blocks=1, n_heads=2, batch_size=32, steps=60, eval_every=30)


@pytest.fixture(scope="module")
def student(split):
    from recgym.agents.gptrec import GPTRecAgent

    return GPTRecAgent(N_ITEMS, **TINY).fit(split.train, split.valid, progress=False, log=lambda m: None)


def test_student_learns_the_teacher_lists(split, student):
    from recgym.agents.gptrec import GPTRecAgent

    tl = student.make_transitions(split.train)
    batch = tl.sample(256, np.random.default_rng(1))
    fresh = GPTRecAgent(N_ITEMS, **TINY)
    with torch.no_grad():
        trained = -student.model.slate_log_probs(batch["history"], batch["slate"]).mean()
        untrained = -fresh.model.slate_log_probs(batch["history"], batch["slate"]).mean()
    assert trained < untrained - 0.3
    assert student.curves and student.best_step in (30, 60)


def test_student_scores_rank_the_next_k_list_first(split, student):
    states, lens = split.test.padded(16)
    states, lens = torch.from_numpy(states[:8]), torch.from_numpy(lens[:8])
    s = student.scores(states, lens)
    lists = student.recommend(states.numpy(), 10)
    assert torch.topk(s, 10).indices.numpy().tolist() == lists.tolist()
    first = student.with_score_mode("first").scores(states, lens)
    assert first.argmax(1).tolist() != [] and student.config.score_mode == "nextk"
    hist, _ = last_items_of_rows(states, lens, 16, N_ITEMS, "left", trim=True)
    # the first generated item is the argmax of the masked first-position logits
    masked = first.masked_fill(history_exclusion(hist, N_ITEMS), -torch.inf)
    assert masked.argmax(1).tolist() == lists[:, 0].tolist()


def test_bfloat16_inference_keeps_the_weights_and_mostly_the_lists(split, student):
    import copy

    states, _ = split.test.padded(16)
    fp32 = student.recommend(states, 10)
    bf16_agent = copy.copy(student)
    bf16_agent.config = dataclasses.replace(student.config, inference_dtype="bfloat16")
    bf16 = bf16_agent.recommend(states, 10)
    assert next(student.model.parameters()).dtype == torch.float32  # the trained model is untouched
    assert (bf16[:, 0] == fp32[:, 0]).mean() >= 0.8 and all(len(set(r)) == 10 for r in bf16.tolist())
    bf16_agent.config = dataclasses.replace(student.config, inference_dtype="float64x")
    with pytest.raises(ValueError, match="inference_dtype"):
        bf16_agent.recommend(states[:2], 10)


def test_save_load_round_trip(tmp_path, split, student):
    from recgym.agents.gptrec import GPTRecAgent

    student.save(tmp_path / "g.pt")
    back = GPTRecAgent.load(tmp_path / "g.pt")
    states, lens = split.test.padded(16)
    assert np.array_equal(back.recommend(states[:5], 10), student.recommend(states[:5], 10))


def test_ppo_raises_the_training_reward_and_keeps_the_best_checkpoint(split, student):
    from recgym.agents.gptrec import GPTRecPPOAgent

    # a strong popularity penalty is easy to learn: PCOUNT of the greedy lists must fall
    agent = GPTRecPPOAgent(N_ITEMS, **TINY, lambda_pop=20.0, ppo_steps=48, ppo_eval_every=32, policy_lr=3e-3,
                           value_lr=3e-3, val_users=64)
    agent.fit(split.train, split.valid, student=student, log=lambda m: None)
    c = agent.ppo_curves
    # 16 optimisation steps per iteration (4 epochs x 4 minibatches): iterations end at 16, 32, 48;
    # validation at 0, 32 (the 32nd step) and 48 (the last)
    assert [p["step"] for p in c] == [0, 16, 32, 48]
    assert ["val_reward" in p for p in c] == [True, False, True, True]
    for p in c[1:]:  # PPO statistics logged every iteration
        assert {"clip_frac", "approx_kl", "entropy", "loss_pi", "loss_v", "reward"} <= set(p)
        assert p["approx_kl"] > 0 and p["entropy"] > 0
    assert agent.best_metric == max(p["val_reward"] for p in c if "val_reward" in p)
    pop = split.train.popularity()
    states, lens = split.valid.padded(16)
    before = metrics.pcount_at_k(student.recommend(states, 10), pop).mean()
    after = metrics.pcount_at_k(agent.recommend(states, 10), pop).mean()
    assert after < before
    # the best checkpoint is what the agent holds
    assert math.isclose(agent.validation_reward(split.valid)["val_reward"], agent.best_metric, rel_tol=1e-9)


def test_bert4rec_and_rerankers(split):
    from recgym.agents.bert4rec import BERT4RecAgent, cloze_mask
    from recgym.agents.rerank import MMRAgent, PopRerankAgent
    from recgym.evaluate import evaluate_loo, loo_ranks

    b = BERT4RecAgent(N_ITEMS, state_len=16, hidden=32, n_blocks=1, n_heads=2, batch_size=32, steps=80, eval_every=40)
    b.fit(split.train, split.valid, progress=False, log=lambda m: None)
    rng = np.random.default_rng(0)
    batch = cloze_mask(b.make_transitions(split.train).sample(8, rng)["seq"], N_ITEMS, b.config.mask_prob, rng)
    assert ((batch["labels"] != -100).sum(1) >= 1).all()
    assert (batch["tokens"][batch["labels"] != -100] == N_ITEMS + 1).all()
    pop = split.train.popularity()
    base = evaluate_loo(b, split.test, popularity=pop)
    assert base["ndcg@10"] > 0
    res = {}
    for cls in (MMRAgent, PopRerankAgent):
        for w in (0.0, 0.9):
            r = cls(N_ITEMS, weight=w, candidates=30).fit(split.train, base=b)
            res[cls.name, w] = evaluate_loo(r, split.test, popularity=pop)
            if w == 0.0:  # weight 0 is the base ranking's list
                r_base, l_base, sess = loo_ranks(b, split.test)
                r_rr, l_rr, _ = loo_ranks(r, split.test)
                assert np.array_equal(l_base, l_rr)
                # lists never hold history items, so a target repeating one is a miss for the
                # re-ranker; every other target has the same rank within the list
                test = split.test
                repeat = np.array([test.session(s)[-1] in test.session(s)[:-1] for s in sess])
                top = ~repeat & (r_base < 10)
                assert top.any() and np.array_equal(r_base[top], r_rr[top])
                assert math.isclose(res[cls.name, w]["ild@10"], base["ild@10"], rel_tol=1e-9)
    assert res["mmr", 0.9]["ild@10"] > base["ild@10"]
    assert res["pop-rerank", 0.9]["npcount@10"] < base["npcount@10"]


def test_bad_inputs_raise_clear_errors(split):
    from recgym.agents.gptrec import GPTRecAgent, GPTRecPPOAgent
    from recgym.agents.rerank import MMRAgent

    with pytest.raises(ValueError, match="score_mode"):
        GPTRecAgent(N_ITEMS, hidden=8, n_heads=1, score_mode="topk")
    with pytest.raises(ValueError, match="max_history"):
        sequence_inputs(torch.zeros(1, 9, dtype=torch.long), None, N_ITEMS, max_history=8)
    with pytest.raises(ValueError, match="weight"):
        MMRAgent(N_ITEMS, weight=2.0)
    with pytest.raises(ValueError, match="max_generate"):
        tiny_decoder().generate(torch.zeros(1, 3, dtype=torch.long), 6)
    with pytest.raises(ValueError, match="value_target"):
        GPTRecPPOAgent(N_ITEMS, hidden=8, n_heads=1, value_target="mc").train_ppo(split.train, split.valid)


@pytest.mark.slow
def test_study_quick_runs_and_writes_its_outputs(tmp_path):
    out = tmp_path / "study"
    proc = subprocess.run([sys.executable, "-m", "studies.gptrec", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for f in ("results.json", "tables.md", "tradeoff_ild.png", "tradeoff_pcount.png", "topk_vs_nextk.png"):
        assert (out / f).stat().st_size > 0, f
    import json

    res = json.loads((out / "results.json").read_text())
    rows = res["summary"]
    for name in ("pop", "bpr", "sasrec", "bert4rec", "gptrec (MC teacher)", "gptrec-ppo NDCG"):
        assert name in rows
    assert sum(r["kind"] == "mmr" for r in rows.values()) >= 3
    assert sum(r["kind"] == "gptrec-ppo-pcount" for r in rows.values()) >= 2
    # the pop model's nPCOUNT is computed against its own global top-10 (history excluded: <= 1)
    assert 0 < rows["pop"]["npcount@10"][0] <= 1.0 + 1e-9
    curves = res["per_seed"][0]["ndcg_at_k"]
    assert {"gptrec (MC teacher) (Next-K)", "gptrec (MC teacher) (Top-K)"} <= set(curves)
    assert all(len(c) == 10 and all(np.diff(c) >= -1e-12) for c in curves.values())  # NDCG@K grows with K
    # the shared-loop models select their checkpoints on the split's own protocol (leave-one-out:
    # NDCG@10 of the held-out item), not on session NDCG@20 over every validation event
    assert res["per_seed"][0]["code_version"]  # the code that produced the seed (git HEAD or the package version)
    table = (out / "tables.md").read_text()
    assert "Code version of every run" in table
    # one seed has no sample std: its cells carry no "± 0.0000"
    assert "seed 0 only (no spread)" in table and "| pop | 0." in table and "±" not in table.split("| pop |")[1].split("\n")[0]
    seed_rows = res["per_seed"][0]["rows"]
    assert {n: seed_rows[n].get("train_metric") for n in ("sasrec", "bert4rec", "gptrec (MC teacher)")} == \
        dict.fromkeys(("sasrec", "bert4rec", "gptrec (MC teacher)"), "ndcg@10")


def test_bench_gen_small():
    from benchmarks.gen import bench_gen

    r = bench_gen(n_items=50, history=12, hidden=16, n_blocks=1, n_heads=2, k=5, batch=8, ppo_batch=4,
                  min_seconds=0.01, print_table=False)
    assert r["cached_equals_uncached"] and r["lists_per_s_cached"] > 0 and r["ppo_update_ms_one_pass"] > 0
    assert r["lists_per_s_cached_bf16"] > 0 and 0.0 <= r["bf16_same_items"] <= 1.0


def test_study_report_from_seed_files_with_different_best_topk_and_a_merged_run(tmp_path):
    """The report step alone (``--resume`` over seed files): re-ranker rows are one role across
    seeds whose best Top-K model differs (this crashed the first ml-100k study), ``--merge`` adds
    another run's rows, and each PPO run's kept iteration is reported per seed."""
    import json

    from studies import gptrec as study

    def row(v: float, kind: str, **extra):
        return {**{m: v for m in study.METRICS}, "kind": kind, **extra}

    main_dir, extra_dir = tmp_path / "main", tmp_path / "extra"
    main_dir.mkdir()
    extra_dir.mkdir()
    for seed, best in ((0, "bert4rec"), (1, "sasrec")):
        rows = {"sasrec": row(0.1, "baseline"), "gptrec (MC teacher)": row(0.2, "gptrec"),
                "gptrec-ppo NDCG": row(0.2 + seed, "gptrec-ppo-ndcg", lam=0.0, best_step=50 * seed),
                f"{best}+mmr w=0.5": row(0.3 + seed, "mmr", weight=0.5)}
        curves = {"gptrec (MC teacher) (Next-K)": list(np.linspace(0.1, 0.2, 10))}
        (main_dir / f"seed{seed}.json").write_text(json.dumps({"rows": rows, "ndcg_at_k": curves, "best_topk": best,
                                                                "code_version": "aaaaaaa"}))
        extra = {"gptrec-ppo PCOUNT λ=30": row(0.05, "gptrec-ppo-pcount", lam=30.0, best_step=100)}
        (extra_dir / f"seed{seed}.json").write_text(json.dumps({"rows": extra, "ndcg_at_k": {}, "best_topk": None,
                                                                 **({"code_version": "bbbbbbb"} if seed else {})}))
    assert study.main(["--quick", "--seeds", "0", "1", "--resume", "--merge", str(extra_dir), "--out", str(main_dir)]) == 0
    summary = json.loads((main_dir / "results.json").read_text())["summary"]
    assert summary["best Top-K+mmr w=0.5"]["ndcg@10"][0] == pytest.approx(0.8)  # mean of 0.3 and 1.3
    assert summary["best Top-K+mmr w=0.5"]["ndcg@10"][1] == pytest.approx(np.std([0.3, 1.3], ddof=1))
    assert summary["gptrec-ppo PCOUNT λ=30"]["npcount@10"][0] == pytest.approx(0.05)
    table = (main_dir / "tables.md").read_text()
    assert "seed 0: bert4rec, seed 1: sasrec" in table
    assert f"| best Top-K+mmr w=0.5 | 0.8000 ± {np.std([0.3, 1.3], ddof=1):.4f} |" in table  # two seeds: a spread
    assert "| gptrec-ppo NDCG | 0 | 50 |" in table and "| gptrec-ppo PCOUNT λ=30 | 100 | 100 |" in table
    # each seed file's code version; the merged run's differ (one unrecorded), so the table warns
    assert "Mixed code versions" in table and "`aaaaaaa`: 2 run(s) (seed0.json, seed1.json)" in table
    assert "`bbbbbbb`: 1 run(s) (extra/seed1.json)" in table and "`unrecorded`: 1 run(s) (extra/seed0.json)" in table


def test_nextk_decoding_feeds_each_pick_back_into_the_window(split):
    """A stub base whose best item is 'last item + 1': Top-K gives one chain step then its prior;
    Next-K decoding walks the chain (each pick appended to the history, window = base.state_len)."""
    from recgym.agents.base import Agent
    from recgym.agents.rerank import NextKDecoder

    n = split.n_items

    class NextItem(Agent):
        name = "next-item-stub"
        widths: list[int] = []

        def fit(self, train, valid=None, **kw):
            return self

        def scores(self, states, lengths):
            self.widths.append(states.shape[1])
            last = states.gather(1, (lengths - 1).clamp(min=0)[:, None]).squeeze(1)
            out = -0.01 * torch.arange(n, dtype=torch.float32).expand(len(states), n).clone()
            out[torch.arange(len(states)), (last + 1) % n] += 10.0
            return out

    base = NextItem(n, state_len=3)
    dec = NextKDecoder(n, slate_size=5).fit(split.train, base=base)
    states = torch.tensor([[7, 2, n, n], [n - 2, n, n, n]])  # right-padded histories [7, 2] and [n-2]
    lengths = torch.tensor([2, 1])
    sc = dec.scores(states, lengths)
    lists = sc.topk(5, dim=1).indices
    assert lists[0].tolist() == [3, 4, 5, 6, 0]  # 7 is in the history: the prior's best unseen item, 0
    assert lists[1].tolist() == [n - 1, 0, 1, 2, 3]
    assert max(base.widths) <= 3  # the base only ever sees its own window
    assert base.scores(states[:, :3], lengths).topk(2, dim=1).indices[0].tolist() == [3, 0]  # Top-K: one step


def test_nextk_decoder_refuses_the_rerankers_knobs():
    """Next-K decoding has no trade-off weight and no candidate pool: setting one is an error, not a no-op."""
    from recgym.agents.registry import make_agent

    for knob in ({"weight": 0.3}, {"candidates": 20}):
        with pytest.raises(TypeError, match="unknown hyper-parameter"):
            make_agent("nextk-decode", 20, **knob)
    assert make_agent("mmr", 20, weight=0.3, candidates=20).config.weight == 0.3  # the re-rankers keep them


# ------------------------------------------------------------------------------ losses term by term
def test_masked_entropy_by_hand():
    p = torch.tensor([[0.5, 0.25, 0.25, 0.0], [1.0, 0.0, 0.0, 0.0]])
    logp = torch.log(p).requires_grad_(True)  # masked actions: -inf
    h = masked_entropy(logp)
    assert torch.allclose(h, torch.tensor([1.5 * math.log(2.0), 0.0]))
    h.sum().backward()
    assert torch.isfinite(logp.grad).all()


def _hand_gae(r: torch.Tensor, v: torch.Tensor, discount: float, lam: float) -> torch.Tensor:
    """Eqs. 9-10 written out: δ_i = r_i + γ V_{i+1} − V_i (V_K = 0), A_i = Σ_l (γλ)^l δ_{i+l}."""
    B, K = r.shape
    out = torch.zeros_like(r)
    for b in range(B):
        for i in range(K):
            for l in range(K - i):
                j = i + l
                v_next = v[b, j + 1] if j + 1 < K else 0.0
                out[b, i] += (discount * lam) ** l * (r[b, j] + discount * v_next - v[b, j])
    return out


def _ppo_agent(split, student, **kw):
    from recgym.agents.gptrec import GPTRecPPOAgent

    agent = GPTRecPPOAgent(N_ITEMS, **{**TINY, **kw})
    agent.model.load_state_dict(student.model.state_dict())
    agent.init_ppo(split.train)
    return agent


@pytest.mark.parametrize("ent_coef", [0.0, 0.05])
def test_ppo_loss_equals_eq13_term_by_term(split, student, ent_coef):
    """One rollout: rewards sum to the list metric, GAE (Eqs. 9-10) with γ and λ in their places,
    returns as value targets; after the policy moves, the agent's loss is L_CLIP (Eq. 12, against
    the rollout's old log-probabilities) + L_MSE (Eq. 8) − ent_coef · H, computed here term by term."""
    c = dict(lambda_ild=0.3, lambda_pop=4.0, discount=0.95, gae_lambda=0.7, clip=0.15, ent_coef=ent_coef)
    agent = _ppo_agent(split, student, **c)
    ro = agent.collect_rollout(split.train, 24)
    slates, targets = ro.slates.numpy(), ro.targets.numpy()
    # per-position rewards sum to NDCG@K + λ_ild ILD@K − λ_pop PCOUNT@K of the generated list
    ndcg = metrics.ndcg_at_k(metrics.slate_positions(slates, targets), 10)
    listed = ndcg + 0.3 * metrics.ild_at_k(slates, split.train.genres) - 4.0 * metrics.pcount_at_k(slates, split.train.popularity())
    np.testing.assert_allclose(ro.rewards.sum(1).numpy(), listed, atol=1e-5)
    # Θ_old's log-probabilities and V_Ψold of the generated lists
    with torch.no_grad():
        assert torch.allclose(ro.logp_old, agent.model.slate_log_probs(ro.history, ro.slates, ro.exclude), atol=1e-5)
        assert torch.allclose(ro.values, agent.value_model(ro.history, ro.slates), atol=1e-6)
    adv = _hand_gae(ro.rewards.double(), ro.values.double(), 0.95, 0.7)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    assert torch.allclose(ro.advantages.double(), adv, atol=1e-5)
    assert torch.allclose(ro.value_targets, discounted_returns(ro.rewards, 0.95))
    # move the policy away from Θ_old so the ratio differs from 1 and the clip binds somewhere
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        for p in agent.model.parameters():
            p.add_(0.3 * p.abs().mean() * torch.randn(p.shape, generator=g))
    loss, info = agent.ppo_loss(ro)
    with torch.no_grad():
        logp, logp_all = agent.model.slate_log_probs(ro.history, ro.slates, ro.exclude, return_logits=True)
        ratio = torch.exp(logp - ro.logp_old)
        a = ro.advantages
        l_clip = -torch.minimum(ratio * a, torch.clamp(ratio, 0.85, 1.15) * a).mean()
        l_mse = 0.5 * (agent.value_model(ro.history, ro.slates) - ro.value_targets).pow(2).mean()
        p = logp_all.exp()
        ent = -(torch.where(p > 0, p * logp_all, torch.zeros_like(p))).sum(-1).mean()
    assert 0 < info["clip_frac"] < 1 and info["clip_frac"] == pytest.approx(float(((ratio - 1).abs() > 0.15).float().mean()))
    loss = loss.detach()
    assert float(loss) == pytest.approx(float(l_clip + l_mse - ent_coef * ent), rel=1e-5, abs=1e-6)
    assert info["loss_pi"] == pytest.approx(float(l_clip), rel=1e-5) and info["loss_v"] == pytest.approx(float(l_mse), rel=1e-5)
    assert info["entropy"] == pytest.approx(float(ent), rel=1e-5)
    # the same through the pure functions
    ref = clipped_surrogate_loss(logp, ro.logp_old, ro.advantages, 0.15)[0] + value_loss(
        agent.value_model(ro.history, ro.slates), ro.value_targets) - ent_coef * masked_entropy(logp_all).mean()
    assert float(loss) == pytest.approx(float(ref.detach()), rel=1e-5, abs=1e-6)


def test_ppo_ratio_moves_and_the_clip_binds_after_the_first_epoch(split, student):
    """PPO reuses each rollout (Θ_old ≠ Θ from the second step on): with one minibatch per epoch the
    first epoch has ratio 1 everywhere, later epochs must not (a large lr makes the clip bind)."""
    agent = _ppo_agent(split, student, policy_lr=1e-2, update_epochs=3, n_minibatches=1)
    ro = agent.collect_rollout(split.train, 32)
    old = ro.logp_old.clone()
    epochs = agent.ppo_update(ro)
    assert len(epochs) == 3
    assert epochs[0]["clip_frac"] == 0 and epochs[0]["approx_kl"] < 1e-6
    for e in epochs[1:]:
        assert e["clip_frac"] > 0 and e["approx_kl"] > 1e-4, e
    assert torch.equal(ro.logp_old, old)  # Θ_old's log-probabilities are never overwritten
    # one epoch of one minibatch is a plain policy-gradient step: the ratio never leaves 1
    one = _ppo_agent(split, student, policy_lr=1e-2, update_epochs=1, n_minibatches=1)
    e1 = one.ppo_update(one.collect_rollout(split.train, 32))
    assert e1[0]["clip_frac"] == 0 and e1[0]["approx_kl"] < 1e-6


def test_student_loss_equals_eq6_term_by_term(split, student):
    """L_LM (Eq. 6) on a fixed batch: −mean over rows and positions of log π(ĝ_i | h, ĝ_<i), with the
    history's items and the earlier ĝ masked, from one full forward pass built here by hand."""
    batch = student.make_transitions(split.train).sample(6, np.random.default_rng(4))
    model = student.model.eval()
    h, g = batch["history"], batch["slate"]
    B, K = g.shape
    total, count = 0.0, 0
    with torch.no_grad():
        for b in range(B):
            hist = h[b][h[b] != N_ITEMS]
            for i in range(K):
                tokens, pos, valid = sequence_inputs(hist[None], g[b : b + 1, :i], N_ITEMS, student.config.state_len)
                logits = model.logits(model(tokens, pos, valid)[0, -1]).double()
                banned = set(hist.tolist()) | set(g[b, :i].tolist())
                logits[list(banned)] = -torch.inf
                total += -float(torch.log_softmax(logits, 0)[g[b, i]])
                count += 1
        loss, _ = student.loss(batch)
    assert float(loss) == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("patience, stopped_at, best_step, reason", [(2, 48, 16, "patience"), (3, 96, 64, "cap"),
                                                                     (None, 96, 64, "cap")])
def test_ppo_patience_stops_after_validations_without_a_strict_improvement(split, student, patience, stopped_at,
                                                                           best_step, reason):
    import torch

    from recgym.agents.gptrec import GPTRecPPOAgent

    # 16 optimisation steps per iteration, a validation after each: scripted rewards at steps 0, 16, ..., 96;
    # a tie (step 32) is not an improvement
    rewards = iter([0.5, 0.6, 0.6, 0.55, 0.7, 0.1, 0.1])
    agent = GPTRecPPOAgent(N_ITEMS, **TINY, ppo_steps=96, ppo_eval_every=16, val_users=16, ppo_patience=patience)
    agent.model.load_state_dict(student.model.state_dict())
    seen: dict[int, dict] = {}

    def scripted(log):
        step = 16 * len(seen)
        seen[step] = {k: v.clone() for k, v in agent.model.state_dict().items()}
        r = next(rewards)
        return {"val_reward": r, "val_ndcg@10": r}

    agent.validation_reward = scripted
    out = agent.train_ppo(split.train, split.valid)
    assert (out["stopped_at"], out["best_step"], out["stop_reason"]) == (stopped_at, best_step, reason)
    assert agent.ppo_cap == 96 and [p["step"] for p in agent.ppo_curves][-1] == stopped_at
    for k, v in agent.model.state_dict().items():  # the agent holds the policy of the best validation
        assert torch.equal(v, seen[best_step][k]), k
    assert not all(torch.equal(v, seen[stopped_at][k]) for k, v in agent.model.state_dict().items())


def test_ppo_patience_must_be_a_positive_integer(split, student):
    from recgym.agents.gptrec import GPTRecPPOAgent

    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="ppo_patience"):
            GPTRecPPOAgent(N_ITEMS, **TINY, ppo_steps=16, ppo_patience=bad).train_ppo(split.train, split.valid)


def test_study_paired_tables_by_hand():
    """The report's tests on a hand-made 3-seed study: the baselines and PPO against the student, and a
    PPO run against re-ranking at its own ILD@10 / nPCOUNT@10. Two-sided t-test p in closed form:
    df = 1: 1 − (2/π)·atan|t|; df = 2: 1 − |t|/√(t² + 2)."""
    from studies import gptrec as study

    def row(kind: str, ndcg: float, ild: float = 0.5, npc: float = 0.5, **extra):
        return {"recall@1": 0.0, "recall@10": 0.0, "ndcg@10": ndcg, "ild@10": ild, "npcount@10": npc,
                "kind": kind, **extra}

    def p_ttest(d):
        t = abs(np.mean(d) / (np.std(d, ddof=1) / np.sqrt(len(d))))
        return {2: 1 - 2 / np.pi * np.arctan(t), 3: 1 - t / np.sqrt(t * t + 2)}[len(d)]

    per_seed = []
    for s, (dsas, dild, dpop) in enumerate(((0.01, 0.004, -0.01), (0.02, 0.006, -0.02), (0.03, 0.008, 0.0))):
        rows = {"sasrec": row("baseline", 0.10 + s / 100 + dsas), "gptrec (MC teacher)": row("gptrec", 0.10 + s / 100),
                # MMR sweep: ILD 0.6 → NDCG 0.12, 0.8 → 0.08, so NDCG 0.10 at ILD 0.7; its nPCOUNT is a decoy
                "sasrec+mmr w=0": row("mmr", 0.12, ild=0.6, npc=0.75, weight=0.0),
                "sasrec+mmr w=0.5": row("mmr", 0.08, ild=0.8, npc=0.65, weight=0.5),
                # popularity sweep: nPCOUNT 0.4 → NDCG 0.11, 0.2 → 0.05, so 0.08 at 0.3; seed 2 lies outside
                "sasrec+pop-rerank w=0": row("pop-rerank", 0.11, ild=0.7, npc=0.4, weight=0.0),
                "sasrec+pop-rerank w=0.9": row("pop-rerank", 0.05, ild=0.7, npc=0.2, weight=0.9),
                "gptrec-ppo ILD λ=0.5": row("gptrec-ppo-ild", 0.10 + dild, ild=0.7, npc=0.35, lam=0.5, best_step=8),
                "gptrec-ppo PCOUNT λ=30": row("gptrec-ppo-pcount", 0.08 + dpop, ild=0.65, npc=0.3 if s < 2 else 0.1,
                                              lam=30.0, best_step=8)}
        per_seed.append({"rows": rows, "best_topk": "sasrec"})
    assert study.ndcg_at_equal(per_seed[0]["rows"], "mmr", "ild@10", 0.7) == pytest.approx(0.10)
    assert study.ndcg_at_equal(per_seed[0]["rows"], "pop-rerank", "npcount@10", 0.25) == pytest.approx(0.065)
    assert study.ndcg_at_equal(per_seed[0]["rows"], "pop-rerank", "npcount@10", 0.1) is None
    text = "\n".join(study._ppo_tests(per_seed, [0, 1, 2]))
    # sasrec − student: 0.01, 0.02, 0.03 (the only baseline here: Holm = p)
    p = p_ttest([0.01, 0.02, 0.03])
    assert f"| sasrec | +0.0000 (0/3; p -, Holm -) | +0.0000 (0/3; p -, Holm -) | +0.0200 (3/3; p {p:.3g}, Holm {p:.3g})" in text
    # PPO ILD − MMR at ILD 0.7: 0.004, 0.006, 0.008; PPO PCOUNT − pop-rerank at nPCOUNT 0.3: −0.01, −0.02 (seed 2 outside)
    p_ild, p_pop = p_ttest([0.004, 0.006, 0.008]), p_ttest([-0.01, -0.02])
    holm_ild, holm_pop = min(1, 2 * min(p_ild, p_pop)), max(min(1, 2 * min(p_ild, p_pop)), max(p_ild, p_pop))
    assert p_ild < p_pop
    # dominated: the PPO ILD point lies above the MMR line (never dominated); the PCOUNT point of seeds 0
    # and 1 lies below the popularity line and w=0 (nPCOUNT 0.4, NDCG 0.11) is worse on nPCOUNT, w=0.9 on
    # NDCG (0.05 < 0.07, 0.06): not dominated; seed 2 (nPCOUNT 0.1, NDCG 0.08) is beyond w=0.9, not dominated
    assert f"| gptrec-ppo ILD λ=0.5 | mmr at equal ild@10 | +0.0060 | 3/3 | 0 | {p_ild:.3g} | {holm_ild:.3g} | 0/3 |" in text
    assert f"| gptrec-ppo PCOUNT λ=30 | pop-rerank at equal npcount@10 | -0.0150 | 0/2 | 1 | {p_pop:.3g} | {holm_pop:.3g} | 0/3 |" in text
    # a PPO point more popular and less accurate than re-ranking at w=0 is dominated, in direction of the goal
    for r in per_seed:
        r["rows"]["gptrec-ppo PCOUNT λ=2"] = row("gptrec-ppo-pcount", 0.105, npc=0.45, lam=2.0, best_step=0)
        r["rows"]["gptrec-ppo ILD λ=0.1"] = row("gptrec-ppo-ild", 0.115, ild=0.59, npc=0.2, lam=0.1, best_step=0)
    text = "\n".join(study._ppo_tests(per_seed, [0, 1, 2]))
    assert "| gptrec-ppo PCOUNT λ=2 | pop-rerank at equal npcount@10 | – | 0/0 | 3 | - | - | 3/3 |" in text
    assert "| gptrec-ppo ILD λ=0.1 | mmr at equal ild@10 | – | 0/0 | 3 | - | - | 3/3 |" in text


def test_study_decoding_table_by_hand():
    """Top-K vs Next-K decoding of the same model: means over seeds at K = 1, 5, 10 and the change at 10,
    of the means and per seed (only models with both curves in every seed)."""
    from studies import gptrec as study

    def curve(at1, at5, at10):
        c = list(np.linspace(at1, at10, 10))
        c[4] = at5
        return c

    per_seed = [{"ndcg_at_k": {"sasrec (Top-K)": curve(0.03, 0.07, 0.10), "sasrec (Next-K)": curve(0.03, 0.06, 0.08),
                               "pop (Top-K)": curve(0.01, 0.02, 0.04)}},
                {"ndcg_at_k": {"sasrec (Top-K)": curve(0.05, 0.09, 0.20), "sasrec (Next-K)": curve(0.04, 0.08, 0.17),
                               "pop (Top-K)": curve(0.01, 0.02, 0.04)}}]
    text = "\n".join(study._decoding_table(per_seed))
    # @10: Top-K 0.15, Next-K 0.125 → −16.7%; per seed 0.08/0.10 − 1 = −20.0%, 0.17/0.20 − 1 = −15.0%
    assert "| sasrec | 0.0400 / 0.0350 | 0.0800 / 0.0700 | 0.1500 / 0.1250 | -16.7% | -20.0% / -15.0% |" in text
    assert "| pop |" not in text
