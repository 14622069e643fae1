"""The comparison harness: recgym.experiments (one job, fan-out, report) and scripts/compare.py."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr, ttest_rel

from recgym.errors import BadInputError, BusyError
from recgym.evaluate import evaluate_in_env
from recgym.experiments import CompareConfig, JobSpec, aggregate, make_jobs, run_job
from recgym.experiments.job import load_job_split, make_sim_env
from recgym.experiments.report import report_markdown

ROOT = Path(__file__).resolve().parents[1]
SIM = "recgym/MFUser-Synthetic-v0"
# a small world: 60 items, 100 users, 200 sessions (the MF imputer fits in a fraction of a second)
TINY = ["--data-param", "n_sessions=200", "--data-param", "n_users=100", "--data-param", "n_items=60"]
TINY_PARAMS = {"n_sessions": 200, "n_users": 100, "n_items": 60}
TINY_TORCH = ["--steps", "20", "--set", "hidden=8", "--set", "batch_size=32", "--set", "eval_every=10"]
CUSTOM = "examples.my_agent:RecencyPopAgent"


@pytest.fixture
def main():
    from scripts.compare import main

    n = torch.get_num_threads()
    yield main
    torch.set_num_threads(n)


def _job_results(out: Path) -> dict[tuple[str, int], dict]:
    found = {}
    for p in sorted((out / "jobs").glob("*/seed*/results.json")):
        r = json.loads(p.read_text())
        key = (r["agent"], r["seed"])
        assert key not in found, f"{key} has two results"
        found[key] = r
    return found


# ------------------------------------------------------------------------------- aggregation (hand values)
def _fake_job(root: Path, agent: str, seed: int, ndcg: float, iar: float, true: float, js: float | None = None) -> None:
    d = root / "jobs" / agent / f"seed{seed}"
    d.mkdir(parents=True)
    test = {"ndcg@20": ndcg, "hr@20": 2 * ndcg} | ({"js_mu": js} if js is not None else {})
    res = {"agent": agent, "seed": seed, "protocol": "session", "selection_metric": "ndcg@20", "valid": test,
           "test": test, "sim": {SIM: {"iar@1": iar, "ar@1": 0.0, "n_contexts": 10.0}}, "true_value": true,
           "timing_s": {"train": 1.0},
           "curves": [{"step": 10.0, "ndcg@20": ndcg / 2, "q_logged": 1.0 + seed}, {"step": 20.0, "ndcg@20": ndcg}]}
    (d / "results.json").write_text(json.dumps(res))


def test_aggregate_matches_hand_computed_statistics(tmp_path):
    vals = {  # agent -> per seed (ndcg, iar, true)
        "a": [(0.10, 0.50, 0.20), (0.12, 0.52, 0.21), (0.11, 0.49, 0.22)],
        "b": [(0.20, 0.40, 0.25), (0.25, 0.41, 0.26), (0.21, 0.45, 0.24)],
        "c": [(0.30, 0.60, 0.30), (0.31, 0.58, 0.33), (0.33, 0.61, 0.31)],
    }
    for a, rows in vals.items():
        for s, (n, i, t) in enumerate(rows):
            _fake_job(tmp_path, a, s, n, i, t, js=0.1 * s if a == "c" else None)
    cfg = CompareConfig(agents=["a", "b", "c"], seeds=[0, 1, 2], out=str(tmp_path), baseline="a")
    jobs = [JobSpec(agent=a, seed=s, out=str(tmp_path / "jobs" / a / f"seed{s}"), sims=[SIM], true_value=True)
            for a in cfg.agents for s in cfg.seeds]
    rep = aggregate(cfg, jobs)
    b = np.array(vals["b"])
    cell = rep["table"]["b"]["ndcg@20"]
    assert cell["mean"] == pytest.approx(b[:, 0].mean()) and cell["std"] == pytest.approx(b[:, 0].std(ddof=1))
    assert cell["diff_vs_baseline"] == pytest.approx((b[:, 0] - np.array(vals["a"])[:, 0]).mean())
    assert cell["p_vs_baseline"] == pytest.approx(ttest_rel(b[:, 0], np.array(vals["a"])[:, 0]).pvalue)
    assert "p_vs_baseline" not in rep["table"]["a"]["ndcg@20"]  # the baseline is not tested against itself
    assert rep["table"]["b"]["sim_iar@1"]["mean"] == pytest.approx(b[:, 1].mean())
    assert rep["table"]["c"]["js_mu"]["mean"] == pytest.approx(0.1) and "js_mu" not in rep["table"]["a"]
    means = {k: [np.array(vals[a])[:, j].mean() for a in "abc"] for j, k in enumerate(("ndcg", "iar", "true"))}
    corr = rep["rank_correlations"]
    assert corr["ndcg@20 vs sim_iar@1"]["spearman"] == pytest.approx(spearmanr(means["ndcg"], means["iar"]).statistic)
    assert corr["ndcg@20 vs true_value"]["spearman"] == pytest.approx(1.0)  # a < b < c on both
    assert corr["sim_iar@1 vs true_value"]["spearman"] == pytest.approx(0.5)
    # validation curves: mean ± std over seeds at each step; Q diagnostics where recorded
    c = rep["curves"]["b"]
    assert c["ndcg@20"]["step"] == [10.0, 20.0]
    assert c["ndcg@20"]["mean"][1] == pytest.approx(b[:, 0].mean()) and c["q_logged"]["mean"] == [2.0]
    md = report_markdown(rep)
    assert f"| b | 3 | {b[:, 0].mean():.4f} ± {b[:, 0].std(ddof=1):.4f}" in md and "Spearman" in md
    assert rep["missing"] == []


def test_aggregate_lists_missing_jobs_and_skips_them(tmp_path):
    _fake_job(tmp_path, "a", 0, 0.1, 0.5, 0.2)
    cfg = CompareConfig(agents=["a"], seeds=[0, 1], out=str(tmp_path))
    jobs = [JobSpec(agent="a", seed=s, out=str(tmp_path / "jobs" / "a" / f"seed{s}"), sims=[SIM]) for s in (0, 1)]
    rep = aggregate(cfg, jobs)
    assert rep["table"]["a"]["n_seeds"] == 1 and rep["table"]["a"]["ndcg@20"]["std"] == 0.0
    assert [(m["agent"], m["seed"]) for m in rep["missing"]] == [("a", 1)]
    assert "Missing (1 job(s)" in report_markdown(rep)


def test_report_names_the_code_version_and_flags_a_mix(tmp_path):
    for s in (0, 1):
        _fake_job(tmp_path, "a", s, 0.1, 0.5, 0.2)
    cfg = CompareConfig(agents=["a"], seeds=[0, 1], out=str(tmp_path))
    jobs = [JobSpec(agent="a", seed=s, out=str(tmp_path / "jobs" / "a" / f"seed{s}"), sims=[SIM]) for s in (0, 1)]

    def set_version(seed, v):
        p = tmp_path / "jobs" / "a" / f"seed{seed}" / "results.json"
        p.write_text(json.dumps({**json.loads(p.read_text()), "code_version": v}))

    set_version(0, "abc1234"), set_version(1, "abc1234")
    md = report_markdown(aggregate(cfg, jobs))
    assert "Code version of every run: `abc1234`" in md and "Mixed" not in md
    set_version(1, "def5678")
    rep = aggregate(cfg, jobs)
    assert rep["code_versions"] == {"abc1234": ["a/0"], "def5678": ["a/1"]}
    assert "**Mixed code versions:**" in report_markdown(rep)


def test_code_version_of_this_checkout():
    from recgym.experiments.report import code_version

    v = code_version()
    assert v.startswith("recgym ") or len(v.split("+")[0]) >= 7


def test_code_version_of_a_copy_inside_another_repository(tmp_path, monkeypatch):
    # a non-editable install in a project's venv sits inside the project's git tree: its commit is not ours
    import subprocess

    import recgym
    from recgym.experiments.report import code_version

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "project"], check=True)  # a HEAD, so only the toplevel check can refuse it
    pkg = tmp_path / "venv" / "site-packages" / "recgym"
    pkg.mkdir(parents=True)
    monkeypatch.setattr(recgym, "__file__", str(pkg / "__init__.py"))
    assert code_version().startswith("recgym ")


def test_code_version_dirty_means_code_not_reports(tmp_path, monkeypatch):
    # a study writes its report into docs/results: the next study's runs are still at the commit
    import subprocess

    import recgym
    from recgym.experiments.report import code_version

    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    (tmp_path / "recgym").mkdir()
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "recgym" / "__init__.py").write_text("x = 1\n")
    (tmp_path / "docs" / "results" / "table.md").write_text("old\n")
    (tmp_path / "README.md").write_text("old\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.setattr(recgym, "__file__", str(tmp_path / "recgym" / "__init__.py"))
    assert code_version() == head
    (tmp_path / "docs" / "results" / "table.md").write_text("new\n")
    (tmp_path / "README.md").write_text("new\n")
    assert code_version() == head
    (tmp_path / "recgym" / "__init__.py").write_text("x = 2\n")
    assert code_version() == head + "+dirty"


def test_config_errors_are_named():
    with pytest.raises(BadInputError, match="--seeds: listed more than once: 1"):
        CompareConfig(agents=["pop"], seeds=[1, 1])
    with pytest.raises(BadInputError, match="--baseline 'x'"):
        CompareConfig(agents=["pop"], baseline="x")
    with pytest.raises(BadInputError, match="unknown agent 'nope'"):
        make_jobs(CompareConfig(agents=["pop", "nope"]))
    with pytest.raises(BadInputError, match=r"no compared agent has hyper-parameter\(s\) \['hiden'\]"):
        make_jobs(CompareConfig(agents=["pop", "sasrec"], overrides={"hiden": 3}))
    assert CompareConfig(agents=["pop", "sasrec"]).baseline == "sasrec"
    assert CompareConfig(agents=["pop", "mc"]).sims == [SIM] and CompareConfig(agents=["pop"], dataset="rc15").sims == []


# ------------------------------------------------------------------------------- one job
def test_sim_env_kwargs_build_the_job_data():
    from recgym.experiments.job import sim_env_kwargs

    spec = JobSpec(agent="pop", seed=3, data_params={"n_sessions": 300, "n_items": 50, "world_seed": 7})
    # the MF user env builds the World itself (its rating log fits the imputer) and starts episodes
    # from the job's validation sessions (split None: the env's own, the job's split seed)
    assert sim_env_kwargs(spec, SIM) == {"seed": 3, "world_seed": 7, "n_sessions": 300, "n_items": 50, "split": None}
    # a replay env loads the job's log: every loader param, the job's split seed, its test part
    kw = sim_env_kwargs(spec, "recgym/Replay-Synthetic-v0")
    assert kw == {"n_sessions": 300, "n_items": 50, "world_seed": 7, "download": False, "seed": 3, "split": "test"}
    with pytest.raises(BadInputError, match="unknown env id 'recgym/Nope-v0'"):
        sim_env_kwargs(spec, "recgym/Nope-v0")


def test_every_recgym_env_declares_how_a_job_builds_it():
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    from recgym.envs.registration import env_ids
    from recgym.experiments.job import load_job_split, make_sim_env

    for env_id, entry in env_ids().items():
        assert hasattr(load_env_creator(entry["entry_point"]), "job_kwargs"), env_id
    spec = JobSpec(agent="pop", seed=3, data_params={"n_sessions": 300, "n_items": 50, "world_seed": 7})
    test = load_job_split(spec).test
    replay = make_sim_env(spec, "recgym/Replay-Synthetic-v0").unwrapped
    np.testing.assert_array_equal(replay.d.log.items, test.items)  # the job's own test part
    slate = make_sim_env(spec, "recgym/SlateNextK-Synthetic-v0").unwrapped
    direct = gym.make("recgym/SlateNextK-v0", data=load_job_split(spec), split="test").unwrapped
    np.testing.assert_array_equal(slate.ctx.targets, direct.ctx.targets)


class _Constant:
    """Always recommends ``item``."""

    def __init__(self, n_items: int, item: int) -> None:
        self.n_items, self.state_len, self.item = n_items, 3, item

    def scores(self, states, lengths):
        s = torch.zeros(states.shape[0], self.n_items)
        s[:, self.item] = 1.0
        return s


def test_evaluate_in_env_equals_the_env_rewards_of_the_greedy_item(tmp_path):
    spec = JobSpec(agent="pop", data_params=TINY_PARAMS)
    env = make_sim_env(spec, SIM, tmp_path)
    u = env.unwrapped
    got = evaluate_in_env(_Constant(u.n_items, 7), env)
    assert got["iar@1"] == pytest.approx(u.imputed_reward(u.users, np.full(len(u.users), 7)).mean())
    assert got["hit@1"] == pytest.approx(np.mean(u.targets == 7))
    assert got["n_contexts"] == u.n_contexts == load_job_split(spec).valid.n_events  # every validation event
    # the env's own step returns the same reward for a context (batched == stepped)
    obs, info = env.reset(options={"context": 5})
    _, r, term, _, step_info = env.step(7)
    assert term and r == pytest.approx(u.imputed_reward(u.users[5:6], np.array([7]))[0])
    assert 0.0 <= got["true@1"] <= 1.0 and "true_reward" in step_info
    assert list(tmp_path.glob("*.npz")), "the fitted imputer is cached for the other jobs"


def test_job_reuses_results_and_refuses_another_spec(tmp_path):
    out = tmp_path / "job"
    spec = JobSpec(agent="pop", data_params=TINY_PARAMS, out=str(out))
    res = run_job(spec, log=lambda m: None)
    assert "sim" not in res and (out / "job.json").exists()
    first = (out / "results.json").stat().st_mtime_ns
    # asking for a simulator later evaluates model.pt only; the logged results stay as they were
    spec2 = JobSpec(agent="pop", data_params=TINY_PARAMS, out=str(out), sims=[SIM], true_value=True)
    res2 = run_job(spec2, mf_dir=tmp_path / "sim", log=lambda m: None)
    assert res2["test"] == res["test"] and set(res2["sim"]) == {SIM} and res2["true_value"] > 0
    again = run_job(spec2, log=lambda m: None)
    assert again == res2
    assert (out / "results.json").stat().st_mtime_ns != first
    with pytest.raises(BadInputError, match="holds a job with another spec"):
        run_job(JobSpec(agent="pop", data_params={**TINY_PARAMS, "n_sessions": 201}, out=str(out)), log=lambda m: None)
    # a job.json written before JobSpec had some field: the missing field counts at its default
    saved = json.loads((out / "job.json").read_text())
    for k in ("protocol", "test_extras", "keep_diverged"):
        saved["identity"].pop(k)
    (out / "job.json").write_text(json.dumps(saved))
    assert run_job(spec2, log=lambda m: None) == res2
    with pytest.raises(BadInputError, match="holds a job with another spec"):
        run_job(JobSpec(agent="pop", data_params=TINY_PARAMS, out=str(out), protocol="loo"), log=lambda m: None)


# ------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_compare_three_agents_two_seeds_two_workers(tmp_path, main, capsys):
    out = tmp_path / "cmp"
    code = main(["--agents", f"pop,sasrec,{CUSTOM}", "--seeds", "0,1", *TINY, *TINY_TORCH, "--workers", "2",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    jobs = _job_results(out)
    assert set(jobs) == {(a, s) for a in ("pop", "sasrec", CUSTOM) for s in (0, 1)}
    assert rep["baseline"] == "sasrec" and rep["missing"] == [] and rep["sims"] == [SIM]
    for a in ("pop", "sasrec", CUSTOM):
        row = rep["table"][a]
        assert row["n_seeds"] == 2
        for key, get in (("ndcg@20", lambda r: r["test"]["ndcg@20"]), ("sim_iar@1", lambda r: r["sim"][SIM]["iar@1"]),
                         ("true_value", lambda r: r["true_value"])):
            v = [get(jobs[(a, s)]) for s in (0, 1)]
            assert row[key]["mean"] == pytest.approx(np.mean(v)) and row[key]["std"] == pytest.approx(np.std(v, ddof=1))
    corr = rep["rank_correlations"]
    assert set(corr) == {"ndcg@20 vs sim_iar@1", "ndcg@20 vs true_value", "sim_iar@1 vs true_value"}
    means = lambda k: [rep["table"][a][k]["mean"] for a in rep["agents"]]  # noqa: E731
    rho = spearmanr(means("ndcg@20"), means("true_value")).statistic
    assert corr["ndcg@20 vs true_value"]["spearman"] == (None if math.isnan(rho) else pytest.approx(rho))
    assert [c["step"] for c in jobs[("sasrec", 0)]["curves"]] == [10, 20]
    assert rep["curves"]["sasrec"]["ndcg@20"]["step"] == [10.0, 20.0]
    md = (out / "report.md").read_text()
    for a in ("pop", "sasrec", CUSTOM):
        assert f"| {a} | 2 |" in md
    assert "true value" in md and "sim iAR@1" in md and "Paired t-tests against `sasrec`" in md
    for fig in ("curves.png", "logged_vs_sim.png"):
        assert (out / fig).read_bytes()[:4] == b"\x89PNG"
    # a re-run trains nothing and gives the same report numbers
    assert main(["--agents", f"pop,sasrec,{CUSTOM}", "--seeds", "0,1", *TINY, *TINY_TORCH, "--workers", "2",
                 "--out", str(out)]) == 0
    assert "6 finished before, 0 to run" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["table"] == rep["table"]


CRASH_AGENT = textwrap.dedent("""
    import os
    import signal
    from pathlib import Path
    from recgym.agents.sasrec import SASRecAgent

    MARKER = {marker!r}

    class CrashOnceSASRec(SASRecAgent):
        '''SIGKILLs its own process at step 15 of the first attempt (after the step-10 checkpoint).'''

        def update(self, batch, step):
            marker = Path(MARKER)
            if step == 15 and self.seed == 0 and not marker.exists():
                marker.write_text("crashed")
                os.kill(os.getpid(), signal.SIGKILL)
            return super().update(batch, step)
