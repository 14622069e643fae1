"""``gptrec`` (supervised Next-K student) and ``gptrec-ppo`` (PPO alignment), after Petrov &
Macdonald, "Aligning GPTRec with Beyond-Accuracy Goals with Reinforcement Learning".

Stage 1 (``gptrec``, §3.2): a Top-K teacher (``mc`` by default, the paper's ML-1M teacher; any
registered agent such as ``bert4rec`` or ``sasrec``) is fitted on ``train``; for random prefixes
of every training sequence the teacher's top-``K`` list (history items excluded) is the target
``ĝ`` of the LM loss (Eq. 6)::

    L_LM = − Σ_i log π(ĝ_i | h, ĝ_<i)

The rows are sampled uniformly with replacement; per-user sampling (``sasrec`` / ``bert4rec``
``sampling="per_user"``) has nothing to remove here: a row's ``K`` targets are the teacher's list
for that row's own prefix and occur in no other row (a longer prefix is scored against its own
list, not read at every position), and the history's position ids count back from the separator,
so rows of one user do not share hidden states either.

Generation (Eq. 4) is greedy Next-K with the history's items and the items already generated
masked; special tokens (padding, separator) are outside the output layer, so never generated.

Stage 2 (``gptrec-ppo``, Appendix A.3): the policy starts from the student; the critic is a copy of
the student's backbone with a random scalar head. Each iteration samples ``n_minibatches ×
batch_size`` training histories (a random prefix, the next item is the target), generates ``K``
items stochastically with the KV cache (π_Θold), scores each position with
:func:`recgym.metrics.slate_step_rewards` (NDCG term, ``+ λ_ild`` ILD term, ``− λ_pop`` PCOUNT term:
their sum is the list metric) and computes GAE (Eqs. 9-10); then ``update_epochs`` passes over
these lists in minibatches of ``batch_size`` take one step each of Eq. 13: the clipped surrogate
(Eq. 12, ratio to the rollout's log-probabilities) plus the value MSE (Eq. 8). All ``K``
log-probabilities and values come from one forward pass over ``[h, SEP, g_1..g_{K-1}]``. Every
``ppo_eval_every`` optimisation steps, greedy lists for up to ``val_users`` validation users give the
validation reward; the best policy is kept, and with ``ppo_patience`` the stage stops after that many
validations without a strict improvement. The curves log ``clip_frac``, ``approx_kl`` and
``entropy`` per iteration (``clip_frac = approx_kl = 0`` throughout would mean Θ never left Θ_old).

Scores for the evaluator: ``score_mode="nextk"`` (default) puts the greedy Next-K list first, in
order, then every other item by the first-position distribution, so
:func:`recgym.evaluate.evaluate_loo` measures the generated list; ``"first"`` returns the
first-position logits (Top-K decoding of the same model).

Scale: the defaults are the paper's (3 layers, d 256, 4 heads, history 200, policy lr 1e-5, value lr
1e-4, batch 128, 64,000 PPO optimisation steps); ``PRESETS["cpu"]`` (also used for ml-100k and synthetic) is a
small model that trains in minutes on 2 cores.

Note on the ILD weight: :mod:`recgym.metrics` measures ILD@K as the full mean pairwise distance,
twice the paper's ``1/(K(K−1)) Σ`` term, so our ``λ_ild`` equals half the paper's λ.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from recgym.agents.base import history_items
from recgym.agents.nets.gpt import GPTDecoder, ValueModel, history_exclusion
from recgym.agents.ppo import clipped_surrogate_loss, discounted_returns, gae, masked_entropy, normalize, value_loss
from recgym.agents.training import NonFiniteLossError, TorchAgent, TorchAgentConfig, _clone_state, recorded_protocol
from recgym import metrics
from recgym.data import SessionLog
from recgym.data.windows import last_items, last_items_of_rows


# ---------------------------------------------------------------------------------------------
# windows of sequences (vectorised CSR gathers)
# ---------------------------------------------------------------------------------------------
def windows(log: SessionLog, sessions: np.ndarray, cuts: np.ndarray, max_len: int, side: str = "left") -> np.ndarray:
    """Items ``cuts[r] - max_len .. cuts[r] - 1`` of session ``sessions[r]`` (the history before event
    ``cuts[r]``), int64 ``[R, W]`` padded with ``log.pad_id`` on ``side``; ``W = max(1, min(max_len, max cut))``."""
    start = log.offsets[:-1][np.asarray(sessions, dtype=np.int64)]
    return last_items(log.items, start, start + np.asarray(cuts, dtype=np.int64), max_len, log.pad_id, side, trim=True)[0]


def loo_inputs(log: SessionLog, max_users: int | None = None, rng: np.random.Generator | None = None):
    """Leave-one-out inputs of ``log``: ``(sessions, cuts = length − 1, targets)`` of its sessions
    with at least 2 events (a random subset of ``max_users`` when given)."""
    sessions = np.flatnonzero(log.lengths >= 2)
    if max_users is not None and len(sessions) > max_users:
        rng = rng or np.random.default_rng(0)
        sessions = np.sort(rng.choice(sessions, max_users, replace=False))
    cuts = log.lengths[sessions] - 1
    targets = log.items[log.offsets[:-1][sessions] + cuts].astype(np.int64)
    return sessions, cuts, targets


class _TeacherLists:
    """Stage-1 training examples: left-padded histories ``[N, W]`` and teacher lists ``[N, K]``.

    Duck-types the part of :class:`recgym.data.Transitions` that :func:`recgym.agents.training.train_loop`
    uses (``len`` and ``sample``)."""

    def __init__(self, histories: np.ndarray, lists: np.ndarray, pad_id: int) -> None:
        self.histories, self.lists, self.pad_id = histories, lists, pad_id

    def __len__(self) -> int:
        return len(self.lists)

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        idx = rng.integers(0, len(self), size=batch_size)
        h = self.histories[idx]
        width = int((h != self.pad_id).sum(1).max())  # trim common left padding
        h = h[:, h.shape[1] - max(width, 1) :]
        return {"history": torch.from_numpy(h).to(device), "slate": torch.from_numpy(self.lists[idx]).to(device)}


# ---------------------------------------------------------------------------------------------
# stage 1: the student
# ---------------------------------------------------------------------------------------------
@dataclass
class GPTRecConfig(TorchAgentConfig):
    """Paper values (ML-1M): 3 layers, d 256, 4 heads, history 200, K 10, MC teacher."""

    state_len: int = 200
    """History length ``N`` (left-padded; the last ``N`` items are read)."""
    hidden: int = 256
    n_blocks: int = 3
    n_heads: int = 4
    dropout: float = 0.1
    lr: float = 1e-3
    batch_size: int = 128
    epochs: float = 50
    slate_size: int = 10
    """Length ``K`` of generated lists and of the teacher's lists."""
    teacher: str = "mc"
    """Registered Top-K agent whose lists the student learns (paper: ``mc`` on ML-1M, ``bert4rec`` on Steam)."""
    prefixes_per_user: int = 4
    """Random prefixes per training sequence (plus the full sequence) used as histories."""
    score_mode: str = "nextk"
    """``"nextk"``: scores rank the greedy Next-K list first; ``"first"``: first-position logits (Top-K)."""
    selection_metric: str = "ndcg@10"
    inference_dtype: str = "float32"
    """``"bfloat16"`` runs generation and scoring with bfloat16 weights (several times faster on CPUs
    with AMX / AVX512-BF16, see ``python -m benchmarks gen``); near-tied items may then swap places."""


