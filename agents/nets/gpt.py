"""GPT-2-style decoder for GPTRec (Petrov & Macdonald), with the paper's input structure and a
batched KV cache.

Input structure (paper Appendix B, Figure 6), one token per item::

    [pad ... pad, h_1 ... h_n, SEP, g_1 ... g_j]
    position ids:  (any)  n ... 1   0   N+1 ... N+j

* left padding (id ``n_items``), then the history, then the separator (id ``n_items + 1``), then
  the generated items;
* position ids: separator 0, history counting back from it (last item 1, the one before 2, ...),
  generated items ``N + 1, N + 2, ...`` where ``N = max_history`` (fixed, so a generated slot
  keeps its position id whatever the history length);
* attention: causal, padding keys masked (a padding query attends to itself only, so no row is
  empty and padding never reaches a valid position).

Because history position ids count back from the separator, trimming common left padding off a
batch changes nothing: ``recgym.data.last_items(..., side="left", trim=True)`` keeps only as many
columns as the longest history.

Generation (:meth:`GPTDecoder.generate`): one pass over ``[history, SEP]`` fills the per-layer
key/value cache and gives the logits of ``g_1``; each further item costs one single-token step
that attends to the cache. ``use_cache=False`` recomputes the whole sequence at every step (the
reference the cached path must match). Logits cover items only (special tokens can never be
generated); items of ``exclude`` (the history) and items already generated are masked.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.nets.attention import attention
from recgym.agents.nets.dropout import Dropout

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


# ---------------------------------------------------------------------------------------------
# input structure
# ---------------------------------------------------------------------------------------------
def sequence_inputs(
    history: torch.Tensor, generated: torch.Tensor | None, n_items: int, max_history: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens, position ids and validity of ``[history, SEP, generated]``.

    :param history: int64 ``[B, n]`` left-padded with ``n_items`` (``n <= max_history``).
    :param generated: int64 ``[B, j]`` item ids (or ``None`` for ``j = 0``).
    :return: ``tokens [B, n+1+j]``, ``positions [B, n+1+j]``, ``valid bool [B, n+1+j]``.
    """
    B, n = history.shape
    if n > max_history:
        raise ValueError(f"sequence_inputs: history width {n} exceeds max_history={max_history}")
    dev = history.device
    sep = history.new_full((B, 1), n_items + 1)
    gen = history.new_zeros((B, 0)) if generated is None else generated.to(history.dtype)
    j = gen.shape[1]
    tokens = torch.cat([history, sep, gen], dim=1)
    hist_pos = torch.arange(n, 0, -1, device=dev)  # n, ..., 1 (last item 1)
    gen_pos = max_history + 1 + torch.arange(j, device=dev)
    positions = torch.cat([hist_pos, torch.zeros(1, dtype=torch.long, device=dev), gen_pos])[None].expand(B, -1)
    hist_valid = history != n_items
    positions = torch.where(torch.cat([hist_valid, torch.ones(B, 1 + j, dtype=torch.bool, device=dev)], 1),
                            positions, torch.zeros_like(positions))  # padding: any id, 0 by convention
    valid = torch.cat([hist_valid, torch.ones(B, 1 + j, dtype=torch.bool, device=dev)], dim=1)
    return tokens, positions, valid


def attention_mask(valid: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """bool ``[B, 1, T, T]`` (True = may attend): valid keys, causal if asked, diagonal always."""
    B, T = valid.shape
    allowed = valid[:, None, :].expand(B, T, T)
    if causal:
        allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=valid.device).tril()
    allowed = allowed | torch.eye(T, dtype=torch.bool, device=valid.device)
    return allowed[:, None]


