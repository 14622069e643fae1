"""``--paper``: each study's jobs on the papers' datasets build the papers' settings (the values are
the papers', not today's presets), and the modes that would change them are refused."""

from __future__ import annotations

import pytest

from recgym.errors import EXIT_BAD_INPUT
from recgym.experiments.job import build_agent


def config(spec, protocol):
    return build_agent(spec, 64, protocol, warn=lambda m: None).config


# ------------------------------------------------------------------ PRL (Xin et al., SIGIR'22 §4.1.4)
@pytest.mark.parametrize("dataset, lr", [("rc15", 0.01), ("retailrocket", 0.005)])
def test_prl_paper_jobs_have_the_papers_settings(tmp_path, dataset, lr):
    from studies import prl

    P = {**prl.FULL, "agent": {}, "paper": True}
    jobs = prl.jobs_of(dataset, 0, P, tmp_path, None, 1)
    assert {m for _, m in jobs} == {"CE", "SQN", "SAC", "PRL", *prl.ABLATIONS}
    for (enc, method), spec in jobs.items():
        c = config(spec, "session")
        assert (c.encoder, c.hidden, c.batch_size, c.state_len, c.epochs, c.steps, c.eval_every) == (enc, 64, 256, 10, 30, None, None)
        if method in ("CE", "PRL") or method.startswith("PRL"):
            assert c.lr == lr  # "0.01 for RC15 and 0.005 for RetailRocket", the same for every training approach
        if method == "PRL":
            assert (c.prompt_dropout, c.discount, c.mu, c.eps) == (0.3, 1.0, 2.0, 0.0)
        if method == "SQN":
            assert (c.lr, c.discount) == (0.01, 0.5)  # SQN/SAC "exactly as their original paper"
        if method == "SAC":
            release = dataset == "retailrocket" and enc == "gru"
            assert (c.switch_step, c.lr) == ((15_000, 0.005) if release else (30_000, 0.01))


def test_prl_paper_refuses_a_cpu_budget_or_early_stopping(tmp_path):
    from studies import prl

    for extra in (["--steps", "100"], ["--patience", "5"], ["--quick"]):
        assert prl.main(["--paper", "--datasets", "rc15", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"),
                         *extra]) == EXIT_BAD_INPUT
        assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ LPI (Liang & Vlassis §4.1, §4.2)
def test_lpi_paper_parts_and_settings(tmp_path):
    from studies import lpi

    assert lpi.paper_parts("netflix") == ("bandit",)
    assert lpi.paper_parts("retailrocket") == lpi.paper_parts("yoochoose") == ("mdp",)
    ctx = {"data_dir": None, "threads": 1, "paper": True}
    bandit = lpi.bandit_jobs("netflix", 0, {**lpi.FULL, "agent": {}}, tmp_path, ctx)
    for name, spec in bandit.items():
        c = config(spec, "loo")
        # last 200 ratings, 2 layers, 8 heads, 200 dims, batch 128, 30 epochs
        assert (c.state_len, c.hidden, c.n_blocks, c.n_heads, c.batch_size, c.epochs) == (200, 200, 2, 8, 128, 30), name
        if spec.agent != "sasrec":  # μ̂ inside the policies trains as the μ̂ job does
            assert (c.last_m, c.mu_epochs) == (50, 30)
    assert sorted(spec.overrides.get("beta") for spec in bandit.values() if spec.agent == "lpi-cb") == [0.001, 0.1, 1.0, 1000.0]
    mdp, sweep = lpi.mdp_jobs("retailrocket", 0, {**lpi.FULL, "agent": dict(lpi.PAPER_MDP)}, tmp_path, ctx)
    for name, spec in mdp.items():  # the last 20 actions; Adam, batch 256, 20 epochs; 1 layer, 1 head, 64 dims
        c = config(spec, "session")
        assert (spec.last_n_events, c.batch_size, c.epochs, c.lr, c.hidden, c.n_blocks, c.n_heads) == (20, 256, 20, 0.01, 64, 1, 1), name
    assert config(mdp["SAC"], "session").switch_step == 30_000
    assert all((config(spec, "session").epochs, config(spec, "session").lr) == (20, 0.01) for _, _, spec in sweep)


# ------------------------------------------------------------------ GPTRec-PPO (Petrov & Macdonald, Table 3)
def test_gptrec_paper_lambdas_are_table_3_on_our_scales():
    from studies import gptrec

    # our ILD reward sums to the full mean pairwise distance (the paper's to half): λ_ours = λ_paper / 2;
    # our PCOUNT is the mean popularity share (the paper's sums over K = 10 positions): λ_ours = 10 λ_paper
    assert gptrec.PAPER["ml-1m"] == dict(lambdas_ild=(0.2 / 2, 1.0 / 2), lambdas_pop=(3.0 * 10, 6.0 * 10), rerank_base="bert4rec")
    assert gptrec.PAPER["steam"] == dict(lambdas_ild=(1.0 / 2, 3.0 / 2), lambdas_pop=(3.0 * 10, 6.0 * 10), rerank_base="bert4rec")


