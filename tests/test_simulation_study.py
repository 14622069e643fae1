"""studies/simulation.py: the fidelity criteria by hand and the --quick study end to end (resumable)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def study():
    from studies import simulation

    n = torch.get_num_threads()
    yield simulation
    torch.set_num_threads(n)


def test_fidelity_by_hand(study):
    truth = np.array([0.3, 0.2, 0.1, 0.25])
    # a criterion that ranks the agents exactly backwards: ρ = τ = −1, picks agent 2, regret 0.3 − 0.1
    f = study.fidelity(np.array([1.0, 2.0, 3.0, 1.5]), truth)
    assert f["spearman"] == pytest.approx(-1.0) and f["kendall"] == pytest.approx(-1.0)
    assert f["best"] == 0.0 and f["regret"] == pytest.approx(0.2)
    # agents 1 and 3 swapped: Spearman 1 − 6·2/(4·15) = 0.8, Kendall (5 − 1)/6; best picked, no regret
    f = study.fidelity(np.array([9.0, 5.0, 3.0, 4.0]), truth)
    assert f["spearman"] == pytest.approx(0.8) and f["kendall"] == pytest.approx(4 / 6)
    assert f["best"] == 1.0 and f["regret"] == 0.0
    assert np.isnan(study.fidelity(np.ones(4), truth)["spearman"])  # a constant criterion ranks nothing


def test_world_knobs_span_the_ranges(study):
    ks = [study.world_knobs(w, study.FULL) for w in range(10)]
    assert ks[3] == study.world_knobs(3, study.FULL)  # seeded
    for k, r in study.KNOBS.items():
        vals = [x[k] for x in ks]
        if len(r) == 3:
            assert set(vals) <= set(r) and len(set(vals)) > 1
        else:
            assert min(vals) >= r[0] and max(vals) <= r[1] and np.ptp(vals) > 0.4 * (r[1] - r[0])


def test_world_ids_and_groups(study):
    assert study.parse_worlds("0-9") == list(range(10))
    assert study.parse_worlds("10-12,0,5") == [0, 5, 10, 11, 12]
    for bad in ("9-0", "x", "1-", ""):
        with pytest.raises(ValueError, match="world-ids"):
            study.parse_worlds(bad)
    assert [study.group_of(w) for w in (0, 4, 5, 9, 10, 19, 20)] == [
        "development", "development", "held-out", "held-out", "confirmation", "confirmation", None]
    assert study.criterion("iar@1 logged", "steck") == "iar@1 [steck, logged]" == study.CANDIDATE
    assert study.criterion("dm", "pop-miss") == "dm [pop-miss]"


def test_confirmation_rule_by_hand(study):
    def rows(*rhos):
        return {w: {"spearman": r} for w, r in zip((10, 11, 12), rhos)}

    c, old, ndcg = study.CANDIDATE, *study.RIVALS
    # world 12: ndcg ranks nothing (NaN), so it leaves every mean; over 10, 11: 0.6 vs 0.5 vs 0.55
    pw = {c: rows(0.8, 0.4, 1.0), old: rows(0.4, 0.6, -1.0), ndcg: rows(0.5, 0.6, float("nan"))}
    r = study.confirmation(pw, [10, 11, 12], c, study.RIVALS)
    assert r["worlds"] == [10, 11] and r["holds"]
    assert r["means"] == pytest.approx({c: 0.6, old: 0.5, ndcg: 0.55})
    t = r["tests"][f"{c} vs {old}"]
    assert (t["wins"], t["losses"], t["n"]) == (1, 1, 2) and t["mean_diff"] == pytest.approx(0.1)
    pw[ndcg] = rows(0.9, 0.4, float("nan"))  # now NDCG's mean (0.65) beats the candidate's (0.6)
    assert not study.confirmation(pw, [10, 11, 12], c, study.RIVALS)["holds"]


@pytest.mark.slow
def test_quick_study_end_to_end_and_resumes(study, tmp_path, capsys):
    assert study.main(["--quick", "--out", str(tmp_path), "--imputers", "steck,pop-miss"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    table = res["table"]["all"]
    for k in ("ndcg@10_purchase", "ips", "snips", "iar@1 [steck]", "return@5 [steck]", "dm [steck]", "dr [pop-miss]",
              "iar@1 [steck, logged]", "return@5 [pop-miss, logged]"):
        assert table[k]["spearman"]["n"] >= 1, k
    assert res["groups"] == {"all": [0, 5, 10], "development": [0], "held-out": [5], "confirmation": [10]}
    assert set(res["confirmation"]) == {"confirmation", "all"} and res["simulator"] in table
    ev = json.loads((tmp_path / "eval" / "world0.json").read_text())
    assert set(ev["agents"]) == set(study.AGENTS)  # the zoo, no oracle or random
    assert not res["failed_jobs"]
    assert (tmp_path / "fidelity.png").stat().st_size > 0 and "held-out" in (tmp_path / "tables.md").read_text()
    # the study's simulator criterion is what the harness's env reports for the same trained agent
    from recgym.envs.mf_user import MFUserEnv
    from recgym.evaluate import evaluate_in_env
    from recgym.experiments.job import load_trained_agent

    job = next(j for j in study.jobs_of_world(0, study.QUICK, tmp_path) if j.agent == "mc")
    env = MFUserEnv(**MFUserEnv.job_kwargs(dataset="synthetic", seed=job.seed, data_params=job.data_params,
                                           data_dir=None, download=False), ratings_per_user=ev["knobs"]["ratings_per_user"])
    got = evaluate_in_env(load_trained_agent(job.job_dir(), "mc"), env)["iar@1"]
    assert res["simulator"] == "iar@1 [steck, logged]"
    assert got == pytest.approx(ev["imputers"]["steck"]["agents"]["mc"]["iar@1 logged"], rel=1e-9)
    capsys.readouterr()
    # a rerun trains nothing and recomputes nothing already cached; a new imputer is only added
    assert study.main(["--quick", "--out", str(tmp_path), "--imputers", "steck,ips-obs"]) == 0
    assert "0 to run" in capsys.readouterr().out
    ev2 = json.loads((tmp_path / "eval" / "world0.json").read_text())
    assert ev2["imputers"]["steck"] == ev["imputers"]["steck"] and "ips-obs" in ev2["imputers"]


def test_convergence_mode_overrides(study):
    P = study.converged(study.FULL, 5)
    assert P["steps"] == study.CONVERGE["cap"] and study.FULL["steps"] == 400  # FULL itself untouched
    sasrec = study.agent_overrides("sasrec", P)
    assert sasrec["patience"] == 5 and sasrec["eval_every"] == study.CONVERGE["eval_every"]
    assert "switch_step" not in sasrec and "patience_after" not in sasrec
    ccql = study.agent_overrides("ccql", P)
    assert ccql["switch_step"] == ccql["patience_after"] == study.CONVERGE["switch"]
    # the fixed-step mode has no patience and leaves the switch to the preset
    assert "patience" not in study.agent_overrides("ccql", study.FULL)
    assert study.world_knobs(0, study.converged(study.QUICK, 2))["n_items"] == 60  # still the quick world


@pytest.mark.slow
def test_quick_study_converged_reports_convergence(study, tmp_path):
    assert study.main(["--quick", "--patience", "2", "--world-ids", "0", "--out", str(tmp_path),
                       "--imputers", "steck"]) == 0
    md = (tmp_path / "tables.md").read_text()
    assert "trained to convergence: patience 2" in md and "Code version of every run" in md
    assert "| sasrec |" in md and "std over worlds" in md  # the convergence table, one row per agent
    job = next(j for j in study.jobs_of_world(0, study.converged(study.QUICK, 2), tmp_path) if j.agent == "ccql")
    res = json.loads((job.job_dir() / "results.json").read_text())
    assert res["patience"] == 2 and res["config"]["patience_after"] == study.QUICK_CONVERGE["switch"]
    assert res["stop_reason"] in ("patience", "cap")
