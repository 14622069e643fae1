"""Every agent family on every device: fit, both evaluation protocols, recommend, predict in the
envs, save / load / resume across devices.

Devices: ``cpu`` always; ``cuda`` when torch sees a GPU (skipped otherwise); ``fake-cuda`` always:
``device="cuda"`` run on the CPU under :class:`fake_cuda.FakeCuda`, which raises where a GPU would
(``.numpy()`` of a device tensor, host and device tensors mixed in one op). Its values are the
CPU's, so a fake-cuda run must also reproduce the CPU run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np
import pytest
import torch

from fake_cuda import DeviceMismatch, FakeCuda, on_fake_cuda
from recgym.agents.base import Agent
from recgym.agents.registry import AGENTS, get_agent_class, make_agent
from recgym.agents.training import TorchAgent
from recgym.data import split_by_session
from recgym.envs.mf_user import MFUserEnv
from recgym.envs.replay import ReplayEnv, ReplayVectorEnv
from recgym.envs.slate_nextk import SlateNextKEnv
from recgym.evaluate import evaluate
from recgym.sim.world import World, make_synthetic_log

N_ITEMS = 30
TINY = dict(hidden=16, batch_size=16, steps=4, eval_every=2)
CONFIGS = {
    "sasrec": TINY,
    "ccql": TINY,  # the Q-learning family with negatives, CQL and contrastive views
    "lpi": TINY,  # trains μ̂ (a SASRec) first
    "prl": TINY,
    "gptrec": dict(TINY, state_len=12, n_blocks=1, n_heads=1, slate_size=3),  # mc teacher
    "pop": {},
    "mc": {},
}
HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", "fake-cuda", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device"))]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def split():
    return split_by_session(make_synthetic_log(60, seed=0, n_items=N_ITEMS, n_users=30), seed=0)


def _on(device: str):
    """``(config device, context)`` of a test device."""
    if device == "fake-cuda":
        return "cuda", FakeCuda()
    return device, contextlib.nullcontext()


def _agent(name: str, device: str, **kw) -> Agent:
    cfg = dict(CONFIGS[name], **kw)
    if "device" in {f.name for f in dataclasses.fields(get_agent_class(name).Config)}:
        cfg["device"] = device
    return make_agent(name, N_ITEMS, seed=0, **cfg)


def _fit(agent: Agent, split, **kw) -> Agent:
    if isinstance(agent, TorchAgent):
        return agent.fit(split.train, split.valid, progress=False, log=lambda m: None, **kw)
    return agent.fit(split.train, split.valid)


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


STATES = (torch.tensor([[1, 2, 3, N_ITEMS], [4, N_ITEMS, N_ITEMS, N_ITEMS], [N_ITEMS] * 4]), torch.tensor([3, 1, 0]))


# ---------------------------------------------------------------------------------------------
# the guard itself
# ---------------------------------------------------------------------------------------------
def test_fake_cuda_raises_where_a_gpu_would():
    guard = FakeCuda()
    with guard:
        assert torch.cuda.is_available()
        x = torch.randn(3, 4).to("cuda")
        float(x.sum()), x.argmax(1).tolist(), x.cpu()
        assert guard.syncs == 3
        assert x.device.type == "cuda" and on_fake_cuda(x + 1) and on_fake_cuda(torch.arange(3, device=x.device))
        with pytest.raises(TypeError, match="cuda:0 device type tensor to numpy"):
            x.numpy()
        with pytest.raises(TypeError, match="numpy"):
            np.asarray(x.sum(1))
        with pytest.raises(DeviceMismatch):
            x.scatter_(1, torch.zeros(3, 1, dtype=torch.long), 0.0)  # host index into device scores
        with pytest.raises(DeviceMismatch):
            torch.cat([x, torch.zeros(1, 4)])
        with pytest.raises(DeviceMismatch):
            torch.zeros(5)[torch.tensor([0, 1]).to("cuda")]  # device indices into a host tensor
        assert x.cpu().numpy().shape == (3, 4) and not on_fake_cuda(x.cpu())
        assert x[torch.tensor([0, 2])].shape == (2, 4)  # host indices into a device tensor: allowed
        assert float((x * torch.tensor(2.0)).sum()) == pytest.approx(2 * float(x.sum()))  # 0-dim host: allowed
        m = torch.nn.Linear(4, 2)
        w = m.weight
        m.to("cuda")
        assert m.weight is w and on_fake_cuda(m.weight)  # parameters keep their identity (optimizers)


# ---------------------------------------------------------------------------------------------
# one agent per family, end to end
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_agent_end_to_end_on_device(name, device, split, tmp_path):
    dev, ctx = _on(device)
    with ctx:
        agent = _fit(_agent(name, dev), split, **({"checkpoint_path": tmp_path / "ckpt.pt"} if name not in ("pop", "mc") else {}))
        # baselines have no device: they score on the device of the states they are given
        on = {} if isinstance(agent, TorchAgent) else {"device": dev}
        res = {p: evaluate(agent, split.test, p, **on) for p in ("session", "loo")}
        assert all(math.isfinite(res["session"][k]) for k in ("hr@10", "ndcg@10"))
        assert all(math.isfinite(res["loo"][k]) for k in ("recall@10", "ndcg@10"))
        scores = _host(agent.scores(*STATES))
        recs = agent.recommend([[1, 2, 3], [4], []], k=3, exclude_seen=True)
        assert recs.shape == (3, 3) and isinstance(recs, np.ndarray)
        assert not set(recs[0]) & {1, 2, 3} and 4 not in recs[1]
        actions = _act_in_envs(agent, split)
        path = agent.save(tmp_path / "agent.pt")
    if device == "fake-cuda":  # same values as the CPU run: device handling changes nothing
        ref = _fit(_agent(name, "cpu"), split)
        for p in res:
            assert res[p] == pytest.approx({k: v for k, v in evaluate(ref, split.test, p).items()}, nan_ok=True)
        np.testing.assert_allclose(scores, _host(ref.scores(*STATES)), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(recs, ref.recommend([[1, 2, 3], [4], []], k=3, exclude_seen=True))
        assert actions == _act_in_envs(ref, split)
    # a checkpoint written on the device loads on the CPU (a GPU one without a GPU: with a warning)
    gpu_saved = isinstance(agent, TorchAgent) and dev == "cuda" and not HAS_CUDA
    warns = pytest.warns(UserWarning, match="no CUDA device") if gpu_saved else contextlib.nullcontext()
    with warns:
        back = type(agent).load(path)
    assert getattr(back, "device", torch.device("cpu")).type == "cpu" or HAS_CUDA
    cpu = type(agent).load(path, map_location="cpu")
    np.testing.assert_allclose(_host(cpu.scores(*STATES)), scores, rtol=1e-5, atol=1e-5)


def _act_in_envs(agent: Agent, split) -> list[int]:
    """A few greedy steps of ``agent.predict`` in every env kind (single and vector)."""
    out = []
    envs = [ReplayEnv(data=split, split="test", state_len=8, order="sequential"),
            SlateNextKEnv(data=split, split="test", state_len=8, slate_size=3),
            MFUserEnv(data=split, state_len=8, horizon=2)]
    for env in envs:
        obs, _ = env.reset(seed=0)
        for _ in range(3):
            a, _ = agent.predict(obs, deterministic=True)
            assert np.ndim(a) == 0 and 0 <= int(a) < N_ITEMS
            out.append(int(a))
            obs, _, term, trunc, _ = env.step(int(a))
            if term or trunc:
                obs, _ = env.reset()
    venv = ReplayVectorEnv(3, data=split, split="test", state_len=8)
    obs, _ = venv.reset(seed=0)
    a, _ = agent.predict(obs)
    assert a.shape == (3,)
    out += [int(x) for x in a]
    a, _ = agent.predict(obs, deterministic=False)  # sampled actions come back to the host too
    assert a.shape == (3,)
    return out


# ---------------------------------------------------------------------------------------------
# save / load / resume across devices
# ---------------------------------------------------------------------------------------------
def test_cpu_checkpoint_loads_onto_the_device(split, tmp_path):
    agent = _fit(_agent("sasrec", "cpu"), split)
    path = agent.save(tmp_path / "a.pt")
    with FakeCuda():
        dev = type(agent).load(path, map_location="cuda")
        assert dev.device.type == "cuda" and all(on_fake_cuda(p) for p in dev.encoder.parameters())
        s = _host(dev.scores(*STATES))
        recs = dev.recommend([[1, 2], [3]], k=4, exclude_seen=True)
    np.testing.assert_allclose(s, _host(agent.scores(*STATES)), rtol=1e-6)
    np.testing.assert_array_equal(recs, agent.recommend([[1, 2], [3]], k=4, exclude_seen=True))


@pytest.mark.parametrize("first, second", [("cpu", "fake-cuda"), ("fake-cuda", "cpu")])
def test_resume_on_another_device_is_exact(split, tmp_path, first, second):
    """4 steps on one device, checkpoint, 4 more on the other == 8 steps straight on the CPU."""
    ckpt = tmp_path / "ckpt.pt"
    dev, ctx = _on(first)
    with ctx:
        _fit(_agent("ccql", dev), split, checkpoint_path=ckpt, steps=4)
    dev, ctx = _on(second)
    with ctx:
        resumed = _fit(_agent("ccql", dev), split, checkpoint_path=ckpt, resume=True, steps=8)
        s = _host(resumed.scores(*STATES))
    straight = _fit(_agent("ccql", "cpu"), split, steps=8)
    np.testing.assert_allclose(s, _host(straight.scores(*STATES)), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# recommend(exclude_seen=True) excludes the whole history, not only the window
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sasrec", "pop", "gptrec"])
def test_recommend_excludes_the_whole_history(name, split):
    kw = {"pop": {}, "sasrec": {"state_len": 4}, "gptrec": {"state_len": 4, "slate_size": 10}}[name]
    agent = _fit(_agent(name, "cpu", **kw), split)
    rng = np.random.default_rng(0)
    long = rng.permutation(N_ITEMS)[:20]  # 20 seen items, the agent reads the last <= 4
    assert len(long) > agent.state_len
    lists = [long, long[:3]]
    padded = np.full((2, 25), N_ITEMS)
    padded[0, :20], padded[1, :3] = long, long[:3]
    for hist in (lists, padded):
        recs = agent.recommend(hist, k=10, exclude_seen=True)
        assert not set(recs[0]) & set(long.tolist()), "an item of the history older than the window came back"
        assert not set(recs[1]) & set(long[:3].tolist())
        assert len(set(recs[0])) == 10
    # without exclusion the top-10 of an untrained-enough model may repeat seen items; with it the
    # list is the best unseen items in score order
    s = agent.scores(*agent._as_states([long])).float()[0].clone()
    s[long] = -torch.inf
    if name != "gptrec":  # gptrec's list is generated (Next-K), not the top-k of its scores
        np.testing.assert_array_equal(agent.recommend([long], k=10, exclude_seen=True)[0], torch.topk(s, 10).indices.numpy())


def test_history_items_reads_every_item():
    from recgym.agents.base import history_items

    rows, items = history_items([np.array([3, 1, 4]), np.array([], dtype=np.int64), np.array([5])], n_items=6)
    np.testing.assert_array_equal(rows, [0, 0, 0, 2])
    np.testing.assert_array_equal(items, [3, 1, 4, 5])
    rows, items = history_items(np.array([[3, 1, 6], [6, 6, 6], [2, 6, 6]]), n_items=6)  # pad id 6 dropped
    np.testing.assert_array_equal(rows, [0, 0, 2])
    np.testing.assert_array_equal(items, [3, 1, 2])


# ---------------------------------------------------------------------------------------------
# the other scorers that hand tensors to numpy
# ---------------------------------------------------------------------------------------------
def test_world_true_value_and_rerankers_on_device(split):
    world = World(seed=0, n_users=20, n_items=N_ITEMS, n_genres=4)
    log = world.generate(20)
    users, hist, lengths = world.contexts(log)
    ref = _fit(_agent("sasrec", "cpu"), split)
    with FakeCuda():
        agent = _fit(_agent("sasrec", "cuda"), split)
        v = world.true_value(agent, users, hist, lengths, k=3)
        mmr = make_agent("mmr", N_ITEMS, device="cuda", candidates=10, slate_size=3).fit(split.train, base=agent)
        nk = make_agent("nextk-decode", N_ITEMS, slate_size=3).fit(split.train, base=agent)
        assert mmr.device.type == "cuda" and nk.device.type == "cuda"
        r_mmr = {p: evaluate(mmr, split.test, p) for p in ("session", "loo")}
        r_nk = evaluate(nk, split.test, "loo")
        a_mmr = mmr.recommend([[1, 2, 3]], k=3, exclude_seen=True)
    assert v == pytest.approx(world.true_value(ref, users, hist, lengths, k=3))
    mmr_ref = make_agent("mmr", N_ITEMS, candidates=10, slate_size=3).fit(split.train, base=ref)
    assert r_mmr["loo"] == pytest.approx(evaluate(mmr_ref, split.test, "loo"), nan_ok=True)
    assert r_nk == pytest.approx(evaluate(make_agent("nextk-decode", N_ITEMS, slate_size=3).fit(split.train, base=ref),
                                          split.test, "loo"), nan_ok=True)
    np.testing.assert_array_equal(a_mmr, mmr_ref.recommend([[1, 2, 3]], k=3, exclude_seen=True))


# ---------------------------------------------------------------------------------------------
# every other registered agent under the guard
# ---------------------------------------------------------------------------------------------
_GPT = dict(TINY, state_len=12, n_blocks=1, n_heads=1, slate_size=3)
_OTHERS = {"gptrec-ppo": dict(_GPT, ppo_steps=3, ppo_eval_every=2, val_users=10, kl_coef=0.1, lambda_pop=0.1),
           "bert4rec": dict(TINY, state_len=12, n_blocks=1, n_heads=1), "bpr": dict(iterations=2, factors=4),
           "mmr": dict(base="sasrec", candidates=10, slate_size=3), "pop-rerank": dict(base="sasrec", candidates=10, slate_size=3),
           "nextk-decode": dict(base="sasrec", slate_size=3)}


@pytest.mark.parametrize("name", sorted(set(AGENTS) - set(CONFIGS)))
def test_every_agent_runs_on_fake_cuda(name, split, tmp_path):
    cls = get_agent_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    kw = {k: v for k, v in _OTHERS.get(name, TINY).items() if k in fields}
    with FakeCuda():
        if "device" in fields:
            kw["device"] = "cuda"
        agent = make_agent(name, N_ITEMS, seed=0, **kw)
        if isinstance(agent, TorchAgent) or "base" in fields:
            agent.fit(split.train, split.valid, progress=False, log=lambda m: None)
        else:
            agent.fit(split.train)
        on = {} if hasattr(agent, "device") else {"device": "cuda"}
        for p in ("session", "loo"):
            assert math.isfinite(evaluate(agent, split.test, p, **on)["ndcg@10"])
        assert agent.recommend([[1, 2, 3]], k=3, exclude_seen=True).shape == (1, 3)
        a, _ = agent.predict({"history": np.array([1, 2, N_ITEMS]), "length": np.array([2])}, deterministic=False)
        assert 0 <= int(a) < N_ITEMS
        if getattr(agent, "logging_policy", None) is not None:
            from recgym.divergence import divergence_to_logging_policy

            assert math.isfinite(divergence_to_logging_policy(agent, split.test, max_states=50)["js_mu"])
        if name.startswith("prl"):
            from recgym.agents.prl import session_rollout

            agent.config.eps = 0.1  # the Eq. 16 noise path too
            assert math.isfinite(session_rollout(agent, ReplayEnv(data=split, split="test", state_len=10), 2)["return"])
        path = agent.save(tmp_path / "a.pt")
        back = type(agent).load(path, **({"map_location": "cuda"} if "device" in fields else {}))
        s = _host(back.scores(*STATES))
    np.testing.assert_allclose(s, _host(type(agent).load(path, map_location="cpu").scores(*STATES)), rtol=1e-5, atol=1e-6)


def test_gpu_benchmark_runs_on_fake_cuda(monkeypatch, capsys):
    """benchmarks/gpu.py: refuses the CPU (exit 2, one line); its timed sections run on a (fake) GPU."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_gpu", Path(__file__).parents[1] / "benchmarks" / "gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    if not HAS_CUDA:
        assert bench.main([]) == 2 and "no CUDA device" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    with FakeCuda():
        dev = torch.device("cuda")
        rows = bench.bench_qstep(dev, 0.0, n_items=50, batch=8, dim=8)
        rows += bench.bench_gen(dev, 0.0, n_items=40, history=12, hidden=16, n_blocks=1, n_heads=2, k=3, batch=4)
    assert [r[0].split()[0] for r in rows] == ["sqn", "ccql", "GPTRec", "GPTRec"]
    assert all(r[1][0].isdigit() for r in rows)


