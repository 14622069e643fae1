# Two entry points (see README "Quick start"): `make demo` and `make test`.
# Both build .venv from scratch when pyproject.toml changes, with the CPU constraints so that
# pip never pulls CUDA wheels. For a GPU install see README "Installing".
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip install -c constraints-cpu.txt
AGENT  ?= sasrec

$(VENV)/.stamp-dev: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e ".[dev]"
	touch $@

.PHONY: install demo test bench
install: $(VENV)/.stamp-dev

demo: install
	$(VENV)/bin/python scripts/offline_eval.py --agent $(AGENT)

test: install
	$(VENV)/bin/python -m pytest

bench: install
	$(VENV)/bin/python -m benchmarks data eval envs train
