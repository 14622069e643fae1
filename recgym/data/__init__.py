"""The offline-dataset interface: `SessionLog`, `Transitions`, splits, windows and the source loaders."""

from recgym.data.session_log import KIND_CLICK, KIND_PURCHASE, SessionLog
from recgym.data.splits import Split, split_by_session, split_leave_one_out
from recgym.data.transitions import Transitions, return_to_go
from recgym.data.windows import last_items, last_items_of_lists, last_items_of_rows
from recgym.data.registry import REWARD_SCHEMES, SOURCES, load, load_split, resolve_data_dir

__all__ = [
    "KIND_CLICK",
    "KIND_PURCHASE",
    "REWARD_SCHEMES",
    "SOURCES",
    "SessionLog",
    "Split",
    "Transitions",
    "last_items",
    "last_items_of_lists",
    "last_items_of_rows",
    "load",
    "load_split",
    "resolve_data_dir",
    "return_to_go",
    "split_by_session",
    "split_leave_one_out",
]
