"""Loaders on the real raw files (skipped unless RECGYM_DATA_DIR points at them)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import recgym.data as rd
from recgym.data import download as rdl
from recgym.data.sources import movielens, obd

DATA = os.environ.get("RECGYM_DATA_DIR")
pytestmark = [pytest.mark.realdata, pytest.mark.skipif(not DATA, reason="RECGYM_DATA_DIR is not set")]


def _need(*parts: str) -> Path:
    p = Path(DATA or ".").joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is not there")
    return p


@pytest.fixture(autouse=True)
def _cache_elsewhere(monkeypatch, tmp_path):
    # never write a processed cache into the shared data folder
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path / "cache"))


def test_ml100k_known_statistics():
    _need("ml-100k", "u.data")
    log = rd.load("ml-100k")
    st = log.stats()
    assert (st["n_events"], st["n_users"], st["n_items"], st["n_genres"]) == (100_000, 943, 1_682, 19)
    assert log.n_sessions == 943 and (log.lengths >= 20).all()  # every ml-100k user rated >= 20 movies
    assert log.titles[0] == "Toy Story (1995)" and list(log.item_ids[:3]) == ["1", "2", "3"]
    np.testing.assert_array_equal(np.unique(log.ratings), [1, 2, 3, 4, 5])
    assert (log.kinds == rd.KIND_PURCHASE).sum() == (log.ratings >= 4).sum() == 55_375
    # chronological inside every user (ties in file order)
    ts = log.timestamps
    same = np.repeat(np.arange(log.n_sessions), log.lengths)
    assert (np.diff(ts)[np.diff(same) == 0] >= 0).all()
    split = rd.load_split("ml-100k")
    assert split.protocol == "loo" and split.test.n_sessions == 943
    assert split.train.n_events == 100_000 - 2 * 943


def test_ml100k_cache_round_trip():
    _need("ml-100k", "u.data")
    a = rd.load("ml-100k")
    b = rd.load("ml-100k")  # from the cache
    assert b.meta["cache_key"] == a.meta["cache_key"]
    for key in ("offsets", "items", "rewards", "kinds", "timestamps", "ratings", "genres"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


def test_ml100k_download_checksums_match_the_real_files(tmp_path, monkeypatch):
    root = _need("ml-100k")
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as z:
        for f in ("u.data", "u.item", "u.genre", "u.user"):
            z.write(root / f, f"ml-100k/{f}")
    monkeypatch.setattr(rdl, "fetch_url", lambda url, dest, timeout=60.0: Path(dest).write_bytes(blob.getvalue()))
    log = rd.load("ml-100k", tmp_path, download=True)
    assert log.n_events == 100_000


def test_ml1m_movies_metadata():
    _need("ml-1m", "movies.dat")
    items = movielens.load_ml1m_items(Path(DATA) / "ml-1m")
    assert len(items["item_ids"]) == 3_883 and items["genres"].shape == (3_883, 18)
    assert (items["genres"].sum(1) >= 1).all()
    assert items["titles"][0] == "Toy Story (1995)"
    assert items["genres"][:, movielens.ML1M_GENRES.index("Drama")].sum() == 1_603


def test_yoochoose100k_counts_and_split():
    _need("yoochoose-100k")
    log = rd.load("yoochoose-100k")
    assert (log.n_events, log.n_sessions, log.n_items) == (83_846, 21_210, 2_933)
    assert log.lengths.min() == 2 and log.lengths.max() == 78 and np.median(log.lengths) == 3
    split = rd.load_split("yoochoose-100k")
    assert (split.test.n_events, split.test.n_sessions) == (13_568, 3_416)
    assert (split.train.n_events, split.valid.n_events) == (53_254, 16_539)
    assert split.train.n_items == split.test.n_items == 2_933


@pytest.mark.parametrize("policy", ["random", "bts"])
def test_obd_all(policy):
    _need("obd", policy, "all", "all.csv")
    log = rd.load("obd", behavior_policy=policy, campaign="all")
    assert log.n_sessions == log.n_events == 10_000 and log.n_items == 80
    assert log.propensities is not None and (log.propensities > 0).all()
    if policy == "random":
        np.testing.assert_allclose(log.propensities, 1 / 80)
    frame = obd.load_obd_frame(Path(DATA) / "obd", policy, "all")
    assert int(frame["click"].sum()) == int(log.rewards.sum()) == int((log.kinds == rd.KIND_PURCHASE).sum())
    assert set(frame["position"].unique()) == {1, 2, 3}
    split = rd.load_split("obd", behavior_policy=policy, seed=1)
    assert [p.n_events for p in split] == [8_000, 1_000, 1_000]


@pytest.mark.parametrize("campaign, n_items", [("men", 34), ("women", 46)])
def test_obd_campaigns(campaign, n_items):
    _need("obd", "random", campaign)
    log = rd.load("obd", behavior_policy="random", campaign=campaign)
    assert log.n_items == n_items and log.n_events == 10_000
