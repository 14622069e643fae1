"""Convergence in the harness: a job records how its training ended (best step, stop step, reason,
cap), a report gives each cell's best step as mean ± sample std and flags the runs that did not
converge by the rule, and a job continues from its checkpoint when only its cap or patience changes."""

from __future__ import annotations

import json

import pytest
import torch

from recgym.experiments import JobSpec, run_job
from recgym.experiments.cli import add_training_args, training_kwargs
from recgym.experiments.compare import CompareConfig, check_jobs
from recgym.experiments.report import convergence_markdown, convergence_summary, run_convergence
from recgym.errors import BadInputError

TINY_PARAMS = {"n_sessions": 200, "n_users": 100, "n_items": 60}
TINY_SASREC = {"hidden": 8, "batch_size": 32, "eval_every": 5, "dropout": 0.0, "lr": 0.05}


def _res(best, steps=(10, 20, 30, 40), reason="patience", patience=2, stopped=None):
    return {"best_step": best, "stop_reason": reason, "patience": patience, "stopped_at": stopped or steps[-1],
            "cap_steps": 100, "curves": [{"step": float(s), "ndcg@20": 0.1} for s in steps]}


def test_run_convergence_flags_against_the_rule():
    ok = run_convergence(_res(20), "ndcg@20")
    assert ok["converged"] is True and ok["flags"] == [] and ok["stop_reason"] == "patience" and ok["stopped_at"] == 40
    first = run_convergence(_res(10), "ndcg@20")
    assert first["converged"] is False and first["flags"] == ["best at first evaluation"]
    cap = run_convergence(_res(40, reason="cap"), "ndcg@20")
    assert cap["converged"] is False and cap["flags"] == ["ended at cap"]  # best at its last point too: the cap says it
    fixed = run_convergence(_res(40, reason="cap", patience=None), "ndcg@20")
    assert fixed["flags"] == ["best at last evaluation"]
    assert run_convergence(_res(20, reason="cap", patience=None), "ndcg@20")["converged"] is True
    assert run_convergence(_res(20, reason="diverged"), "ndcg@20")["flags"] == ["diverged"]
    sac = run_convergence({**_res(20), "config": {"patience_after": 20}}, "ndcg@20")  # best at the switch
    assert sac["converged"] is True and sac["best_in_first_phase"] is True
    assert run_convergence({**_res(30), "config": {"patience_after": 20}}, "ndcg@20")["best_in_first_phase"] is False
    md = "\n".join(convergence_markdown({"sac": {"0": sac, "1": ok}}, "ndcg@20"))
    assert "second phase never improved on it, so these runs report the first phase's model: sac (seed 0)." in md
    one_pass = run_convergence({"best_step": 0, "curves": [{"step": 0.0, "ndcg@20": 0.1}]}, "ndcg@20")
    assert one_pass["converged"] is None and one_pass["flags"] == []


def test_convergence_summary_is_mean_and_sample_std():
    conv = {"0": run_convergence(_res(10, stopped=30), "ndcg@20"),
            "1": run_convergence(_res(20, stopped=40), "ndcg@20"),
            "2": run_convergence(_res(30, stopped=50, steps=(10, 20, 30, 40, 50)), "ndcg@20")}
    cs = convergence_summary(conv)
    assert cs["best_step"] == {"mean": 20.0, "std": 10.0, "n": 3}  # ddof=1: sqrt((100 + 0 + 100) / 2)
    assert cs["stopped_at"] == {"mean": 40.0, "std": 10.0, "n": 3}
    assert cs["stop_reasons"] == {"patience": 3} and cs["flagged"] == {"0": ["best at first evaluation"]}
    md = "\n".join(convergence_markdown({"sqn": conv}, "ndcg@20"))
    assert "| sqn | 20 ± 10 | 40 ± 10 | 5 | patience 3 | **seed 0 (best at first evaluation)** |" in md
    assert "*best at first evaluation*:" in md and "*ended at cap*" not in md


def test_patience_is_a_shared_cli_argument():
    import argparse

    p = argparse.ArgumentParser()
    add_training_args(p)
    assert training_kwargs(p.parse_args(["--steps", "500", "--patience", "5"]))["patience"] == 5
    assert CompareConfig(agents=["sasrec"], patience=5, out="x").patience == 5
    with pytest.raises(BadInputError, match="--patience must be a positive integer, got 0"):
        JobSpec(agent="sasrec", patience=0)


def _spec(tmp_path, **kw):
    return JobSpec(agent="sasrec", data_params=TINY_PARAMS, out=str(tmp_path / "job"), overrides=dict(TINY_SASREC), **kw)