def generation_mask(exclude: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Items masked at each of ``K`` generation steps, bool ``[B, K, n]``: ``exclude [B, n]`` plus
    the items generated before the step (``generated [B, K]``)."""
    B, K = generated.shape
    m = exclude[:, None, :].expand(B, K, exclude.shape[1]).clone()
    for i in range(K - 1):  # K is small (10): a loop over positions, vectorised over the batch
        m[:, i + 1 :].scatter_(2, generated[:, i, None, None].expand(B, K - 1 - i, 1), True)
    return m


def history_exclusion(history: torch.Tensor, n_items: int) -> torch.Tensor:
    """bool ``[B, n_items]``: the items of each (padded) history row."""
    m = torch.zeros(history.shape[0], n_items + 2, dtype=torch.bool, device=history.device)
    m.scatter_(1, history.clamp(max=n_items + 1), True)
    return m[:, :n_items]


# ---------------------------------------------------------------------------------------------
# blocks
# ---------------------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    """Multi-head self-attention (:func:`recgym.agents.nets.attention.attention`) that can read/write a KV cache."""

    def __init__(self, hidden: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                start: int = 0) -> torch.Tensor:
        """``x [B, T, H]``; ``mask bool [B, 1, T, S]``; with ``cache`` (keys/values ``[B, h, Tmax, H/h]``)
        the new keys/values go to slots ``start:start+T`` and attention reads slots ``:start+T`` (``S``)."""
        B, T, H = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, H // self.n_heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            ck, cv = cache
            ck[:, :, start : start + T] = k
            cv[:, :, start : start + T] = v
            k, v = ck[:, :, : start + T], cv[:, :, : start + T]
        y = attention(q, k, v, mask, self.dropout, self.training)
        return self.proj(y.transpose(1, 2).reshape(B, T, H))


class GPTBlock(nn.Module):
    """GPT-2 pre-norm block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))`` (4x GELU MLP)."""

    def __init__(self, hidden: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = SelfAttention(hidden, n_heads, dropout)
        self.ln2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(approximate="tanh"), nn.Linear(4 * hidden, hidden))
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                start: int = 0) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask, cache, start))
        return x + self.drop(self.mlp(self.ln2(x)))


# ---------------------------------------------------------------------------------------------
# the decoder
# ---------------------------------------------------------------------------------------------
class GPTDecoder(nn.Module):
    """GPTRec backbone: token + position embeddings, ``n_blocks`` pre-norm blocks, final LN.

    :param n_items: catalogue size; token ``n_items`` = padding, ``n_items + 1`` = separator.
    :param hidden: width ``d`` (paper: 256). :param n_blocks: blocks (paper: 3).
    :param n_heads: heads (paper: 4). :param max_history: ``N`` (paper: 200).
    :param max_generate: longest list ``K`` (10). :param dropout: GPT-2's 0.1.

    ``forward(tokens, positions, valid) -> [B, T, d]``; ``logits(h) -> [..., n_items]`` (output
    layer tied to the item embeddings, as GPT-2).
    """

    def __init__(self, n_items: int, hidden: int = 256, n_blocks: int = 3, n_heads: int = 4, max_history: int = 200,
                 max_generate: int = 10, dropout: float = 0.1) -> None:
        super().__init__()
        self.n_items, self.hidden, self.max_history, self.max_generate = int(n_items), int(hidden), int(max_history), int(max_generate)
        self.pad_id, self.sep_id = self.n_items, self.n_items + 1
        self.token_embeddings = nn.Embedding(self.n_items + 2, hidden)
        self.position_embeddings = nn.Embedding(self.max_history + 1 + self.max_generate, hidden)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(GPTBlock(hidden, n_heads, dropout) for _ in range(n_blocks))
        self.final_norm = nn.LayerNorm(hidden)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2 L)
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_blocks))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ full sequences
    def embed(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.drop(self.token_embeddings(tokens) + self.position_embeddings(positions))

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[B, T, d]`` of a full sequence (no cache)."""
        x = self.embed(tokens, positions)
        mask = attention_mask(valid)
        for block in self.blocks:
            x = block(x, mask)
        return self.final_norm(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Item logits ``[..., n_items]`` from hidden states ``[..., d]`` (tied output layer)."""
        return h @ self.token_embeddings.weight[: self.n_items].T

    def slate_hidden(self, history: torch.Tensor, slates: torch.Tensor) -> torch.Tensor:
        """Hidden states at the ``K`` decision points of ``[history, SEP, g_1..g_{K-1}]``, ``[B, K, d]``:
        the separator predicts ``g_1``, ``g_i`` predicts ``g_{i+1}``. One forward pass."""
        K = slates.shape[1]
        tokens, positions, valid = sequence_inputs(history, slates[:, : K - 1], self.n_items, self.max_history)
        h = self.forward(tokens, positions, valid)
        return h[:, history.shape[1] :]

    def slate_log_probs(self, history: torch.Tensor, slates: torch.Tensor, exclude: torch.Tensor | None = None,
                        return_logits: bool = False):
        """``log π(g_i | h, g_<i)`` for every position of ``slates [B, K]``, ``[B, K]``, masked as in
        generation (``exclude [B, n_items]``, default the history's items, plus earlier ``g``)."""
        if exclude is None:
            exclude = history_exclusion(history, self.n_items)
        logits = self.logits(self.slate_hidden(history, slates))
        logits = logits.masked_fill(generation_mask(exclude, slates), -torch.inf)
        logp = torch.log_softmax(logits.float(), dim=-1)
        out = logp.gather(2, slates[:, :, None]).squeeze(2)
        return (out, logp) if return_logits else out

    # ------------------------------------------------------------------ cached generation
    def prefill(self, history: torch.Tensor, extra: int) -> tuple[torch.Tensor, KVCache, torch.Tensor]:
        """Run ``[history, SEP]`` once, keeping room for ``extra`` more tokens.

        :return: ``h_sep [B, d]`` (predicts ``g_1``), the cache, key validity ``bool [B, T + extra]``.
        """
        tokens, positions, valid = sequence_inputs(history, None, self.n_items, self.max_history)
        B, T = tokens.shape
        x = self.embed(tokens, positions)
        mask = attention_mask(valid)
        n_heads = self.blocks[0].attn.n_heads if len(self.blocks) else 1
        shape = (B, n_heads, T + extra, self.hidden // n_heads)
        cache: KVCache = [(x.new_empty(shape), x.new_empty(shape)) for _ in self.blocks]
        for block, kv in zip(self.blocks, cache):
            x = block(x, mask, kv, 0)
        key_valid = torch.cat([valid, valid.new_ones(B, extra)], dim=1)
        return self.final_norm(x[:, -1]), cache, key_valid

    def step(self, token: torch.Tensor, gen_index: int, cache: KVCache, key_valid: torch.Tensor, start: int) -> torch.Tensor:
        """One new token per row (``token [B]``, the ``gen_index``-th generated item, written at
        cache slot ``start``); returns its hidden state ``[B, d]``."""
        B = token.shape[0]
        pos = torch.full((B, 1), self.max_history + 1 + gen_index, dtype=torch.long, device=token.device)
        x = self.embed(token[:, None], pos)
        mask = key_valid[:, None, None, : start + 1]  # [B, 1, 1, S]: every earlier valid key and itself
        for block, kv in zip(self.blocks, cache):
            x = block(x, mask, kv, start)
        return self.final_norm(x[:, 0])

    @torch.no_grad()
    def generate(self, history: torch.Tensor, k: int, exclude: torch.Tensor | None = None, greedy: bool = True,
                 use_cache: bool = True, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-K generation of ``k`` distinct items per history.

        :param history: int64 ``[B, n]`` left-padded. :param exclude: bool ``[B, n_items]`` never
            generated (default: the history's items).
        :param greedy: argmax (Eq. 4) or sample from the masked softmax (PPO rollouts).
        :return: ``items int64 [B, k]`` and their log-probabilities ``[B, k]`` under the masked policy.
        """
        if k > self.max_generate:
            raise ValueError(f"generate: k={k} exceeds max_generate={self.max_generate}")
        mask = (history_exclusion(history, self.n_items) if exclude is None else exclude.clone())
        if len(mask) and int((~mask).sum(1).min()) < k:
            raise ValueError(f"generate: some history leaves fewer than k={k} items to recommend")
        B, n = history.shape
        items = history.new_empty((B, k))
        logps = torch.empty(B, k, device=history.device)
        rows = torch.arange(B, device=history.device)
        if use_cache:
            h, cache, key_valid = self.prefill(history, k - 1)
        for i in range(k):
            if not use_cache:
                tokens, positions, valid = sequence_inputs(history, items[:, :i], self.n_items, self.max_history)
                h = self.forward(tokens, positions, valid)[:, -1]
            elif i > 0:
                h = self.step(items[:, i - 1], i - 1, cache, key_valid, n + i)
            logits = self.logits(h).float().masked_fill(mask, -torch.inf) / temperature
            logp = torch.log_softmax(logits, dim=-1)
            if greedy:
                a = logp.argmax(dim=1)
            else:
                a = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
            items[:, i] = a
            logps[:, i] = logp[rows, a]
            mask[rows, a] = True
        return items, logps


class ValueModel(nn.Module):
    """PPO critic: a GPTRec backbone with a scalar head, one value per decision point ``[B, K]``.

    Built from a trained student with :meth:`from_backbone` (backbone copied, head random: paper §3.2).
    """

    def __init__(self, backbone: GPTDecoder) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.hidden, 1)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        ref = next(backbone.parameters())
        self.head.to(device=ref.device, dtype=ref.dtype)

    @classmethod
    def from_backbone(cls, backbone: GPTDecoder) -> "ValueModel":
        import copy

        return cls(copy.deepcopy(backbone))

    def forward(self, history: torch.Tensor, slates: torch.Tensor) -> torch.Tensor:
        """``V(h, g^{(i)})`` for ``i = 0..K-1`` (the state before choosing ``g_{i+1}``), ``[B, K]``."""
        return self.head(self.backbone.slate_hidden(history, slates)).squeeze(-1)


__all__ = ["GPTBlock", "GPTDecoder", "SelfAttention", "ValueModel", "attention_mask", "generation_mask",
           "history_exclusion", "sequence_inputs"]
