# decentral-bench: the two commands a user needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Stamp files make re-runs cheap: the venv is rebuilt only when pyproject.toml changes.
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# Material for MkDocs prints a banner about MkDocs 2.0 on every build; it is not a warning
# about this site.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

.PHONY: install dev demo flwr-run test test-slow lint docs docs-serve ui-check data clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

dev: $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/decentral-bench run scenarios/quickstart.yaml

# `flwr run .` on the local SuperLink that flwr starts, reusing this .venv: Flower 1.41's
# SuperLink otherwise installs the app's dependencies into a new environment for every run
# (about 30 s and gigabytes). The setting holds for a SuperLink started here; one already
# running keeps its own (stop its flower-superlink process first). RUN_CONFIG picks what
# runs, SUPERNODES the simulated federation's size (one per agent of the scenario).
RUN_CONFIG ?= scenario="scenarios/quickstart.yaml" method="CDSGD"
SUPERNODES ?= 5
FLWR_LOCAL := PATH="$(abspath $(BIN)):$$PATH" FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
flwr-run: $(STAMP)
	$(FLWR_LOCAL) $(BIN)/flwr federation simulation-config @none/default local \
		--num-supernodes $(SUPERNODES)
	$(FLWR_LOCAL) $(BIN)/flwr run . --stream --run-config '$(RUN_CONFIG)'

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The default suite: every fast test and one slow test of each kind (about 5 minutes on
# 2 cores), then the docs site's strict build (a few seconds); `make test-slow` runs the
# other Flower simulations and deployments (about 20).
test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow or core"
	$(MKDOCS) build --strict

test-slow: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "slow and not core"

# The docs site (docs/, mkdocs.yml) into site/: first what is generated (the table of
# scenario keys and scenario.schema.json from the scenario models, the architecture page's
# lists from the packages' docstrings), then a strict build, which fails on a broken link,
# anchor or missing page.
docs: $(DEV_STAMP)
	$(BIN)/python -m decentral_bench.scenario.keytable
	$(BIN)/python scripts/architecture_page.py
	$(MKDOCS) build --strict

# The same site at http://127.0.0.1:8000, rebuilt on every save.
docs-serve: $(DEV_STAMP)
	$(MKDOCS) serve --dev-addr 127.0.0.1:8000

# The MLflow UI in a real browser (Debian's headless Chromium) lists the quickstart's runs;
# screenshots go to build/ui-check/.
ui-check: $(DEV_STAMP)
	@if ! command -v chromium >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; \
	fi
	$(BIN)/python scripts/ui_check.py --screenshots build/ui-check

# Real Fashion-MNIST, offline, from Debian's package (files land in /usr/share/datasets/fashion-mnist).
data:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
		echo "Fashion-MNIST is in /usr/share/datasets/fashion-mnist"; \
	elif command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "No apt-get here: put the four Fashion-MNIST IDX .gz files in a folder and set dataset.root"; \
		exit 1; \
	fi

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .ruff_cache
