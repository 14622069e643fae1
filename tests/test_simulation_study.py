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


@pytest.mark.slow
def test_quick_study_end_to_end_and_resumes(study, tmp_path, capsys):
    assert study.main(["--quick", "--out", str(tmp_path), "--imputers", "steck,pop-miss"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    table = res["table"]["all"]
    for k in ("ndcg@10_purchase", "ips", "snips", "iar@1 [steck]", "return@5 [steck]", "dm [steck]", "dr [pop-miss]"):
        assert table[k]["spearman"]["n"] >= 1, k
    ev = json.loads((tmp_path / "eval" / "world0.json").read_text())
    assert set(ev["agents"]) == set(study.AGENTS)  # the zoo, no oracle or random
    assert not res["failed_jobs"]
    assert (tmp_path / "fidelity.png").stat().st_size > 0 and "held-out" in (tmp_path / "tables.md").read_text()
    capsys.readouterr()
    # a rerun trains nothing and recomputes nothing already cached; a new imputer is only added
    assert study.main(["--quick", "--out", str(tmp_path), "--imputers", "steck,ips-obs"]) == 0
    assert "0 to run" in capsys.readouterr().out
    ev2 = json.loads((tmp_path / "eval" / "world0.json").read_text())
    assert ev2["imputers"]["steck"] == ev["imputers"]["steck"] and "ips-obs" in ev2["imputers"]
