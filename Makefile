# Two commands on a fresh machine: `make demo` and `make test`.
# python3.11 where installed, else python3 (pyproject requires >= 3.11).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test ui screenshot bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the local CPU build, never the CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lrl demo

# Two workers, a test file each (its module fixtures stay in one process): most tests wait on
# process start-up, DuckDB and Dagster rather than compute, so the 2 cores overlap them (12.3 ->
# 8.0 minutes on a slow day here). `pytest tests/...` alone still runs in one process.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

ui: $(STAMP)
	$(BIN)/lrl ui

screenshot: $(STAMP)
	$(BIN)/python docs/screenshot.py

bench: $(STAMP)
	$(BIN)/python benchmarks/paper_table1.py
	$(BIN)/python benchmarks/semi_synthetic.py

clean:
	rm -rf $(VENV) data artifacts dagster_home/storage dagster_home/history dagster_home/logs dagster_home/schedules
