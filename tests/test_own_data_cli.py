"""Your own data through the command lines: offline_eval, compare and sim_eval on a generated
MovieLens-latest-style CSV (unsorted by time, raw ids, ratings) and a semicolon session log, with
the popularity baseline's metrics recomputed independently in pandas; the report's new parts;
serving with raw ids; TensorBoard and Minari export (skipped without the packages)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import recgym.data as rd
from recgym.agents.registry import make_agent
from recgym.errors import BadInputError
from recgym.experiments import CompareConfig, JobSpec, aggregate, run_job
from recgym.experiments.report import report_markdown, write_report
from tests.test_own_data import write_latest_small, write_session_log

ML_COLS = "user=userId,item=movieId,time=timestamp,rating=rating"
SESSION_COLS = "session=session_id,user=user,item=item,time=time,kind=event"
FILE_SIM = "recgym/MFUser-v0"


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def files(tmp_path):
    ml, views = tmp_path / "ratings.csv", tmp_path / "views.csv"
    return ml, write_latest_small(ml), views, write_session_log(views)


def _ndcg(rank: np.ndarray, k: int) -> np.ndarray:
    return np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)


def pandas_pop_loo(raw: pd.DataFrame) -> dict[str, float]:
    """docs/evaluation.md's leave-one-out protocol from the raw file: events by (time, line); a user
    with >= 3 ratings has the last as test target and the last two out of training; popularity =
    training counts; the input's items excluded; rank = items scored >= the target."""
    df = raw.assign(line=np.arange(len(raw))).sort_values(["userId", "timestamp", "line"], kind="stable")
    df["pos"] = df.groupby("userId").cumcount()
    df["size"] = df.groupby("userId")["movieId"].transform("size")
    counts = df[(df["size"] < 3) | (df["pos"] < df["size"] - 2)]["movieId"].value_counts()
    counts = counts.reindex(raw["movieId"].unique(), fill_value=0)
    ranks = []
    for _, g in df[df["size"] >= 3].groupby("userId"):
        target = g["movieId"].iloc[-1]
        others = counts.drop(index=list(g["movieId"].iloc[:-1]) + [target])
        ranks.append(int((others >= counts[target]).sum()))
    r = np.array(ranks)
    return {"recall@1": np.mean(r < 1), "recall@10": np.mean(r < 10), "ndcg@10": np.mean(_ndcg(r, 10)), "n_users": len(r)}


