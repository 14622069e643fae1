"""The train benchmark's helpers run end to end on a tiny catalogue (their figures live in README)."""

from __future__ import annotations


def test_step_ms_per_process_times_each_fresh_process_with_the_chunk_it_was_given():
    from benchmarks.train import step_ms_per_process

    lines: list[str] = []
    out = step_ms_per_process("sqn", processes=2, steps=2, threads=1, chunk=64, n_items=300, print_fn=lines.append)
    assert len(out) == 2 and all(ms > 0 for ms in out)
    assert lines == [f"sqn, chunks of 64: median ms per step in 2 fresh processes: {out[0]:.1f}, {out[1]:.1f}"]