""")


@pytest.mark.slow
def test_killed_worker_then_rerun_completes_every_result_exactly_once(tmp_path, main, monkeypatch, capsys):
    (tmp_path / "crash_agent_mod.py").write_text(CRASH_AGENT.replace("{marker!r}", repr(str(tmp_path / "crashed"))))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(ROOT))  # examples.my_agent
    out = tmp_path / "cmp"
    args = ["--agents", "pop,crash_agent_mod:CrashOnceSASRec", "--seeds", "0,1", *TINY, *TINY_TORCH,
            "--workers", "2", "--out", str(out), "--sim", "none"]
    assert main(args) == 5  # the pool broke: the report says what is missing
    assert (tmp_path / "crashed").exists()
    rep = json.loads((out / "report.json").read_text())
    missing = {(m["agent"], m["seed"]) for m in rep["missing"]}
    assert ("crash_agent_mod:CrashOnceSASRec", 0) in missing
    crashed_dir = out / "jobs" / "crash_agent_mod_CrashOnceSASRec" / "seed0"
    assert torch.load(crashed_dir / "checkpoint.pt", weights_only=True)["step"] == 10
    assert not (crashed_dir / "results.json").exists()
    done_before = {k: p.stat().st_mtime_ns for k, p in
                   ((k, out / "jobs" / k[0].replace(":", "_") / f"seed{k[1]}" / "results.json") for k in _job_results(out))}
    capsys.readouterr()

    assert main(args) == 0
    assert f"{len(done_before)} finished before, {4 - len(done_before)} to run" in capsys.readouterr().out
    jobs = _job_results(out)  # asserts one results.json per agent x seed
    assert len(jobs) == 4
    rep = json.loads((out / "report.json").read_text())
    assert rep["missing"] == [] and all(rep["table"][a]["n_seeds"] == 2 for a in rep["agents"])
    assert sorted((j["agent"], j["seed"]) for j in rep["jobs"]) == sorted(jobs)
    for k, mtime in done_before.items():  # finished jobs were not run again
        assert (out / "jobs" / k[0].replace(":", "_") / f"seed{k[1]}" / "results.json").stat().st_mtime_ns == mtime
    assert "resumed from" in (crashed_dir / "log.txt").read_text()
    assert [c["step"] for c in jobs[("crash_agent_mod:CrashOnceSASRec", 0)]["curves"]] == [10, 20]
    assert not list(out.rglob("*.tmp")), "no temporary file left behind"


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"Ray cannot start here: {e}")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_same_jobs_on_local_ray_with_a_crash_retried(tmp_path, local_ray, monkeypatch):
    (tmp_path / "crash_agent_mod.py").write_text(CRASH_AGENT.replace("{marker!r}", repr(str(tmp_path / "crashed"))))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(ROOT))  # examples.my_agent
    agents = ["pop", CUSTOM, "crash_agent_mod:CrashOnceSASRec"]
    cfg = CompareConfig(agents=agents, seeds=[0, 1], out=str(tmp_path / "cmp"), ray_address="local", retries=1,
                        data_params=dict(TINY_PARAMS), steps=20,
                        overrides={"hidden": 8, "batch_size": 32, "eval_every": 10})
    from recgym.experiments import compare

    rep = compare(cfg, log=lambda m: None)
    assert (tmp_path / "crashed").exists(), "the crash agent's worker was killed once"
    assert rep["missing"] == [] and len(_job_results(tmp_path / "cmp")) == 6
    assert all(rep["table"][a]["n_seeds"] == 2 and "true_value" in rep["table"][a] for a in agents)
    log = (tmp_path / "cmp" / "jobs" / "crash_agent_mod_CrashOnceSASRec" / "seed0" / "log.txt").read_text()
    assert "resumed from" in log  # Ray re-ran the task; it continued from the step-10 checkpoint


def test_job_lock_removes_temporary_files_of_a_killed_writer(tmp_path):
    from recgym.experiments.job import job_lock

    job = tmp_path / "job"
    job.mkdir()
    (job / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (job / "results.json").write_text("{}")
    with job_lock(job):
        assert not list(job.glob("*.tmp")) and (job / "results.json").exists()
        with pytest.raises(BusyError, match="another process"):  # a second holder is refused
            with job_lock(job):
                pass


# ------------------------------------------------------------------------------- report statistics (hand values)
def test_holm_adjusts_sorted_pvalues_and_keeps_them_monotone():
    from recgym.experiments.report import holm

    # m = 3, ascending: b 0.01·3 = 0.03, c 0.03·2 = 0.06, a 0.04·1 = 0.04 -> max(0.06, 0.04) = 0.06
    # (adjusted p-values never decrease along the order); None stays out of the family
    got = holm({"a": 0.04, "b": 0.01, "c": 0.03, "d": None})
    assert got["d"] is None
    assert got["b"] == pytest.approx(0.03) and got["c"] == pytest.approx(0.06) and got["a"] == pytest.approx(0.06)
    assert holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}  # capped at 1


def test_summary_and_paired_tests_by_seed():
    from recgym.experiments.report import paired_tests, rows_over_seeds, summary

    s = summary([1.0, 2.0, 4.0, None, float("nan")])
    assert s["n"] == 3 and s["mean"] == pytest.approx(7 / 3) and s["std"] == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert summary([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1}
    base, a, b = {0: 0.1, 1: 0.2, 2: 0.3}, {0: 0.2, 1: 0.25, 2: 0.5}, {0: 0.0, 1: 0.2, 2: 0.31, 7: 9.0}
    t = paired_tests({"base": base, "a": a, "b": b}, "base")
    assert "base" not in t and t["a"]["wins"] == "3/3" and t["b"]["wins"] == "1/3"  # seed 7 has no pair
    pa = ttest_rel([0.2, 0.25, 0.5], [0.1, 0.2, 0.3]).pvalue
    pb = ttest_rel([0.0, 0.2, 0.31], [0.1, 0.2, 0.3]).pvalue
    assert t["a"]["p_vs_baseline"] == pytest.approx(pa) and t["a"]["diff_vs_baseline"] == pytest.approx(0.35 / 3)
    lo, hi = sorted([pa, pb])
    assert min(t["a"]["p_holm"], t["b"]["p_holm"]) == pytest.approx(2 * lo)
    assert max(t["a"]["p_holm"], t["b"]["p_holm"]) == pytest.approx(max(2 * lo, hi))
    # a study table: rows by identity over seeds, each against the base row on one metric
    seeds = [[{"policy": "mu", "m": base[s]}, {"policy": "x", "m": a[s]}] for s in range(3)]
    rows = rows_over_seeds(seeds, ("policy",), base=("mu",), metric="m")
    assert rows[1]["m"]["mean"] == pytest.approx(np.mean(list(a.values())))
    assert rows[1]["vs_base"]["p_vs_baseline"] == pytest.approx(pa) and "vs_base" not in rows[0]


def test_atomic_write_replaces_whole_files(tmp_path):
    from recgym.experiments.report import atomic_write, write_json

    p = atomic_write(tmp_path / "d" / "a.md", "one")
    atomic_write(p, "two")
    write_json(tmp_path / "r.json", {"x": 1.5, "y": object()})
    assert p.read_text() == "two" and json.loads((tmp_path / "r.json").read_text()) == {"x": 1.5, "y": None}
    assert not list(tmp_path.rglob("*.tmp"))
