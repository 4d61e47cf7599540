# The README's commands. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
CUSTOMERS ?= 100000

.PHONY: run test test-fast bench proto lint format lock clean

$(STAMP): requirements.lock pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $(STAMP)

run: $(STAMP)  ## the engine on embedded Redis with the example rules and demo customers
	$(BIN)/nba serve --seed-customers 1000

test: $(STAMP)  ## the whole suite, against embedded Redis and against a redis-server
	bash tests/run_suite.sh

test-fast: $(STAMP)  ## the suite against embedded Redis only
	$(BIN)/pytest -q

bench: $(STAMP)  ## benchmarks against real server processes (figures to stdout and bench-results/)
	$(BIN)/python -m loadtests.bench --customers $(CUSTOMERS)
	$(BIN)/python -m loadtests.grpc_bench --customers $(CUSTOMERS)
	$(BIN)/python -m loadtests.anatomy
	$(BIN)/python -m loadtests.kernel_bench
	$(BIN)/python -m loadtests.condition_bench
	$(BIN)/python -m loadtests.learning_bench
	$(BIN)/python -m loadtests.equity_bench
	$(BIN)/python -m loadtests.clv_bench
	$(BIN)/python -m loadtests.reload_bench
	$(BIN)/python -m loadtests.simulate_bench

proto: $(STAMP)  ## regenerate engine/api/grpc/gen from proto/
	$(BIN)/python -m engine.api.grpc.build

lint: $(STAMP)
	$(BIN)/ruff check engine tests loadtests
	$(BIN)/ruff format --check engine tests loadtests

format: $(STAMP)
	$(BIN)/ruff format engine tests loadtests
	$(BIN)/ruff check --fix engine tests loadtests

lock:  ## re-pin every dependency after editing pyproject.toml
	$(BIN)/pip install --quiet uv==0.13.9
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) var bench-results .pytest_cache .ruff_cache .hypothesis
