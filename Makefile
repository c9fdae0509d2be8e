# Two commands on a fresh machine: `make run` and `make test`. Everything else is a helper.
# The interpreter .venv is made from: a distribution's CPython when there is one (PGO+LTO builds run
# the workers 20-30 % faster than pyenv's default build; see scripts/find-python). Override: make PYTHON=...
PYTHON ?= $(shell scripts/find-python)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The qualifier's hot path, compiled with mypyc when a C compiler is there (README, "The hot path is
# compiled"). COMPILE=auto|1|0: compile when possible, compile or fail, never compile.
COMPILE ?= auto
HOT_PATH := processors/compiler.py processors/conditions.py processors/enrollment.py processors/events.py \
	processors/execution.py processors/free_mail.py processors/ids.py processors/lead_memory.py \
	processors/routing.py streams/state/processor_state.py streams/qualifier.py streams/execution_outputs.py streams/state/state_keys.py streams/runtime/records.py
COMPILED := $(VENV)/.compiled-$(COMPILE)-stamp

.PHONY: setup compile run demo test lint bench dev-up dev-down clean hot-path-modules

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

# Rebuilt when any module changes: compiled code depends on the types of the modules it imports.
$(COMPILED): $(STAMP) $(wildcard processors/*.py streams/*.py streams/*/*.py) scripts/compile-hot-path scripts/hot_path_setup.py
	rm -f $(VENV)/.compiled-*-stamp
	scripts/compile-hot-path $(COMPILE) $(BIN) $(HOT_PATH)
	touch $@

setup: $(STAMP) $(COMPILED)

hot-path-modules:  ## the HOT_PATH list, for builds outside make (the Dockerfile)
	@echo $(HOT_PATH)

compile: setup

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
	rm -rf $(VENV) .drippulse bench/out .pytest_cache .mypy_cache .ruff_cache build
	rm -f processors/*.so streams/*.so streams/*/*.so
