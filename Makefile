# Two commands: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
TORCH  ?= 2.13.0

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# Take the CPU torch wheel where one is on disk / on the CPU index; fall back to PyPI.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "torch==$(TORCH)" \
	  || $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu \
	  || $(PY) -m pip install -q torch
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Prints what the lake holds per symbol, the report's verdict, and last: "Output: <report>".
demo: $(STAMP)
	$(VENV)/bin/kline run

test: $(STAMP)
	$(PY) -m ruff check kline tasks flows tests benchmarks
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check kline tasks flows tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_ingest.py

clean:
	rm -rf $(VENV) .pytest_cache
