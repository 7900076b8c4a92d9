# All set-up happens here: a fresh machine needs only python3 (3.10+) and these targets.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test bench bench-load

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# The main job with its embedded defaults: OpenSearch on 127.0.0.1:9200 (from Maven Central, with
# ML Commons, k-NN, neural-search and our tier filter), the connector and search pipelines, and the
# reranker with the default judge model on 127.0.0.1:8000 in the foreground.
run: setup
	$(BIN)/lref opensearch up
	$(BIN)/lref opensearch install
	$(BIN)/lref serve

test: setup
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/rerank_speed.py

# Bounded concurrent searches through the pipeline on a stack of its own (docs/reliability.md).
bench-load: setup
	$(BIN)/python bench/load.py
