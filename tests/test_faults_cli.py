"""Fault cases of the commands (``scripts/offline_eval.py``, ``scripts/compare.py``,
``scripts/sim_eval.py``): every bad call ends with one line on stderr naming the culprit, the exit
status of ``recgym.errors`` and nothing written: no output folder, no poisoned results."""

from __future__ import annotations

import errno
import json
import math
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.errors import EXIT_BAD_INPUT, EXIT_BUSY, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_OK

SLATE = "recgym/SlateNextK-Synthetic-v0"
TINY = ["--data-param", "n_sessions=200", "--data-param", "n_users=100", "--data-param", "n_items=60"]
TINY_TORCH = ["--set", "hidden=8", "--set", "batch_size=32", "--set", "eval_every=10"]


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty working directory (default outputs go to ``runs/`` there)."""
    d = tmp_path / "cwd"
    d.mkdir()
    monkeypatch.chdir(d)
    n = torch.get_num_threads()
    yield d
    torch.set_num_threads(n)


def _main(name: str):
    import importlib

    return importlib.import_module(f"scripts.{name}").main


def run(name: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """``scripts.<name>.main(argv)`` -> (exit status, stdout, stderr)."""
    code = _main(name)(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, *culprits: str) -> str:
    """The single error line on stderr, checked to name every culprit and carry no traceback."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("offline_eval: note")]
    assert len(lines) == 1, err
    for c in culprits:
        assert c in lines[0], (c, lines[0])
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root`` with its mtime and bytes (job locks aside: opening one touches it)."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


# ------------------------------------------------------------------ bad arguments: exit 2, nothing written
BAD_OFFLINE = [
    (["--agent", "pop", "--steps", "-5"], "--steps"),
    (["--agent", "sasrec", "--steps", "0"], "--steps"),
    (["--agent", "sasrec", "--epochs", "-1"], "--epochs"),
    (["--agent", "pop", "--seed", "-1"], "--seed"),
    (["--agent", "nosuch"], "nosuch"),
    (["--agent", "pop", "--dataset", "nosuch"], "nosuch"),
    (["--agent", "sasrec", "--set", "lr=abc"], "lr"),
    (["--agent", "bpr", "--set", "lr=NaN"], "lr"),
    (["--agent", "sasrec", "--set", "nope=1"], "nope"),
    (["--agent", "pop", "--data-param", "n_sessions=abc"], "--data-param n_sessions"),
    (["--agent", "pop", "--data-param", "zzz=1"], "zzz"),
    (["--agent", "pop", "--data-param", "n_sessions"], "n_sessions"),
    (["--agent", "pop", "--reward-scheme", "rating"], "--reward-scheme"),
]


