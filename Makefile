# learning_svc — `make run` serves, `make test` tests; both install what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
RUN_STAMP := $(VENV)/.installed-run-stamp
CHROMIUM := /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: install install-run run test test-quick fuzz lint format reindex verify bench bench-quick demo browser axe postgres wheel-check clean

# Everything: the service, the tests' and the bench's tools.
install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,postgresql]'
	touch $(STAMP) $(RUN_STAMP)

# The service alone (and psycopg, for an index on PostgreSQL): what `make run` needs.
install-run: $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[postgresql]'
	touch $(RUN_STAMP)

run: install-run
	$(BIN)/learning-svc serve $(if $(PORT),--port $(PORT)) $(if $(DATA),--data-dir $(DATA)) $(foreach folder,$(WATCH),--watch $(folder))

# Debian's Chromium for the page tests (Playwright never downloads a browser here).
browser:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core; }

# axe-core for the accessibility tests (npm, pinned in package-lock.json; never served).
AXE := node_modules/axe-core/axe.min.js
axe: $(AXE)

$(AXE): package-lock.json
	@command -v npm >/dev/null || { echo "installing Debian's npm for axe-core"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $(AXE)

# Debian's PostgreSQL binaries: the tests start a throwaway server of their own (tests/postgres.py).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql for the PostgreSQL leg of the tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# One pytest worker a core (at most 4): the suite takes ~15 min on 2 cores instead of ~20.
XDIST := -n auto --maxprocesses 4

test: install browser axe postgres lint
	$(BIN)/pytest $(XDIST)

# While working: everything but the browser, subprocess and fault-injection tests (~5 min on 2 cores).
test-quick: install
	$(BIN)/pytest $(XDIST) -m "not slow and not browser" -q

# schemathesis at length: stateless (valid and invalid requests) and stateful (following the
# OpenAPI links), many more examples than `make test` runs.
fuzz: install
	LEARNING_SVC_FUZZ_EXAMPLES=$${EXAMPLES:-600} $(BIN)/pytest -q tests/test_hostile_input.py -k schemathesis

# ruff: lint and format (`make format` rewrites what the check would refuse)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Build the wheel, install it in a fresh venv outside the repository, serve, POST and GET a job.
wheel-check: install
	$(BIN)/python .ci/wheel_check.py

reindex: install-run
	$(BIN)/learning-svc reindex $(if $(DATA),--data-dir $(DATA))

verify: install-run
	$(BIN)/learning-svc verify $(if $(DATA),--data-dir $(DATA))

demo: install-run
	$(BIN)/learning-svc demo $(if $(PORT),--port $(PORT))

# `make bench DB=postgresql`: the index on a throwaway PostgreSQL server (installed when missing;
# the scaling scenario measures both backends in any run)
DB ?= sqlite
bench: install postgres
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	$(BIN)/python -m bench --db $(DB) $(BENCH_ARGS)

bench-quick:
	$(MAKE) bench BENCH_ARGS="--jobs 100000"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
