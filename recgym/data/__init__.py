"""The offline-dataset interface: `SessionLog`, `Transitions`, splits and the source loaders."""

from recgym.data.session_log import KIND_CLICK, KIND_PURCHASE, SessionLog
from recgym.data.splits import Split, split_by_session, split_leave_one_out
from recgym.data.transitions import Transitions, return_to_go
from recgym.data.windows import last_items, last_items_of_lists, last_items_of_rows

__all__ = [
    "KIND_CLICK",
    "KIND_PURCHASE",
    "SessionLog",
    "Split",
    "Transitions",
    "last_items",
    "last_items_of_lists",
    "last_items_of_rows",
    "return_to_go",
    "split_by_session",
    "split_leave_one_out",
]

# source loaders (recgym.data.registry): appended, the exports above are unchanged
from recgym.data.registry import REWARD_SCHEMES, SOURCES, load, load_split  # noqa: E402

__all__ += ["REWARD_SCHEMES", "SOURCES", "load", "load_split"]