def test_job_records_how_training_ended_and_continues_when_only_patience_changes(tmp_path):
    torch.set_num_threads(1)
    msgs: list[str] = []
    res = run_job(_spec(tmp_path, steps=60, patience=1), log=msgs.append)
    assert res["stop_reason"] in ("patience", "cap") and res["cap_steps"] == 60 and res["patience"] == 1
    assert res["stopped_at"] == res["curves"][-1]["step"] and res["best_step"] <= res["stopped_at"]
    if res["stop_reason"] == "patience":
        assert res["stopped_at"] == res["best_step"] + 5  # one validation (every 5 steps) after the best
    saved = json.loads((tmp_path / "job" / "results.json").read_text())
    assert {k: saved[k] for k in ("best_step", "stopped_at", "stop_reason", "cap_steps")} == \
        {k: res[k] for k in ("best_step", "stopped_at", "stop_reason", "cap_steps")}

    msgs.clear()  # the same command: reused, not trained again
    assert run_job(_spec(tmp_path, steps=60, patience=1), log=msgs.append) == res and any("reused" in m for m in msgs)

    msgs.clear()  # more patience and a higher cap: continues from the checkpoint
    more = run_job(_spec(tmp_path, steps=80, patience=3), log=msgs.append)
    assert any("continues under new settings" in m for m in msgs)
    assert any(m.startswith(f"resumed from {tmp_path / 'job' / 'checkpoint.pt'} at step {res['stopped_at']}/80")
               for m in msgs)
    assert more["curves"][:len(res["curves"])] == res["curves"] and more["stopped_at"] >= res["stopped_at"]
    assert json.loads((tmp_path / "job" / "job.json").read_text())["identity"]["patience"] == 3

    with pytest.raises(BadInputError, match="holds a job with another spec"):  # any other change is refused
        run_job(JobSpec(agent="sasrec", data_params=TINY_PARAMS, out=str(tmp_path / "job"), steps=80, patience=3,
                        overrides={**TINY_SASREC, "lr": 0.01}), log=lambda m: None)
    cfg = CompareConfig(agents=["sasrec"], seeds=[0], out=str(tmp_path), sims=[])
    check_jobs(cfg, [_spec(tmp_path, steps=200, patience=5)])  # a compare may raise the cap / patience too


def test_resumable_change_only_where_a_fresh_run_would_pass_through():
    from recgym.experiments.job import resumable_change

    before = {"steps": 100, "patience": None, "overrides": {"lr": 0.1, "steps": 50}}
    res = {"selection_metric": "m", "stopped_at": 100,
           "curves": [{"step": float(s), "m": v} for s, v in zip((25, 50, 75, 100), (0.2, 0.1, 0.1, 0.3))]}

    def ok(**change):
        now = json.loads(json.dumps(before))
        for k, v in change.items():
            if k.startswith("o_"):
                now["overrides"][k[2:]] = v
            else:
                now[k] = v
        return resumable_change(before, now, res)

    assert ok(steps=200) and ok(o_steps=60) and ok(steps=200, patience=3)
    assert not ok(steps=99) and not ok(o_steps=40) and not ok(o_lr=0.2) and not ok()  # no change: nothing to continue
    assert not ok(patience=2)  # it would have stopped at step 75, the run went on to 100
    assert ok(patience=3, o_steps=400)
    res["config"] = {"patience_after": 75}  # validations up to step 75 do not count: 2 would not have stopped it
    assert ok(patience=2)



def test_a_job_does_not_continue_on_a_changed_logging_policy(tmp_path):
    torch.set_num_threads(1)
    quiet = dict(log=lambda m: None)
    mu = JobSpec(agent="sasrec", data_params=TINY_PARAMS, out=str(tmp_path / "mu"), overrides=dict(TINY_SASREC),
                 steps=20, patience=1)
    run_job(mu, **quiet)

    def lmu(patience):
        return JobSpec(agent="lmu", data_params=TINY_PARAMS, out=str(tmp_path / "lmu"), overrides=dict(TINY_SASREC),
                       steps=20, patience=patience, logging_policy=str(tmp_path / "mu" / "model.pt"))

    first = run_job(lmu(1), **quiet)
    assert first["logging_policy_sha256"] and run_job(lmu(2), **quiet)["stop_reason"]  # same μ̂: continues
    mu.patience = 3
    run_job(mu, **quiet)  # μ̂ trains on: its model.pt changes
    with pytest.raises(BadInputError, match="its logging policy .*model.pt changed since it trained"):
        run_job(lmu(3), **quiet)
