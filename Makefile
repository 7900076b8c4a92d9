# All set-up happens here: a fresh machine needs only python3 (3.10+) and these targets.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Debian packages the tests need: headless chromium and its driver (tests/test_demo.py drives the
# demo store with them), docker-compose (tests/test_compose.py validates docker-compose.yml) and
# haproxy (`lref balance` in front of reranker replicas, tests/test_replicas.py).
DEBS := chromium chromium-driver docker-compose haproxy

.PHONY: setup debs run test bench bench-load

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed debs

# apt-get as root, through sudo otherwise; nothing to do when all are installed.
debs:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  echo "installing Debian packages:" $$missing; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 $$missing; \
	fi

# The main job with its embedded defaults (`lref demo`): OpenSearch on 127.0.0.1:9200 (reused when one
# answers there, else started: Maven Central artefacts, ML Commons, k-NN, neural-search, our tier
# filter), the reranker with the default judge on 127.0.0.1:8000, a catalog (Home Depot products from
# ../shared/data when present, else the sample catalog), the connector and search pipelines, and the
# demo store at http://127.0.0.1:8080/. Ctrl-C stops what it started.
run: setup
	$(BIN)/lref demo

test: setup
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/rerank_speed.py

# Bounded concurrent searches through the pipeline on a stack of its own (docs/reliability.md).
bench-load: setup
	$(BIN)/python bench/load.py
