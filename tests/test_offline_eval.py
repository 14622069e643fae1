"""scripts/offline_eval.py end to end on tiny synthetic data (subprocesses, as a user runs it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "offline_eval.py"
TINY_DATA = ["--data-param", "n_sessions=300"]
TINY_SASREC = ["--set", "hidden=16", "--set", "batch_size=32", "--set", "eval_every=20", "--no-progress"]


def _env(extra_path: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT)] + ([str(extra_path)] if extra_path else []) + [env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(*args: str, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env or _env(), capture_output=True,
                          text=True, timeout=timeout)


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.fixture
def main(monkeypatch):
    """``offline_eval.main`` in this process (no interpreter start-up); torch threads restored."""
    from scripts.offline_eval import main

    n = torch.get_num_threads()
    yield main
    torch.set_num_threads(n)


def test_unknown_agent_lists_available():
    r = _run("--agent", "no-such-agent")  # one real subprocess: the exit status a shell sees
    assert r.returncode == 2
    assert "unknown agent 'no-such-agent'" in r.stderr and "Available agents:" in r.stderr
    for name in ("pop", "mc", "bpr", "sasrec"):
        assert name in r.stderr


def test_unknown_dataset_and_bad_set_are_rejected(tmp_path, main, capsys):
    assert main(["--agent", "pop", "--dataset", "no-such-data", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no-such-data" in err and "synthetic" in err and "ml-100k" in err
    assert main(["--agent", "sasrec", *TINY_DATA, "--set", "hiden=3", "--out", str(tmp_path / "o")]) == 2
    assert "unknown hyper-parameter" in capsys.readouterr().err
    assert main(["--agent", "sasrec", *TINY_DATA, "--set", "hidden", "--out", str(tmp_path / "o")]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.json").exists()


def test_pop_end_to_end_writes_results(tmp_path, main, capsys):
    out = tmp_path / "pop"
    assert main(["--agent", "pop", *TINY_DATA, "--out", str(out), "--seed", "1"]) == 0
    stdout = capsys.readouterr().out
    res = _results(out)
    for key in ("valid", "test", "config", "versions", "data_checksum", "selection_metric", "best_step"):
        assert key in res
    assert set(res["versions"]) >= {"python", "torch", "numpy", "recgym"}
    for key in ("ndcg@10", "hr@10", "hr@20_purchase", "ndcg@20_click", "ndcg@5"):
        assert 0.0 <= res["test"][key] <= 1.0 and key in res["valid"]
    assert res["selection_metric"] == "ndcg@20" and res["seed"] == 1
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    payload = torch.load(out / "model.pt", weights_only=True)
    assert payload["agent"] == "pop"
    assert "ndcg@10" in stdout and "valid" in stdout  # the printed table
    # same data, same checksum; another seed gives another split
    assert main(["--agent", "pop", *TINY_DATA, "--out", str(tmp_path / "pop2"), "--seed", "1"]) == 0
    assert _results(tmp_path / "pop2")["data_checksum"] == res["data_checksum"]
    assert main(["--agent", "pop", *TINY_DATA, "--out", str(tmp_path / "pop3"), "--seed", "2"]) == 0
    assert _results(tmp_path / "pop3")["data_checksum"] != res["data_checksum"]


def test_sasrec_end_to_end_records_curves(tmp_path, main):
    out = tmp_path / "sas"
    assert main(["--agent", "sasrec", *TINY_DATA, *TINY_SASREC, "--steps", "40", "--out", str(out)]) == 0
    res = _results(out)
    assert [c["step"] for c in res["curves"]] == [20, 40] and res["best_step"] in (20, 40)
    assert res["config"]["hidden"] == 16 and res["config"]["steps"] == 40
    best = max(res["curves"], key=lambda c: c["ndcg@20"])
    assert res["valid"]["ndcg@20"] == pytest.approx(best["ndcg@20"], abs=1e-12)  # best checkpoint restored
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 40


SLOW_AGENT = textwrap.dedent("""
    import time
    from recgym.agents.sasrec import SASRecAgent

    class SlowSASRec(SASRecAgent):
        name = "slow-sasrec"

        def update(self, batch, step):
            time.sleep(0.02)  # leaves time to kill the process between checkpoints
            return super().update(batch, step)
""")


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    (tmp_path / "slow_agent_mod.py").write_text(SLOW_AGENT)
    env = _env(tmp_path)
    args = ["--agent", "slow_agent_mod:SlowSASRec", *TINY_DATA, *TINY_SASREC, "--steps", "140", "--seed", "5"]

    full = tmp_path / "full"
    r = _run(*args, "--out", str(full), env=env)
    assert r.returncode == 0, r.stderr

    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args, "--out", str(cut)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (cut / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = torch.load(cut / "checkpoint.pt", weights_only=True)["step"]
    assert 20 <= killed_at < 140 and not (cut / "results.json").exists()

    r = _run(*args, "--out", str(cut), "--resume", env=env)
    assert r.returncode == 0, r.stderr
    assert f"resumed from {cut / 'checkpoint.pt'} at step {killed_at}" in r.stdout
    a, b = _results(full), _results(cut)
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    assert a["curves"] == b["curves"] and a["best_step"] == b["best_step"]
    assert len(a["curves"]) == 7 and a["selection_metric"] == "ndcg@20"


def test_nan_training_exits_3_and_names_the_step(tmp_path, main, capsys, monkeypatch):
    (tmp_path / "nan_agent_mod.py").write_text(textwrap.dedent("""
        from recgym.agents.sasrec import SASRecAgent

        class NaNSASRec(SASRecAgent):
            def update(self, batch, step):
                self._nan = step >= 25
                return super().update(batch, step)

            def loss(self, batch):
                loss, info = super().loss(batch)
                return (loss * float("nan") if self._nan else loss), info
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "nan"
    code = main(["--agent", "nan_agent_mod:NaNSASRec", *TINY_DATA, *TINY_SASREC, "--steps", "60", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 3
    assert "stopped at step 26" in err and "(step 20) is kept" in err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 20
    assert not (out / "results.json").exists()


@pytest.mark.realdata
def test_ml100k_baselines_reference_figures(tmp_path, main):
    """Popularity on ML-100k leave-one-out gives test NDCG@10 0.0432; the Markov chain beats it."""
    data_dir = os.environ.get("RECGYM_DATA_DIR")
    if not data_dir or not (Path(data_dir) / "ml-100k" / "u.data").exists():
        pytest.skip("needs RECGYM_DATA_DIR with ml-100k")
    got = {}
    for agent in ("pop", "mc"):
        assert main(["--agent", agent, "--dataset", "ml-100k", "--data-dir", data_dir, "--out", str(tmp_path / agent)]) == 0
        got[agent] = _results(tmp_path / agent)["test"]["ndcg@10"]
    assert got["pop"] == pytest.approx(0.0432, abs=5e-4)
    assert got["mc"] > got["pop"] + 0.02
