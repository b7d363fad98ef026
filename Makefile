# Two commands do everything on a fresh machine: `make up` (the pipeline on the embedded stack)
# and `make test` (the test suite). Both create the project's virtual environment (.venv, with
# the interpreter PYTHON names) and install the locked versions into it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := deploy/requirements.lock
# The torch release the lock names; on CPU machines pip takes its CPU build from local disk.
TORCH := $(shell sed -n 's/^torch==\([^ ]*\).*/\1/p' $(LOCK))
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install up dashboard test doctor lock bench-tagger bench-pipeline bench-trends train-default baseline dapt continuations compose-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when pyproject or the lock changed since the last install.
$(VENV)/.installed: $(BIN)/python pyproject.toml $(LOCK)
	@# A CPU-only machine must not pull a multi-GB CUDA build: install the CPU wheel first.
	@# GPU hosts install their CUDA torch into .venv beforehand; an installed torch is kept.
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "torch==$(TORCH)"
	@# The lock is a constraints file: every package pip installs gets the locked version.
	@$(BIN)/python -m pip install -q -c $(LOCK) -e ".[dev]"
	@touch $@

install: $(VENV)/.installed

up: install
	$(BIN)/tweetner up $(ARGS)

# The live dashboard and HTTP API over the data `make up` left (or DATABASE_URL's).
dashboard: install
	$(BIN)/tweetner dashboard $(ARGS)

# Each checkout keeps its tests' temporary directories to itself: another pytest session on the
# machine would otherwise prune them and reset their parents' permissions, which the embedded
# PostgreSQL (run as its own user) needs to traverse.
test: install
	@mkdir -p .state/pytest
	PYTEST_DEBUG_TEMPROOT=$(CURDIR)/.state/pytest $(BIN)/python -m pytest -q -p no:cacheprovider $(ARGS)

doctor: install
	$(BIN)/tweetner doctor $(ARGS)

# Regenerates the lock from pyproject's ranges (newest releases that fit), with pip-tools in a
# venv of its own so the tool's dependencies never enter the project's.
lock: $(BIN)/python
	@test -x $(VENV)-lock/bin/pip-compile || { $(PYTHON) -m venv $(VENV)-lock && \
		$(VENV)-lock/bin/python -m pip install -q "pip-tools==7.6.2"; }
	$(VENV)-lock/bin/pip-compile -q --upgrade --extra dev --extra embedded --strip-extras \
		--allow-unsafe --no-emit-index-url --no-emit-find-links -c deploy/lock-constraints.txt -o $(LOCK) pyproject.toml
	@# The local label (+cpu) would refuse a CUDA build of the same release on GPU hosts.
	sed -i 's/^torch==\([^+ ]*\)+[a-z0-9]*/torch==\1/' $(LOCK)

# Slow work, never in CI: each writes its figures to docs/.
bench-tagger: install
	$(BIN)/tweetner bench tagger --matrix --limit 2000 --dev ../shared/data/wnut16/dev.conll $(ARGS)

bench-pipeline: install
	$(BIN)/tweetner bench pipeline --input ../shared/data/tweets/gurez.txt --limit 1000 $(ARGS)

bench-trends: install
	$(BIN)/tweetner bench trends --rows 10000000 $(ARGS)

# Reproduces the shipped default model (see docs/model.md).
train-default: install
	$(BIN)/python -m recipes.default_model $(ARGS)

# Experiments of docs/model.md: domain-adaptive pretraining (SpanBERT objective) with its two
# fine-tuning runs, and continuations of the shipped model (self-training, type weights, control).
dapt: install
	$(BIN)/python -m recipes.dapt $(ARGS)

continuations: install
	$(BIN)/python -m recipes.continuations $(ARGS)

# The token-classification baseline of docs/model.md.
baseline: install
	$(BIN)/python -m recipes.baseline --train ../shared/data/wnut16/train.conll --dev ../shared/data/wnut16/dev.conll $(ARGS)

# Validates docker-compose.yml with every profile: `docker compose` (v2), else docker-compose.
COMPOSE_PROFILES_ALL := --profile gpu --profile cpu --profile monitoring
compose-check:
	@if docker compose version >/dev/null 2>&1; then \
		docker compose -f docker-compose.yml $(COMPOSE_PROFILES_ALL) config -q; \
	elif command -v docker-compose >/dev/null 2>&1; then \
		docker-compose -f docker-compose.yml $(COMPOSE_PROFILES_ALL) config -q; \
	else echo "compose-check: neither \`docker compose\` nor docker-compose is installed" >&2; exit 1; fi
	@echo "docker-compose.yml is valid (profiles gpu, cpu, monitoring)"
