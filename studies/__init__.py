"""Studies: one module per agent family, each a thin definition (agents, datasets, settings, its own
tables) over the harness in :mod:`recgym.experiments`. Run from the repository root::

    python -m studies.qlearning --quick --out runs/ql_quick
    python -m studies.lpi --quick --out runs/lpi_quick
    python -m studies.prl --quick --out runs/prl_quick
    python -m studies.gptrec --quick --out runs/gptrec_quick
    python -m studies.iar_vs_truth --seeds 0 1

Every study has ``--quick`` (a smoke run on tiny synthetic data, not results) and writes its
report with :func:`recgym.experiments.report.atomic_write`; statistics are those of
:mod:`recgym.experiments.report` (mean ± sample std, paired tests by seed, Holm's correction).
"""