@pytest.mark.filterwarnings("ignore:PyTorch was compiled without cuDNN")  # the fake device's GRU asks for cuDNN
@pytest.mark.parametrize("name, encoder", [("sasrec", None), ("ccql", "gru"), ("ccql", "caser"), ("ccql", "nextitnet"),
                                           ("lpi", None), ("prl", None), ("gptrec", None)])
def test_device_values_reach_the_host_once_per_batch(name, encoder, split):
    """Scoring stays on the device; recommend / predict bring back one tensor, evaluation one (session)
    or two (loo: ranks and lists) per batch. GPTRec reads 2 numbers per batch to size its inputs and
    check that k items remain (its recommend generates without scoring)."""
    extra = 2 if name == "gptrec" else 0
    guard = FakeCuda()
    with guard:
        agent = _fit(_agent(name, "cuda", **({"encoder": encoder} if encoder else {})), split)
        counts = {}
        for what, call in [("scores", lambda: agent.scores(*STATES)),
                           ("recommend", lambda: agent.recommend([[1, 2, 3], [4]], k=3, exclude_seen=True)),
                           ("predict", lambda: agent.predict({"history": np.array([1, 2, N_ITEMS]), "length": np.array([2])})),
                           ("session", lambda: evaluate(agent, split.test, "session", batch_size=16)),
                           ("loo", lambda: evaluate(agent, split.test, "loo", batch_size=2))]:
            before = guard.syncs
            call()
            counts[what] = guard.syncs - before
    n_session = math.ceil(split.test.n_events / 16)
    n_loo = math.ceil(int((split.test.lengths > 0).sum()) / 2)
    assert counts == {"scores": extra, "recommend": 2 if name == "gptrec" else 1, "predict": 1 + extra,
                      "session": n_session * (1 + extra), "loo": n_loo * (2 + extra)}


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    from recgym.errors import BadInputError

    with pytest.raises(BadInputError, match=r"sasrec: device='cuda' but torch sees no CUDA device"):
        make_agent("sasrec", N_ITEMS, device="cuda")


@pytest.mark.parametrize("name", ["sasrec", "gptrec"])
def test_a_training_step_reads_one_value_back(name, split):
    """The loss, once: it is logged and checked for NaN from the same float."""
    guard = FakeCuda()
    with guard:
        _agent(name, "cuda", steps=6).fit(split.train, None, progress=False, log=lambda m: None)
    assert guard.syncs == 6