def pandas_pop_session(raw: pd.DataFrame, seed: int) -> dict[str, float]:
    """The session protocol: sessions (sorted ids) shuffled with the seed, cut 80/10/10; every event
    of a test session a target; popularity = training counts; the full catalogue, ties against the target."""
    ids = np.sort(raw["session_id"].unique())
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_train, n_valid = round(0.8 * len(ids)), round(0.1 * len(ids))
    counts = raw[raw["session_id"].isin(ids[perm[:n_train]])]["item"].value_counts()
    counts = counts.reindex(raw["item"].unique(), fill_value=0)
    test = raw[raw["session_id"].isin(ids[perm[n_train + n_valid:]])]
    valid = raw[raw["session_id"].isin(ids[perm[n_train:n_train + n_valid]])]
    c = counts.to_numpy()
    r = np.array([int((c >= counts[i]).sum()) - 1 for i in test["item"]])
    buy = test["event"].isin(["cart", "purchase"]).to_numpy()
    return {"hr@20": np.mean(r < 20), "ndcg@20": np.mean(_ndcg(r, 20)), "hr@20_purchase": np.mean((r < 20)[buy]),
            "n_events": len(test), "n_test_sessions": test["session_id"].nunique(), "n_valid_events": len(valid)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------- the three entry points
@pytest.mark.slow
def test_every_entry_point_on_a_movielens_latest_style_csv(files, tmp_path, capsys):
    from scripts.compare import main as compare_main
    from scripts.offline_eval import main as offline_main
    from scripts.sim_eval import main as sim_main

    ml, raw, _, _ = files
    want = pandas_pop_loo(raw)
    out = tmp_path / "pop"
    assert offline_main(["--agent", "pop", "--data-file", str(ml), "--columns", ML_COLS, "--out", str(out),
                         "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "resolved config of pop" in printed and "protocol:loo" in printed  # printed at the start
    res = json.loads((out / "results.json").read_text())
    for k, v in want.items():
        assert res["test"][k] == pytest.approx(v), k
    assert res["protocol"] == "loo" and res["dataset"] == "ratings"
    assert res["data_file"] == {"path": str(ml.resolve()), "sha256": _sha(ml), "sep": None,
                                "columns": {"user": "userId", "item": "movieId", "time": "timestamp", "rating": "rating"}}
    assert res["resolved_config"]["layers"] == ["protocol:loo"] and res["resolved_config"]["config"] == res["config"]

    cmp = tmp_path / "cmp"
    assert compare_main(["--agents", "pop,mc", "--seeds", "0", "--data-file", str(ml), "--columns", ML_COLS,
                         "--out", str(cmp)]) == 0
    capsys.readouterr()
    rep = json.loads((cmp / "report.json").read_text())
    assert rep["sims"] == [FILE_SIM] and rep["protocol"] == "loo"
    assert rep["table"]["pop"]["ndcg@10"]["mean"] == pytest.approx(want["ndcg@10"])
    assert rep["data_file"]["sha256"] == _sha(ml) and set(rep["resolved_configs"]) == {"pop", "mc"}
    assert set(rep["simulators"][FILE_SIM]) >= {"rmse_heldout", "mean_observed", "mean_unobserved"}
    md = (cmp / "report.md").read_text()
    assert _sha(ml) in md and "Rank of each agent" in md and "Glossary" in md and "**iAR@1**" in md
    assert "Simulator diagnostics" in md and "Resolved configurations" in md
    job = json.loads((cmp / "jobs" / "pop" / "seed0" / "results.json").read_text())

    assert sim_main(["--agent", "pop", "--data-file", str(ml), "--columns", ML_COLS]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["env"] == FILE_SIM and got["split"] == "valid"
    # the same simulator and the same evaluation as compare's job: the same numbers
    for k in ("iar@1", "ar@1", "hit@1", "n_contexts"):
        assert got[k] == pytest.approx(job["sim"][FILE_SIM][k]), k
    assert got["data_file"]["sha256"] == _sha(ml) and got["resolved_config"]["protocol"] == "loo"


def test_every_entry_point_on_a_semicolon_session_log(files, tmp_path, capsys):
    from scripts.compare import main as compare_main
    from scripts.offline_eval import main as offline_main
    from scripts.sim_eval import main as sim_main

    _, _, views, raw = files
    want = pandas_pop_session(raw, seed=3)
    out = tmp_path / "pop"
    # a session column: the session protocol by default; the delimiter given explicitly
    assert offline_main(["--agent", "pop", "--data-file", str(views), "--columns", SESSION_COLS, "--sep", ";",
                         "--seed", "3", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"] == "session" and res["data_file"]["sep"] == ";"
    for k in ("hr@20", "ndcg@20", "hr@20_purchase", "n_events"):
        assert res["test"][k] == pytest.approx(want[k]), k
    cmp = tmp_path / "cmp"
    assert compare_main(["--agents", "pop", "--seeds", "3", "--data-file", str(views), "--columns", SESSION_COLS,
                         "--out", str(cmp)]) == 0
    rep = json.loads((cmp / "report.json").read_text())
    assert rep["table"]["pop"]["ndcg@20"]["mean"] == pytest.approx(want["ndcg@20"])
    # the simulator starts from every event of the job's own validation sessions (never a session
    # the agent trained on, never a test session)
    job = json.loads((cmp / "jobs" / "pop" / "seed3" / "results.json").read_text())
    assert job["sim"][FILE_SIM]["n_contexts"] == want["n_valid_events"]
    capsys.readouterr()
    assert sim_main(["--agent", "pop", "--env", "recgym/SlateNextK-v0", "--episodes", "5", "--data-file", str(views),
                     "--columns", SESSION_COLS]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["split"] == "test" and got["episodes"] == 5 and "ndcg@10" in got


def test_data_file_arguments_are_checked(files, tmp_path, capsys):
    from scripts.offline_eval import main

    ml = files[0]
    cases = [(["--data-file", str(ml)], "--data-file needs --columns"),
             (["--columns", ML_COLS], "--columns / --sep go with --data-file"),
             (["--data-file", str(tmp_path / "nope.csv"), "--columns", ML_COLS], "no such file"),
             (["--data-file", str(ml), "--columns", "item=movieId"], "must name the user column"),
             (["--data-file", str(ml), "--columns", "user=userId,item=movieID"], "'movieID'"),
             (["--data-file", str(ml), "--columns", ML_COLS, "--dataset", "ml-100k"], "is a known source")]
    for argv, msg in cases:
        assert main(["--agent", "pop", *argv, "--out", str(tmp_path / "x")]) == 2, argv
        assert msg in capsys.readouterr().err, argv


def test_data_file_fields_enter_the_job_identity(files, tmp_path):
    ml = files[0]
    cols = rd.parse_columns(ML_COLS)
    spec = JobSpec(agent="pop", dataset="ratings", data_file=str(ml), columns=cols, out=str(tmp_path / "j"))
    run_job(spec, log=lambda m: None)
    assert run_job(spec, log=lambda m: None)["test"]  # reused
    other = JobSpec(agent="pop", dataset="ratings", data_file=str(ml), columns={**cols, "rating": "timestamp"},
                    out=str(tmp_path / "j"))
    with pytest.raises(BadInputError, match="another spec"):
        run_job(other, log=lambda m: None)
    # an edited file makes the finished job stale: it trains again on the new content
    first = json.loads((tmp_path / "j" / "results.json").read_text())
    with open(ml, "a") as fh:
        fh.write("99999,1,5.0,1600000000\n")
    msgs = []
    again = run_job(spec, log=msgs.append)
    assert not any("reused" in m for m in msgs)
    assert again["data_file"]["sha256"] == _sha(ml) != first["data_file"]["sha256"]


# ---------------------------------------------------------------------- the report
def _job(root: Path, agent: str, seed: int, ndcg: float, iar: float, best: int, steps=(10, 20, 30)) -> JobSpec:
    d = root / "jobs" / agent / f"seed{seed}"
    d.mkdir(parents=True)
    res = {"agent": agent, "seed": seed, "protocol": "loo", "selection_metric": "ndcg@10", "best_step": best,
           "test": {"ndcg@10": ndcg}, "valid": {"ndcg@10": ndcg}, "sim": {FILE_SIM: {"iar@1": iar}},
           "curves": [{"step": float(s), "ndcg@10": ndcg} for s in steps]}
    (d / "results.json").write_text(json.dumps(res))
    return JobSpec(agent=agent, seed=seed, out=str(d), sims=[FILE_SIM])


def test_report_ranks_convergence_and_few_agent_warning(tmp_path):
    # (ndcg, iar, best step): c is best logged, worst simulated; b's best step is its last evaluation
    vals = {"a": (0.2, 0.5, 20), "b": (0.1, 0.7, 30), "c": (0.3, 0.4, 10)}
    jobs = [_job(tmp_path, a, 0, *v) for a, v in vals.items()]
    cfg = CompareConfig(agents=list(vals), seeds=[0], out=str(tmp_path), sims=[FILE_SIM])
    rep = aggregate(cfg, jobs)
    assert rep["ranks"]["logged"]["rank"] == {"c": 1, "a": 2, "b": 3}
    assert rep["ranks"]["simulated"] == {"key": "sim_iar@1", "rank": {"b": 1, "a": 2, "c": 3}}
    conv = rep["convergence"]
    assert conv["a"]["0"]["converged"] is True
    assert {k: conv["b"]["0"][k] for k in ("best_step", "n_evals", "converged", "edge", "flags")} == {
        "best_step": 30, "n_evals": 3, "converged": False, "edge": "last", "flags": ["best at last evaluation"]}
    assert conv["c"]["0"]["edge"] == "first" and conv["c"]["0"]["flags"] == ["best at first evaluation"]
    md = report_markdown(rep)
    assert "| b | 30 | - | 3 | - | **seed 0 (best at last evaluation)** |" in md
    assert "| c | 1 | 3 |" in md  # c's ranks: logged 1, simulated 3
    assert "| ndcg@10 vs sim_iar@1 | -1.000 | 3 ⚠ |" in md and "fewer than 5 agents" in md
    assert "**iAR@1**" in md and "**JS to μ̂**" not in md  # only the terms the table uses


def test_report_draws_no_empty_figure(tmp_path):
    jobs = [_job(tmp_path, "a", 0, 0.2, 0.5, 20)]
    cfg = CompareConfig(agents=["a"], seeds=[0], out=str(tmp_path), sims=[])
    (tmp_path / "logged_vs_sim.png").write_bytes(b"stale")
    rep = aggregate(cfg, jobs)
    files = write_report(rep, tmp_path)
    assert not (tmp_path / "logged_vs_sim.png").exists() and "logged_vs_sim.png" not in (tmp_path / "report.md").read_text()
    assert (tmp_path / "curves.png") in files and "Spearman" not in (tmp_path / "report.md").read_text()


# ---------------------------------------------------------------------- serving with raw ids
def test_recommender_maps_raw_ids_in_and_out(files):
    from recgym.serving import Recommender

    ml, raw = files[0], files[1]
    log = rd.read_table(ml, columns=ML_COLS)
    agent = make_agent("pop", log.n_items).fit(log)
    rec = Recommender(agent, log)
    counts = raw["movieId"].value_counts()  # pop fitted on the whole log: raw counts, ties by dense id
    history = [int(counts.index[0]), str(counts.index[2]), 999_999_999]  # ints, strings, an unknown id
    got = rec.recommend([history, []], k=3)
    dense = agent.recommend([rec.encode(history[:2]), np.zeros(0, np.int64)], k=3, exclude_seen=True)
    assert got.shape == (2, 3) and got.dtype.kind == "U"
    assert (got == log.item_ids[dense]).all()
    assert str(counts.index[0]) not in got[0] and str(counts.index[2]) not in got[0]  # the history is excluded
    assert got[1][0] == str(counts.index[0])  # the most rated movie, as its raw id
    with pytest.raises(BadInputError, match="999999999"):
        rec.recommend([history], unknown="error")


# ---------------------------------------------------------------------- ecosystem
def test_tensorboard_missing_package_is_a_clear_error(files, tmp_path, monkeypatch, capsys):
    from scripts.offline_eval import main

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as without the package
    ml = files[0]
    code = main(["--agent", "pop", "--data-file", str(ml), "--columns", ML_COLS, "--out", str(tmp_path / "x"),
                 "--tensorboard", str(tmp_path / "tb")])
    assert code == 2 and "pip install 'recgym[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "x" / "results.json").exists()  # refused before training


@pytest.mark.slow
def test_tensorboard_events_hold_the_training_curves(files, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from scripts.offline_eval import main

    ml = files[0]
    assert main(["--agent", "sasrec", "--data-file", str(ml), "--columns", ML_COLS, "--out", str(tmp_path / "s"),
                 "--steps", "6", "--set", "eval_every=3", "--set", "hidden=8", "--set", "batch_size=16",
                 "--tensorboard", str(tmp_path / "tb"), "--no-progress"]) == 0
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    ev = EventAccumulator(str(tmp_path / "tb" / "ratings" / "sasrec" / "seed0")).Reload()
    got = [(e.step, e.value) for e in ev.Scalars("valid/ndcg@10")]
    want = [(int(c["step"]), c["ndcg@10"]) for c in res["curves"]]
    assert [s for s, _ in got] == [s for s, _ in want] == [3, 6]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)
    assert "train/loss" in ev.Tags()["scalars"]


def test_minari_round_trip(files, tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    from recgym.data.export import to_minari
    from recgym.data import Transitions

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    views = files[2]
    log = rd.read_table(views, columns=SESSION_COLS)
    with pytest.warns(UserWarning):  # Minari asks for an author, an email and a code link
        to_minari(log, "recgym/views/logged-v0", state_len=4)
    ds = minari.load_dataset("recgym/views/logged-v0")
    assert ds.total_episodes == log.n_sessions and ds.total_steps == log.n_events
    tr = Transitions.from_log(log, state_len=4)
    for ep in ds.iterate_episodes():
        lo, hi = log.offsets[ep.id], log.offsets[ep.id + 1]
        assert (ep.actions == log.items[lo:hi]).all()
        assert ep.rewards == pytest.approx(log.rewards[lo:hi])
        assert (ep.observations["history"][:-1] == tr.state[lo:hi]).all()
        assert (ep.observations["history"][-1] == tr.next_state[hi - 1]).all()
        assert (ep.observations["length"][:, 0] == np.r_[tr.state_len[lo:hi], tr.next_len[hi - 1]]).all()
        assert ep.terminations[-1] and not ep.terminations[:-1].any() and not ep.truncations.any()
    assert ds.observation_space["history"].shape == (4,) and ds.action_space.n == log.n_items
