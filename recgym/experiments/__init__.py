"""The experiment harness: one job, many jobs, one report.

* :mod:`~recgym.experiments.job` — :class:`JobSpec` and :func:`run_job` (train or reuse, evaluate,
  write ``results.json`` atomically), the job lock, building the split / agent / simulator envs;
* :mod:`~recgym.experiments.fanout` — many jobs (or a study's units) in a process pool or on Ray;
* :mod:`~recgym.experiments.report` — the one atomic writer, mean ± sample std, paired tests by
  seed with Holm's correction, markdown tables and figures;
* :mod:`~recgym.experiments.compare` — :func:`compare`: agents x seeds on one dataset, one report;
* :mod:`~recgym.experiments.cli` — the argument groups every command shares.
"""

from recgym.experiments.compare import CompareConfig, compare, make_jobs
from recgym.experiments.fanout import map_units, run_jobs
from recgym.experiments.job import DEFAULT_SIMS, JobSpec, finished_results, parse_overrides, read_results, run_job
from recgym.experiments.report import aggregate, atomic_write, paired_tests, summary, write_json, write_report

__all__ = ["DEFAULT_SIMS", "CompareConfig", "JobSpec", "aggregate", "atomic_write", "compare", "finished_results",
           "make_jobs",
           "map_units", "paired_tests", "parse_overrides", "read_results", "run_job", "run_jobs", "summary",
           "write_json", "write_report"]
