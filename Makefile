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

# The whole suite twice at once, one process per storage backend (tests/storage_suite.py):
# SQLite, and PostgreSQL at KT_TEST_DATABASE_URL (postgresql://postgres@127.0.0.1:5432/test
# by default; its tests are skipped, saying why, where it can't be reached, and fail
# instead with KT_REQUIRE_POSTGRES=1, as in CI). Tests that are the same on every backend
# (marked same_on_every_backend) are shared out between the two (KT_TEST_SHARE=1). Each
# writes its own log and cache; both logs are printed when both are done, and both must pass.
TEST_LOGS := .pytest_cache/logs

test: lint
	@mkdir -p $(TEST_LOGS)
	@echo "pytest on SQLite and on PostgreSQL at once (logs in $(TEST_LOGS)/)"
	@{ KT_TEST_SHARE=1 KT_TEST_BACKEND=sqlite $(BIN)/pytest -o cache_dir=.pytest_cache/sqlite \
		> $(TEST_LOGS)/sqlite.log 2>&1; echo $$? > $(TEST_LOGS)/sqlite.status; } & \
	{ KT_TEST_SHARE=1 KT_TEST_BACKEND=postgres $(BIN)/pytest -o cache_dir=.pytest_cache/postgres \
		> $(TEST_LOGS)/postgres.log 2>&1; echo $$? > $(TEST_LOGS)/postgres.status; } & \
	wait
	@echo "==================== on SQLite ===================="; cat $(TEST_LOGS)/sqlite.log
	@echo "==================== on PostgreSQL ===================="; cat $(TEST_LOGS)/postgres.log
	@test "$$(cat $(TEST_LOGS)/sqlite.status)" = 0 || { echo "make test: the SQLite run failed"; exit 1; }
	@test "$$(cat $(TEST_LOGS)/postgres.status)" = 0 || { echo "make test: the PostgreSQL run failed"; exit 1; }

bench: $(STAMP)
	$(BIN)/python benchmarks/inbound.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/digest.py
	$(BIN)/python benchmarks/fanout.py
	$(BIN)/python benchmarks/console.py

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
