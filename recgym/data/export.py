"""Export a `SessionLog` to other offline-RL formats: a Minari dataset (Farama).

One session is one episode; step ``t`` is the session's event ``t``: the observation is the
``recgym/Replay-*`` one (``{"history": int64 [L] right-padded with n_items, "length": int64 [1]}``,
the last ``state_len`` items before the event), the action the logged item, the reward the logged
reward; the episode terminates at the session's last event, whose next observation includes it
(:class:`recgym.data.Transitions` rows, read episode by episode). Needs the ``minari`` extra
(``pip install 'recgym[minari]'``); the data is written in Minari's ``arrow`` format (pyarrow,
already a recgym dependency), not HDF5.

    import minari
    from recgym.data.export import to_minari
    ds = to_minari(log, "recgym/my-ratings/logged-v0", state_len=10)   # under $MINARI_DATASETS_PATH
    ds = minari.load_dataset("recgym/my-ratings/logged-v0")
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from recgym.data.session_log import SessionLog
from recgym.data.transitions import Transitions
from recgym.errors import BadInputError

__all__ = ["minari_spaces", "to_minari"]


def _minari() -> Any:
    try:
        import minari
    except ImportError as e:
        raise BadInputError("Minari export needs the minari package: pip install 'recgym[minari]' "
                            f"(or pip install minari) ({e})") from None
    return minari


def minari_spaces(n_items: int, state_len: int) -> tuple[Any, Any]:
    """``(observation_space, action_space)`` of the exported episodes (those of ``recgym/Replay-*``)."""
    from gymnasium import spaces

    from recgym.envs.common import count_box, id_box

    return spaces.Dict({"history": id_box(n_items, (state_len,)), "length": count_box(state_len)}), spaces.Discrete(n_items)


def to_minari(log: SessionLog, dataset_id: str, *, state_len: int = 10, description: str | None = None,
              author: str | None = None, data_format: str = "arrow") -> Any:
    """Write ``log`` as the Minari dataset ``dataset_id`` (``namespace/name-v0``) and return it.

    Args:
        log: sessions to export (each non-empty session one episode).
        dataset_id: Minari's ``(namespace/)(env_name/)dataset_name(-v<version>)``.
        state_len: history window ``L`` of the observations.
        description, author: Minari metadata.
        data_format: Minari storage (``"arrow"``; ``"hdf5"`` needs h5py).

    Returns:
        The ``minari.MinariDataset`` (saved under ``$MINARI_DATASETS_PATH``, default ``~/.minari/datasets``).
    """
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    keep = np.flatnonzero(log.lengths >= 1)
    if len(keep) == 0:
        raise BadInputError(f"to_minari: log {log.name!r} has no non-empty session")
    tr = Transitions.from_log(log, state_len=state_len)
    hist = tr.state.astype(np.int64)
    lengths = tr.state_len.astype(np.int64)
    buffers = []
    for ep, s in enumerate(keep):
        lo, hi = int(log.offsets[s]), int(log.offsets[s + 1])
        obs = {"history": np.concatenate([hist[lo:hi], tr.next_state[hi - 1 : hi].astype(np.int64)]),
               "length": np.concatenate([lengths[lo:hi], tr.next_len[hi - 1 : hi]])[:, None].astype(np.int64)}
        n = hi - lo
        buffers.append(EpisodeBuffer(
            id=ep, observations=obs, actions=tr.action[lo:hi].astype(np.int64),
            rewards=tr.reward[lo:hi].astype(np.float64), terminations=np.arange(n) == n - 1,
            truncations=np.zeros(n, dtype=bool),
        ))  # fmt: skip
    obs_space, act_space = minari_spaces(log.n_items, state_len)
    with warnings.catch_warnings():  # a logged dataset has no collecting env by nature
        warnings.filterwarnings("ignore", message=r".*(env_spec is None|`eval_env` is set to None)")
        return minari.create_dataset_from_buffers(
            dataset_id, buffers, observation_space=obs_space, action_space=act_space, algorithm_name="logged",
            author=author, description=description or f"recgym SessionLog {log.name!r}: {len(keep)} sessions as "
            f"episodes, {log.n_items} items, history window {state_len}", data_format=data_format,
        )  # fmt: skip
