# tokenward — `make run` and `make test` work on a fresh machine with only python3.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# `make run` gets its own venv with only what the server needs (no dev toolchain)
RUN_VENV  ?= .venv-run
RUN_BIN   := $(RUN_VENV)/bin
RUN_STAMP := $(RUN_VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
STORE  ?= sqlite:///var/tokenward.db

.PHONY: run test lint fmt typecheck bench bench-http install clean fuzz soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(RUN_BIN)/python:
	$(PYTHON) -m venv $(RUN_VENV)
	$(RUN_BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(RUN_BIN)/python
	$(RUN_BIN)/python -m pip install -q '.[server,redis,postgres]'
	touch $(RUN_STAMP)

run: $(RUN_STAMP)
	$(RUN_BIN)/tokenward serve --store $(STORE) --host $(HOST) --port $(PORT)

# test files in parallel (pytest-xdist), each file whole in one worker (module-scoped servers
# start once); then the `serial` files (load drills, short-timeout outages) alone. PYTEST_WORKERS=auto uses
# every core, PYTEST_WORKERS=0 runs the first phase serially too. 3 workers on 2 cores: most
# files wait on servers and sockets, so a third worker cuts the phase from ~9.6 to ~8.2 min
PYTEST_WORKERS ?= 3

# the layer rules (import-linter contracts in pyproject.toml) also run as a test
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -q -p no:cacheprovider -m serial

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python bench/verify.py

# the HTTP comparison drives load with wrk (installed here when missing; without it the
# bench falls back to a Python load generator and says so). BENCH_HTTP_ARGS=--quick: smoke run
bench-http: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { \
	  export DEBIAN_FRONTEND=noninteractive; SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y wrk || { $$SUDO apt-get update && $$SUDO apt-get install -y wrk; } \
	  || echo "wrk could not be installed: the bench uses its Python load generator"; }
	$(BIN)/python bench/http_bench.py $(BENCH_HTTP_ARGS)

FUZZ_RUNS ?= 20000000
FUZZ_EXAMPLES ?= 3000
SOAK_SECONDS ?= 600

# long coverage-guided run of the JWS parser (atheris); prints inputs run and the outcome classes
fuzz: $(STAMP)
	$(BIN)/python fuzz/jws_target.py -atheris_runs=$(FUZZ_RUNS) -print_final_stats=1
	TOKENWARD_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider tests/fuzz

# 10 minutes of mixed load against 2 server workers (0 5xx, RSS growth <= 5 %, bounded store)
soak: $(STAMP)
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) $(RUN_VENV) .pytest_cache .mypy_cache .ruff_cache
