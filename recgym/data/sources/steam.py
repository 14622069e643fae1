"""Steam reviews (UCSD, Kang & McAuley 2018; Pathak et al. 2017), as GPTRec's Steam-2M.

Raw: ``steam_reviews.json.gz`` and ``steam_games.json.gz``, gzip text with one record per line.
The records are Python dict literals (single quotes, ``True``), not JSON: each line is tried as
JSON and otherwise parsed with ``ast.literal_eval``. Reviews need ``username``, ``product_id``,
``date`` (``YYYY-MM-DD``); games give ``id``, ``app_name``/``title``, ``genres`` and ``tags``.

Preprocessing: de-duplicate (user, item) keeping the latest review (by date, then file order);
keep the 1,000 most reviewed items (ties: smaller raw id first); then users with >= 5
reviews; one session per user ordered by (date, file order). Every event is a review, i.e. a
game the user owns and played: ``kinds = purchase``, reward 1.0. Item genres = multi-hot of the
game's ``genres`` (``item_features="tags"`` for its user tags, ``"both"`` for the union); games
without metadata get an all-zero row.
"""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.data.sources._common import RawFileError, build_log, encode, multi_hot, require_file
from recgym.data.session_log import KIND_PURCHASE, SessionLog

HOW = (
    "Get steam_reviews.json.gz and steam_games.json.gz from the UCSD recommender-systems datasets page "
    "(https://cseweb.ucsd.edu/~jmcauley/datasets.html#steam_data) and put them in this folder "
    "(no published checksums, so recgym does not download them itself)."
)
REVIEWS = "steam_reviews.json.gz"
GAMES = "steam_games.json.gz"
FEATURES = ("genres", "tags", "both")


def raw_files(root: Path, **_) -> list[Path]:
    return [require_file(root / f, "steam", HOW) for f in (REVIEWS, GAMES)]


def _records(path: Path):
    """Yield ``(line_number, dict)`` of a gzip file of JSON or Python-literal records."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    try:
                        rec = ast.literal_eval(line)
                    except (ValueError, SyntaxError, MemoryError, RecursionError):
                        raise RawFileError(f"{path}, line {lineno}: not a JSON object or Python dict literal: {line[:80]!r}") from None
                if not isinstance(rec, dict):
                    raise RawFileError(f"{path}, line {lineno}: expected a dict record, got {type(rec).__name__}")
                yield lineno, rec
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise RawFileError(f"{path}: not a readable gzip file ({e}); truncated download?") from None


def _reviews(path: Path) -> pd.DataFrame:
    users, items, dates, lines = [], [], [], []
    for lineno, rec in _records(path):
        try:
            users.append(str(rec["username"]))
            items.append(str(rec["product_id"]))
            dates.append(str(rec["date"]))
        except KeyError as e:
            raise RawFileError(f"{path}, line {lineno}: record has no {e.args[0]!r} key") from None
        lines.append(lineno)
    if not users:
        raise RawFileError(f"{path}: file has no reviews")
    d = pd.to_datetime(pd.Series(dates), format="%Y-%m-%d", errors="coerce")
    bad = d.isna().to_numpy()
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise RawFileError(f"{path}, line {lines[r]}: 'date' is not YYYY-MM-DD: {dates[r]!r}")
    return pd.DataFrame({"user": users, "item": items, "ts": (d - pd.Timestamp(0)).dt.total_seconds().to_numpy()})


def _games(path: Path, features: str) -> dict[str, tuple[str, list[str]]]:
    out = {}
    for _, rec in _records(path):
        if "id" not in rec:  # a few records have no id: they cannot be joined
            continue
        feats: list[str] = []
        for key in ("genres", "tags") if features == "both" else (features,):
            feats += [str(g) for g in (rec.get(key) or [])]
        out[str(rec["id"])] = (str(rec.get("app_name") or rec.get("title") or ""), sorted(set(feats)))
    return out


def load_steam(
    root: str | Path, n_items: int = 1000, min_user: int = 5, item_features: str = "genres"
) -> SessionLog:
    """Build Steam-2M (1,000 items, about 2.2M events on the full data)."""
    if item_features not in FEATURES:
        raise ValueError(f"item_features must be one of {FEATURES}, got {item_features!r}")
    root = Path(root)
    rpath, gpath = raw_files(root)
    df = _reviews(rpath)
    df["row"] = np.arange(len(df))
    # latest review of each (user, item): stable sort by date keeps file order on ties
    df = df.sort_values(["user", "item", "ts", "row"], kind="stable").drop_duplicates(["user", "item"], keep="last")
    counts = df["item"].value_counts()
    order = np.lexsort((counts.index.to_numpy(str), -counts.to_numpy()))
    top = counts.index.to_numpy(str)[order[:n_items]]
    df = df[df["item"].isin(top)]
    df = df[df.groupby("user")["user"].transform("size") >= min_user]
    if len(df) == 0:
        raise RawFileError(f"{rpath}: no user has >= {min_user} reviews of the top {n_items} items")
    df = df.sort_values("row")  # back to file order: build_log breaks time ties by row
    ucode, _ = encode(df["user"].to_numpy(str))
    items, catalogue = encode(df["item"].to_numpy(str))
    games = _games(gpath, item_features)
    meta = [games.get(i, ("", [])) for i in catalogue]
    genres, names = multi_hot([m[1] for m in meta])
    n = len(df)
    return build_log(
        ucode, items, df["ts"].to_numpy(np.float64), np.full(n, KIND_PURCHASE, np.int8), np.ones(n, np.float32),
        len(catalogue), users=ucode, genres=genres, genre_names=names, item_ids=catalogue,
        titles=np.array([m[0] for m in meta]), name="steam",
        meta={"source": "steam", "reward_scheme": "click-purchase", "item_features": item_features,
              "n_items_without_metadata": int(sum(i not in games for i in catalogue))},
    )  # fmt: skip
