"""Your own data: from_frame / read_table / register_source, the duplicate policy, presets by
protocol and the generic env ids — on small files in public formats that the tests write.

The metric checks recompute the documented protocols with plain pandas from the raw files
(never through recgym's split or evaluation code).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

import recgym  # noqa: F401  (registers the env ids)
import recgym.data as rd
from recgym.agents.registry import AGENTS, get_agent_class, make_agent, resolved_config
from recgym.agents.training import TorchAgent
from recgym.data import SessionLog, from_frame, read_table, register_source
from recgym.data.registry import REGISTRY
from recgym.errors import BadInputError
from recgym.evaluate import evaluate


# ---------------------------------------------------------------------- generated public-format files
def write_latest_small(path: Path, n_users: int = 60, n_movies: int = 40, seed: int = 0) -> pd.DataFrame:
    """A MovieLens 'latest-small' style ratings.csv: userId,movieId,rating,timestamp with sparse raw
    movie ids up to ~200k, half-star ratings, rows sorted by movie id (not by time), a few users
    with two ratings at the same second and a few with only two ratings."""
    rng = np.random.default_rng(seed)
    movies = np.sort(rng.choice(np.arange(1, 200_000), n_movies, replace=False))
    p = 1.0 / np.arange(1, n_movies + 1)
    p = rng.permutation(p / p.sum())
    rows = []
    for u in range(n_users):
        k = 2 if u % 15 == 0 else int(rng.integers(3, 16))
        ms = rng.choice(movies, size=k, replace=False, p=p)
        ts = rng.integers(900_000_000, 1_500_000_000, size=k)
        if u % 7 == 0:
            ts[-1] = ts[0]  # a tie: file order decides
        ratings = rng.integers(1, 11, size=k) / 2
        uid = 1 + 3 * u
        rows += [(uid, int(m), float(r), int(t)) for m, t, r in zip(ms, ts, ratings)]
    df = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    df = df.sort_values(["movieId", "userId"], kind="stable").reset_index(drop=True)
    df.to_csv(path, index=False)
    return df


def write_session_log(path: Path, n_sessions: int = 80, seed: int = 1) -> pd.DataFrame:
    """A semicolon-separated view log: session_id;user;item;time;event with string item ids, ISO
    times, view / cart / purchase events, rows shuffled (not in time order)."""
    rng = np.random.default_rng(seed)
    items = np.array([f"SKU-{i:04d}" for i in rng.choice(5000, 30, replace=False)])
    p = 1.0 / np.arange(1, 31) ** 0.8
    p /= p.sum()
    rows = []
    for s in range(n_sessions):
        k = int(rng.integers(2, 9))
        t0 = pd.Timestamp("2024-03-01") + pd.Timedelta(seconds=int(rng.integers(0, 3_000_000)))
        gaps = np.cumsum(rng.integers(1, 300, size=k))
        events = rng.choice(["view", "cart", "purchase"], size=k, p=[0.7, 0.2, 0.1])
        sid = 1000 + 17 * s
        user = f"u{int(rng.integers(0, 40))}"
        for j in range(k):
            rows.append((sid, user, str(rng.choice(items, p=p)), (t0 + pd.Timedelta(seconds=int(gaps[j]))).isoformat(), events[j]))
    df = pd.DataFrame(rows, columns=["session_id", "user", "item", "time", "event"])
    df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    df.to_csv(path, sep=";", index=False)
    return df


ML_COLUMNS = {"user": "userId", "item": "movieId", "time": "timestamp", "rating": "rating"}
SESSION_COLUMNS = {"user": "user", "item": "item", "time": "time", "kind": "event", "session": "session_id"}


@pytest.fixture()
def ml_file(tmp_path):
    path = tmp_path / "ratings.csv"
    return path, write_latest_small(path)


@pytest.fixture()
def session_file(tmp_path):
    path = tmp_path / "views.csv"
    return path, write_session_log(path)


def _ndcg(rank: np.ndarray, k: int) -> np.ndarray:
    return np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)


# ---------------------------------------------------------------------- the traps
def test_raw_ids_encoded_densely_and_kept(ml_file):
    path, raw = ml_file
    log = read_table(path, columns=ML_COLUMNS)
    assert log.n_items == raw["movieId"].nunique() < raw["movieId"].max()  # not max raw id + 1
    # the way back: item_ids / user_ids give the raw ids of every event
    frame = log.to_pandas()
    back = pd.DataFrame({"userId": log.user_ids[frame["user"]].astype(int), "movieId": log.item_ids[frame["item"]].astype(int),
                         "rating": frame["rating"].astype(float), "timestamp": frame["timestamp"].astype(int)})
    key = ["userId", "movieId"]
    pd.testing.assert_frame_equal(back.sort_values(key).reset_index(drop=True), raw.sort_values(key).reset_index(drop=True))


def test_events_ordered_by_time_then_file_order(ml_file):
    path, raw = ml_file
    split = rd.split_leave_one_out(read_table(path, columns=ML_COLUMNS))
    # independent: each user's last event by (timestamp, file line); users with >= 3 ratings
    order = raw.assign(line=np.arange(len(raw))).sort_values(["userId", "timestamp", "line"], kind="stable")
    last = order.groupby("userId").tail(1).set_index("userId")["movieId"]
    sizes = raw.groupby("userId").size()
    last = last[sizes[last.index] >= 3]
    test = split.test
    got = pd.Series(test.item_ids[test.items[test.offsets[1:] - 1]].astype(int), index=test.user_ids[test.users].astype(int))
    pd.testing.assert_series_equal(got.sort_index(), last.sort_index(), check_names=False)
    # the file is sorted by movie id: the highest movie id is NOT each user's target
    highest = raw.groupby("userId")["movieId"].max()[last.index]
    assert (highest != last).mean() > 0.5


def test_time_ties_keep_file_order_and_no_time_means_file_order():
    df = pd.DataFrame({"u": ["b", "a", "b", "b", "a"], "i": [9, 4, 3, 7, 4], "t": [5, 2, 5, 1, 1]})
    log = from_frame(df, user="u", item="i", time="t", duplicates="keep")
    assert list(log.user_ids) == ["a", "b"]
    seqs = [list(log.item_ids[log.session(s)]) for s in range(2)]
    assert seqs == [["4", "4"], ["7", "9", "3"]]  # b: t=1, then the t=5 tie in file order (9 before 3)
    log = from_frame(df, user="u", item="i", duplicates="keep")
    assert [list(log.item_ids[log.session(s)]) for s in range(2)] == [["4", "4"], ["9", "3", "7"]]
    np.testing.assert_array_equal(log.timestamps, [1, 4, 0, 2, 3])  # the row numbers


def test_rating_sets_rewards_and_kinds_with_the_documented_scheme(ml_file):
    path, raw = ml_file
    for scheme, expect in (("rating", lambda r: np.where(r >= 4, 1.0, np.where(r >= 3, 0.5, 0.0))),
                           ("click-purchase", lambda r: np.where(r >= 4, 1.0, 0.2))):
        log = read_table(path, columns=ML_COLUMNS, reward_scheme=scheme)
        np.testing.assert_allclose(log.rewards, expect(log.ratings.astype(np.float64)))
        np.testing.assert_array_equal(log.kinds, (log.ratings >= 4).astype(np.int8))
    assert sorted(np.unique(log.ratings)) == sorted(raw["rating"].unique())
    # an explicit reward column wins over the rating for rewards (kinds still from the rating)
    df = raw.assign(gain=np.arange(len(raw), dtype=float))
    log = from_frame(df, user="userId", item="movieId", time="timestamp", rating="rating", reward="gain")
    assert sorted(log.rewards.tolist()) == df["gain"].tolist()
    np.testing.assert_array_equal(log.kinds, (log.ratings >= 4).astype(np.int8))
    # the public helpers are the one implementation
    k, r = rd.rating_rewards(np.array([1, 2.5, 3, 3.5, 4, 5]))
    np.testing.assert_allclose(r, [0, 0, 0.5, 0.5, 1, 1])
    np.testing.assert_array_equal(k, [0, 0, 0, 0, 1, 1])


def test_from_pandas_refuses_raw_tables(ml_file):
    _, raw = ml_file
    with pytest.raises(BadInputError, match="missing column 'session'.*from_frame"):
        SessionLog.from_pandas(raw, n_items=10)
    df = pd.DataFrame({"session": [0, 0], "t": [0, 1], "item": ["a", "b"], "reward": [1.0, 1.0], "kind": [0, 0],
                       "timestamp": [0.0, 1.0]})
    with pytest.raises(BadInputError, match="dense integer ids.*from_frame"):
        SessionLog.from_pandas(df, n_items=2)
    with pytest.raises(BadInputError, match=r"row 1: item 193609 is outside \[0, n_items=2\)"):
        SessionLog.from_pandas(df.assign(item=[0, 193609]), n_items=2)


def test_kind_column_and_sessions(session_file):
    path, raw = session_file
    log = read_table(path, columns=SESSION_COLUMNS)
    assert log.n_sessions == raw["session_id"].nunique() and log.n_items == raw["item"].nunique()
    assert set(log.item_ids) == set(raw["item"])  # string ids kept as they are
    # the way back to raw session ids, also through a split
    first = raw.sort_values("time").groupby("session_id")["item"].first()
    got = pd.Series(log.item_ids[log.items[log.offsets[:-1]]], index=log.session_ids.astype(int))
    pd.testing.assert_series_equal(got.sort_index(), first.sort_index(), check_names=False)
    test = rd.split_by_session(log, seed=0).test
    assert set(test.session_ids) < set(log.session_ids) and len(test.session_ids) == test.n_sessions
    buy = raw["event"].isin(["cart", "purchase"])
    assert int((log.kinds == 1).sum()) == int(buy.sum())
    np.testing.assert_allclose(np.sort(log.rewards), np.sort(np.where(buy, 1.0, 0.2)).astype(np.float32))
    assert np.all(np.diff(log.timestamps)[np.diff(log.session_of_event) == 0] >= 0)  # time order in each session


# ---------------------------------------------------------------------- protocols against pandas
def test_pop_loo_metrics_match_an_independent_pandas_computation(ml_file):
    path, raw = ml_file
    log = read_table(path, columns=ML_COLUMNS)
    split = rd.split_leave_one_out(log)
    agent = make_agent("pop", split.n_items, dataset="my-ratings", protocol="loo").fit(split.train)
    got = evaluate(agent, split.test, "loo")

    # the documented protocol, from the raw file: order by (time, line); the last event is the
    # target of users with >= 3 ratings, the last two leave training; pop = training counts;
    # the input's items are excluded; rank = items scored >= the target (ties against it)
    df = raw.assign(line=np.arange(len(raw))).sort_values(["userId", "timestamp", "line"], kind="stable")
    df["pos"] = df.groupby("userId").cumcount()
    df["size"] = df.groupby("userId")["movieId"].transform("size")
    train = df[(df["size"] < 3) | (df["pos"] < df["size"] - 2)]
    counts = train["movieId"].value_counts().reindex(raw["movieId"].unique(), fill_value=0)
    ranks = []
    for _, g in df[df["size"] >= 3].groupby("userId"):
        target = g["movieId"].iloc[-1]
        others = counts.drop(index=list(g["movieId"].iloc[:-1]) + [target])
        ranks.append(int((others >= counts[target]).sum()))
    ranks = np.array(ranks)
    assert got["n_users"] == len(ranks)
    assert got["recall@10"] == pytest.approx(np.mean(ranks < 10))
    assert got["recall@1"] == pytest.approx(np.mean(ranks < 1))
    assert got["ndcg@10"] == pytest.approx(np.mean(_ndcg(ranks, 10)))


def test_pop_session_metrics_match_an_independent_pandas_computation(session_file):
    path, raw = session_file
    log = read_table(path, columns=SESSION_COLUMNS)
    split = rd.split_by_session(log, seed=3)
    agent = make_agent("pop", split.n_items, dataset="my-views", protocol="session").fit(split.train)
    got = evaluate(agent, split.test, "session")

    # the documented protocol: sessions (sorted by id) shuffled with the seed, cut 80/10/10;
    # every event of a test session is a target; pop = training counts; full catalogue, ties
    # against the target; purchase = cart or purchase
    ids = np.sort(raw["session_id"].unique())
    perm = np.random.default_rng(3).permutation(len(ids))
    n_train, n_valid = round(0.8 * len(ids)), round(0.1 * len(ids))
    train_ids, test_ids = ids[perm[:n_train]], ids[perm[n_train + n_valid:]]
    counts = raw[raw["session_id"].isin(train_ids)]["item"].value_counts().reindex(raw["item"].unique(), fill_value=0)
    test = raw[raw["session_id"].isin(test_ids)]
    c = counts.to_numpy()
    ranks = np.array([int((c >= counts[i]).sum()) - 1 for i in test["item"]])
    buy = test["event"].isin(["cart", "purchase"]).to_numpy()
    hit = ranks < 10
    assert got["n_events"] == len(test) and got["n_purchase"] == buy.sum()
    assert got["hr@10"] == pytest.approx(hit.mean())
    assert got["ndcg@10"] == pytest.approx(_ndcg(ranks, 10).mean())
    assert got["hr@10_purchase"] == pytest.approx(hit[buy].mean())
    assert got["ndcg@10_click"] == pytest.approx(_ndcg(ranks, 10)[~buy].mean())
    assert got["reward@10"] == pytest.approx(np.where(buy, 1.0, 0.2)[hit].sum(), rel=1e-5)


# ---------------------------------------------------------------------- duplicates
def test_duplicate_policy_of_from_frame(ml_file, tmp_path):
    path, raw = ml_file
    doubled = tmp_path / "doubled.csv"
    pd.concat([raw, raw.iloc[[5, 9]]]).to_csv(doubled, index=False)
    n = len(raw)
    with pytest.warns(rd.DuplicateRowsWarning, match=rf"doubled.csv: 2 exact duplicate rows kept \(first: line {n + 2} repeats line 7\)"):
        kept = read_table(doubled, columns=ML_COLUMNS)
    assert kept.n_events == n + 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", rd.DuplicateRowsWarning)
        assert read_table(doubled, columns=ML_COLUMNS, duplicates="keep").n_events == n + 2
        dropped = read_table(doubled, columns=ML_COLUMNS, duplicates="drop")
    single = read_table(path, columns=ML_COLUMNS)
    for key in ("offsets", "items", "rewards", "timestamps"):
        np.testing.assert_array_equal(getattr(dropped, key), getattr(single, key))
    assert dropped.meta["duplicates"] == {"policy": "drop", "n_dropped": 2}
    with pytest.raises(BadInputError, match=rf"doubled.csv, line {n + 2}: exact duplicate of line 7"):
        read_table(doubled, columns=ML_COLUMNS, duplicates="error")
    with pytest.raises(BadInputError, match="duplicates must be one of"):
        read_table(path, columns=ML_COLUMNS, duplicates="ignore")


ML100K_GENRES = "unknown|0\nAction|1\nComedy|2\n"


def _write_ml100k(root: Path, data: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "u.genre").write_text(ML100K_GENRES)
    items = "".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|0|{i % 2}|{1 - i % 2}\n" for i in range(1, 13))
    (root / "u.item").write_text(items, encoding="latin-1")
    (root / "u.data").write_text(data)


def test_raw_loader_duplicates_warn_drop_error_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    lines = [f"{u}\t{i}\t{rng.integers(1, 6)}\t{880_000_000 + 100 * u + 7 * i}\n"
             for u in range(1, 9) for i in rng.choice(np.arange(1, 13), 6, replace=False)]
    once = "".join(lines)
    _write_ml100k(tmp_path / "once" / "ml-100k", once)
    _write_ml100k(tmp_path / "twice" / "ml-100k", once + once)  # cat u.data u.data
    single = rd.load("ml-100k", tmp_path / "once")
    with pytest.warns(rd.DuplicateRowsWarning, match=rf"u.data: {len(lines)} exact duplicate rows kept \(first: line {len(lines) + 1} repeats line 1\)"):
        twice = rd.load("ml-100k", tmp_path / "twice")
    assert twice.n_events == 2 * single.n_events
    # a cache hit warns again (the finding is stored with the processed log)
    with pytest.warns(rd.DuplicateRowsWarning, match="u.data: 48 exact duplicate rows kept"):
        rd.load("ml-100k", tmp_path / "twice")
    with warnings.catch_warnings():
        warnings.simplefilter("error", rd.DuplicateRowsWarning)
        dropped = rd.load("ml-100k", tmp_path / "twice", duplicates="drop")
        rd.load("ml-100k", tmp_path / "twice", duplicates="keep")
    for key in ("offsets", "items", "rewards", "timestamps"):
        np.testing.assert_array_equal(getattr(dropped, key), getattr(single, key))
    with pytest.raises(BadInputError, match=rf"u.data.*exact duplicate"):
        rd.load("ml-100k", tmp_path / "twice", duplicates="error")  # from the cache
    with pytest.raises(BadInputError, match=rf"u.data, line {len(lines) + 1}: exact duplicate of line 1"):
        rd.load("ml-100k", tmp_path / "twice", duplicates="error", cache=False)


# ---------------------------------------------------------------------- errors, filters, formats
def test_errors_name_the_column_and_the_line(ml_file, tmp_path):
    path, raw = ml_file
    with pytest.raises(BadInputError, match=r"column .movie_id. \(item=\) is not in the table; its columns are \[.userId., .movieId., .rating., .timestamp.\]"):
        read_table(path, columns={"user": "userId", "item": "movie_id"})
    with pytest.raises(BadInputError, match=r"unknown role"):
        read_table(path, columns="user=userId,film=movieId")
    bad = raw.astype({"rating": object})
    bad.loc[4, "rating"] = "four"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(BadInputError, match=r"bad.csv, line 6: column 'rating' must be a number, got 'four'"):
        read_table(tmp_path / "bad.csv", columns=ML_COLUMNS)
    raw.assign(rating=raw["rating"] * 2).to_csv(tmp_path / "ten.csv", index=False)
    with pytest.raises(BadInputError, match=r"ten.csv, line \d+: rating \d+ in column 'rating' is outside \[0, 5\]"):
        read_table(tmp_path / "ten.csv", columns=ML_COLUMNS)
    text = path.read_text().splitlines()
    text[3] = text[3].split(",", 1)[0] + ",,4.0,1"
    (tmp_path / "hole.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(BadInputError, match=r"hole.csv, line 4: missing value in column 'movieId' \(item=\)"):
        read_table(tmp_path / "hole.csv", columns=ML_COLUMNS)
    with pytest.raises(BadInputError, match=r"from_frame, row 2: missing value in column 'i' \(item=\)"):
        from_frame(pd.DataFrame({"u": [1, 1, 2], "i": [1, 2, None]}), user="u", item="i")
    with pytest.raises(BadInputError, match=r"line 3: column 'time' is not a number or a date: 'yesterday'"):
        (tmp_path / "t.csv").write_text("u,i,time\n1,1,2024-01-01\n1,2,yesterday\n")
        read_table(tmp_path / "t.csv", columns="user=u,item=i,time=time")


def test_filters_and_k_core():
    # one pass: users with >= 2 events, then items with >= 2 events (drops 7, 8, 9); that leaves
    # user 3 with one event, which only the k-core removes
    df = pd.DataFrame({"u": [1, 1, 2, 2, 3, 3, 4, 4], "i": [5, 6, 5, 6, 5, 9, 7, 8]})
    once = from_frame(df, user="u", item="i", min_user=2, min_item=2)
    assert sorted(once.item_ids) == ["5", "6"] and sorted(once.user_ids) == ["1", "2", "3"]
    core = from_frame(df, user="u", item="i", min_user=2, min_item=2, k_core=True)
    assert sorted(core.item_ids) == ["5", "6"] and sorted(core.user_ids) == ["1", "2"]
    assert core.meta["n_filtered"] == 4
    with pytest.raises(BadInputError, match="no event is left"):
        from_frame(df, user="u", item="i", min_user=50)


def test_parquet_tsv_headerless_and_semicolon(ml_file, tmp_path):
    path, raw = ml_file
    ref = read_table(path, columns=ML_COLUMNS)
    raw.to_parquet(tmp_path / "r.parquet")
    raw.to_csv(tmp_path / "r.tsv", sep="\t", index=False)
    raw.to_csv(tmp_path / "u.data", sep="\t", index=False, header=False)
    raw.to_csv(tmp_path / "r.txt", sep=";", index=False)
    logs = [read_table(tmp_path / "r.parquet", columns=ML_COLUMNS), read_table(tmp_path / "r.tsv", columns=ML_COLUMNS),
            read_table(tmp_path / "u.data", columns=ML_COLUMNS, names=["userId", "movieId", "rating", "timestamp"]),
            read_table(tmp_path / "r.txt", columns="user=userId,item=movieId,time=timestamp,rating=rating")]
    for log in logs:
        for key in ("offsets", "items", "rewards", "kinds", "timestamps", "users"):
            np.testing.assert_array_equal(getattr(log, key), getattr(ref, key))


# ---------------------------------------------------------------------- register_source
def test_register_source_load_split_and_presets(ml_file, monkeypatch):
    path, _ = ml_file
    monkeypatch.setattr("recgym.data.registry.REGISTRY", dict(REGISTRY))
    register_source("my-ratings", lambda: read_table(path, columns=ML_COLUMNS))
    split = rd.load_split("my-ratings")
    assert split.protocol == "loo"  # inferred: one session per user
    register_source("my-ratings2", lambda **p: read_table(path, columns=ML_COLUMNS, **p), protocol="session")
    assert rd.load_split("my-ratings2", min_user=5).protocol == "session"
    with pytest.raises(BadInputError, match="already registered"):
        register_source("my-ratings", lambda: None)
    with pytest.raises(BadInputError, match="built-in source"):
        register_source("ml-100k", lambda: None)
    # the registered protocol chooses the agents' presets
    assert resolved_config("sqn", 10, "my-ratings2")["layers"] == ["protocol:session"]
    assert resolved_config("sqn", 10, "my-ratings2", "loo")["layers"] == ["protocol:loo"]


# ---------------------------------------------------------------------- presets by protocol
FAMILIES = sorted(AGENTS)


@pytest.mark.parametrize("protocol", ["loo", "session"])
def test_unknown_dataset_gets_the_protocol_preset_for_every_family(protocol):
    for name in FAMILIES:
        cls = get_agent_class(name)
        presets = getattr(cls, "PRESETS", {}) or {}
        if issubclass(cls, TorchAgent):
            assert protocol in presets, f"{name} has no {protocol!r} preset"
        got = resolved_config(name, 30, "someone-elses-data", protocol)
        defaults = dataclasses.asdict(cls(30).config)  # as the class builds it (prl-* set their variant)
        want = {**defaults, **presets.get(protocol, {})}
        assert got["config"] == want, name
        assert got["layers"] == [f"protocol:{protocol}"]
        assert dataclasses.asdict(make_agent(name, 30, dataset="someone-elses-data", protocol=protocol).config) == want


def test_like_for_like_on_a_new_loo_dataset():
    # the motivating case: sqn must not fall back to session defaults where sasrec gets its loo preset
    sas = resolved_config("sasrec", 30, "new-loo-data", "loo")["config"]
    for name in ("sqn", "sac", "snqn", "sa2c", "co", "ccql", "prl", "lmu", "lpi"):
        cfg = resolved_config(name, 30, "new-loo-data", "loo")["config"]
        for key in ("state_len", "n_blocks", "n_heads", "dropout", "lr", "batch_size"):
            assert cfg[key] == sas[key], (name, key)


def test_layers_dataset_over_protocol_over_defaults_then_overrides():
    got = resolved_config("sac", 30, "ml-100k", overrides={"lr": 0.5})  # protocol from the source: loo
    assert got["layers"] == ["protocol:loo", "dataset:ml-100k", "override"]
    assert got["config"]["lr"] == 0.5 and got["set_by"]["lr"] == "override"
    assert got["config"]["switch_step"] == 1100 and got["set_by"]["state_len"] == "dataset:ml-100k"
    got = resolved_config("co", 30, "retailrocket")  # session source: session preset, then its own
    assert got["layers"] == ["protocol:session", "dataset:retailrocket"] and got["config"]["batch_size"] == 512
    with pytest.raises(BadInputError, match="protocol must be one of"):
        resolved_config("sqn", 30, None, "leave-one-out")
    with pytest.raises(TypeError, match="unknown hyper-parameter"):
        resolved_config("sqn", 30, overrides={"gamma": 0.9})


# ---------------------------------------------------------------------- generic env ids
def _small_ratings(tmp_path) -> Path:
    path = tmp_path / "small.csv"
    write_latest_small(path, n_users=30, n_movies=25, seed=4)
    return path


GENERIC = {"recgym/Replay-v0": dict(state_len=5), "recgym/SlateNextK-v0": dict(state_len=8, slate_size=3),
           "recgym/MFUser-v0": dict(state_len=8, mf_config={"dim": 4, "n_iters": 3})}


@pytest.mark.parametrize("env_id", sorted(GENERIC))
def test_generic_env_ids_on_your_data(env_id, tmp_path):
    path = _small_ratings(tmp_path)
    log = read_table(path, columns=ML_COLUMNS)
    for data, extra in ((log, {}), (rd.split_leave_one_out(log), {}), (str(path), {"columns": ML_COLUMNS})):
        env = gym.make(env_id, data=data, **GENERIC[env_id], **extra)
        assert env.unwrapped.action_space.n == log.n_items
        env.reset(seed=0)
        for _ in range(4):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs) and np.isfinite(r)
            if term or trunc:
                env.reset()
    check_env(gym.make(env_id, data=log, **GENERIC[env_id]).unwrapped, skip_render_check=True)
    with pytest.raises(BadInputError, match="pass data="):
        gym.make(env_id, **GENERIC[env_id])
    with pytest.raises(BadInputError, match="needs columns="):
        gym.make(env_id, data=str(path), **GENERIC[env_id])


# ---------------------------------------------------------------------- the documented example runs
def test_docs_example_runs(tmp_path, monkeypatch):
    text = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
    section = text[text.index("## Your own data"):]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:3]]
    write_latest_small(tmp_path / "ratings.csv")
    write_session_log(tmp_path / "views.csv")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("recgym.data.registry.REGISTRY", dict(REGISTRY))
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "docs/data.md", "exec"), scope)  # noqa: S102 - our own documentation
    assert scope["split"].protocol == "session" and scope["log"].n_sessions == 80
