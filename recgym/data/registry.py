"""The source registry: ``load(name)`` / ``load_split(name)`` for every raw dataset recgym knows.

``load`` finds the raw files in ``<data_dir>/<name>/`` (``data_dir`` = argument, else
``$RECGYM_DATA_DIR``, else ``~/.cache/recgym``), downloads them when asked and possible,
preprocesses them with the source's module and caches the result (`recgym.data.cache`).
``load_split`` applies the source's default protocol (docs/architecture.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from recgym.data import cache as _cache
from recgym.data.session_log import SessionLog
from recgym.data.sources import movielens, netflix, obd, retailrocket, session_rec, steam, synthetic, yoochoose
from recgym.data.splits import Split, split_by_session, split_leave_one_out

REWARD_SCHEMES = ("rating", "click-purchase")
"""Reward schemes of the rating sources (ml-100k, ml-1m, netflix); "rating" is their default."""


@dataclass(frozen=True)
class SourceSpec:
    """How to find, build and split one source.

    ``build(root, scheme, **params)`` makes the log; ``raw_files(root, **params)`` lists the raw
    files (raising ``FileNotFoundError`` with instructions); ``schemes[0]`` is the default reward
    scheme; ``version`` is bumped whenever the preprocessing changes (invalidates the cache).
    """

    name: str
    build: Callable[..., SessionLog]
    raw_files: Callable[..., list[Path]] | None
    protocol: str
    schemes: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    seed_param: str | None = None
    open_params: bool = False
    version: int = 1


def _rating(fn):
    return lambda root, scheme, **p: fn(root, reward_scheme=scheme, **p)


def _plain(fn):
    return lambda root, scheme, **p: fn(root, **p)


_SPECS = [
    SourceSpec("retailrocket", _plain(retailrocket.load_retailrocket), retailrocket.raw_files, "session",
               ("click-purchase",), {"min_session": 3, "min_item": 3}),
    SourceSpec("rc15", lambda root, scheme, **p: yoochoose.load_yoochoose(root, source="rc15", **p),
               lambda root, **p: yoochoose.raw_files(root, "rc15"), "session", ("click-purchase",),
               {"n_sessions": 200_000, "sample_seed": 0, "min_clicks": 3}, seed_param="sample_seed"),
    SourceSpec("yoochoose", lambda root, scheme, **p: yoochoose.load_yoochoose(root, n_sessions=None, source="yoochoose", **p),
               lambda root, **p: yoochoose.raw_files(root, "yoochoose"), "session", ("click-purchase",), {"min_clicks": 3}),
    SourceSpec("yoochoose-100k", _plain(session_rec.load_yoochoose100k), session_rec.raw_files, "session", ("click-purchase",)),
    SourceSpec("ml-1m", _rating(movielens.load_ml1m), movielens.raw_files_1m, "loo", REWARD_SCHEMES),
    SourceSpec("ml-100k", _rating(movielens.load_ml100k), movielens.raw_files_100k, "loo", REWARD_SCHEMES),
    SourceSpec("netflix", _rating(netflix.load_netflix), netflix.raw_files, "loo", REWARD_SCHEMES,
               {"min_ratings": 5, "max_len": 200}),
    SourceSpec("steam", _plain(steam.load_steam), steam.raw_files, "loo", ("click-purchase",),
               {"n_items": 1000, "min_user": 5, "item_features": "genres"}),
    SourceSpec("obd", _plain(obd.load_obd), obd.raw_files, "session", ("click",),
               {"behavior_policy": "random", "campaign": "all"}),
    SourceSpec("synthetic", lambda root, scheme, **p: synthetic.load_synthetic(**p), None, "session", ("synthetic",),
               {"n_sessions": 5000, "world_seed": 0}, seed_param="world_seed", open_params=True),
]  # fmt: skip
REGISTRY: dict[str, SourceSpec] = {s.name: s for s in _SPECS}
SOURCES: tuple[str, ...] = tuple(REGISTRY)
"""Names accepted by `load` and `load_split`."""


def resolve_data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data folder: ``path``, else ``$RECGYM_DATA_DIR``, else ``~/.cache/recgym``."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("RECGYM_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recgym"


def get_source(name: str) -> SourceSpec:
    """The spec of source ``name``; ``ValueError`` listing the sources otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known sources: {', '.join(SOURCES)}")
    return REGISTRY[name]


