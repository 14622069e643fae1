"""The reward schemes that turn logged events into ``(kinds, rewards)``: one implementation, used
by every source loader and by :func:`recgym.data.from_frame`.

Click-purchase (SQN's r_c / r_p): a click or view is ``KIND_CLICK`` with reward 0.2, a purchase or
add-to-cart is ``KIND_PURCHASE`` with reward 1.0.

Ratings (1–5 stars, half stars allowed):

============  =====================  ==========================
rating        ``"rating"`` reward    ``"click-purchase"`` reward
============  =====================  ==========================
< 3           0.0                    0.2
[3, 4)        0.5                    0.2
>= 4          1.0                    1.0
============  =====================  ==========================

In both rating schemes ``kinds`` is purchase for rating >= 4 and click otherwise, so the
click/purchase metrics of the session protocol read "liked" vs "merely rated".
"""

from __future__ import annotations

import numpy as np

from recgym.data.session_log import KIND_CLICK, KIND_PURCHASE

REWARD_CLICK = 0.2
"""Reward of a click / view in the click-purchase scheme (SQN's r_c)."""
REWARD_PURCHASE = 1.0
"""Reward of a purchase / add-to-cart in the click-purchase scheme (SQN's r_p)."""
REWARD_SCHEMES = ("rating", "click-purchase")
"""Schemes of a rating column; ``"rating"`` is the default of the rating sources."""


def click_purchase(is_purchase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(kinds int8 [n], rewards float32 [n])`` of the click-purchase scheme (0.2 / 1.0)."""
    is_purchase = np.asarray(is_purchase, dtype=bool)
    kinds = np.where(is_purchase, KIND_PURCHASE, KIND_CLICK).astype(np.int8)
    rewards = np.where(is_purchase, REWARD_PURCHASE, REWARD_CLICK).astype(np.float32)
    return kinds, rewards


def rating_rewards(ratings: np.ndarray, scheme: str = "rating") -> tuple[np.ndarray, np.ndarray]:
    """``(kinds int8 [n], rewards float32 [n])`` of a rating column under ``scheme`` (module table).

    ``"rating"``: < 3 -> 0, [3, 4) -> 0.5, >= 4 -> 1; ``"click-purchase"``: >= 4 -> purchase
    (1.0), else click (0.2). ``kinds`` is purchase where rating >= 4 in both.
    """
    ratings = np.asarray(ratings, dtype=np.float64)
    liked = ratings >= 4
    if scheme == "rating":
        rewards = np.where(liked, 1.0, np.where(ratings >= 3, 0.5, 0.0)).astype(np.float32)
        kinds = np.where(liked, KIND_PURCHASE, KIND_CLICK).astype(np.int8)
        return kinds, rewards
    if scheme == "click-purchase":
        return click_purchase(liked)
    raise ValueError(f"unknown reward_scheme {scheme!r}; a rating column accepts {list(REWARD_SCHEMES)}")


__all__ = ["REWARD_CLICK", "REWARD_PURCHASE", "REWARD_SCHEMES", "click_purchase", "rating_rewards"]
