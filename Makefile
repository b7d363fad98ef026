# Two commands do everything on a fresh machine: `make up` (the pipeline on the embedded stack)
# and `make test` (the test suite). Both install what is missing first.
PYTHON ?= python3
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install up test test-fast bench-tagger bench-pipeline bench-trends train-default compose-check

install:
	@# A CPU-only machine must not pull a multi-GB CUDA build: install the CPU wheel first
	@# (pip takes torch 2.13.0 from local disk here). GPU hosts install their CUDA torch beforehand.
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "torch==2.13.0"
	@$(PYTHON) -m pip install -q -e ".[dev]"

up: install
	tweetner up $(ARGS)

test: install
	$(PYTHON) -m pytest -q -p no:cacheprovider $(ARGS)

# Slow work, never in CI: each writes its figures to docs/.
bench-tagger: install
	tweetner bench tagger --matrix --limit 2000 --dev ../shared/data/wnut16/dev.conll $(ARGS)

bench-pipeline: install
	tweetner bench pipeline --input ../shared/data/tweets/gurez.txt --limit 1000 $(ARGS)

bench-trends: install
	tweetner bench trends --rows 10000000 $(ARGS)

# Reproduces the shipped default model (see docs/model.md).
train-default: install
	$(PYTHON) -m tagger.default_training $(ARGS)

compose-check:
	docker-compose -f docker-compose.yml config -q