def _resolve(spec: SourceSpec, reward_scheme: str | None, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    scheme = spec.schemes[0] if reward_scheme is None else reward_scheme
    if scheme not in spec.schemes:
        raise ValueError(f"unknown reward_scheme {reward_scheme!r} for {spec.name!r}; it accepts {list(spec.schemes)}")
    params = dict(params)
    if "seed" in params and spec.seed_param is not None:  # `seed` names the source's own sampling seed
        params[spec.seed_param] = params.pop("seed")
    unknown = sorted(set(params) - set(spec.params))
    if unknown and not spec.open_params:
        raise ValueError(f"unknown parameter(s) {unknown} for dataset {spec.name!r}; it accepts {sorted(spec.params)}")
    return scheme, {**spec.params, **params}


def _raw(spec: SourceSpec, root: Path, download: bool, params: dict[str, Any]) -> list[Path]:
    from recgym.data import download as dl

    try:
        return spec.raw_files(root, **params)
    except FileNotFoundError:
        if not download:
            raise
        if spec.name not in dl.DOWNLOADS:
            raise
    dl.download(spec.name, root)
    return spec.raw_files(root, **params)


def _build(spec: SourceSpec, root: Path, scheme: str, params: dict[str, Any]) -> SessionLog:
    if spec.name == "synthetic":
        p = dict(params)
        p["seed"] = p.pop("world_seed")
        return spec.build(root, scheme, **p)
    if spec.name == "rc15":
        p = dict(params)
        p["seed"] = p.pop("sample_seed")
        return spec.build(root, scheme, **p)
    return spec.build(root, scheme, **params)


def load(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    reward_scheme: str | None = None,
    download: bool = False,
    cache: bool = True,
    **params: Any,
) -> SessionLog:
    """The preprocessed `SessionLog` of source ``name`` (see ``SOURCES`` and docs/data.md).

    Args:
        name: a source name (``SOURCES``).
        data_dir: data folder (default ``$RECGYM_DATA_DIR`` or ``~/.cache/recgym``); raw files
            of ``name`` are read from ``<data_dir>/<name>/``.
        reward_scheme: ``"rating"`` (default) or ``"click-purchase"`` for rating sources; others
            accept only their own scheme.
        download: fetch missing raw files where an official address exists (ml-100k, ml-1m,
            yoochoose-100k).
        cache: read / write the processed cache (``<data_dir>/processed`` or ``$RECGYM_CACHE_DIR``).
        **params: preprocessing parameters of the source (``seed`` is the source's sampling seed
            for rc15 and synthetic); unknown ones raise ``ValueError``.
    """
    spec = get_source(name)
    scheme, params = _resolve(spec, reward_scheme, params)
    root = resolve_data_dir(data_dir)
    if spec.raw_files is None:  # generated, nothing to cache
        return _build(spec, root, scheme, params)
    src_root = root / name
    files = _raw(spec, src_root, download, params)
    build = lambda: _build(spec, src_root, scheme, params)  # noqa: E731
    if not cache:
        return build()
    return _cache.cached(name, "", files, {**params, "reward_scheme": scheme}, spec.version, build, _cache.cache_dir(root))


def load_split(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    reward_scheme: str | None = None,
    seed: int = 0,
    protocol: str | None = None,
    download: bool = False,
    cache: bool = True,
    **params: Any,
) -> Split:
    """Train / valid / test of source ``name`` under ``protocol`` (default: the source's own).

    Default protocols: ml-100k, ml-1m, netflix, steam: leave-one-out per user (``"loo"``);
    yoochoose-100k: its own files train_tr / train_valid / test (``"session"``); the others:
    sessions shuffled with ``seed`` and cut 80/10/10 (``"session"``). ``protocol="session"`` on a
    leave-one-out source makes each user's whole chronological history one session, users shuffled
    with ``seed`` and cut 80/10/10 (every rating of a test user is a target: the session protocol of
    the SQN/SA2C/CCQL papers); ``protocol="loo"`` on a session source leaves each session's last
    event out. ``seed`` is only the split seed here; pass a source's sampling seed as
    ``sample_seed`` (rc15) or ``world_seed`` (synthetic).
    """
    spec = get_source(name)
    if protocol is not None and protocol not in ("session", "loo"):
        raise ValueError(f"unknown protocol {protocol!r}; expected 'session' or 'loo'")
    protocol = protocol or spec.protocol
    if name == "yoochoose-100k" and protocol == "session":
        scheme, params = _resolve(spec, reward_scheme, params)
        root = resolve_data_dir(data_dir) / name
        files = _raw(spec, root, download, params)
        parts = {}
        for part in ("train_tr", "train_valid", "test"):
            build = lambda part=part: session_rec.load_parts(root, (part,))[part]  # noqa: E731
            if cache:
                parts[part] = _cache.cached(name, part, files, {"reward_scheme": scheme}, spec.version, build,
                                            _cache.cache_dir(resolve_data_dir(data_dir)))  # fmt: skip
            else:
                parts[part] = build()
        return Split(parts["train_tr"], parts["train_valid"], parts["test"], "session")
    log = load(name, data_dir, reward_scheme=reward_scheme, download=download, cache=cache, **params)
    if name == "yoochoose-100k":
        raise ValueError("yoochoose-100k comes as fixed session files; it has no 'loo' split")
    if protocol == "loo":
        return split_leave_one_out(log)
    return split_by_session(log, seed=seed)
