"""MovieLens 100K and 1M (GroupLens), in their original raw formats.

* ml-100k: ``u.data`` (``user TAB item TAB rating TAB timestamp``), ``u.item`` (``|``-separated,
  latin-1: id, title, release date, video date, IMDb url, 19 genre flags), ``u.genre``.
* ml-1m: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``), ``movies.dat``
  (``MovieID::Title::Genres``, latin-1, genres ``A|B`` from a fixed list of 18).

Both give one chronological session per user (order: timestamp, then file order), the raw
rating in ``ratings``, ``kinds = purchase`` where rating >= 4 and rewards by ``reward_scheme``.
The catalogue is the set of rated movies (sorted raw ids; ``item_ids`` keeps them as strings),
with titles and multi-hot genres from the metadata file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recgym.data.sources._common import (
    RawFileError,
    check_ratings,
    check_timestamps,
    multi_hot,
    read_double_colon,
    read_table,
    require_file,
    sequences_by_user,
)
from recgym.data.session_log import SessionLog

HOW_100K = (
    "Get it with recgym.data.load('ml-100k', download=True) or from "
    "https://files.grouplens.org/datasets/movielens/ml-100k.zip (unzip u.data, u.item, u.genre into this folder)."
)
HOW_1M = (
    "Get it with recgym.data.load('ml-1m', download=True) or from "
    "https://files.grouplens.org/datasets/movielens/ml-1m.zip (unzip ratings.dat, movies.dat into this folder)."
)

ML1M_GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
"""The 18 genres of ml-1m's README, in its order (which is alphabetical)."""


# ---------------------------------------------------------------------- ml-100k
def raw_files_100k(root: Path, **_) -> list[Path]:
    return [require_file(root / f, "ml-100k", HOW_100K) for f in ("u.data", "u.item", "u.genre")]


def load_ml100k_items(root: str | Path) -> dict:
    """Item metadata of ml-100k: ``item_ids`` (int64), ``titles``, ``genres [n, 19]``, ``genre_names``."""
    root = Path(root)
    gpath = require_file(root / "u.genre", "ml-100k", HOW_100K)
    names = []
    for lineno, line in enumerate(gpath.read_text(encoding="latin-1").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 2 or not parts[1].strip().isdigit() or int(parts[1]) != len(names):
            raise RawFileError(f"{gpath}, line {lineno}: expected 'Name|{len(names)}', got {line!r}")
        names.append(parts[0])
    if not names:
        raise RawFileError(f"{gpath}: file has no genres")
    ipath = require_file(root / "u.item", "ml-100k", HOW_100K)
    flag_cols = [f"g{j}" for j in range(len(names))]
    cols = ["item", "title", "release", "video", "url", *flag_cols]
    kinds = {"item": "int", **{c: "int" for c in flag_cols}}
    df = read_table(ipath, names=cols, kinds=kinds, sep="|", encoding="latin-1")
    flags = df[flag_cols].to_numpy()
    if not np.isin(flags, (0, 1)).all():
        r = int(np.flatnonzero(~np.isin(flags, (0, 1)).all(axis=1))[0])
        raise RawFileError(f"{ipath}, line {r + 1}: genre flags must be 0 or 1")
    return {
        "item_ids": df["item"].to_numpy(np.int64),
        "titles": df["title"].fillna("").to_numpy(str),
        "genres": flags.astype(np.float32),
        "genre_names": tuple(names),
    }


def load_ml100k(root: str | Path, reward_scheme: str = "rating") -> SessionLog:
    """ml-100k as one chronological session per user (943 sessions, 100,000 events on the real data)."""
    root = Path(root)
    path = require_file(root / "u.data", "ml-100k", HOW_100K)
    df = read_table(path, names=["user", "item", "rating", "ts"], kinds=dict.fromkeys(["user", "item", "rating", "ts"], "int"), sep="\t")
    return _ratings_log(df, load_ml100k_items(root), reward_scheme, str(path), "ml-100k")


# ---------------------------------------------------------------------- ml-1m
def raw_files_1m(root: Path, **_) -> list[Path]:
    return [require_file(root / f, "ml-1m", HOW_1M) for f in ("ratings.dat", "movies.dat")]


def load_ml1m_items(root: str | Path) -> dict:
    """Item metadata of ml-1m from ``movies.dat`` alone (no ratings needed).

    Returns ``item_ids`` (int64, file order), ``titles``, ``genres`` float32 ``[n, 18]`` multi-hot
    and ``genre_names`` (the README's 18 genres). 3,883 movies on the real file.
    """
    path = require_file(Path(root) / "movies.dat", "ml-1m", HOW_1M)
    df = read_double_colon(path, ["item", "title", "genres"], {"item": "int", "title": "str", "genres": "str"}, "latin-1")
    lists = [g.split("|") for g in df["genres"].to_numpy(str)]
    known = set(ML1M_GENRES)
    for r, gs in enumerate(lists):
        bad = [g for g in gs if g not in known]
        if bad:
            raise RawFileError(f"{path}, line {r + 1}: unknown genre {bad[0]!r} (known: {', '.join(ML1M_GENRES)})")
    genres, names = multi_hot(lists, ML1M_GENRES)
    return {"item_ids": df["item"].to_numpy(np.int64), "titles": df["title"].to_numpy(str), "genres": genres, "genre_names": names}


def load_ml1m(root: str | Path, reward_scheme: str = "rating") -> SessionLog:
    """ml-1m as one chronological session per user (6,040 sessions, 1,000,209 events on the real data)."""
    root = Path(root)
    path = require_file(root / "ratings.dat", "ml-1m", HOW_1M)
    df = read_double_colon(path, ["user", "item", "rating", "ts"], dict.fromkeys(["user", "item", "rating", "ts"], "int"), "latin-1")
    return _ratings_log(df, load_ml1m_items(root), reward_scheme, str(path), "ml-1m")


# ---------------------------------------------------------------------- shared
def _ratings_log(df, meta: dict, scheme: str, label: str, name: str) -> SessionLog:
    if len(df) == 0:
        raise RawFileError(f"{label}: file has no ratings")
    ratings = df["rating"].to_numpy(np.float64)
    check_ratings(ratings, label, lo=1, hi=5)
    check_timestamps(df["ts"].to_numpy(np.float64), label)
    items = df["item"].to_numpy(np.int64)
    # catalogue = rated movies; metadata joined by raw id (a movie missing from it gets no genre)
    catalogue = np.unique(items)
    sorter = np.argsort(meta["item_ids"], kind="stable")
    pos = np.minimum(np.searchsorted(meta["item_ids"], catalogue, sorter=sorter), len(sorter) - 1)
    rows = sorter[pos]
    found = meta["item_ids"][rows] == catalogue
    genres = np.where(found[:, None], meta["genres"][rows], 0.0).astype(np.float32)
    titles = np.where(found, meta["titles"][rows], "")
    return sequences_by_user(
        df["user"].to_numpy(np.int64), items, ratings, df["ts"].to_numpy(np.float64), scheme,
        catalogue=catalogue, genres=genres, genre_names=meta["genre_names"], titles=titles,
        item_ids=catalogue.astype(str), name=name,
        meta={"source": name, "reward_scheme": scheme, "n_unmatched_items": int((~found).sum())},
    )  # fmt: skip