@pytest.mark.parametrize("argv,culprit", BAD_OFFLINE, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_offline_eval_refuses_a_bad_argument_before_creating_a_folder(cwd, capsys, argv, culprit):
    code, out, err = run("offline_eval", [*argv, "--out", str(cwd / "out"), "--no-progress"], capsys)
    assert code == EXIT_BAD_INPUT
    one_line(err, "offline_eval: error:", culprit)
    assert not any(cwd.iterdir()), "a refused call creates no folder"


BAD_COMPARE = [
    (["--agents", "pop,sasrec", "--steps", "-5"], "--steps"),
    (["--agents", "pop,sasrec", "--steps", "0"], "--steps"),
    (["--agents", "pop,nosuch"], "nosuch"),
    (["--agents", "pop,sasrec", "--set", "lr=abc"], "lr"),
    (["--agents", "pop", "--data-param", "n_sessions=abc"], "--data-param n_sessions"),
    (["--agents", "pop", "--sim", "recgym/Nope-v0"], "recgym/Nope-v0"),
    (["--agents", "pop", "--workers", "0"], "--workers"),
    (["--agents", "pop", "--sim-episodes", "0"], "--sim-episodes"),
    (["--agents", "pop", "--seeds", "0,x"], "--seeds"),
]


@pytest.mark.parametrize("argv,culprit", BAD_COMPARE, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_compare_refuses_a_bad_argument_before_creating_a_folder(cwd, capsys, argv, culprit):
    code, out, err = run("compare", [*argv, "--out", str(cwd / "out")], capsys)
    assert code == EXIT_BAD_INPUT
    one_line(err, "compare: error:", culprit)
    assert not any(cwd.iterdir())


@pytest.mark.parametrize("name,argv", [("offline_eval", ["--agent", "pop"]), ("compare", ["--agents", "pop"])])
def test_a_dataset_name_is_never_a_path(cwd, capsys, name, argv):
    """The default output folder is built from the dataset name: ``../../x`` must not escape ``runs/``."""
    code, _, err = run(name, [*argv, "--dataset", "../../x"], capsys)
    assert code == EXIT_BAD_INPUT
    one_line(err, "--dataset", "'../../x'")
    assert not any(cwd.iterdir()) and not any(cwd.parent.glob("x")) and not (cwd.parent.parent / "x").exists()


BAD_SIM = [
    (["--agent", "pop", "--env", SLATE, "--episodes", "-3"], "--episodes"),
    (["--agent", "pop", "--env", SLATE, "--episodes", "0"], "--episodes"),
    (["--agent", "nosuch", "--env", SLATE], "nosuch"),
    (["--agent", "missing.zip", "--env", SLATE], "missing.zip"),
    (["--agent", "pop", "--env", "recgym/Nope-v0"], "recgym/Nope-v0"),
    (["--agent", "pop", "--env", SLATE, "--env-kwargs", "{bad"], "--env-kwargs"),
    (["--agent", "pop", "--env", SLATE, "--env-kwargs", "[1]"], "--env-kwargs"),
    (["--agent", "pop", "--env", SLATE, "--env-kwargs", '{"zzz": 1}'], "zzz"),
]


@pytest.mark.parametrize("argv,culprit", BAD_SIM, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_sim_eval_refuses_a_bad_argument_in_one_line(cwd, capsys, argv, culprit):
    code, out, err = run("sim_eval", argv, capsys)
    assert code == EXIT_BAD_INPUT
    one_line(err, "sim_eval: error:", culprit)
    assert out == "" and not any(cwd.iterdir())


def test_sim_eval_refuses_a_file_that_is_not_a_model(cwd, capsys):
    (cwd / "junk.pt").write_bytes(b"not a torch file")
    code, _, err = run("sim_eval", ["--agent", "junk.pt", "--env", SLATE], capsys)
    assert code == EXIT_BAD_INPUT
    one_line(err, "junk.pt", "not a loadable recgym model")


def test_argparse_errors_return_exit_2_in_process(cwd, capsys):
    code, _, err = run("offline_eval", ["--agent", "pop", "--steps", "abc"], capsys)
    assert code == EXIT_BAD_INPUT and "--steps" in err and "Traceback" not in err
    assert run("sim_eval", ["--help"], capsys)[0] == EXIT_OK


# ------------------------------------------------------------------ output not writable: exit 4
@pytest.mark.parametrize("name,argv", [("offline_eval", ["--agent", "pop", *TINY]),
                                       ("compare", ["--agents", "pop", "--sim", "none", *TINY])])
def test_an_out_that_is_a_file_exits_4_and_leaves_it_alone(cwd, capsys, name, argv):
    f = cwd / "afile"
    f.write_text("keep me")
    for out in (f, f / "sub"):
        code, _, err = run(name, [*argv, "--out", str(out)], capsys)
        assert code == EXIT_BUSY
        one_line(err, str(out), "cannot write the output there")
    assert f.read_text() == "keep me" and sorted(p.name for p in cwd.iterdir()) == ["afile"]


@pytest.mark.parametrize("name,argv", [("offline_eval", ["--agent", "pop", *TINY]),
                                       ("compare", ["--agents", "pop", "--sim", "none", *TINY])])
def test_an_out_on_a_read_only_filesystem_exits_4(cwd, capsys, monkeypatch, name, argv):
    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = run(name, [*argv, "--out", str(cwd / "ro")], capsys)
    assert code == EXIT_BUSY
    one_line(err, str(cwd / "ro"), "Read-only file system")


def test_a_job_another_process_holds_exits_4(cwd, capsys):
    from recgym.experiments.job import job_lock

    out = cwd / "held"
    with job_lock(out):
        code, _, err = run("offline_eval", ["--agent", "pop", *TINY, "--out", str(out)], capsys)
    assert code == EXIT_BUSY
    one_line(err, str(out), "another process is running this job")
    assert not (out / "results.json").exists()


# ------------------------------------------------------------------ training and data faults
def test_q_learning_divergence_exits_3_and_leaves_no_results(cwd, capsys):
    out = cwd / "q"
    code, _, err = run("offline_eval", ["--agent", "sqn", "--set", "lr=1e12", "--steps", "30", *TINY, *TINY_TORCH,
                                        "--out", str(out), "--no-progress"], capsys)
    assert code == EXIT_DIVERGED
    one_line(err, "sqn", "non-finite")
    assert not out.exists(), "a job that wrote nothing leaves no folder"


def test_resume_with_another_agents_checkpoint_is_refused_and_poisons_nothing(cwd, capsys):
    out = cwd / "job"
    base = [*TINY, "--steps", "20", *TINY_TORCH, "--out", str(out), "--no-progress"]
    assert run("offline_eval", ["--agent", "sasrec", *base], capsys)[0] == EXIT_OK
    before = snapshot(out)
    assert {"results.json", "checkpoint.pt", "model.pt"} <= set(before)
    code, _, err = run("offline_eval", ["--agent", "sqn", "--resume", *base], capsys)
    assert code == EXIT_BAD_INPUT
    one_line(err, str(out / "checkpoint.pt"), "'sasrec'", "'sqn'")
    assert snapshot(out) == before, "the refused run must leave the sasrec job as it was"


def test_download_without_network_names_the_address(cwd, capsys, monkeypatch):
    from recgym.data import download as rdl

    def offline(url, dest, timeout=60.0):
        raise urllib.error.URLError(OSError(errno.ENETUNREACH, "Network is unreachable"))

    monkeypatch.setattr(rdl, "fetch_url", offline)
    data = cwd / "data"
    code, _, err = run("offline_eval", ["--agent", "pop", "--dataset", "ml-100k", "--data-dir", str(data),
                                        "--download", "--out", str(cwd / "out")], capsys)
    assert code == EXIT_BAD_INPUT
    one_line(err, "ml-100k", "cannot download https://", "Network is unreachable")
    assert not any(cwd.iterdir()), "no data folder, no output folder"


# ------------------------------------------------------------------ compare: another run's folder
def test_compare_rerun_with_other_settings_is_refused_and_writes_nothing(cwd, capsys):
    out = cwd / "cmp"
    base = ["--agents", "pop,mc", "--seeds", "0", "--sim", "none", "--data-param", "n_users=100",
            "--data-param", "n_items=60", "--out", str(out)]
    assert run("compare", [*base, "--steps", "150", "--data-param", "n_sessions=300"], capsys)[0] == EXIT_OK
    before = snapshot(out)
    assert "jobs/pop/seed0/results.json" in before and "report.json" in before
    for change, diff in ((["--steps", "100", "--data-param", "n_sessions=300"], "steps: 150 -> 100"),
                         (["--steps", "150", "--data-param", "n_sessions=3000"], "data_params.n_sessions: 300 -> 3000")):
        code, stdout, err = run("compare", [*base, *change], capsys)
        assert code == EXIT_BAD_INPUT
        one_line(err, f"compare: error: {out}: holds jobs run with other settings", diff, "another --out")
        assert snapshot(out) == before, "nothing written: no report under the new command, no retrained job"
    # the same settings again: everything reused
    code, stdout, _ = run("compare", [*base, "--steps", "150", "--data-param", "n_sessions=300"], capsys)
    assert code == EXIT_OK and "2 finished before, 0 to run" in stdout


# ------------------------------------------------------------------ one exit-code contract
def test_each_command_exits_0_on_success_and_130_on_ctrl_c(cwd, capsys, monkeypatch):
    assert run("offline_eval", ["--agent", "pop", *TINY, "--out", "o", "--no-progress"], capsys)[0] == EXIT_OK
    code, out, _ = run("sim_eval", ["--agent", "pop", "--env", SLATE, "--episodes", "2",
                                    "--env-kwargs", '{"n_users": 60, "n_items": 40, "state_len": 30}'], capsys)
    assert code == EXIT_OK and json.loads(out)["episodes"] == 2

    import scripts.compare
    import scripts.offline_eval
    import scripts.sim_eval

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(scripts.offline_eval, "run_job", interrupted)
    monkeypatch.setattr(scripts.compare, "compare", interrupted)
    monkeypatch.setattr(scripts.sim_eval, "run_episodes", interrupted)
    monkeypatch.setattr(scripts.sim_eval, "evaluate_in_env", interrupted)
    for name, argv in (("offline_eval", ["--agent", "pop"]), ("compare", ["--agents", "pop"]),
                       ("sim_eval", ["--agent", "pop", "--env", SLATE, "--env-kwargs", '{"n_users": 60, "n_items": 40}'])):
        code, _, err = run(name, argv, capsys)
        # the run's own log (sim_eval prints the resolved config) may precede it; no traceback
        assert code == EXIT_INTERRUPTED and err.strip().splitlines()[-1] == f"{name}: interrupted"
        assert "Traceback" not in err


# ------------------------------------------------------------------ strict JSON
def test_write_json_turns_non_finite_numbers_into_null(tmp_path):
    from recgym.experiments.report import write_json

    obj = {"a": math.nan, "b": [1.0, math.inf, -math.inf], "c": np.float32("nan"), "d": np.float64(0.5),
           "e": np.array([1.0, np.nan]), "f": {"g": np.int64(3)}, "ok": 2}
    p = write_json(tmp_path / "r.json", obj)

    def refuse(name):
        raise AssertionError(f"{name} in a results file")

    got = json.loads(p.read_text(), parse_constant=refuse)
    assert got == {"a": None, "b": [1.0, None, None], "c": None, "d": 0.5, "e": [1.0, None], "f": {"g": 3}, "ok": 2}


def test_make_vec_of_the_mf_user_env_refuses_zero_envs():
    import gymnasium as gym

    from recgym.errors import BadInputError

    with pytest.raises(BadInputError, match=r"MFUserVectorEnv: num_envs must be a positive integer, got 0"):
        gym.make_vec("recgym/MFUser-Synthetic-v0", num_envs=0)


def test_sim_eval_trains_a_torch_agent_validated_on_the_splits_protocol(monkeypatch):
    # MFUser-Synthetic's data is a leave-one-out split: the shared loop must select on NDCG@10 of the
    # held-out item, not on session NDCG@20 over every validation event (train_loop's default protocol)
    import gymnasium as gym

    import recgym  # noqa: F401  (registers the envs)

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "scripts"))
    from sim_eval import load_policy

    env = gym.make("recgym/MFUser-Synthetic-v0")
    agent, _ = load_policy("sasrec", env, 0, {"steps": 20, "eval_every": 10, "hidden": 16}, log=lambda m: None)
    assert agent.selection_metric == "ndcg@10"
