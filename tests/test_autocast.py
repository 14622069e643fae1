"""``autocast_dtype="bfloat16"``: the loss is computed under ``torch.autocast`` while weights,
gradients and optimizer state stay float32, and the fused catalogue cross-entropy keeps float32."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recgym.agents.nets.linear_ce import linear_cross_entropy
from recgym.agents.qlearning import SQNAgent
from recgym.agents.sasrec import SASRecAgent
from recgym.errors import BadInputError


def _batch(n_items=30, B=16, L=5, seed=0):
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, L + 1, B)
    cols = np.arange(L)[None]
    state = np.where(cols < lens[:, None], rng.integers(0, n_items, (B, L)), n_items)
    nxt = np.minimum(lens + 1, L)
    return {"state": torch.from_numpy(state), "state_len": torch.from_numpy(lens),
            "action": torch.from_numpy(rng.integers(0, n_items, B)),
            "reward": torch.ones(B), "next_state": torch.from_numpy(np.where(cols < nxt[:, None], state, n_items)),
            "next_len": torch.from_numpy(nxt), "done": torch.zeros(B)}


def test_bad_dtype_is_named():
    with pytest.raises(BadInputError, match="autocast_dtype"):
        SASRecAgent(30, autocast_dtype="float16")


@pytest.mark.parametrize("cls", [SASRecAgent, SQNAgent])
def test_bf16_step_keeps_float32_state_and_matches_float32_closely(cls):
    b = _batch()
    a32 = cls(30, seed=0, state_len=5, hidden=16, dropout=0.0)
    a16 = cls(30, seed=0, state_len=5, hidden=16, dropout=0.0, autocast_dtype="bfloat16")
    for a in (a32, a16):
        a.set_training(True)
    with a16.autocast():
        loss16, _ = a16.loss(b)
    loss32, _ = a32.loss(b)
    loss16, loss32 = loss16.detach(), loss32.detach()
    assert loss16.dtype == torch.float32
    # bf16 matmuls: close to, but not, the float32 loss (the context is really on)
    assert abs(float(loss16) - float(loss32)) < 0.02 * abs(float(loss32))
    assert float(loss16) != float(loss32)
    a16.update(b, 0)
    for m in a16.modules().values():
        assert all(p.dtype == torch.float32 for p in m.parameters())
    for opt in a16.optimizers().values():
        for st in opt.state.values():
            assert all(v.dtype == torch.float32 for v in st.values() if torch.is_tensor(v) and v.dim() > 0)
    assert a32.autocast().__class__.__name__ == "nullcontext"


def test_fused_cross_entropy_stays_float32_under_autocast():
    g = torch.Generator().manual_seed(0)
    h, w, b = torch.randn(8, 6, generator=g), torch.randn(40, 6, generator=g), torch.randn(40, generator=g)
    y = torch.randint(0, 40, (8,), generator=g)
    ref = F.cross_entropy(F.linear(h, w, b), y, reduction="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ce = linear_cross_entropy(h, w, b, y)
        ce_bf16_input = linear_cross_entropy(h.bfloat16(), w, b, y)
    assert ce.dtype == torch.float32 and torch.allclose(ce, ref, atol=1e-5)
    # a bf16 state vector (from an autocast encoder) is scored in float32 as it is
    assert torch.allclose(ce_bf16_input, F.cross_entropy(F.linear(h.bfloat16().float(), w, b), y, reduction="none"), atol=1e-5)


def test_all_positions_bf16_loss_is_the_mean_over_used_positions():
    # under autocast the all-positions loss runs on every position with the unused ones ignored
    # (a fixed GEMM shape); it must stay the mean over the used positions only
    b = _batch(L=6)
    kw = dict(seed=0, state_len=6, hidden=16, dropout=0.0, all_positions=True, tied_output=True)
    a32, a16 = SASRecAgent(30, **kw), SASRecAgent(30, autocast_dtype="bfloat16", **kw)
    for a in (a32, a16):  # spread the logits, so that which positions count changes the mean
        with torch.no_grad():
            a.encoder.item_embeddings.weight.copy_(torch.randn(31, 16, generator=torch.Generator().manual_seed(1)))
    with a16.autocast():
        loss16 = a16.loss(b)[0].detach()
    loss32 = a32.loss(b)[0].detach()
    assert abs(float(loss16) - float(loss32)) < 0.02 * float(loss32)
    # the padded positions would add targets of the padding id: a different (or failing) mean
    with torch.no_grad():
        h = a32.encoder.sequence(b["state"], b["state_len"]).flatten(0, 1)
        all_rows = F.cross_entropy(a32._output(h), b["state"].flatten().clamp_max(29))
    assert abs(float(all_rows) - float(loss32)) > 0.1 * float(loss32)
