"""studies/qlearning.py: the --quick study end to end, resumption, the report, the ml-100k session split."""

from __future__ import annotations

import json
import os

from pathlib import Path

import numpy as np
import pytest
import torch



@pytest.fixture(scope="module")
def study():
    """The study module (in-process: no interpreter start-up); torch threads restored."""
    from studies import qlearning

    n = torch.get_num_threads()
    yield qlearning
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def quick(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("ql_quick")
    assert study.main(["--quick", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_quick_study_writes_every_run_and_the_report(study, quick):
    agents = study.AGENTS
    assert agents == ("sasrec", "sqn", "sac", "snqn", "sa2c", "co", "ccql")
    for agent in agents:
        for seed in (0, 1):
            res = json.loads((quick / "runs" / "synthetic" / agent / f"seed{seed}" / "results.json").read_text())
            assert res["agent"] == agent and res["seed"] == seed and res["protocol"] == "session"
            t = res["test"]
            for m in study.TABLE[:-1]:
                assert 0.0 <= t[m] <= 1.0, (agent, m, t[m])
            assert t["hr@20_purchase"] >= t["ndcg@20_purchase"]  # NDCG weight <= 1 per hit
            assert t["reward@20"] >= 0
            # one shared length; the switch at half of it for the switched agents only
            assert res["config"]["steps"] == study.QUICK_STEPS
            assert res["config"].get("switch_step") == (study.QUICK_STEPS // 2 if agent in study.SWITCHED else None)
            steps = [c["step"] for c in res["curves"]]
            assert steps == sorted(steps) and steps[-1] == study.QUICK_STEPS and len(steps) == 8
            has_q = all("q_logged" in c and "q_random" in c for c in res["curves"])
            assert has_q == (agent != "sasrec")
            assert (t["neg_q_frac"] is None) == (agent == "sasrec")
        # same seed -> same split for every agent: the paired comparison to sasrec is meaningful
    checks = {json.loads((quick / "runs" / "synthetic" / a / "seed0" / "results.json").read_text())["data_checksum"]
              for a in agents}
    assert len(checks) == 1
    doc = (quick / "qlearning.md").read_text()
    assert "QUICK SMOKE RUN" in doc and "![synthetic](qlearning_synthetic.png)" in doc
    assert (quick / "qlearning_synthetic.png").stat().st_size > 10_000
    for agent in agents:
        assert f"| {agent} | 2 |" in doc  # one table row per agent, over both seeds
    agg = json.loads((quick / "qlearning.json").read_text())["aggregate"]
    sq = [json.loads((quick / "runs" / "synthetic" / "sqn" / f"seed{s}" / "results.json").read_text())["test"]
          for s in (0, 1)]
    cell = agg["synthetic/sqn"]["ndcg@20_purchase"]
    assert cell["mean"] == pytest.approx(np.mean([r["ndcg@20_purchase"] for r in sq]))
    assert cell["std"] == pytest.approx(np.std([r["ndcg@20_purchase"] for r in sq], ddof=1))
    base = [json.loads((quick / "runs" / "synthetic" / "sasrec" / f"seed{s}" / "results.json").read_text())["test"]
            for s in (0, 1)]
    d = [a["ndcg@20_purchase"] - b["ndcg@20_purchase"] for a, b in zip(sq, base)]
    assert agg["synthetic/sqn"]["vs_base"]["diff_vs_baseline"] == pytest.approx(np.mean(d))
    assert "p (Holm)" in doc
    version = json.loads((quick / "runs" / "synthetic" / "sqn" / "seed0" / "results.json").read_text())["code_version"]
    assert f"Code version of every run: `{version}` ({2 * len(agents)} runs)." in doc


@pytest.mark.slow
def test_rerun_reuses_finished_runs_and_keeps_the_analysis(study, quick, capsys):
    doc = quick / "qlearning.md"
    text = doc.read_text().replace("_(no analysis written yet)_", "HAND-WRITTEN ANALYSIS")
    doc.write_text(text)
    before = (quick / "runs" / "synthetic" / "ccql" / "seed1" / "results.json").stat().st_mtime_ns
    capsys.readouterr()
    assert study.main(["--quick", "--out", str(quick)]) == 0
    assert "14 jobs: 14 finished before, 0 to run" in capsys.readouterr().out
    assert (quick / "runs" / "synthetic" / "ccql" / "seed1" / "results.json").stat().st_mtime_ns == before
    assert "HAND-WRITTEN ANALYSIS" in doc.read_text()


@pytest.mark.slow
def test_a_run_with_other_settings_is_not_reused(study, quick):
    from recgym.errors import BadInputError
    from recgym.experiments import run_job

    same = study.job("synthetic", "sqn", 0, study.QUICK_STEPS, True, quick / "runs")
    assert run_job(same, log=lambda m: None)["config"]["steps"] == study.QUICK_STEPS  # reused
    other = study.job("synthetic", "sqn", 0, study.QUICK_STEPS // 2, True, quick / "runs")
    with pytest.raises(BadInputError, match="holds a job with another spec"):
        run_job(other, log=lambda m: None)
    # the study refuses the folder (exit 5, the job named) and never reports the other run's numbers
    assert study.main(["--quick", "--steps", str(study.QUICK_STEPS // 2), "--agents", "sqn", "--seeds", "1",
                       "--out", str(quick / "other"), "--runs", str(quick / "runs")]) == 5
    assert not (quick / "other" / "qlearning.md").exists()


def test_bad_arguments_exit_2_and_write_nothing(study, tmp_path, capsys):
    assert study.main(["--datasets", "nope", "--out", str(tmp_path / "a")]) == 2
    assert "unknown ['nope']" in capsys.readouterr().err
    assert study.main(["--agents", "sqn,dqn", "--out", str(tmp_path / "b")]) == 2
    assert study.main(["--seeds", "0", "--out", str(tmp_path / "c")]) == 2
    assert not any(tmp_path.iterdir())


def test_overrides_share_length_and_switch(study):
    o = study.overrides("sa2c", 400, False)
    assert o == {"steps": 400, "eval_every": 50, "switch_step": 200}
    assert study.overrides("snqn", 400, False) == {"steps": 400, "eval_every": 50}
    j = study.job("ml-100k", "sqn", 3, 400, False, Path("runs"))
    assert j.protocol == "session" and j.reward_scheme == "click-purchase" and j.seed == 3


@pytest.mark.realdata
@pytest.mark.skipif(not os.environ.get("RECGYM_DATA_DIR"), reason="needs RECGYM_DATA_DIR (real ml-100k)")
def test_ml100k_session_split_every_rating_is_a_target(study):
    from recgym.data import KIND_PURCHASE, load

    log = load("ml-100k", reward_scheme="click-purchase")
    from recgym.experiments.job import load_job_split

    sp = load_job_split(study.job("ml-100k", "sqn", 0, 400, False, Path("runs")))
    assert sp.protocol == "session"
    # users are cut 80/10/10 with their whole histories: every rating lands in exactly one part
    assert sum(p.n_events for p in sp) == log.n_events == 100_000
    assert [p.n_sessions for p in sp] == [754, 94, 95]  # round(0.8·943), round(0.1·943), the rest
    users = [set(p.users.tolist()) for p in sp]
    assert not (users[0] & users[1]) and not (users[0] & users[2]) and not (users[1] & users[2])
    assert sp.test.n_events > 943 * 5  # far more targets than leave-one-out's 943
    # click-purchase: purchases carry reward 1.0, clicks 0.2
    purchase = sp.test.kinds == KIND_PURCHASE
    assert np.all(sp.test.rewards[purchase] == 1.0) and np.all(sp.test.rewards[~purchase] == np.float32(0.2))


def test_convergence_mode_overrides(study):
    c = study.CONVERGE["ml-100k"]
    assert study.overrides("sqn", c["cap"], False, 5, "ml-100k") == {"steps": c["cap"], "eval_every": c["eval_every"],
                                                                     "patience": 5}
    o = study.overrides("sac", c["cap"], False, 5, "ml-100k")  # the switch does not move with the cap
    assert o["switch_step"] == o["patience_after"] == c["switch"] == study.overrides("sac", 2 * c["cap"], False, 5, "ml-100k")["switch_step"]
    for ds, c in study.CONVERGE.items():
        assert c["cap"] % c["eval_every"] == 0 and c["switch"] % c["eval_every"] == 0 and c["cap"] >= 50 * 125
    assert study.job("synthetic", "sqn", 0, 6250, False, Path("runs"), patience=5).overrides["patience"] == 5
