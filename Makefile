# Two commands a newcomer needs: `make run` and `make test`. Both install into .venv first,
# at the versions in constraints.txt: the ones the tests last passed with, so a fresh
# machine gets what works. After changing dependencies in pyproject.toml, `make lock`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK_VENV := .venv-lock

.PHONY: run test lint bench install lock clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) --version >/dev/null 2>&1 || { echo "$(PYTHON) is needed: install Python 3.11 (or run make PYTHON=python3.x)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Ctrl-C is how the bot is stopped, not a failure: the trap keeps make from answering it
# with "make: *** [Makefile: run] Error 130".
run: $(STAMP)
	@trap 'exit 0' INT; $(BIN)/kitchen-table run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/inbound.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/digest.py
	$(BIN)/python benchmarks/fanout.py

# The newest versions pyproject.toml allows, resolved in an empty virtualenv, become
# constraints.txt; run `make test` afterwards and commit the file if it passes.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet -e '.[dev]'
	{ echo "# The versions make run and make test install (pip install -c constraints.txt)."; \
	  echo "# Made by make lock from pyproject.toml in an empty virtualenv; don't edit by hand."; \
	  $(LOCK_VENV)/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache .mypy_cache .ruff_cache