_CPU = dict(state_len=50, hidden=64, n_blocks=2, n_heads=2, dropout=0.1, lr=1e-3, batch_size=128, epochs=20)
"""CPU-scale preset: a small model that trains in a few minutes on 2 cores (ml-100k)."""


class GPTRecAgent(TorchAgent):
    """The supervised GPTRec student (Next-K generation, teacher-student LM loss)."""

    name = "gptrec"
    Config = GPTRecConfig
    # "loo": the defaults are the paper's leave-one-out (ML-1M) values; "cpu" is the small model
    PRESETS: dict[str, dict[str, Any]] = {"loo": {}, "session": {}, "cpu": _CPU, "ml-100k": _CPU,
                                          "synthetic": {**_CPU, "state_len": 30}, "ml-1m": {},
                                          "steam": {"teacher": "bert4rec"}}
    config: GPTRecConfig

    def build(self) -> None:
        cfg = self.config
        if cfg.score_mode not in ("nextk", "first"):
            raise ValueError(f"{self.name}: score_mode must be 'nextk' or 'first', got {cfg.score_mode!r}")
        self.model = GPTDecoder(self.n_items, cfg.hidden, cfg.n_blocks, cfg.n_heads, cfg.state_len, cfg.slate_size, cfg.dropout)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.teacher_agent: Any = None

    # ------------------------------------------------------------------ stage 1
    def fit(self, train: SessionLog, valid: SessionLog | None = None, teacher: Any = None, **loop_kwargs: Any) -> "GPTRecAgent":
        """Fit the teacher (unless a fitted ``teacher`` agent is given), then the student (``train_loop``)."""
        loop_kwargs.setdefault("protocol", recorded_protocol(valid, "loo"))
        self.teacher_agent = teacher if teacher is not None else self._fit_teacher(train, valid, loop_kwargs)
        return super().fit(train, valid, **loop_kwargs)

    def _fit_teacher(self, train: SessionLog, valid: SessionLog | None, loop_kwargs: dict[str, Any]) -> Any:
        from recgym.agents.registry import device_override, make_agent

        name = self.config.teacher
        t = make_agent(name, self.n_items, seed=self.seed, protocol="loo", **device_override(name, self.config.device))
        if isinstance(t, TorchAgent):
            t.fit(train, valid, **{k: v for k, v in loop_kwargs.items() if k in ("protocol", "progress", "log")})
        else:
            t.fit(train, valid)
        return t

    def make_transitions(self, train: SessionLog) -> _TeacherLists:
        """Random prefixes of every training sequence and the teacher's top-K list after each."""
        if self.teacher_agent is None:
            raise RuntimeError(f"{self.name}: no teacher (call fit)")
        cfg, rng = self.config, np.random.default_rng(self.seed)
        lens = train.lengths
        ok = np.flatnonzero(lens >= 1)
        full = (ok, lens[ok])
        rand_s = np.repeat(ok, cfg.prefixes_per_user)
        rand_t = rng.integers(1, np.repeat(lens[ok], cfg.prefixes_per_user) + 1)
        sessions = np.concatenate([full[0], rand_s])
        cuts = np.concatenate([full[1], rand_t])
        hist = windows(train, sessions, cuts, cfg.state_len, "left")
        lists = self._teacher_lists(train, sessions, cuts, hist)
        return _TeacherLists(hist, lists, self.pad_id)

    @torch.no_grad()
    def _teacher_lists(self, train: SessionLog, sessions: np.ndarray, cuts: np.ndarray, hist: np.ndarray,
                       chunk: int = 1024) -> np.ndarray:
        t, K = self.teacher_agent, self.config.slate_size
        dev = torch.device(getattr(t, "device", "cpu"))
        out = np.empty((len(sessions), K), dtype=np.int64)
        for lo in range(0, len(sessions), chunk):
            hi = min(lo + chunk, len(sessions))
            st = windows(train, sessions[lo:hi], cuts[lo:hi], int(t.state_len), "right")
            ln = np.minimum(cuts[lo:hi], int(t.state_len))
            s = t.scores(torch.from_numpy(st).to(dev), torch.from_numpy(ln).to(dev)).float()
            s = s.masked_fill(history_exclusion(torch.from_numpy(hist[lo:hi]).to(s.device), self.n_items), -torch.inf)
            out[lo:hi] = torch.topk(s, K, dim=1).indices.cpu().numpy()
        return out

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 6, averaged over rows and positions."""
        logp = self.model.slate_log_probs(batch["history"], batch["slate"])
        return -logp.mean(), {}

    # ------------------------------------------------------------------ inference
    def _history(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return last_items_of_rows(states.to(self.device), lengths.to(self.device), self.config.state_len, self.pad_id, "left", trim=True)[0]

    def inference_model(self) -> GPTDecoder:
        """The decoder used by ``scores`` / ``recommend``: the model, or a copy in ``inference_dtype``
        (made per call, so it always holds the current weights; cheap next to a batch of lists)."""
        if self.config.inference_dtype == "float32":
            return self.model
        dtype = getattr(torch, self.config.inference_dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{self.name}: inference_dtype {self.config.inference_dtype!r} is not a torch dtype")
        return copy.deepcopy(self.model).to(dtype).eval()

    @torch.no_grad()
    def first_logits(self, history: torch.Tensor, model: GPTDecoder | None = None) -> torch.Tensor:
        model = model if model is not None else self.model
        h, _, _ = model.prefill(history, 0)
        return model.logits(h).float()

    @torch.no_grad()
    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, n_items]``; see ``score_mode`` in the module docstring."""
        history = self._history(states, lengths)
        model = self.inference_model()
        first = self.first_logits(history, model)
        if self.config.score_mode == "first":
            return first
        items, _ = model.generate(history, min(self.config.slate_size, self.n_items))
        out = torch.log_softmax(first, dim=1)  # <= 0: every listed item (> 0) ranks above the rest
        K = items.shape[1]
        out.scatter_(1, items, torch.arange(K, 0, -1, dtype=out.dtype, device=out.device).expand(len(items), K))
        return out

    @torch.no_grad()
    def recommend(self, histories: list[np.ndarray] | np.ndarray, k: int = 10, exclude_seen: bool = True) -> np.ndarray:
        """Greedy Next-K lists ``[B, k]``; unless ``exclude_seen=False``, every item of the whole given
        history is masked (also those older than the ``state_len`` items the model reads)."""
        if isinstance(histories, np.ndarray) and histories.ndim == 2:
            st = torch.from_numpy(histories.astype(np.int64)).to(self.device)
            history = self._history(st, (st != self.pad_id).sum(1))
        else:
            st, ln = self._as_states(histories)  # host: the window and its trim need no device read
            history = last_items_of_rows(st, ln, self.config.state_len, self.pad_id, "left", trim=True)[0].to(self.device)
        exclude = torch.zeros(len(history), self.n_items, dtype=torch.bool, device=self.device)
        if exclude_seen:
            rows, items = history_items(histories, self.n_items)
            exclude[torch.from_numpy(rows).to(self.device), torch.from_numpy(items).to(self.device)] = True
        return self.inference_model().generate(history, k, exclude=exclude)[0].cpu().numpy()

    def with_score_mode(self, mode: str) -> "GPTRecAgent":
        """A shallow copy sharing the weights whose ``scores`` use ``mode`` (``"nextk"`` / ``"first"``)."""
        other = copy.copy(self)
        other.config = dataclasses.replace(self.config, score_mode=mode)
        return other


