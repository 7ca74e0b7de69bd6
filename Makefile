# opslab: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON  ?= python3
VENV    := .venv
OPSLAB  := $(VENV)/bin/opslab
PYTEST  := $(VENV)/bin/pytest
STAMP   := $(VENV)/.installed-stamp

##@ Platform

.PHONY: up
up: $(STAMP) ## Start the platform (the first run builds the toolchain, then starts in seconds)
	$(OPSLAB) up $(if $(NODES),--nodes $(NODES))

.PHONY: down
down: $(STAMP) ## Stop every platform process (PURGE=1 also wipes cluster data)
	$(OPSLAB) down $(if $(PURGE),--purge)

.PHONY: status
status: $(STAMP) ## Show each component's state and readiness
	$(OPSLAB) status

.PHONY: logs
logs: $(STAMP) ## Print a component's log: make logs C=kube-apiserver
	@test -n "$(C)" || { echo "usage: make logs C=<component> (see make status)"; exit 2; }
	$(OPSLAB) logs $(C)

.PHONY: setup
setup: $(STAMP) ## Build or fetch the toolchain into ~/.cache/opslab (idempotent)
	$(OPSLAB) setup

##@ Labs

.PHONY: labs
labs: $(STAMP) ## List the labs with your status and best score
	$(OPSLAB) lab list

.PHONY: demo
demo: up ## Watch the loop heal a fault (an incident, lab 6's reference remediator, the score), then the fault left alone (INCIDENT=inc-01)
	$(OPSLAB) demo $(if $(INCIDENT),--incident $(INCIDENT))

lab-%: $(STAMP) ## Grade lab N (e.g. make lab-1; PATH_=dir grades another directory)
	$(OPSLAB) lab check $* $(if $(PATH_),--path $(PATH_))

##@ Development

.PHONY: test
test: setup ## Run every test: unit, then integration against a real platform
	$(PYTEST) tests

.PHONY: test-unit
test-unit: $(STAMP) ## Run only the unit tests (seconds, no platform)
	$(PYTEST) tests/unit

.PHONY: lint
lint: $(STAMP) ## ruff, import-linter (layering), mypy, gofmt on opslab's own Go
	$(VENV)/bin/ruff check src tests labs solutions
	$(VENV)/bin/ruff format --check src tests labs solutions
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy src
	@unformatted="$$(gofmt -l platform/go/gitops)"; if [ -n "$$unformatted" ]; then \
		echo "gofmt: run gofmt -w on $$unformatted"; exit 1; fi

.PHONY: bench
bench: bench-platform bench-shop bench-pipeline bench-automation bench-incidents bench-labs bench-setup ## Run every benchmark

.PHONY: bench-platform
bench-platform: setup ## Measure setup, up/down, idle memory and 1,000 pods; record in docs/performance.md
	$(VENV)/bin/python -m opslab.bench.platform $(if $(RUNS),--runs $(RUNS))

.PHONY: bench-shop
bench-shop: setup ## Measure the shop simulator's throughput and added latency under locust
	$(VENV)/bin/python -m opslab.bench.shop $(if $(RUNS),--runs $(RUNS))

.PHONY: bench-pipeline
bench-pipeline: setup ## Measure lab 4's reference processor: throughput, latency at 1,000 orders/s, kill -9 cycles
	$(VENV)/bin/python -m opslab.bench.pipeline $(if $(RUNS),--runs $(RUNS))

.PHONY: bench-automation
bench-automation: setup ## Measure lab 5's API and workers (PATH_=dir: yours): acknowledgements/s, p50/p99, jobs/s
	$(VENV)/bin/python -m opslab.bench.automation $(if $(RUNS),--runs $(RUNS)) $(if $(PATH_),--path $(PATH_))

.PHONY: bench-incidents
bench-incidents: setup ## The oracle and lab 6's reference remediator over every incident (share mitigated, time to mitigate), and the catalog unattended
	$(VENV)/bin/python -m opslab.bench.incidents $(if $(MODEL),--model $(MODEL)) $(if $(MODEL_NAME),--model-name $(MODEL_NAME))

.PHONY: bench-labs
bench-labs: setup ## Measure each lab's grading time with the platform up
	$(VENV)/bin/python -m opslab.bench.labs $(if $(RUNS),--runs $(RUNS))

.PHONY: bench-setup
bench-setup: $(STAMP) ## Measure a cold setup per component (empty caches; takes ~30 min on 2 cores)
	$(VENV)/bin/python -m opslab.bench.setup $(if $(RUNS),--runs $(RUNS))

.PHONY: clean
clean: ## Remove the virtual environment (the toolchain cache in ~/.cache/opslab stays)
	rm -rf $(VENV)

##@ Help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11+"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: Python 3.11+ is needed"; exit 1; }
	@echo "python: creating $(VENV) and installing opslab with its test, lint and docs groups"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q --upgrade 'pip>=25.1'
	@$(VENV)/bin/python -m pip install -q -e . --group dev
	@touch $(STAMP)
