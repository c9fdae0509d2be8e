# Two commands on a fresh machine: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run demo test lint bench dev-up dev-down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: setup  ## stack + API + qualifier, the 20,000-lead demo, then serve until Ctrl-C
	$(BIN)/drippulse demo --serve

demo: setup  ## the same demo, exiting 0 after the summary
	$(BIN)/drippulse demo

test: setup lint  ## lint, types, then every test against the real local stack
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy processors streams api drippulse

bench: setup  ## throughput figures; writes bench/out/results.json
	$(BIN)/python -m bench.run

dev-up: setup
	$(BIN)/drippulse dev up

dev-down: setup
	$(BIN)/drippulse dev down

clean:
	rm -rf $(VENV) .drippulse bench/out .pytest_cache .mypy_cache .ruff_cache
