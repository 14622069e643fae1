"""Source loaders on tiny raw files written here, with hand-checked outputs; downloads (mocked) and cache."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

import recgym.data as rd
from recgym.data import KIND_CLICK as C
from recgym.data import KIND_PURCHASE as P
from recgym.data import cache as rcache
from recgym.data import download as rdl
from recgym.data import registry
from recgym.data.sources import movielens, netflix, obd, retailrocket, session_rec, steam, yoochoose
from recgym.data.sources._common import RawFileError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("RECGYM_DATA_DIR", raising=False)
    monkeypatch.delenv("RECGYM_CACHE_DIR", raising=False)
    monkeypatch.setattr(rdl, "fetch_url", _no_network)


def _no_network(url, dest, timeout=60.0):
    raise AssertionError(f"tests must not reach the network ({url})")


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def sessions(log) -> list[list[int]]:
    return [log.session(s).tolist() for s in range(log.n_sessions)]


def raw_sessions(log) -> list[list[str]]:
    return [[log.item_ids[i] for i in log.session(s)] for s in range(log.n_sessions)]


# ---------------------------------------------------------------------------------------- retailrocket
RR_HEADER = "timestamp,visitorid,event,itemid,transactionid\n"
# visitor 1: 4 events (item 9 only twice in total -> dropped); visitor 2: 3 events; visitor 3: 2 events
# (dropped: a session needs > 2); the transaction row is dropped before counting.
RR_ROWS = (
    "5000,1,view,10,\n"
    "1000,1,view,20,\n"
    "3000,1,addtocart,9,\n"
    "3000,1,addtocart,10,\n"  # same time as item 9: file order breaks the tie
    "9000,1,transaction,10,77\n"
    "2000,2,view,20,\n"
    "1500,2,view,10,\n"
    "2500,2,view,9,\n"
    "1000,3,view,20,\n"
    "1100,3,view,30,\n"
    "1200,4,view,20,\n"
    "1300,4,addtocart,20,\n"
    "1400,4,view,10,\n"
)


def test_retailrocket_filters_orders_and_rewards(tmp_path):
    write(tmp_path / "retailrocket" / "events.csv", RR_HEADER + RR_ROWS)
    log = retailrocket.load_retailrocket(tmp_path / "retailrocket")
    # counts after dropping the transaction and visitor 3: item 10 -> 4, item 20 -> 4, item 9 -> 2 (dropped)
    assert list(log.item_ids) == ["10", "20"]
    assert raw_sessions(log) == [["20", "10", "10"], ["10", "20"], ["20", "20", "10"]]
    # visitor 1: t=1000 view 20, 3000 cart 10 (item 9 removed), 5000 view 10
    np.testing.assert_array_equal(log.kinds, [C, P, C, C, C, C, P, C])
    np.testing.assert_allclose(log.rewards, [0.2, 1.0, 0.2, 0.2, 0.2, 0.2, 1.0, 0.2])
    np.testing.assert_allclose(log.timestamps[:3], [1.0, 3.0, 5.0])
    assert log.n_events == 8 and log.n_sessions == 3


def test_retailrocket_bad_inputs(tmp_path):
    d = tmp_path / "rr"
    with pytest.raises(FileNotFoundError, match=r"events\.csv.*rr.*kaggle"):
        retailrocket.load_retailrocket(d)
    write(d / "events.csv", "")
    with pytest.raises(RawFileError, match="empty"):
        retailrocket.load_retailrocket(d)
    write(d / "events.csv", RR_HEADER.replace(",", ";"))
    with pytest.raises(RawFileError, match="line 1.*delimiter"):
        retailrocket.load_retailrocket(d)
    write(d / "events.csv", RR_HEADER + "1,2,view,3,\n1,x2,view,3,\n")
    with pytest.raises(RawFileError, match=r"line 3: column 'visitorid' must be an integer, got 'x2'"):
        retailrocket.load_retailrocket(d)
    write(d / "events.csv", RR_HEADER + "1,2,view,3,\n1,2,click,3,\n")
    with pytest.raises(RawFileError, match=r"line 3: unknown event 'click'"):
        retailrocket.load_retailrocket(d)
    write(d / "events.csv", RR_HEADER + "1,2,view,3,\n1,2,vi")  # truncated download
    with pytest.raises(RawFileError, match=r"line 3: missing value in column 'itemid'"):
        retailrocket.load_retailrocket(d)
    write(d / "events.csv", RR_HEADER + "1,2,view,3,\n")
    with pytest.raises(RawFileError, match="no events left"):
        retailrocket.load_retailrocket(d)


# ---------------------------------------------------------------------------------------- rc15 / yoochoose
def _yc_files(root: Path) -> None:
    t = "2014-04-01T10:00:{:02d}.000Z"
    clicks = []
    # sessions 1..5 with 3 clicks, session 6 with 2 clicks (never eligible)
    for s in range(1, 6):
        clicks += [f"{s},{t.format(30 - k)},{100 + s * 10 + k},0" for k in range(3)]  # reversed in time
    clicks += ["6,2014-04-01T10:00:00.000Z,999,S", "6,2014-04-01T10:00:01.000Z,998,S"]
    write(root / "yoochoose-clicks.dat", "\n".join(clicks) + "\n")
    write(
        root / "yoochoose-buys.dat",
        "1,2014-04-01T10:00:29.000Z,111,5,1\n"  # same time as the click on 111: after it
        "3,2014-04-01T10:00:59.000Z,777,5,1\n"  # bought item never clicked: still in the catalogue
        "6,2014-04-01T10:00:59.000Z,999,5,1\n",  # session 6 is not eligible
    )


def test_rc15_sample_and_buys(tmp_path):
    _yc_files(tmp_path)
    full = yoochoose.load_yoochoose(tmp_path, n_sessions=None, source="yoochoose")
    assert full.n_sessions == 5 and full.n_events == 15 + 2
    s1 = full.session(0)
    assert [full.item_ids[i] for i in s1] == ["112", "111", "111", "110"]
    np.testing.assert_array_equal(full.kinds[:4], [C, C, P, C])
    np.testing.assert_allclose(full.rewards[:4], [0.2, 0.2, 1.0, 0.2])
    assert "777" in set(full.item_ids) and "999" not in set(full.item_ids)
    a = yoochoose.load_yoochoose(tmp_path, n_sessions=3, seed=7)
    b = yoochoose.load_yoochoose(tmp_path, n_sessions=3, seed=7)
    assert a.n_sessions == 3 and raw_sessions(a) == raw_sessions(b)
    # every sampled session is one of the full log's sessions, with its buys
    full_set = {tuple(x) for x in raw_sessions(full)}
    assert all(tuple(x) in full_set for x in raw_sessions(a))
    seeds = {tuple(map(tuple, raw_sessions(yoochoose.load_yoochoose(tmp_path, n_sessions=2, seed=s)))) for s in range(8)}
    assert len(seeds) > 1  # the seed matters
    assert yoochoose.load_yoochoose(tmp_path, n_sessions=50).n_sessions == 5  # capped at the eligible ones


def test_rc15_bad_timestamp(tmp_path):
    _yc_files(tmp_path)
    with open(tmp_path / "yoochoose-buys.dat", "a") as fh:
        fh.write("2,yesterday,5,1,1\n")
    with pytest.raises(RawFileError, match=r"yoochoose-buys\.dat, line 4: column 'time' is not an ISO 8601"):
        yoochoose.load_yoochoose(tmp_path, n_sessions=None)


# ---------------------------------------------------------------------------------------- yoochoose-100k
def _sr_files(root: Path) -> None:
    h = "SessionId\tItemId\tTime\n"
    write(root / "x_train_full.txt", h + "1\t10\t5.0\n1\t20\t4.0\n2\t10\t1.0\n2\t30\t2.0\n3\t20\t9.0\n3\t20\t10.0\n")
    write(root / "x_train_tr.txt", h + "1\t10\t5.0\n1\t20\t4.0\n2\t10\t1.0\n2\t30\t2.0\n")
    write(root / "x_train_valid.txt", h + "3\t20\t9.0\n3\t20\t10.0\n")
    write(root / "x_test.txt", h + "7\t40\t20.0\n7\t10\t21.0\n")


def test_yoochoose100k_load_and_split(tmp_path):
    _sr_files(tmp_path / "yoochoose-100k")
    log = rd.load("yoochoose-100k", tmp_path)
    assert list(log.item_ids) == ["10", "20", "30", "40"]
    assert raw_sessions(log) == [["20", "10"], ["10", "30"], ["20", "20"], ["40", "10"]]
    assert (log.kinds == C).all() and np.allclose(log.rewards, 0.2)
    split = rd.load_split("yoochoose-100k", tmp_path)
    assert split.protocol == "session"
    assert [p.n_events for p in split] == [4, 2, 2] and [p.n_sessions for p in split] == [2, 1, 1]
    assert all(p.n_items == 4 for p in split)  # catalogue = items of any file (40 only in test)
    assert raw_sessions(split.test) == [["40", "10"]]


def test_yoochoose100k_bad_inputs(tmp_path):
    root = tmp_path / "yoochoose-100k"
    _sr_files(root)
    (root / "x_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"\*_test\.txt.*download=True"):
        session_rec.load_yoochoose100k(root)
    write(root / "x_test.txt", "SessionId,ItemId,Time\n7,40,20.0\n")
    with pytest.raises(RawFileError, match=r"x_test\.txt, line 1: .*wrong delimiter"):
        session_rec.load_yoochoose100k(root)
    write(root / "x_test.txt", "SessionId\tItemId\tTime\n7\t40\t20.0\n7\tabc\t21\n")
    with pytest.raises(RawFileError, match=r"x_test\.txt, line 3: column 'ItemId' must be an integer, got 'abc'"):
        session_rec.load_yoochoose100k(root)


# ---------------------------------------------------------------------------------------- ml-100k / ml-1m
GENRES_100K = "unknown|0\nAction|1\nComedy|2\n\n"
ITEMS_100K = "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n2|Heat (1995)|01-Jan-1995||http://y|0|1|0\n3|Café (1996)|||http://z|1|0|0\n"


def _ml100k(root: Path, data: str) -> None:
    write(root / "u.genre", GENRES_100K)
    write(root / "u.item", ITEMS_100K, "latin-1")
    write(root / "u.data", data)


def test_ml100k_sequences_rewards_genres(tmp_path):
    root = tmp_path / "ml-100k"
    # user 7: item 2 at t=5, item 1 and item 3 both at t=3 (file order: 3 then 1); user 5: three ratings
    _ml100k(root, "7\t2\t5\t5\n7\t3\t3\t3\n7\t1\t1\t3\n5\t1\t4\t1\n5\t2\t2\t2\n5\t3\t3\t9\n")
    log = movielens.load_ml100k(root)
    assert log.n_items == 3 and list(log.item_ids) == ["1", "2", "3"]
    assert list(log.titles) == ["Toy Story (1995)", "Heat (1995)", "Café (1996)"]
    assert log.genre_names == ("unknown", "Action", "Comedy")
    np.testing.assert_array_equal(log.genres, [[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    assert sessions(log) == [[0, 1, 2], [2, 0, 1]]  # users sorted by raw id: 5 then 7
    np.testing.assert_array_equal(log.users, [0, 1])
    np.testing.assert_array_equal(log.ratings, [4, 2, 3, 3, 1, 5])
    np.testing.assert_allclose(log.rewards, [1, 0, 0.5, 0.5, 0, 1])
    np.testing.assert_array_equal(log.kinds, [P, C, C, C, C, P])
    cp = movielens.load_ml100k(root, reward_scheme="click-purchase")
    np.testing.assert_allclose(cp.rewards, [1, 0.2, 0.2, 0.2, 0.2, 1])
    np.testing.assert_array_equal(cp.kinds, log.kinds)
    split = rd.load_split("ml-100k", tmp_path, cache=False)
    assert split.protocol == "loo"
    assert [p.n_events for p in split] == [2, 4, 6]  # train drops the last two of each user


def test_ml100k_bad_inputs(tmp_path):
    root = tmp_path / "ml-100k"
    _ml100k(root, "1\t1\t5\t1\n1\t2\t6\t2\n")
    with pytest.raises(RawFileError, match=r"u\.data, line 2: rating 6\.0 outside"):
        movielens.load_ml100k(root)
    _ml100k(root, "1\t1\t5\t1\n1\t2\t4\n")
    with pytest.raises(RawFileError, match=r"u\.data, line 2: missing value in column 'ts'"):
        movielens.load_ml100k(root)
    _ml100k(root, "1,1,5,1\n")
    with pytest.raises(RawFileError, match=r"u\.data, line 1: .*wrong delimiter"):
        movielens.load_ml100k(root)
    _ml100k(root, "1\t1\t5\t1\n")
    with pytest.raises(ValueError, match="unknown reward_scheme 'stars'"):
        rd.load("ml-100k", tmp_path, reward_scheme="stars")
    (root / "u.data").unlink()
    with pytest.raises(FileNotFoundError, match=r"'u\.data' not found in .*ml-100k.*download=True"):
        rd.load("ml-100k", tmp_path)


MOVIES_1M = "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Jumanji (1995)::Adventure\n5::Father of the Bride Part II (1995)::Comedy\n"


def test_ml1m_items_and_ratings(tmp_path):
    root = tmp_path / "ml-1m"
    write(root / "movies.dat", MOVIES_1M, "latin-1")
    items = movielens.load_ml1m_items(root)  # no ratings.dat needed
    assert items["genres"].shape == (3, 18) and items["genre_names"][3] == "Children's"
    np.testing.assert_array_equal(items["genres"].sum(1), [3, 1, 1])
    assert items["genres"][0, movielens.ML1M_GENRES.index("Comedy")] == 1
    np.testing.assert_array_equal(items["item_ids"], [1, 2, 5])
    with pytest.raises(FileNotFoundError, match=r"ratings\.dat.*download=True"):
        rd.load("ml-1m", tmp_path)
    write(root / "ratings.dat", "2::5::3::20\n2::1::4::10\n1::5::1::7\n")
    log = movielens.load_ml1m(root)
    assert list(log.item_ids) == ["1", "5"]  # catalogue = rated movies
    assert raw_sessions(log) == [["5"], ["1", "5"]]
    np.testing.assert_allclose(log.rewards, [0, 1, 0.5])
    np.testing.assert_array_equal(log.genres.sum(1), [3, 1])
    write(root / "movies.dat", MOVIES_1M + "9::Odd (2000)::Cartoon\n")
    with pytest.raises(RawFileError, match=r"movies\.dat, line 4: unknown genre 'Cartoon'"):
        movielens.load_ml1m_items(root)


# ---------------------------------------------------------------------------------------- netflix
def test_netflix_both_layouts_filter_and_window(tmp_path):
    a = tmp_path / "a"
    # user 1: 6 ratings; user 2: 4 ratings (dropped: < 5); two ratings of user 1 share a date
    write(a / "training_set" / "mv_0000001.txt", "1:\n1,5,2005-01-03\n2,3,2005-01-01\n1,1,2005-01-09\n")
    write(a / "training_set" / "mv_0000002.txt", "2:\n1,3,2005-01-03\n2,4,2005-01-02\n1,2,2005-01-01\n")
    write(a / "training_set" / "mv_0000003.txt", "3:\n1,4,2005-01-05\n2,2,2005-01-02\n1,5,2005-01-06\n2,5,2005-01-07\n")
    write(a / "movie_titles.csv", "1,2003,Dinosaur Planet\n2,2004,Isle of Man TT, 2004 Review\n3,1997,Character\n")
    log = netflix.load_netflix(a, max_len=4)
    assert log.n_sessions == 1 and list(log.item_ids) == ["1", "2", "3"]
    # user 1 by date: m2(01-01) m1(01-03) m2(01-03, later file) m3(01-05) m3(01-06) m1(01-09); last 4 kept
    assert raw_sessions(log) == [["2", "3", "3", "1"]]
    np.testing.assert_array_equal(log.ratings, [3, 4, 5, 1])
    np.testing.assert_allclose(log.rewards, [0.5, 1, 1, 0])
    assert log.titles[1] == "Isle of Man TT, 2004 Review"
    b = tmp_path / "b"
    text = "".join(p.read_text() for p in sorted((a / "training_set").glob("mv_*.txt")))
    write(b / "combined_data_1.txt", text)
    same = netflix.load_netflix(b, max_len=4)
    assert raw_sessions(same) == raw_sessions(log) and same.titles is None
    write(b / "combined_data_1.txt", "1:\n1,5,2005-01-03\n2:\n1,3,2005-13-03\n")
    with pytest.raises(RawFileError, match=r"combined_data_1\.txt, line 4: column 'date'"):
        netflix.load_netflix(b)
    write(b / "combined_data_1.txt", "1:\n1,5,2005-01-03\n2:\n1,3,2005-01-03\nx1,3,2005-01-03\n")
    with pytest.raises(RawFileError, match=r"line 5: column 'user' must be an integer"):
        netflix.load_netflix(b)
    with pytest.raises(FileNotFoundError, match="combined_data_"):
        netflix.load_netflix(tmp_path / "none")


# ---------------------------------------------------------------------------------------- steam
def _gz(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def test_steam_dedupe_top_items_min_user(tmp_path):
    rev = []
    # user "a" reviews item 10 twice (keep the later, 2017-01-05), then 20, 30; user "b" 10, 20; user "c" 40
    for u, i, d in [("a", "10", "2017-01-01"), ("a", "20", "2017-01-02"), ("a", "10", "2017-01-05"),
                    ("a", "30", "2017-01-03"), ("b", "10", "2017-01-01"), ("b", "20", "2017-01-01"),
                    ("c", "40", "2017-01-01"), ("O'Neil", "30", "2017-02-01")]:  # fmt: skip
        rev.append(repr({"username": u, "hours": 1.0, "product_id": i, "date": d, "text": "it's fine", "early_access": False}))
    _gz(tmp_path / "steam_reviews.json.gz", rev)
    _gz(tmp_path / "steam_games.json.gz", [
        repr({"id": "10", "app_name": "Ten", "genres": ["Action", "Indie"], "tags": ["Fun"]}),
        repr({"id": "20", "app_name": "Twenty", "genres": ["RPG"]}),
        '{"id": "30", "app_name": "Thirty", "genres": ["Action"]}',  # plain JSON works too
        repr({"app_name": "no id"}),
    ])  # fmt: skip
    log = steam.load_steam(tmp_path, n_items=3, min_user=2)
    # counts after dedupe: 10 -> 2, 20 -> 2, 30 -> 2, 40 -> 1 (not top-3); user c has no item left
    assert list(log.item_ids) == ["10", "20", "30"]
    assert raw_sessions(log) == [["20", "30", "10"], ["10", "20"]]  # a (dates 2, 3, 5), b (file order)
    assert log.genre_names == ("Action", "Indie", "RPG")
    np.testing.assert_array_equal(log.genres, [[1, 1, 0], [0, 0, 1], [1, 0, 0]])
    assert (log.kinds == P).all() and np.allclose(log.rewards, 1.0)
    assert list(log.titles) == ["Ten", "Twenty", "Thirty"]
    tags = steam.load_steam(tmp_path, n_items=3, min_user=2, item_features="tags")
    assert tags.genre_names == ("Fun",)
    _gz(tmp_path / "steam_reviews.json.gz", rev[:2] + ["{'username': 'x', 'product_id': '1', 'date'"])
    with pytest.raises(RawFileError, match=r"steam_reviews\.json\.gz, line 3: not a JSON object"):
        steam.load_steam(tmp_path)
    (tmp_path / "steam_reviews.json.gz").write_bytes(gzip.compress(b"{'username': 'a'}\n")[:15])
    with pytest.raises(RawFileError, match="not a readable gzip file"):
        steam.load_steam(tmp_path)


# ---------------------------------------------------------------------------------------- obd
def _obd(root: Path, policy: str = "bts", campaign: str = "men") -> Path:
    d = root / "obd" / policy / campaign
    head = ",timestamp,item_id,position,click,propensity_score," + ",".join(f"user_feature_{j}" for j in range(4))
    head += ",user-item_affinity_0,user-item_affinity_1,user-item_affinity_2\n"
    rows = [
        "0,2019-11-24 00:00:01.5+00:00,2,1,0,0.25,a,b,c,d,0.0,0.0,0.0",
        "1,2019-11-24 00:00:02+00:00,0,3,1,0.5,a,b,c,e,0.0,1.0,0.0",
        "2,2019-11-24 00:00:03+00:00,1,2,0,0.125,a,b,c,d,0.0,0.0,0.0",
    ]
    write(d / f"{campaign}.csv", head + "\n".join(rows) + "\n")
    write(d / "item_context.csv", ",item_id,item_feature_0,item_feature_1,item_feature_2\n0,0,-0.5,x,p\n1,1,0.1,y,p\n2,2,0.3,x,q\n")
    return d


def test_obd_single_event_sessions(tmp_path):
    _obd(tmp_path)
    log = rd.load("obd", tmp_path, behavior_policy="bts", campaign="men")
    assert log.n_sessions == 3 and (log.lengths == 1).all() and log.n_items == 3
    np.testing.assert_array_equal(log.items, [2, 0, 1])
    np.testing.assert_allclose(log.propensities, [0.25, 0.5, 0.125])
    np.testing.assert_allclose(log.rewards, [0, 1, 0])
    np.testing.assert_array_equal(log.kinds, [C, P, C])
    np.testing.assert_array_equal(log.users, [0, 1, 0])  # contexts in order of first appearance
    np.testing.assert_allclose(log.timestamps[1] - log.timestamps[0], 0.5)
    assert log.genre_names == ("item_feature_1=x", "item_feature_1=y", "item_feature_2=p", "item_feature_2=q")
    np.testing.assert_array_equal(log.genres, [[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1]])
    frame = obd.load_obd_frame(tmp_path / "obd", "bts", "men")
    assert list(frame["position"]) == [1, 3, 2]
    with pytest.raises(ValueError, match="behavior_policy must be one of"):
        rd.load("obd", tmp_path, behavior_policy="greedy")
    with pytest.raises(FileNotFoundError, match=r"all\.csv.*obd/random/all"):
        rd.load("obd", tmp_path)


def test_obd_bad_propensity(tmp_path):
    d = _obd(tmp_path)
    text = (d / "men.csv").read_text().replace(",0.125,", ",0,")
    write(d / "men.csv", text)
    with pytest.raises(RawFileError, match=r"men\.csv, line 4: column 'propensity_score' must be in \(0, 1\]"):
        obd.load_obd(tmp_path / "obd", "bts", "men")


# ---------------------------------------------------------------------------------------- registry
def test_registry_names_params_and_data_dir(tmp_path, monkeypatch):
    assert set(rd.SOURCES) == {"retailrocket", "rc15", "yoochoose", "yoochoose-100k", "ml-1m", "ml-100k",
                               "netflix", "steam", "obd", "synthetic"}  # fmt: skip
    with pytest.raises(ValueError, match="unknown dataset 'ml-20m'.*retailrocket.*synthetic"):
        rd.load("ml-20m")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['min_items'\].*retailrocket"):
        rd.load("retailrocket", tmp_path, min_items=3)
    with pytest.raises(ValueError, match="unknown reward_scheme 'rating' for 'retailrocket'"):
        rd.load("retailrocket", tmp_path, reward_scheme="rating")
    write(tmp_path / "env" / "retailrocket" / "events.csv", RR_HEADER + RR_ROWS)
    monkeypatch.setenv("RECGYM_DATA_DIR", str(tmp_path / "env"))
    log = rd.load("retailrocket")
    assert log.n_events == 8 and (tmp_path / "env" / "processed").is_dir()
    monkeypatch.delenv("RECGYM_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError, match=r"home/\.cache/recgym/retailrocket"):
        rd.load("retailrocket")
    split = rd.load_split("retailrocket", tmp_path / "env", seed=3)
    assert split.protocol == "session" and sum(p.n_sessions for p in split) == 3


def test_synthetic_source():
    log = rd.load("synthetic", n_sessions=20, seed=1)
    again = rd.load("synthetic", n_sessions=20, world_seed=1)
    assert log.n_sessions == 20 and np.array_equal(log.items, again.items)
    split = rd.load_split("synthetic", n_sessions=20, seed=0)
    assert [p.n_sessions for p in split] == [16, 2, 2]


# ---------------------------------------------------------------------------------------- cache
def test_cache_hit_invalidation_and_corruption(tmp_path, monkeypatch):
    write(tmp_path / "retailrocket" / "events.csv", RR_HEADER + RR_ROWS)
    first = rd.load("retailrocket", tmp_path)
    entries = sorted((tmp_path / "processed").glob("retailrocket-*.npz"))
    assert len(entries) == 1
    calls = []
    real = retailrocket.load_retailrocket
    spec = dataclasses.replace(registry.REGISTRY["retailrocket"], build=lambda root, s, **p: calls.append(1) or real(root, **p))
    monkeypatch.setitem(registry.REGISTRY, "retailrocket", spec)
    hit = rd.load("retailrocket", tmp_path)
    assert calls == [] and np.array_equal(hit.items, first.items) and hit.meta["cache_key"] == first.meta["cache_key"]
    # other parameters -> another entry
    rd.load("retailrocket", tmp_path, min_item=1)
    assert calls == [1] and len(list((tmp_path / "processed").glob("retailrocket-*.npz"))) == 2
    # corrupt entry -> rebuilt with a warning, then valid again
    entries[0].write_bytes(b"PK\x03\x04garbage")
    with pytest.warns(UserWarning, match="rebuilding"):
        again = rd.load("retailrocket", tmp_path)
    assert calls == [1, 1] and np.array_equal(again.items, first.items)
    rcache.SessionLog.load(entries[0])
    # changed raw file -> new key
    write(tmp_path / "retailrocket" / "events.csv", RR_HEADER + RR_ROWS + "1500,4,view,10,\n")
    changed = rd.load("retailrocket", tmp_path)
    assert changed.n_events == 9 and changed.meta["cache_key"] != first.meta["cache_key"]


def test_failed_load_leaves_no_cache(tmp_path):
    write(tmp_path / "retailrocket" / "events.csv", RR_HEADER + "1,2,view,3,\n1,2,view,x,\n")
    with pytest.raises(RawFileError):
        rd.load("retailrocket", tmp_path)
    left = [p.name for p in (tmp_path / "processed").glob("*")] if (tmp_path / "processed").exists() else []
    assert [n for n in left if n != "checksums.json"] == []


def test_checksum_index_fast_path(tmp_path, monkeypatch):
    f = write(tmp_path / "a.txt", "hello")
    sums = rcache.file_checksums([f], tmp_path)
    assert sums == {"a.txt": hashlib.md5(b"hello").hexdigest()}
    monkeypatch.setattr(rcache, "file_digest", lambda *a, **k: pytest.fail("should use the index"))
    assert rcache.file_checksums([f], tmp_path) == sums


# ---------------------------------------------------------------------------------------- downloads
def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return buf.getvalue()


def test_download_archive_verified_and_atomic(tmp_path, monkeypatch):
    data = b"1\t1\t5\t10\n1\t2\t3\t11\n1\t3\t4\t12\n"
    genre, item = GENRES_100K.encode(), ITEMS_100K.encode("latin-1")
    md5 = lambda b: hashlib.md5(b).hexdigest()  # noqa: E731
    remote = rdl.Remote(archive="https://example.org/ml-100k.zip", members={
        "ml-100k/u.data": ("u.data", md5(data)), "ml-100k/u.item": ("u.item", md5(item)),
        "ml-100k/u.genre": ("u.genre", md5(genre))})  # fmt: skip
    monkeypatch.setitem(rdl.DOWNLOADS, "ml-100k", remote)
    fetched = []

    def fake_fetch(url, dest, timeout=60.0):
        fetched.append(url)
        Path(dest).write_bytes(_zip_bytes({"ml-100k/u.data": data, "ml-100k/u.item": item, "ml-100k/u.genre": genre}))

    monkeypatch.setattr(rdl, "fetch_url", fake_fetch)
    log = rd.load("ml-100k", tmp_path, download=True)
    assert fetched == ["https://example.org/ml-100k.zip"] and log.n_events == 3
    assert sorted(p.name for p in (tmp_path / "ml-100k").iterdir()) == ["u.data", "u.genre", "u.item"]
    rdl.download("ml-100k", tmp_path / "ml-100k")  # all present and valid: nothing fetched
    assert len(fetched) == 1
    # a corrupted archive member: ChecksumError, the bad file is not kept
    (tmp_path / "ml-100k" / "u.data").unlink()
    monkeypatch.setattr(rdl, "fetch_url", lambda url, dest, timeout=60.0: Path(dest).write_bytes(
        _zip_bytes({"ml-100k/u.data": data + b"2\t1\t1\t1\n"})))  # fmt: skip
    with pytest.raises(rdl.ChecksumError, match=r"u\.data.*md5"):
        rd.load("ml-100k", tmp_path, download=True)
    assert sorted(p.name for p in (tmp_path / "ml-100k").iterdir()) == ["u.genre", "u.item"]
    monkeypatch.setattr(rdl, "fetch_url", lambda url, dest, timeout=60.0: Path(dest).write_bytes(b"<html>"))
    with pytest.raises(rdl.ChecksumError, match="not a valid zip"):
        rdl.download("ml-100k", tmp_path / "ml-100k")


def test_download_plain_files_checksum(tmp_path, monkeypatch):
    remote = rdl.Remote(files={"x_test.txt": ("https://example.org/x_test.txt", hashlib.md5(b"ok").hexdigest())})
    monkeypatch.setitem(rdl.DOWNLOADS, "yoochoose-100k", remote)
    monkeypatch.setattr(rdl, "fetch_url", lambda url, dest, timeout=60.0: Path(dest).write_bytes(b"tampered"))
    with pytest.raises(rdl.ChecksumError, match="x_test.txt from https://example.org/x_test.txt"):
        rdl.download("yoochoose-100k", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_sources_without_download_say_where_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"events\.csv.*kaggle"):
        rd.load("retailrocket", tmp_path, download=True)
    with pytest.raises(FileNotFoundError, match="steam_reviews.json.gz.*ucsd"):
        rd.load("steam", tmp_path, download=True)
    with pytest.raises(ValueError, match="no automatic download"):
        rdl.download("netflix", tmp_path)
    # the official entries carry the published checksums
    assert rdl.DOWNLOADS["ml-1m"].members["ml-1m/ratings.dat"][1] == "a89aa3591bc97d6d4e0c89459ff39362"
    assert rdl.DOWNLOADS["ml-100k"].members["ml-100k/u.data"][1] == "6e47046882bad158b0efbb84cd5cb987"