# ---------------------------------------------------------------------------------------------
# stage 2: PPO
# ---------------------------------------------------------------------------------------------
@dataclass
class GPTRecPPOConfig(GPTRecConfig):
    """Stage-2 values of the paper's Appendix A.3 (the stage-1 fields train the student when no
    ``student`` is passed to ``fit``).

    PPO schedule: each iteration generates ``n_minibatches × batch_size`` lists with the current
    policy (Θ_old), then takes ``update_epochs`` passes over them in ``n_minibatches`` shuffled
    minibatches of ``batch_size`` lists, one optimisation step each; from the second step on Θ ≠
    Θ_old, so the ratio of Eq. 11 moves and the clip of Eq. 12 can bind. The paper gives the
    minibatch (128) and the total (64,000 optimisation steps) but not how often a list is reused
    ("multiple optimisation steps", its optimiser samples from a cache of the last ``M`` generated
    batches, ``M`` not given); 4 epochs × 4 minibatches are our choice (CleanRL's defaults), so a
    list is used in 4 steps and each iteration takes 16.
    """

    lambda_ild: float = 0.0
    """Weight of the ILD reward term (half the paper's λ, see the module docstring)."""
    lambda_pop: float = 0.0
    """Weight of the PCOUNT cost term."""
    discount: float = 0.99
    gae_lambda: float = 0.9
    clip: float = 0.2
    policy_lr: float = 1e-5
    value_lr: float = 1e-4
    ppo_weight_decay: float = 0.01
    ppo_steps: int = 64_000
    """Optimisation steps (minibatches) of stage 2, the paper's unit; ``update_epochs × n_minibatches``
    per iteration."""
    update_epochs: int = 4
    """Passes over each iteration's generated lists (Θ_old is fixed for all of them)."""
    n_minibatches: int = 4
    """Minibatches of ``batch_size`` lists per pass; an iteration generates ``n_minibatches × batch_size`` lists."""
    ent_coef: float = 0.0
    """Entropy bonus weight (PPO paper); the GPTRec paper omits it (0)."""
    kl_coef: float = 0.0
    """Optional per-token KL penalty to the frozen student, subtracted from the rewards (InstructGPT)."""
    normalize_advantages: bool = True
    """Normalise the advantages over each iteration's lists (zero mean, unit std)."""
    value_target: str = "returns"
    """``"returns"``: discounted returns (Eq. 8); ``"gae"``: the λ-returns ``A + V``."""
    rollout_prefix: str = "random"
    """``"random"``: a random prefix of a training sequence, the next item is the target; ``"last"``:
    the whole training sequence but its last item."""
    ppo_eval_every: int = 200
    """Validate after the iteration in which every ``ppo_eval_every``-th optimisation step falls."""
    ppo_patience: int | None = None
    """Early stopping of stage 2: stop after this many consecutive validations whose reward does not
    strictly beat the best so far (the shared loop's rule); ``ppo_steps`` is then the cap. ``None``:
    train all ``ppo_steps``."""
    val_users: int = 512
    """Validation users (greedy lists) for the best-checkpoint choice."""
    ppo_max_grad_norm: float | None = 1.0


