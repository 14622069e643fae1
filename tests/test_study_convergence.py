"""The studies' convergence mode (``--patience``): every iterative job early-stops under the
study's cap and validation cadence, the SAC switch does not move with the cap, and the runs go
to their own folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from recgym.errors import BadInputError
from studies.common import converge_agent, study_parser, study_setup


def test_converge_agent_replaces_the_length_by_the_cap():
    settings = dict(eval_every=25, cap=6250, switch=250)
    assert converge_agent({"steps": 600, "eval_every": 200, "hidden": 16}, None, settings) == \
        {"steps": 600, "eval_every": 200, "hidden": 16}
    assert converge_agent({"epochs": 3, "eval_every": 200, "hidden": 16}, 5, settings) == \
        {"hidden": 16, "steps": 6250, "eval_every": 25, "patience": 5}
    assert converge_agent({"steps": 600}, 5, settings, cap=1000)["steps"] == 1000


def test_study_setup_puts_converged_runs_apart():
    p = study_parser("doc", "prl", ("synthetic",), "job")
    _, _, runs = study_setup(p.parse_args(["--patience", "5"]), "prl", ("synthetic",))
    assert runs == Path("runs/prl_converged")
    assert study_setup(p.parse_args([]), "prl", ("synthetic",))[2] == Path("runs/prl")
    with pytest.raises(BadInputError, match="--patience must be a positive integer"):
        study_setup(p.parse_args(["--patience", "0"]), "prl", ("synthetic",))


def _check(jobs, settings, patience=5):
    for j in jobs:
        o = j.overrides
        assert (o["steps"], o["eval_every"], o["patience"]) == (settings["cap"], settings["eval_every"], patience), j.out
        if j.agent == "sac":
            assert o["switch_step"] == o["patience_after"] == settings["switch"]
        else:
            assert "patience_after" not in o


def test_lpi_convergence_jobs(tmp_path):
    from studies import lpi

    P = lpi.converge_params(dict(lpi.FULL), 5, lpi.CONVERGE)
    jobs, sweep = lpi.mdp_jobs("synthetic", 0, P, tmp_path, dict(data_dir=None, threads=1))
    _check([*jobs.values(), *(j for _, _, j in sweep)], lpi.CONVERGE)
    c = lpi.CONVERGE
    # the bandit part validates on its own, finer cadence (its models peak within a few dozen steps)
    _check(lpi.bandit_jobs("synthetic", 0, P, tmp_path, dict(data_dir=None, threads=1)).values(),
           {**c, "eval_every": c["bandit_eval_every"]})
    assert c["bandit_eval_every"] < c["eval_every"]
    assert all(c["cap"] % c[k] == 0 for k in ("eval_every", "bandit_eval_every")) and c["switch"] % c["eval_every"] == 0


def test_prl_convergence_jobs(tmp_path):
    from studies import prl

    P = {k: (dict(v) if isinstance(v, dict) else v) for k, v in prl.FULL.items()}
    P["agent"] = converge_agent(P["agent"], 5, prl.CONVERGE)
    P["switch"] = prl.CONVERGE["switch"]
    _check(prl.jobs_of("ml-100k", 0, P, tmp_path, None, 1).values(), prl.CONVERGE)


def test_gptrec_patience_reaches_the_trained_models_and_ppo():
    from studies import gptrec

    cfg = gptrec.with_patience(gptrec.FULL, 3)
    assert cfg["agents"]["bert4rec"]["patience"] == cfg["agents"]["sasrec"]["patience"] == cfg["student"]["patience"] == 3
    assert "patience" not in cfg["agents"]["bpr"] and "patience" not in cfg["ppo"]
    assert cfg["ppo"]["ppo_patience"] == 3  # PPO stops by the same rule in its own loop
    assert "patience" not in gptrec.FULL["student"]  # the preset itself is untouched
    # BERT4Rec's cap is raised (its fixed length was its best step), the fixed-budget config keeps 100
    assert cfg["agents"]["bert4rec"]["epochs"] == 1000 and gptrec.FULL["agents"]["bert4rec"]["epochs"] == 100
    # the student's cap too (it ended at its 20 preset epochs); the preset and fixed-budget config keep theirs
    from recgym.agents.gptrec import GPTRecAgent

    assert cfg["student"]["epochs"] == 100 and "epochs" not in gptrec.FULL["student"]
    assert GPTRecAgent.PRESETS["ml-100k"]["epochs"] == 20
    # PPO: 10x its configured 1,200 steps as the cap with early stopping, the configured length without
    assert gptrec.ppo_config("ml-100k", cfg)["ppo_steps"] == 12_000
    assert gptrec.ppo_config("ml-100k", gptrec.FULL)["ppo_steps"] == 1_200
    with pytest.raises(BadInputError, match="--patience must be a positive integer"):
        gptrec.with_patience(gptrec.FULL, 0)


def test_code_versions_md_names_one_version_or_warns_on_several(tmp_path, monkeypatch):
    import recgym.experiments
    from recgym.experiments import JobSpec
    from studies.common import code_versions_md

    specs = [JobSpec(agent="pop", seed=s, out=str(tmp_path / f"j{s}")) for s in range(4)]
    finished = {specs[0].out: "abc1234", specs[1].out: "abc1234", specs[2].out: "def5678"}  # specs[3]: not finished
    monkeypatch.setattr(recgym.experiments, "finished_results",
                        lambda spec: {"code_version": finished[spec.out]} if spec.out in finished else None)
    assert code_versions_md(specs[3:]) == ""
    assert code_versions_md([specs[0], specs[1], specs[3]]) == "Code version of every run: `abc1234` (2 runs)."
    mixed = code_versions_md(specs)
    assert "Mixed code versions" in mixed and "`abc1234`: 2 run(s)" in mixed and "`def5678`: 1 run(s)" in mixed
