# The two commands a new user needs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit slow clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cromo-bench run --method finetune --ssl barlow --split digits-5x2

lint: $(STAMP)
	$(VENV)/bin/ruff check cromo_bench methods baselines benchmarks tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest

test: lint typecheck unit

slow: $(STAMP)
	$(PY) -m pytest -m slow

clean:
	rm -rf $(VENV) mlflow.db mlruns runs