_PPO_CPU = dict(_CPU, policy_lr=1e-4, value_lr=1e-3, ppo_steps=1200, ppo_eval_every=200, batch_size=128)


@dataclass
class Rollout:
    """One iteration's generated lists (``B`` histories, ``K`` items each) and what PPO needs of them.

    ``history [B, W]`` left-padded, ``targets [B]`` (the next item), ``exclude bool [B, n_items]``
    (the history's items), ``slates [B, K]``, ``logp_old [B, K]`` (log π_Θold of each item, from generation), ``rewards [B, K]``,
    ``values [B, K]`` (V_Ψold), ``advantages [B, K]`` (GAE, normalised when configured),
    ``value_targets [B, K]``.
    """

    history: torch.Tensor
    targets: torch.Tensor
    exclude: torch.Tensor
    slates: torch.Tensor
    logp_old: torch.Tensor
    rewards: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    value_targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.slates)

    def rows(self, idx: torch.Tensor) -> "Rollout":
        return Rollout(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))


class GPTRecPPOAgent(GPTRecAgent):
    """GPTRec aligned by PPO to ``NDCG + λ_ild ILD − λ_pop PCOUNT``."""

    name = "gptrec-ppo"
    Config = GPTRecPPOConfig
    PRESETS = {"loo": {}, "session": {}, "cpu": _PPO_CPU, "ml-100k": _PPO_CPU, "synthetic": {**_PPO_CPU, "state_len": 30},
               "ml-1m": {}, "steam": {"teacher": "bert4rec"}}
    config: GPTRecPPOConfig

    def fit(self, train: SessionLog, valid: SessionLog | None = None, teacher: Any = None, student: GPTRecAgent | None = None,
            progress: bool = True, log: Callable[[str], None] | None = None, **loop_kwargs: Any) -> "GPTRecPPOAgent":
        """Stage 1 (or copy a fitted ``student``), then PPO (see the module docstring)."""
        log = log or (lambda m: print(m, flush=True))
        if student is not None:
            if student.n_items != self.n_items:
                raise ValueError(f"{self.name}: student has n_items={student.n_items}, agent {self.n_items}")
            self.model.load_state_dict(student.model.state_dict())
        else:
            super().fit(train, valid, teacher=teacher, progress=progress, log=log, **loop_kwargs)
        self.train_ppo(train, valid, log=log)
        return self

    def _rollout_inputs(self, train: SessionLog, n: int) -> tuple[torch.Tensor, np.ndarray]:
        lens = train.lengths
        ok = np.flatnonzero(lens >= 2)
        sessions = self.rng.choice(ok, size=n)
        if self.config.rollout_prefix == "last":
            cuts = lens[sessions] - 1
        else:
            cuts = self.rng.integers(1, lens[sessions])  # history = items[:cut], target = items[cut]
        hist = windows(train, sessions, cuts, self.config.state_len, "left")
        targets = train.items[train.offsets[:-1][sessions] + cuts].astype(np.int64)
        return torch.from_numpy(hist).to(self.device), targets

    def slate_rewards(self, slates: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Per-position rewards ``[B, K]`` from :func:`recgym.metrics.slate_step_rewards`."""
        c = self.config
        return metrics.slate_step_rewards(slates, targets, self._genres, self._popularity, c.lambda_ild, c.lambda_pop,
                                          K=c.slate_size)

    @torch.no_grad()
    def validation_reward(self, valid: SessionLog) -> dict[str, float]:
        """Mean list reward (the target metric) and NDCG@K of greedy lists for the validation users."""
        sessions, cuts, targets = self._val
        hist = torch.from_numpy(windows(valid, sessions, cuts, self.config.state_len, "left")).to(self.device)
        slates = self.model.generate(hist, self.config.slate_size)[0].cpu().numpy()
        r = self.slate_rewards(slates, targets).sum(1)
        pos = metrics.slate_positions(slates, targets)
        return {"val_reward": float(r.mean()), "val_ndcg@10": float(metrics.ndcg_at_k(pos, slates.shape[1]).mean())}

    # ------------------------------------------------------------------ PPO pieces
    def init_ppo(self, train: SessionLog) -> None:
        """Check the config and data; create the critic (a copy of the policy's backbone with a
        random head, §3.2), the optimisers and the RNGs of stage 2."""
        c = self.config
        if c.value_target not in ("returns", "gae") or c.rollout_prefix not in ("random", "last"):
            raise ValueError(f"{self.name}: value_target must be 'returns'/'gae' and rollout_prefix 'random'/'last'")
        if c.update_epochs < 1 or c.n_minibatches < 1:
            raise ValueError(f"{self.name}: update_epochs ({c.update_epochs}) and n_minibatches ({c.n_minibatches}) must be >= 1")
        if c.lambda_ild and train.genres is None:
            raise ValueError(f"{self.name}: lambda_ild={c.lambda_ild} needs genres, the log {train.name!r} has none")
        if not (train.lengths >= 2).any():
            raise ValueError(f"{self.name}: PPO needs training sequences with at least 2 events")
        self._genres = train.genres
        self._popularity = train.popularity()
        torch.manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.value_model = ValueModel.from_backbone(self.model)
        self.reference_model = copy.deepcopy(self.model).eval() if c.kl_coef else None
        self.opt_pi = torch.optim.AdamW(self.model.parameters(), lr=c.policy_lr, weight_decay=c.ppo_weight_decay)
        self.opt_v = torch.optim.AdamW(self.value_model.parameters(), lr=c.value_lr, weight_decay=c.ppo_weight_decay)
        self.model.eval()  # no dropout in rollouts or updates: the ratio compares the same function
        self.value_model.eval()

    @torch.no_grad()
    def collect_rollout(self, train: SessionLog, n: int) -> Rollout:
        """Steps 1-3 of Appendix A.3: sample ``n`` histories, generate lists stochastically with
        π_Θold, score each position, and compute GAE (Eqs. 9-10) with V_Ψold."""
        c = self.config
        history, targets = self._rollout_inputs(train, n)
        exclude = history_exclusion(history, self.n_items)
        slates, logp_old = self.model.generate(history, c.slate_size, exclude=exclude, greedy=False)
        rewards = torch.from_numpy(self.slate_rewards(slates.cpu().numpy(), targets)).float().to(self.device)
        if self.reference_model is not None:
            rewards = rewards - c.kl_coef * (logp_old - self.reference_model.slate_log_probs(history, slates, exclude))
        values = self.value_model(history, slates)
        adv, lam_ret = gae(rewards, values, c.discount, c.gae_lambda)
        v_target = discounted_returns(rewards, c.discount) if c.value_target == "returns" else lam_ret
        if c.normalize_advantages:
            adv = normalize(adv)
        return Rollout(history, torch.from_numpy(targets).to(self.device), exclude, slates, logp_old, rewards, values, adv, v_target)

    def ppo_loss(self, mb: Rollout) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 13 on a minibatch: ``L_CLIP(Θ) + L_MSE(Ψ) − ent_coef · H(π_Θ)``.

        ``L_CLIP`` (Eq. 12) compares the current log-probabilities of the generated items with the
        rollout's ``logp_old``; ``L_MSE`` (Eq. 8) fits ``V_Ψ`` to ``value_targets``; ``H`` is the mean
        entropy of the masked next-item distributions. All ``K`` positions come from one forward
        pass over ``[h, SEP, g_1..g_{K-1}]``."""
        logp, logp_all = self.model.slate_log_probs(mb.history, mb.slates, mb.exclude, return_logits=True)
        loss_pi, info = clipped_surrogate_loss(logp, mb.logp_old, mb.advantages, self.config.clip)
        loss_v = value_loss(self.value_model(mb.history, mb.slates), mb.value_targets)
        entropy = masked_entropy(logp_all).mean()
        loss = loss_pi + loss_v - self.config.ent_coef * entropy
        return loss, {"loss_pi": float(loss_pi.detach()), "loss_v": float(loss_v.detach()),
                      "entropy": float(entropy.detach()), **info}

    def ppo_update(self, rollout: Rollout) -> list[dict[str, float]]:
        """Step 4 of Appendix A.3: ``update_epochs`` shuffled passes over ``rollout`` in
        ``n_minibatches`` minibatches, one optimisation step of policy and critic each.

        :return: per epoch, the mean over its minibatches of ``loss_pi``, ``loss_v``, ``entropy``,
            ``clip_frac`` and ``approx_kl`` (both 0 in the first step, where Θ = Θ_old).
        """
        c = self.config
        per_epoch = []
        for _ in range(c.update_epochs):
            order = torch.from_numpy(self.rng.permutation(len(rollout))).to(self.device)
            stats = []
            for idx in torch.tensor_split(order, c.n_minibatches):
                if not len(idx):
                    continue
                loss, info = self.ppo_loss(rollout.rows(idx))
                if not torch.isfinite(loss.detach()):
                    raise NonFiniteLossError(f"{self.name}: non-finite PPO loss ({info})")
                self.opt_pi.zero_grad(set_to_none=True)
                self.opt_v.zero_grad(set_to_none=True)
                loss.backward()
                if c.ppo_max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.ppo_max_grad_norm)
                    torch.nn.utils.clip_grad_norm_(self.value_model.parameters(), c.ppo_max_grad_norm)
                self.opt_pi.step()
                self.opt_v.step()
                stats.append(info)
            per_epoch.append({k: float(np.mean([s[k] for s in stats])) for k in stats[0]})
        return per_epoch

    def train_ppo(self, train: SessionLog, valid: SessionLog | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Stage 2 from the current weights (the student). Returns the curves: one point per
        iteration (optimisation ``step`` reached, rollout ``reward``, and the means over the
        iteration's steps of ``loss_pi``, ``loss_v``, ``entropy``, ``clip_frac``, ``approx_kl``),
        with ``val_reward`` / ``val_ndcg@10`` added at validation points (and at step 0)."""
        c, log = self.config, log or (lambda m: None)
        self.init_ppo(train)
        policy = self.model
        eval_log = valid if valid is not None else train
        self._val = loo_inputs(eval_log, c.val_users, np.random.default_rng(self.seed))
        best = self.validation_reward(eval_log)
        best_step, best_w = 0, _clone_state({"model": policy.state_dict()})
        curves = [{"step": 0.0, **best}]
        steps_per_iter = c.update_epochs * c.n_minibatches
        n_iter = max(1, math.ceil(c.ppo_steps / steps_per_iter))
        if c.ppo_patience is not None and (isinstance(c.ppo_patience, bool) or not isinstance(c.ppo_patience, int)
                                           or c.ppo_patience < 1):
            raise ValueError(f"{self.name}: ppo_patience must be a positive integer or None, got {c.ppo_patience!r}")
        stale = 0  # validations since the last strict improvement
        t0 = time.perf_counter()
        for it in range(1, n_iter + 1):
            rollout = self.collect_rollout(train, c.n_minibatches * c.batch_size)
            try:
                epochs = self.ppo_update(rollout)
            except NonFiniteLossError as err:
                policy.load_state_dict(best_w["model"])
                raise NonFiniteLossError(f"{err}; stopped at iteration {it}, the agent holds the best policy "
                                         f"(step {best_step})") from None
            step = it * steps_per_iter
            point = {"step": float(step), "reward": float(rollout.rewards.sum(1).mean()),
                     **{k: float(np.mean([e[k] for e in epochs])) for k in epochs[0]}}
            stop = False
            if step // c.ppo_eval_every > (step - steps_per_iter) // c.ppo_eval_every or it == n_iter:
                point.update(self.validation_reward(eval_log))
                if point["val_reward"] > best["val_reward"]:
                    best, best_step = {k: point[k] for k in ("val_reward", "val_ndcg@10")}, step
                    best_w = _clone_state({"model": policy.state_dict()})
                    stale = 0
                else:
                    stale += 1
                stop = c.ppo_patience is not None and stale >= c.ppo_patience
                log(f"ppo {step}/{n_iter * steps_per_iter}  rollout reward {point['reward']:.4f}  clip_frac "
                    f"{point['clip_frac']:.3f}  approx_kl {point['approx_kl']:.4f}  val reward {point['val_reward']:.4f}"
                    f"  (best {best['val_reward']:.4f} @ {best_step})  {time.perf_counter() - t0:.0f}s")
            curves.append(point)
            if stop:
                break
        policy.load_state_dict(best_w["model"])
        policy.eval()
        self.ppo_curves, self.best_step, self.best_metric, self.selection_metric = curves, best_step, best["val_reward"], "val_reward"
        self.ppo_stopped_at, self.ppo_cap = int(curves[-1]["step"]), n_iter * steps_per_iter
        self.ppo_stop_reason = "patience" if stop else "cap"
        return {"curves": curves, "best_step": best_step, "best": best, "stopped_at": self.ppo_stopped_at,
                "stop_reason": self.ppo_stop_reason}


__all__ = ["GPTRecAgent", "GPTRecConfig", "GPTRecPPOAgent", "GPTRecPPOConfig", "Rollout", "loo_inputs", "windows"]
