"""Fault cases of the harness's process pool: a comparison killed with SIGKILL leaves no worker
behind (they would go on running queued jobs and hold their locks), so the same command can be
re-run at once and finishes every agent x seed exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data-param", "n_sessions=200", "--data-param", "n_users=100", "--data-param", "n_items=60"]


def _alive_in_group(pgid: int) -> list[int]:
    """Pids of the processes of group ``pgid`` that are not zombies (a zombie has exited)."""
    alive = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (d / "stat").read_text()
            state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                alive.append(int(d.name))
    return alive


def _worker_pids(out: Path) -> set[int]:
    pids = set()
    for log in out.glob("jobs/*/seed*/log.txt"):
        for line in log.read_text().splitlines():
            if line.startswith("== ") and " pid " in line:
                pids.add(int(line.rsplit(" pid ", 1)[1]))
    return pids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with their parent on Linux (prctl)")
def test_compare_killed_with_sigkill_leaves_no_worker_and_reruns_at_once(tmp_path):
    out = tmp_path / "cmp"
    cmd = [sys.executable, str(ROOT / "scripts" / "compare.py"), "--agents", "sasrec,pop,mc", "--seeds", "0", *TINY,
           "--steps", "100", "--set", "hidden=8", "--set", "batch_size=32", "--set", "eval_every=50",
           "--workers", "2", "--sim", "none", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: the workers are found by pgid
    try:
        deadline = time.monotonic() + 20
        while not _worker_pids(out):  # a worker has started a job
            assert proc.poll() is None, "compare ended before a job started"
            assert time.monotonic() < deadline, "no job started within 20 s"
            time.sleep(0.05)
        assert not (out / "jobs" / "sasrec" / "seed0" / "results.json").exists(), "the job must still be running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while (left := _alive_in_group(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left == [], f"processes of the killed compare live on: {left}"
        assert not any(_alive(p) for p in _worker_pids(out))

        # the same command again, at once: no "another process is running this job"
        rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert rerun.returncode == 0, rerun.stderr
        found = [json.loads(p.read_text()) for p in out.glob("jobs/*/seed*/results.json")]
        keys = sorted((r["agent"], r["seed"]) for r in found)
        assert keys == [("mc", 0), ("pop", 0), ("sasrec", 0)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_pool_worker_exits_when_its_parent_is_already_gone():
    """The race: a parent that died before ``prctl`` took effect is seen through ``os.getppid()``."""
    code = ("import os, sys; sys.path.insert(0, %r); from recgym.experiments.fanout import die_with_parent; "
            "die_with_parent(os.getppid() + 10**7); print('survived')") % str(ROOT)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 1 and "survived" not in r.stdout


def test_identity_diff_names_each_differing_setting():
    from recgym.experiments.job import JobSpec, identity_diff

    a = JobSpec(agent="sasrec", steps=150, data_params={"n_sessions": 300}).identity()
    b = JobSpec(agent="sasrec", steps=100, data_params={"n_sessions": 3000}, overrides={"hidden": 8},
                out="elsewhere", sims=["x"]).identity()  # where it lives and what it is evaluated in do not count
    assert identity_diff(a, b) == ["data_params.n_sessions: 300 -> 3000", "overrides.hidden: unset -> 8",
                                   "steps: 150 -> 100"]
    assert identity_diff(a, a) == []
