"""Netflix Prize ratings, as the LPI paper uses them.

Raw: either ``training_set/mv_*.txt`` (one file per movie: first line ``MOVIEID:``, then
``CustomerID,Rating,Date``) or ``combined_data_*.txt`` (several ``MOVIEID:`` blocks per file);
optional ``movie_titles.csv`` (``MovieID,YearOfRelease,Title``, latin-1; titles may hold commas).

Preprocessing: users with >= 5 ratings; each user's ratings sorted by date (day resolution,
ties in file order: movie files in name order) and the last 200 kept; one session per user;
rewards by ``reward_scheme`` (default ``"rating"``: 1–2 -> 0, 3 -> 0.5, 4–5 -> 1).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.data.sources._common import RawFileError, check_ratings, handle_duplicates, read_table, sequences_by_user
from recgym.data.session_log import SessionLog

HOW = (
    "The Netflix Prize data has no direct download (Kaggle, login required): get it from "
    "https://www.kaggle.com/datasets/netflix-inc/netflix-prize-data and put combined_data_*.txt "
    "(or the folder training_set/ with mv_*.txt) and optionally movie_titles.csv in this folder."
)
_HEADER = re.compile(rb"^[ \t]*(\d+):[ \t]*\r?$", re.M)


def raw_files(root: Path, **_) -> list[Path]:
    files = sorted(root.glob("combined_data_*.txt")) or sorted((root / "training_set").glob("mv_*.txt"))
    if not files:
        raise FileNotFoundError(
            f"netflix: no raw files (combined_data_*.txt or training_set/mv_*.txt) found in {root}/ . {HOW}"
        )
    titles = root / "movie_titles.csv"
    return files + ([titles] if titles.is_file() else [])


def _parse_file(path: Path) -> pd.DataFrame:
    """One movie-block file -> frame ``movie, user, rating, date`` in file order."""
    raw = path.read_bytes()
    if not raw.strip():
        raise RawFileError(f"{path}: file is empty")
    heads = list(_HEADER.finditer(raw))
    if not heads or raw[: heads[0].start()].strip():
        first = raw.splitlines()[0][:60]
        raise RawFileError(f"{path}, line 1: expected a 'MOVIEID:' line, got {first!r}")
    movies = np.array([int(m.group(1)) for m in heads], dtype=np.int64)
    # data of block k lies between the end of header k and the start of header k+1
    bounds = [(m.end() + 1, (heads[k + 1].start() if k + 1 < len(heads) else len(raw))) for k, m in enumerate(heads)]
    chunks = [raw[a:b] for a, b in bounds]
    counts = np.array([c.count(b"\n") + (1 if c and not c.endswith(b"\n") else 0) for c in chunks], dtype=np.int64)
    # line numbers: data row r of block k sits at file line (rows before) + (k + 1 headers) + 1
    starts = np.cumsum(counts) - counts

    def line_of_row(r: int) -> int:
        k = int(np.searchsorted(starts, r, side="right")) - 1
        return int(r) + k + 2

    data = b"".join(c if c.endswith(b"\n") or not c else c + b"\n" for c in chunks)
    if counts.sum() == 0:
        raise RawFileError(f"{path}: no ratings after the 'MOVIEID:' lines")
    df = read_table(
        io.BytesIO(data), names=["user", "rating", "date"], kinds={"user": "int", "rating": "int", "date": "str"},
        label=str(path), line_of_row=line_of_row, check_duplicates=False,  # a row is an event only with its movie
    )  # fmt: skip
    dates = pd.to_datetime(df["date"], format="%Y-%m-%d", errors="coerce")
    bad = dates.isna().to_numpy()
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise RawFileError(f"{path}, line {line_of_row(r)}: column 'date' is not YYYY-MM-DD: {df['date'].iloc[r]!r}")
    check_ratings(df["rating"].to_numpy(np.float64), str(path), line_of_row, lo=1, hi=5)
    out = pd.DataFrame(
        {
            "movie": np.repeat(movies, counts),
            "user": df["user"].to_numpy(np.int64),
            "rating": df["rating"].to_numpy(np.int8),
            "ts": (dates - pd.Timestamp(0)).dt.total_seconds().to_numpy(np.float64),
        }
    )
    return handle_duplicates(out, None, str(path), line_of_row=line_of_row)


def _titles(path: Path) -> dict[int, str]:
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",", 2)
        if len(parts) != 3 or not parts[0].strip().isdigit():
            raise RawFileError(f"{path}, line {lineno}: expected 'MovieID,YearOfRelease,Title', got {line[:80]!r}")
        out[int(parts[0])] = parts[2]
    return out


def load_netflix(
    root: str | Path, reward_scheme: str = "rating", min_ratings: int = 5, max_len: int = 200
) -> SessionLog:
    """Build the Netflix log (472,987 users and about 53M ratings on the full data, per the LPI paper)."""
    root = Path(root)
    files = raw_files(root)
    rating_files = [f for f in files if f.name != "movie_titles.csv"]
    df = pd.concat([_parse_file(f) for f in rating_files], ignore_index=True)
    catalogue = np.unique(df["movie"].to_numpy())
    titles = None
    if (root / "movie_titles.csv").is_file():
        t = _titles(root / "movie_titles.csv")
        titles = np.array([t.get(int(m), "") for m in catalogue])
    return sequences_by_user(
        df["user"].to_numpy(), df["movie"].to_numpy(), df["rating"].to_numpy(np.float64), df["ts"].to_numpy(), reward_scheme,
        catalogue=catalogue, min_len=min_ratings, max_len=max_len, titles=titles, name="netflix",
        meta={"source": "netflix", "reward_scheme": reward_scheme, "min_ratings": min_ratings, "max_len": max_len},
    )  # fmt: skip
