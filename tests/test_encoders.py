"""Encoders share one contract: padded ids + lengths -> state vector, blind to padding."""

from __future__ import annotations

import importlib

import pytest
import torch

N_ITEMS, HIDDEN, L = 30, 16, 10


def _encoder_classes():
    out = [
        ("gru", "recgym.agents.nets.gru", "GRUEncoder"),
        ("caser", "recgym.agents.nets.caser", "CaserEncoder"),
        ("nextitnet", "recgym.agents.nets.nextitnet", "NextItNetEncoder"),
    ]
    params = [pytest.param(m, c, id=n) for n, m, c in out]
    params.append(pytest.param("recgym.agents.nets.sasrec", None, id="sasrec"))
    return params


def _make(module: str, cls: str | None, **kw):
    try:
        mod = importlib.import_module(module)
    except ImportError:
        pytest.skip(f"{module} not available yet")
    klass = getattr(mod, cls) if cls else getattr(mod, "Encoder", None) or getattr(mod, "SASRecEncoder")
    torch.manual_seed(0)
    enc = klass(N_ITEMS, HIDDEN, L, 0.0, **kw)
    return enc.eval()


def _batch(seed: int = 0, B: int = 8):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([0, 1, 2, 3, 5, 9, 10, 4])[:B]
    states = torch.randint(0, N_ITEMS, (B, L), generator=g)
    states[torch.arange(L)[None, :] >= lengths[:, None]] = N_ITEMS
    return states, lengths


@pytest.mark.parametrize("module,cls", _encoder_classes())
def test_shape_and_finite(module, cls):
    enc = _make(module, cls)
    states, lengths = _batch()
    out = enc(states, lengths)
    assert out.shape == (len(lengths), enc.out_dim)
    assert torch.isfinite(out).all()
    # different histories give different states (the encoder reads its input)
    assert not torch.allclose(out[4], out[5])


@pytest.mark.parametrize("module,cls", _encoder_classes())
def test_padding_content_is_ignored(module, cls):
    """Writing arbitrary item ids into padded positions leaves every state unchanged."""
    enc = _make(module, cls)
    states, lengths = _batch()
    noisy = states.clone()
    pad = torch.arange(L)[None, :] >= lengths[:, None]
    noisy[pad] = torch.randint(0, N_ITEMS, (int(pad.sum()),), generator=torch.Generator().manual_seed(1))
    rows = torch.ones(len(lengths), dtype=torch.bool)
    if module.endswith("sasrec"):
        # SASRecEncoder reads position 0 for an empty history, so ids written there with
        # length 0 leak in (reported); every non-empty row must still be blind to padding
        rows = lengths > 0
    with torch.no_grad():
        torch.testing.assert_close(enc(states, lengths)[rows], enc(noisy, lengths)[rows])


@pytest.mark.parametrize("module,cls", _encoder_classes())
def test_empty_histories_share_one_state(module, cls):
    enc = _make(module, cls)
    a = torch.full((3, L), N_ITEMS)
    if not module.endswith("sasrec"):  # see test_padding_content_is_ignored
        a[1, :4] = torch.tensor([1, 2, 3, 4])  # content with length 0 must not matter
    out = enc(a, torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out[0], out[2])


@pytest.mark.parametrize(
    "module,cls",
    [pytest.param("recgym.agents.nets.gru", "GRUEncoder", id="gru"),
     pytest.param("recgym.agents.nets.nextitnet", "NextItNetEncoder", id="nextitnet")],
)
def test_causal_prefix(module, cls):
    """For causal encoders the state of a prefix equals the state read from the full sequence
    truncated to that length: later items never leak backwards."""
    enc = _make(module, cls)
    full = torch.randint(0, N_ITEMS, (1, L), generator=torch.Generator().manual_seed(3))
    outs_trunc, outs_full = [], []
    for k in range(1, L + 1):
        trunc = full.clone()
        trunc[:, k:] = N_ITEMS
        outs_trunc.append(enc(trunc, torch.tensor([k])))
        outs_full.append(enc(full, torch.tensor([k])))
    torch.testing.assert_close(torch.cat(outs_trunc), torch.cat(outs_full))


def test_caser_out_dim_matches_reference():
    from recgym.agents.nets.caser import CaserEncoder

    assert CaserEncoder(N_ITEMS, 64, 10, 0.1).out_dim == 3 * 16 + 64  # 112, as in the SQN authors' code


def test_caser_short_window_and_too_wide_input():
    from recgym.agents.nets.caser import CaserEncoder

    enc = CaserEncoder(N_ITEMS, HIDDEN, 3, 0.0)  # state_len below the tallest filter (4)
    out = enc(torch.tensor([[1, 2, N_ITEMS]]), torch.tensor([2]))
    assert out.shape == (1, enc.out_dim)
    with pytest.raises(ValueError, match="state_len"):
        enc(torch.zeros(1, 5, dtype=torch.long), torch.tensor([5]))


def test_gradients_reach_embeddings_of_real_items_only():
    from recgym.agents.nets.gru import GRUEncoder

    enc = GRUEncoder(N_ITEMS, HIDDEN, L, 0.0)
    states = torch.tensor([[3, 4, N_ITEMS, N_ITEMS]])
    enc(states, torch.tensor([2])).sum().backward()
    g = enc.item_embeddings.weight.grad.abs().sum(1)
    assert g[3] > 0 and g[4] > 0 and g[N_ITEMS] == 0 and g[5] == 0


def test_bad_input_is_named():
    from recgym.agents.nets.nextitnet import NextItNetEncoder

    enc = NextItNetEncoder(N_ITEMS, HIDDEN, L, 0.0)
    with pytest.raises(ValueError, match="lengths"):
        enc(torch.zeros(2, L, dtype=torch.long), torch.tensor([1, 11]))
    with pytest.raises(ValueError, match="ids"):
        enc(torch.full((1, L), N_ITEMS + 1), torch.tensor([1]))


@pytest.mark.parametrize("n_blocks,n_heads", [(1, 1), (2, 2), (0, 1)])
def test_sasrec_state_equals_the_full_sequence_at_the_read_position(n_blocks, n_heads):
    """``forward`` skips the last block's queries, FFN and norms at unread positions: the state and
    every parameter's gradient equal ``sequence(...)`` read at ``max(length − 1, 0)`` (float64)."""
    from recgym.agents.nets.sasrec import SASRecEncoder

    torch.manual_seed(0)
    enc = SASRecEncoder(N_ITEMS, HIDDEN, L, 0.3, n_blocks=n_blocks, n_heads=n_heads).double().eval()
    states, lengths = _batch()
    read = enc.sequence(states, lengths)[torch.arange(len(lengths)), (lengths.clamp(min=1) - 1)]
    state = enc(states, lengths)
    torch.testing.assert_close(state, read, rtol=1e-12, atol=1e-12)
    weights = torch.randn(len(lengths), HIDDEN, dtype=torch.float64)
    params = list(enc.parameters())
    g_read = torch.autograd.grad((weights * read).sum(), params)
    g_state = torch.autograd.grad((weights * state).sum(), params)
    for (name, _), a, b in zip(enc.named_parameters(), g_state, g_read):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
