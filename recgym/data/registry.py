"""The source registry: ``load(name)`` / ``load_split(name)`` for every raw dataset recgym knows.

``load`` finds the raw files in ``<data_dir>/<name>/`` (``data_dir`` = argument, else
non-empty ``$RECGYM_DATA_DIR``, else ``~/.cache/recgym``: :func:`resolve_data_dir`), downloads them when asked and possible,
preprocesses them with the source's module and caches the result (`recgym.data.cache`).
``load_split`` applies the source's default protocol (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from recgym.data import cache as _cache
from recgym.data.io import file_digest
from recgym.data.rewards import REWARD_SCHEMES
from recgym.data.session_log import SessionLog
from recgym.data.sources import movielens, netflix, obd, retailrocket, session_rec, steam, synthetic, yoochoose
from recgym.data.sources._common import DuplicateRowsWarning, check_duplicate_policy, duplicate_policy
from recgym.data.splits import PROTOCOLS, Split, split_by_session, split_leave_one_out
from recgym.errors import BadInputError



@dataclass(frozen=True)
class SourceSpec:
    """How to find, build and split one source.

    ``build(root, scheme, **params)`` makes the log; ``raw_files(root, **params)`` lists the raw
    files (raising ``FileNotFoundError`` with instructions); ``schemes[0]`` is the default reward
    scheme; ``version`` is bumped whenever the preprocessing changes (invalidates the cache).
    ``protocol`` ``None`` (sources registered without one): decided by :func:`infer_protocol`.
    """

    name: str
    build: Callable[..., SessionLog]
    raw_files: Callable[..., list[Path]] | None
    protocol: str | None
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
"""The built-in sources; `load` and `load_split` also accept names added by `register_source`."""


def register_source(
    name: str, loader: Callable[..., SessionLog], *, protocol: str | None = None, overwrite: bool = False
) -> None:
    """Make ``load(name, **params)`` / ``load_split(name)`` / ``make_agent(..., dataset=name)`` work
    for your own data.

    Args:
        name: the dataset name (must not be a built-in source).
        loader: ``loader(**params) -> SessionLog``, e.g. ``lambda: recgym.data.read_table(path,
            columns={...})``; called on every `load` (it is not cached by recgym). It applies its
            own duplicate policy (``read_table(..., duplicates=...)``); `load`'s ``duplicates``
            governs recgym's raw-file loaders only.
        protocol: ``"loo"`` or ``"session"`` for `load_split` and the agents' presets; ``None``:
            :func:`infer_protocol` decides from the log (one session per user -> ``"loo"``).
        overwrite: replace an earlier registration of ``name``.
    """
    if not isinstance(name, str) or not name:
        raise BadInputError(f"register_source: name must be a non-empty string, got {name!r}")
    if name in SOURCES:
        raise BadInputError(f"register_source: {name!r} is a built-in source; choose another name")
    if name in REGISTRY and not overwrite:
        raise BadInputError(f"register_source: {name!r} is already registered (pass overwrite=True to replace it)")
    if not callable(loader):
        raise BadInputError(f"register_source: loader of {name!r} must be callable, got {type(loader).__name__}")
    if protocol is not None and protocol not in PROTOCOLS:
        raise BadInputError(f"register_source: protocol must be one of {PROTOCOLS} or None, got {protocol!r}")

    def build(root, scheme, **params):
        log = loader(**params)
        if not isinstance(log, SessionLog):
            raise BadInputError(f"source {name!r}: its loader returned {type(log).__name__}, not a SessionLog")
        return log

    REGISTRY[name] = SourceSpec(name, build, None, protocol, ("as-loaded",), open_params=True)


def infer_protocol(log: SessionLog) -> str:
    """``"loo"`` when the log has users and one session per user, else ``"session"``."""
    if log.users is not None and len(np.unique(log.users)) == log.n_sessions:
        return "loo"
    return "session"


def source_protocol(name: str | None) -> str | None:
    """The protocol of a known source (built-in or registered with one), else ``None``."""
    spec = REGISTRY.get(name) if name is not None else None
    return None if spec is None else spec.protocol


def resolve_data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data folder: ``path``, else ``$RECGYM_DATA_DIR``, else ``~/.cache/recgym`` (``~`` expanded).

    An empty ``RECGYM_DATA_DIR`` counts as unset (``RECGYM_DATA_DIR= cmd`` means "the default"),
    never as the current directory. Every loader, env and command resolves the folder here.
    """
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("RECGYM_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recgym"


def get_source(name: str) -> SourceSpec:
    """The spec of source ``name``; ``ValueError`` listing the sources otherwise."""
    if name not in REGISTRY:
        raise BadInputError(f"unknown dataset {name!r}; known sources: {', '.join(REGISTRY)} "
                            "(your own data: recgym.data.register_source)")
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


class UnpublishedDataWarning(UserWarning):
    """A raw file differs from the owner's published release (its md5 does not match)."""


def _check_published(name: str, files: list[Path], where: Path | None) -> None:
    """Warn, naming the file, when a raw file differs from its published md5 (truncated, edited or
    another release): the data is used as it is, but results may not compare with others'.
    ``where``: the cache folder whose checksum index spares re-hashing (``None``: hash here)."""
    from recgym.data import download as dl

    published = dl.published_md5s(name)
    if not published:
        return
    sums = _cache.file_checksums(files, where) if where is not None else {Path(f).name: file_digest(f, "md5") for f in files}
    bad = [f"{f} (md5 {sums.get(Path(f).name)}, published {published[Path(f).name]})" for f in files
           if Path(f).name in published and sums.get(Path(f).name) != published[Path(f).name]]
    if bad:
        warnings.warn(f"recgym: {name}: raw file(s) differ from the published release (truncated or edited?); "
                      f"using them as they are: {'; '.join(bad)}", UnpublishedDataWarning, stacklevel=3)


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
    duplicates: str = "warn",
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
        duplicates: exact duplicate lines of the raw files: ``"warn"`` (keep them, warn with the
            file and the count), ``"drop"``, ``"keep"`` (silently) or ``"error"``; the finding is
            stored in ``meta["duplicate_rows"]`` and warned about again on a cache hit.
        **params: preprocessing parameters of the source (``seed`` is the source's sampling seed
            for rc15 and synthetic); unknown ones raise ``ValueError``.
    """
    spec = get_source(name)
    scheme, params = _resolve(spec, reward_scheme, params)
    check_duplicate_policy(duplicates)
    root = resolve_data_dir(data_dir)
    if spec.raw_files is None:  # generated or registered: nothing to cache
        with duplicate_policy(duplicates):
            return _build(spec, root, scheme, params)
    src_root = root / name
    files = _raw(spec, src_root, download, params)

    built = []

    def build() -> SessionLog:
        built.append(True)
        with duplicate_policy(duplicates) as found:
            log = _build(spec, src_root, scheme, params)
        return dataclasses.replace(log, meta={**log.meta, "duplicate_rows": found}) if found else log

    _check_published(name, files, _cache.cache_dir(root) if cache else None)
    if not cache:
        return build()
    key = {**params, "reward_scheme": scheme}
    if duplicates == "drop":  # "warn", "keep" and "error" build the same log
        key["duplicates"] = "drop"
    log = _cache.cached(name, "", files, key, spec.version, build, _cache.cache_dir(root))
    if not built:
        _recall_duplicates(log, duplicates)
    return log


def _recall_duplicates(log: SessionLog, policy: str) -> None:
    """On a cache hit, repeat what the raw files' duplicate rows called for (the build did it once)."""
    for f in log.meta.get("duplicate_rows", []):
        if f.get("policy") == "drop" or policy in ("keep", "drop"):
            continue
        msg = f"{f['file']}: {f['n']} exact duplicate rows"
        if policy == "error":
            raise BadInputError(f"{msg} (duplicates='error')")
        warnings.warn(f"{msg} kept (processed cache); pass duplicates='drop' to drop them, 'keep' to keep them silently",
                      DuplicateRowsWarning, stacklevel=3)


def load_split(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    reward_scheme: str | None = None,
    seed: int = 0,
    protocol: str | None = None,
    download: bool = False,
    cache: bool = True,
    duplicates: str = "warn",
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
    ``sample_seed`` (rc15) or ``world_seed`` (synthetic). A source added by
    `register_source` without a protocol is split as :func:`infer_protocol` says.
    """
    spec = get_source(name)
    if protocol is not None and protocol not in ("session", "loo"):
        raise ValueError(f"unknown protocol {protocol!r}; expected 'session' or 'loo'")
    protocol = protocol or spec.protocol
    if name == "yoochoose-100k" and protocol == "session":
        scheme, params = _resolve(spec, reward_scheme, params)
        root = resolve_data_dir(data_dir) / name
        files = _raw(spec, root, download, params)
        _check_published(name, files, _cache.cache_dir(resolve_data_dir(data_dir)) if cache else None)
        parts = {}
        check_duplicate_policy(duplicates)
        for part in ("train_tr", "train_valid", "test"):
            built = []

            def build(part=part, built=built):
                built.append(True)
                with duplicate_policy(duplicates) as found:
                    log = session_rec.load_parts(root, (part,))[part]
                return dataclasses.replace(log, meta={**log.meta, "duplicate_rows": found}) if found else log

            if cache:
                key = {"reward_scheme": scheme, **({"duplicates": "drop"} if duplicates == "drop" else {})}
                parts[part] = _cache.cached(name, part, files, key, spec.version, build,
                                            _cache.cache_dir(resolve_data_dir(data_dir)))  # fmt: skip
                if not built:
                    _recall_duplicates(parts[part], duplicates)
            else:
                parts[part] = build()
        return Split(parts["train_tr"], parts["train_valid"], parts["test"], "session")
    log = load(name, data_dir, reward_scheme=reward_scheme, download=download, cache=cache, duplicates=duplicates, **params)
    if name == "yoochoose-100k":
        raise BadInputError("yoochoose-100k comes as fixed session files; it has no 'loo' split")
    if (protocol or infer_protocol(log)) == "loo":
        return split_leave_one_out(log)
    return split_by_session(log, seed=seed)
