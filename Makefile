# avgen: the user's door. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROJECT ?= specvqgan
EXP ?=
ARGS ?=
TOY ?= data/toy

.DEFAULT_GOAL := help
.PHONY: help install data train demo slurm test test-fast lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: PROJECT=<specvqgan|gravo|tiva|audiotoken|wavbrivl> EXP=<config name> ARGS=\"--trainer.max_steps=10 ...\""

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install avgen with its pinned dependencies

# Re-run when the generator changes: it regenerates the set when `.complete` names other sizes or another
# version of shared/data/toy.py, and otherwise leaves it alone (then only the stamp's time is renewed).
$(TOY)/.complete: shared/data/toy.py | $(VENV)/.installed
	$(PY) -m shared.data.toy --out $(TOY)
	touch $@

data: $(TOY)/.complete  ## generate the embedded toy dataset (deterministic) if it is missing or out of date

train: $(VENV)/.installed $(TOY)/.complete  ## PROJECT's whole toy pipeline; with EXP=<config> one stage: make train PROJECT=x EXP=y ARGS="..."
ifeq ($(strip $(EXP)),)
	$(VENV)/bin/avgen pipeline --project $(PROJECT) $(ARGS)
else
	$(VENV)/bin/avgen fit --config projects/$(PROJECT)/configs/$(EXP).yaml $(ARGS)
endif

HOST ?= 127.0.0.1
PORT ?= 7860
demo: $(VENV)/.installed $(TOY)/.complete  ## the web demo on the runs under runs/ (http://HOST:PORT; HOST= PORT= ARGS=)
	$(VENV)/bin/avgen demo --runs runs --toy $(TOY) --host $(HOST) --port $(PORT) $(ARGS)

NODES ?= 1
GPUS ?= 1
VERSION ?= default
PARTITION ?= gpu
ACCOUNT ?= default
TIME ?= 24:00:00
slurm: $(VENV)/.installed  ## submit EXP of PROJECT to SLURM: make slurm PROJECT=x EXP=y NODES=2 GPUS=8 [VERSION= PARTITION= ACCOUNT= TIME= ARGS=]
	$(VENV)/bin/avgen slurm --project $(PROJECT) --exp $(EXP) --nodes $(NODES) --gpus $(GPUS) --version $(VERSION) \
		--partition $(PARTITION) --account $(ACCOUNT) --time $(TIME) --args "$(ARGS)"

.PHONY: evaluate compare
RUN ?=
evaluate: $(VENV)/.installed $(TOY)/.complete  ## one run's paper and common metrics: make evaluate RUN=runs/<project>/<exp>/<version> [ARGS=]
	$(VENV)/bin/avgen evaluate --run $(RUN) $(ARGS)

compare: $(VENV)/.installed $(TOY)/.complete  ## compare the trained systems under runs/ by direction (trains nothing): runs/compare/
	$(VENV)/bin/avgen compare --all $(ARGS)

lint: $(VENV)/.installed  ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed  ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint  ## lint + the whole test suite (installs what it needs; what CI runs)
	$(PY) -m pytest $(ARGS)

test-fast: $(VENV)/.installed  ## the tests not marked slow (a few minutes; no toy trainings, no CLI subprocesses)
	$(PY) -m pytest -m "not slow" $(ARGS)

clean:  ## remove runs/ and the toy data (keeps .venv)
	rm -rf runs $(TOY)
