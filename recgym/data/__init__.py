"""The offline-dataset interface: `SessionLog`, `Transitions`, splits, windows, the source loaders and
`from_frame` / `read_table` / `register_source` for your own data."""

from recgym.data.session_log import KIND_CLICK, KIND_PURCHASE, SessionLog
from recgym.data.splits import Split, split_by_session, split_leave_one_out
from recgym.data.transitions import Transitions, return_to_go
from recgym.data.windows import last_items, last_items_of_lists, last_items_of_rows
from recgym.data.rewards import REWARD_CLICK, REWARD_PURCHASE, REWARD_SCHEMES, click_purchase, rating_rewards
from recgym.data.registry import SOURCES, infer_protocol, load, load_split, register_source, resolve_data_dir
from recgym.data.sources._common import DUPLICATE_POLICIES, DuplicateRowsWarning
from recgym.data.frame import from_frame, parse_columns, read_table

__all__ = [
    "DUPLICATE_POLICIES",
    "DuplicateRowsWarning",
    "KIND_CLICK",
    "KIND_PURCHASE",
    "REWARD_CLICK",
    "REWARD_PURCHASE",
    "REWARD_SCHEMES",
    "SOURCES",
    "SessionLog",
    "Split",
    "Transitions",
    "click_purchase",
    "from_frame",
    "infer_protocol",
    "last_items",
    "last_items_of_lists",
    "last_items_of_rows",
    "load",
    "load_split",
    "parse_columns",
    "rating_rewards",
    "read_table",
    "register_source",
    "resolve_data_dir",
    "return_to_go",
    "split_by_session",
    "split_leave_one_out",
]