@pytest.mark.parametrize("dataset, teacher", [("ml-1m", "mc"), ("steam", "bert4rec")])
def test_gptrec_paper_models_are_the_papers(dataset, teacher):
    """§4.3: 3 Transformer blocks, sequences of the last 200 interactions, 256-dim embeddings (both
    datasets); §4.6: the MC teacher on ML-1M, BERT4Rec on Steam; App. A.3: PPO lr 1e-5 / 1e-4, batch 128, 64,000 steps."""
    from recgym.agents.registry import resolved_config

    for name in ("gptrec", "gptrec-ppo"):
        c = resolved_config(name, 100, dataset=dataset)["config"]
        assert (c["n_blocks"], c["state_len"], c["hidden"], c["teacher"]) == (3, 200, 256, teacher), name
    c = resolved_config("gptrec-ppo", 100, dataset=dataset)["config"]
    assert (c["policy_lr"], c["value_lr"], c["batch_size"], c["ppo_steps"]) == (1e-5, 1e-4, 128, 64_000)


@pytest.mark.parametrize("argv", [["--dataset", "ml-100k"], ["--dataset", "ml-1m", "--patience", "5"],
                                  ["--dataset", "ml-1m", "--quick"]])
def test_gptrec_paper_refuses_other_datasets_and_modes(tmp_path, argv):
    from studies import gptrec

    assert gptrec.main(["--paper", "--out", str(tmp_path / "out"), *argv]) == EXIT_BAD_INPUT
    assert not (tmp_path / "out").exists()


def test_gptrec_student_learns_from_the_seeds_trained_bert4rec_when_its_preset_says_so(monkeypatch):
    """Steam's preset (teacher ``bert4rec``): the student is taught by this seed's BERT4Rec baseline
    and its row is named after it, the base of the paired tests."""
    import argparse

    from studies import gptrec

    cfg = {**gptrec.QUICK, "student": {**gptrec.QUICK["student"], "teacher": "bert4rec", "steps": 20, "eval_every": 10},
           "agents": {**gptrec.QUICK["agents"], "sasrec": dict(state_len=20, hidden=32, steps=20, eval_every=10),
                      "bert4rec": dict(gptrec.TINY, steps=20, eval_every=10)},
           "parts": ("baselines", "student")}
    from recgym.agents.gptrec import GPTRecAgent

    seen, original = {}, GPTRecAgent.fit

    def spy(self, train, valid=None, teacher=None, **kw):
        seen["teacher"] = teacher
        return original(self, train, valid, teacher=teacher, **kw)

    monkeypatch.setattr(GPTRecAgent, "fit", spy)
    res = gptrec.run_seed(argparse.Namespace(quick=True), cfg, 0, lambda m: None)
    assert type(seen["teacher"]).__name__ == "BERT4RecAgent" and seen["teacher"].curves  # the seed's trained baseline
    assert "gptrec (BERT4Rec teacher)" in res["rows"] and "gptrec (MC teacher)" not in res["rows"]
    assert gptrec.student_row(res["rows"]) == "gptrec (BERT4Rec teacher)"


def test_gptrec_study_runs_every_trained_model_on_the_device_asked(monkeypatch):
    """``--device cuda`` under the fake CUDA device (a GPU's host/device errors, on the CPU): the whole
    seed runs, and each trained model's parameters are on the device."""
    import argparse

    import torch
    from fake_cuda import FakeCuda, on_fake_cuda

    from recgym.agents.gptrec import GPTRecPPOAgent
    from studies import gptrec

    cfg = gptrec.on_device({**gptrec.QUICK, "parts": ("baselines", "student", "ppo-ndcg", "rerank")}, "cuda")
    cfg["agents"] = {**cfg["agents"], "sasrec": {**cfg["agents"]["sasrec"], "steps": 20, "eval_every": 10},
                     "bert4rec": {**cfg["agents"]["bert4rec"], "steps": 20, "eval_every": 10}}
    cfg["student"] = {**cfg["student"], "steps": 20, "eval_every": 10}
    cfg["ppo"] = {**cfg["ppo"], "ppo_steps": 8, "ppo_eval_every": 4, "val_users": 32}
    placed = []
    original = GPTRecPPOAgent.fit

    def spy(self, *a, **kw):
        out = original(self, *a, **kw)
        placed.append(all(on_fake_cuda(p) for p in self.model.parameters()))
        return out

    monkeypatch.setattr(GPTRecPPOAgent, "fit", spy)
    with FakeCuda():
        res = gptrec.run_seed(argparse.Namespace(quick=True), cfg, 0, lambda m: None)
    assert placed == [True]
    assert {"sasrec", "bert4rec", "gptrec (MC teacher)", "gptrec-ppo NDCG"} <= set(res["rows"])
    assert all(torch.isfinite(torch.tensor(r["ndcg@10"])) for r in res["rows"].values())
