"""The offline-dataset interface: `SessionLog`, `Transitions`, splits and the source loaders."""

from recgym.data.session_log import KIND_CLICK, KIND_PURCHASE, SessionLog, pad_sequences
from recgym.data.splits import Split, split_by_session, split_leave_one_out
from recgym.data.transitions import Transitions, return_to_go

__all__ = [
    "KIND_CLICK",
    "KIND_PURCHASE",
    "SessionLog",
    "Split",
    "Transitions",
    "pad_sequences",
    "return_to_go",
    "split_by_session",
    "split_leave_one_out",
]

from recgym.data.frame import from_frame, parse_columns, read_table  # noqa: E402
from recgym.data.registry import SOURCES, infer_protocol, load, load_split, register_source  # noqa: E402
from recgym.data.rewards import REWARD_CLICK, REWARD_PURCHASE, REWARD_SCHEMES, click_purchase, rating_rewards  # noqa: E402
from recgym.data.sources._common import DUPLICATE_POLICIES, DuplicateRowsWarning  # noqa: E402

__all__ += [
    "DUPLICATE_POLICIES",
    "DuplicateRowsWarning",
    "REWARD_CLICK",
    "REWARD_PURCHASE",
    "REWARD_SCHEMES",
    "SOURCES",
    "click_purchase",
    "from_frame",
    "infer_protocol",
    "load",
    "load_split",
    "parse_columns",
    "rating_rewards",
    "read_table",
    "register_source",
]
