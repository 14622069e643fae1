"""recgym's benchmarks (not part of the installed library): ``python -m benchmarks SECTION ...``.

* :mod:`benchmarks.run` — the runner and the ``data`` / ``eval`` sections;
* :mod:`benchmarks.envs` — env steps/s, single and vectorised;
* :mod:`benchmarks.train` — ms per training step of the Q-learning family vs its matmul bound;
* :mod:`benchmarks.gen` — GPTRec Next-K lists/s (KV cache) and the PPO-update choice.
* :mod:`benchmarks.gpu` — the same kinds of timings on a CUDA device (``python -m benchmarks.gpu``).
"""
